// The tenant console (/console on natsd's monitoring port) in headless Chromium, driven by
// playwright-core: the page loads with no request leaving the server, shows the tenant this
// test creates with its JetStream usage against its limit and its failed login, its message
// counters move when the test publishes, and search and sorting work. A screenshot is saved
// to CONSOLE_SCREENSHOT (default: target/test-artifacts/console.png, outside git).
//
// Starts its own natsd (NATSD_BIN, default target/debug/natsd) on 127.0.0.1 free ports.
// Chromium is CHROMIUM_BIN (default /usr/bin/chromium, Debian's `chromium`); without it the
// test is skipped with a message (scripts/test.sh installs it when it can).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connect } from "nats";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const natsdBin = process.env.NATSD_BIN ?? join(root, "target/debug/natsd");
const chromiumBin = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const screenshot = process.env.CONSOLE_SCREENSHOT ?? join(root, "target/test-artifacts/console.png");

// Start natsd and read its ports from the log.
function startNatsd(dir) {
  const conf = join(dir, "natsd.conf");
  writeFileSync(conf, `
jetstream { store_dir: "${join(dir, "store")}", max_memory_store: 268435456, max_file_store: 1073741824 }
accounts {
  ACME { jetstream { max_memory: 1048576, max_file: 10485760 }, users: [ { user: acme, password: pa } ] }
  QUIET { users: [ { user: quiet, password: pq } ] }
  SYS { users: [ { user: sys, password: ps } ] }
}
system_account: SYS
`);
  const proc = spawn(natsdBin, ["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-c", conf], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((ok, fail) => {
    const ports = {};
    const lines = createInterface({ input: proc.stderr });
    const timer = setTimeout(() => fail(new Error("natsd did not become ready")), 20000);
    lines.on("line", (line) => {
      const port = (marker) => line.includes(marker) && Number(line.trim().split(":").pop());
      ports.client ??= port("Listening for client connections on") || undefined;
      ports.http ??= port("Starting http monitor on") || undefined;
      if (line.includes("Server is ready")) {
        clearTimeout(timer);
        ok({ proc, ...ports });
      }
    });
    proc.on("exit", (code) => fail(new Error(`natsd exited with ${code}`)));
  });
}

const value = (page, tenant, cls) =>
  page.$eval(`tr[data-tenant="${tenant}"] td.${cls}`, (td) => Number(td.dataset.value));

test("tenant console in headless Chromium", async (t) => {
  if (!existsSync(chromiumBin)) {
    console.log(`\n!!!!! ${chromiumBin} not found (Debian package chromium): SKIPPING the console browser test !!!!!\n`);
    t.skip("no chromium");
    return;
  }
  assert.ok(existsSync(natsdBin), `natsd binary ${natsdBin} (build it first)`);
  const { chromium } = await import("playwright-core");
  const dir = mkdtempSync(join(tmpdir(), "natsd-console-"));
  const server = await startNatsd(dir);
  let browser;
  let nc;
  try {
    const url = `nats://127.0.0.1:${server.client}`;
    nc = await connect({ servers: url, user: "acme", pass: "pa" });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: "ORDERS", subjects: ["orders.>"] });
    const js = nc.jetstream();
    for (let i = 0; i < 20; i++) await js.publish(`orders.${i}`, new Uint8Array(1000));
    // One wrong password of ACME's user.
    await assert.rejects(connect({ servers: url, user: "acme", pass: "wrong", reconnect: false }));

    browser = await chromium.launch({
      executablePath: chromiumBin,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage({ viewport: { width: 1600, height: 700 } });
    const base = `http://127.0.0.1:${server.http}/`;
    const requests = [];
    const problems = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));

    const resp = await page.goto(`${base}console`);
    assert.equal(resp.status(), 200);
    await page.waitForSelector('tr[data-tenant="ACME"]');
    assert.match(await page.textContent("h1"), /natsd tenants/);
    // The system account is hidden until asked for.
    assert.equal(await page.$('tr[data-tenant="SYS"]'), null);
    assert.ok(await page.$('tr[data-tenant="QUIET"]'));

    // JetStream usage against the 10 MiB limit, as a bar.
    const storage = await value(page, "ACME", "storage");
    assert.ok(storage > 20 * 1000, `storage ${storage}`);
    const bar = await page.textContent('tr[data-tenant="ACME"] td.storage');
    assert.match(bar, /\/ 10 MiB/);
    assert.equal(await value(page, "ACME", "conns"), 1);
    assert.equal(await value(page, "ACME", "users"), 1);
    assert.equal(await value(page, "ACME", "streams"), 1);
    assert.equal(await value(page, "ACME", "auth-failures"), 1);
    assert.equal(await value(page, "QUIET", "auth-failures"), 0);
    assert.match(await page.textContent('tr[data-tenant="QUIET"] td.storage'), /no JetStream/);

    // Numbers move when the tenant publishes: the total, then the rate.
    const before = await value(page, "ACME", "in-msgs");
    for (let i = 0; i < 500; i++) nc.publish("live.x", new Uint8Array(100));
    await nc.flush();
    await page.waitForFunction(
      (min) => Number(document.querySelector('tr[data-tenant="ACME"] td.in-msgs')?.dataset.value) >= min,
      before + 500,
      { timeout: 15000 },
    );
    await page.waitForFunction(
      () => Number(document.querySelector('tr[data-tenant="ACME"] td.in-rate')?.dataset.value) > 0,
      null,
      { timeout: 15000 },
    );

    // Sorting by messages in (descending) puts ACME first; search narrows the list.
    await page.click('th[data-key="in_msgs"]');
    await page.click('th[data-key="in_msgs"]');
    const sortedFirst = () => page.$eval("#tenants tbody tr", (tr) => tr.dataset.tenant);
    const firstDesc = await sortedFirst();
    await page.click('th[data-key="in_msgs"]');
    const firstAsc = await sortedFirst();
    assert.deepEqual([firstDesc, firstAsc].sort(), ["ACME", "QUIET"], `${firstDesc} ${firstAsc}`);
    await page.fill("#search", "qui");
    await page.waitForFunction(() => document.querySelectorAll("#tenants tbody tr").length === 1);
    assert.equal(await sortedFirst(), "QUIET");
    await page.fill("#search", "");
    await page.waitForSelector('tr[data-tenant="ACME"]');
    await page.click('th[data-key="in_msgs"]');

    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`console screenshot: ${screenshot}`);

    // Nothing came from anywhere but the server itself (no CDN), and nothing broke.
    const foreign = requests.filter((u) => !u.startsWith(base));
    assert.deepEqual(foreign, []);
    assert.deepEqual(problems, []);
  } finally {
    await browser?.close();
    await nc?.close();
    server.proc.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
