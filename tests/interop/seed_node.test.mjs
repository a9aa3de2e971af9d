// The README's Node.js snippet (publish, wildcard subscribe, request/reply), run with
// nats.js against the server under test. The server URL comes from NATS_URL;
// NATS_USER / NATS_PASSWORD are used when set, as in the README.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, ErrorCode } from "nats";

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const auth = process.env.NATS_USER
  ? { user: process.env.NATS_USER, pass: process.env.NATS_PASSWORD ?? "" }
  : {};

async function nextMessage(sub, ms = 5000) {
  const iter = sub[Symbol.asyncIterator]();
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no message on ${sub.getSubject()} in ${ms}ms`)), ms).unref(),
  );
  const { value, done } = await Promise.race([iter.next(), timeout]);
  assert.equal(done, false, "subscription ended early");
  return value;
}

test("publish and wildcard subscribe", async () => {
  const nc = await connect({ servers, ...auth });
  const watcher = await connect({ servers, ...auth });
  try {
    const orders = watcher.subscribe("orders.created");
    await watcher.flush();
    // The README snippet: publish an order as JSON.
    nc.publish("orders.created", JSON.stringify({ id: 1, total: 99.99 }));
    const order = await nextMessage(orders);
    assert.deepEqual(order.json(), { id: 1, total: 99.99 });

    // The README snippet: subscribe to payments.*.
    const sub = nc.subscribe("payments.*");
    await nc.flush();
    watcher.publish("payments.card.visa", "too deep");
    watcher.publish("payments", "too shallow");
    watcher.publish("payments.card", "paid");
    const payment = await nextMessage(sub);
    assert.equal(payment.subject, "payments.card");
    assert.equal(payment.string(), "paid");
  } finally {
    await nc.close();
    await watcher.close();
  }
});

test("request/reply", async () => {
  const service = await connect({ servers, ...auth });
  const nc = await connect({ servers, ...auth });
  try {
    const sub = service.subscribe("inventory.check", {
      callback: (err, msg) => {
        assert.equal(err, null);
        const { sku } = msg.json();
        msg.respond(JSON.stringify({ sku, stock: 7 }));
      },
    });
    await service.flush();
    // The README snippet.
    const response = await nc.request("inventory.check", JSON.stringify({ sku: "ABC123" }), {
      timeout: 5000,
    });
    assert.deepEqual(response.json(), { sku: "ABC123", stock: 7 });
    sub.unsubscribe();
  } finally {
    await nc.close();
    await service.close();
  }
});

test("request without responder reports no responders", async () => {
  const nc = await connect({ servers, ...auth });
  try {
    await assert.rejects(nc.request("nobody.listens", "?", { timeout: 5000 }), (err) => {
      assert.equal(err.code, ErrorCode.NoResponders);
      return true;
    });
  } finally {
    await nc.close();
  }
});
