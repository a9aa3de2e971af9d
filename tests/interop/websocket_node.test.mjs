// nats.ws (the browser client) from Node over ws://, with the `ws` package standing in for
// the browser's WebSocket as the nats.ws documentation describes, against the server under
// test: pub/sub and request/reply with a TCP client (nats.js) on the same server.
// NATS_WS_URL names the WebSocket listener, NATS_URL the TCP one.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { connect as connectTcp } from "nats";

globalThis.WebSocket = WebSocket;
const { connect: connectWs, StringCodec } = await import("nats.ws");

const wsUrl = process.env.NATS_WS_URL;
const tcpUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const sc = StringCodec();

async function nextMessage(sub, ms = 5000) {
  const iter = sub[Symbol.asyncIterator]();
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no message on ${sub.getSubject()} in ${ms}ms`)), ms).unref(),
  );
  const { value, done } = await Promise.race([iter.next(), timeout]);
  assert.equal(done, false, "subscription ended early");
  return value;
}

test("NATS_WS_URL names the server's websocket listener", () => {
  assert.ok(wsUrl, "set NATS_WS_URL (scripts/test.sh does) to the ws:// listener under test");
});

test("pub/sub between a websocket and a TCP client", { skip: !wsUrl }, async () => {
  const ws = await connectWs({ servers: wsUrl });
  const tcp = await connectTcp({ servers: tcpUrl });
  try {
    const fromTcp = ws.subscribe("browser.inbox");
    await ws.flush();
    const fromWs = tcp.subscribe("orders.*");
    await tcp.flush();

    tcp.publish("browser.inbox", sc.encode("hello browser"));
    assert.equal(sc.decode((await nextMessage(fromTcp)).data), "hello browser");

    // A payload larger than a browser frame, so it spans several frames each way.
    const big = "x".repeat(200_000);
    ws.publish("orders.created", sc.encode(big));
    const got = await nextMessage(fromWs);
    assert.equal(got.subject, "orders.created");
    assert.equal(got.data.length, big.length);
  } finally {
    await ws.close();
    await tcp.close();
  }
});

test("request/reply across transports", { skip: !wsUrl }, async () => {
  const ws = await connectWs({ servers: wsUrl });
  const tcp = await connectTcp({ servers: tcpUrl });
  try {
    tcp.subscribe("inventory.check", {
      callback: (err, msg) => {
        assert.equal(err, null);
        msg.respond(sc.encode(`stock of ${sc.decode(msg.data)}: 7`));
      },
    });
    await tcp.flush();
    const reply = await ws.request("inventory.check", sc.encode("sku-1"), { timeout: 5000 });
    assert.equal(sc.decode(reply.data), "stock of sku-1: 7");
  } finally {
    await ws.close();
    await tcp.close();
  }
});
