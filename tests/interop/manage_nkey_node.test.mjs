// Issue 17, item 5: a passwordless user made by `manage add-user --auth nkey`, used by nats.js
// with its `nkeyAuthenticator` and the seed file the credentials name (NATS_NKEY). The
// permissions hold and `manage rotate` makes the old seed useless. The deployment is the test's
// own, run by MANAGE_BIN (default target/debug/manage) with NATSD_BIN (default
// target/debug/natsd), as in test_manage_nkey_python.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect, nkeyAuthenticator } from "nats";

const root = resolve(import.meta.dirname, "../..");
const manageBin = process.env.MANAGE_BIN ?? join(root, "target/debug/manage");
const serverBin = process.env.NATSD_BIN ?? join(root, "target/debug/natsd");

async function freePort() {
  return new Promise((done) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

function envFile(path) {
  const values = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line && !line.startsWith("#") && line.includes("=")) {
      const at = line.indexOf("=");
      values[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return values;
}

// Whether a publish to `subject` reaches `sub` (retried while the SUB may not be in yet).
async function delivered(publisher, subscriber, subject) {
  const sub = subscriber.subscribe(subject);
  await subscriber.flush();
  const iter = sub[Symbol.asyncIterator]();
  try {
    for (let i = 0; i < 10; i++) {
      publisher.publish(subject, "x");
      await publisher.flush();
      const timeout = new Promise((r) => setTimeout(() => r("timeout"), 100).unref());
      const got = await Promise.race([iter.next(), timeout]);
      if (got !== "timeout" && !got.done) return true;
    }
    return false;
  } finally {
    sub.unsubscribe();
  }
}

function connectWithSeed(url, seed) {
  return connect({
    servers: url,
    authenticator: nkeyAuthenticator(new TextEncoder().encode(seed.trim())),
    reconnect: false,
    timeout: 5000,
  });
}

test("an NKEY user from manage logs in with nats.js", async () => {
  const dir = mkdtempSync(join(tmpdir(), "manage-nkey-"));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("NATS_")),
  );
  Object.assign(env, {
    MANAGE_DIR: dir,
    NATS_PORT: String(await freePort()),
    NATS_HTTP_PORT: String(await freePort()),
    NATSD_BIN: serverBin,
    NO_COLOR: "1",
  });
  const manage = (...args) => execFileSync(manageBin, args, { env, encoding: "utf8" });
  manage("up");
  try {
    manage("add-tenant", "shop", "16MB", "1GB", "--auth", "nkey");
    manage("add-user", "shop", "svc", "--auth", "nkey", "-p", "orders.*", "-s", "payments.*");
    const admin = envFile(join(dir, ".credentials/shop.env"));
    const svcEnv = envFile(join(dir, ".credentials/shop_svc.env"));
    assert.equal(svcEnv.NATS_PASSWORD, undefined);
    // The seed file the credentials name, as an application reads it.
    const svc = await connectWithSeed(svcEnv.NATS_URL, readFileSync(svcEnv.NATS_NKEY, "utf8"));
    const adm = await connectWithSeed(admin.NATS_URL, admin.NATS_NKEY_SEED);
    try {
      assert.ok(await delivered(svc, adm, "orders.created"), "allowed publish");
      assert.ok(await delivered(adm, svc, "payments.card"), "allowed subscribe");
      assert.ok(!(await delivered(svc, adm, "secret.stuff")), "denied publish delivered");
    } finally {
      await svc.close();
      await adm.close();
    }
    manage("rotate", "shop", "svc");
    const rotated = envFile(join(dir, ".credentials/shop_svc.env"));
    assert.notEqual(rotated.NATS_NKEY_SEED, svcEnv.NATS_NKEY_SEED);
    await assert.rejects(connectWithSeed(svcEnv.NATS_URL, svcEnv.NATS_NKEY_SEED));
    const fresh = await connectWithSeed(rotated.NATS_URL, readFileSync(rotated.NATS_NKEY, "utf8"));
    await fresh.close();
  } finally {
    try {
      manage("down");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
