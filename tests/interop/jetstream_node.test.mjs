// JetStream with nats.js (v2.29 API) against the server under test, which must run with
// JetStream enabled: the seed's ORDERS stream, publish acks, pull fetch/consume, ordered
// replay, nak/term/in-progress, and a Key-Value bucket. NATS_URL names the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  KvWatchInclude,
  nanos,
  RetentionPolicy,
  StorageType,
} from "nats";

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const auth = process.env.NATS_USER
  ? { user: process.env.NATS_USER, pass: process.env.NATS_PASSWORD ?? "" }
  : {};

// Each test uses its own stream so the tests stay independent of order and reruns.
let counter = 0;
function uniqueName(prefix) {
  counter += 1;
  return `${prefix}_${process.pid}_${Date.now()}_${counter}`;
}

async function withJetStream(fn) {
  const nc = await connect({ servers, ...auth });
  const jsm = await nc.jetstreamManager();
  const created = [];
  try {
    await fn({ nc, jsm, js: nc.jetstream(), created });
  } finally {
    for (const name of created) {
      await jsm.streams.delete(name).catch(() => {});
    }
    await nc.close();
  }
}

/** The seed's ORDERS stream, under a unique name and subject prefix. */
async function addOrders(jsm, created) {
  const name = uniqueName("ORDERS");
  const prefix = name.toLowerCase();
  const info = await jsm.streams.add({
    name,
    subjects: [`${prefix}.*`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_msgs: 100000,
    max_age: nanos(7 * 24 * 60 * 60 * 1000),
  });
  created.push(name);
  return { name, prefix, info };
}

async function publishN(js, subject, n) {
  const acks = [];
  for (let i = 0; i < n; i++) {
    acks.push(await js.publish(subject, JSON.stringify({ id: i })));
  }
  return acks;
}

async function collect(iter) {
  const out = [];
  for await (const m of iter) out.push(m);
  return out;
}

test("ORDERS stream: add with the seed's limits, publish acks, dedupe", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const { name, prefix, info } = await addOrders(jsm, created);
    assert.equal(info.config.name, name);
    assert.deepEqual(info.config.subjects, [`${prefix}.*`]);
    assert.equal(info.config.storage, StorageType.File);
    assert.equal(info.config.retention, RetentionPolicy.Limits);
    assert.equal(info.config.max_msgs, 100000);
    assert.equal(info.config.max_age, nanos(7 * 24 * 60 * 60 * 1000));

    const acks = await publishN(js, `${prefix}.created`, 3);
    assert.deepEqual(
      acks.map((a) => [a.stream, a.seq, a.duplicate]),
      [
        [name, 1, false],
        [name, 2, false],
        [name, 3, false],
      ],
    );
    const first = await js.publish(`${prefix}.paid`, "x", { msgID: "pay-1" });
    const again = await js.publish(`${prefix}.paid`, "x", { msgID: "pay-1" });
    assert.equal(first.seq, 4);
    assert.equal(again.seq, 4);
    assert.equal(again.duplicate, true);

    const si = await jsm.streams.info(name);
    assert.equal(si.state.messages, 4);
    assert.equal(si.state.last_seq, 4);
    // A subject outside the stream has no stream to answer the publish.
    await assert.rejects(js.publish(`${prefix}x.created`, "nobody", { timeout: 2000 }));
  });
});

test("pull fetch in batches with explicit acks", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const { name, prefix } = await addOrders(jsm, created);
    await publishN(js, `${prefix}.created`, 25);
    await jsm.consumers.add(name, { durable_name: "worker", ack_policy: AckPolicy.Explicit });
    const c = await js.consumers.get(name, "worker");

    const seqs = [];
    const batches = [];
    while (seqs.length < 25) {
      const batch = await collect(await c.fetch({ max_messages: 10, expires: 2000 }));
      assert.ok(batch.length > 0, "fetch returned nothing while messages were pending");
      batches.push(batch.length);
      for (const m of batch) {
        seqs.push(m.info.streamSequence);
        assert.equal(m.info.deliveryCount, 1);
        assert.equal(m.json().id, m.info.streamSequence - 1);
        assert.equal(await m.ackAck(), true);
      }
    }
    assert.deepEqual(batches, [10, 10, 5]);
    assert.deepEqual(
      seqs,
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    const ci = await c.info();
    assert.equal(ci.num_pending, 0);
    assert.equal(ci.num_ack_pending, 0);
    assert.equal(ci.ack_floor.stream_seq, 25);

    // Nothing left: a short fetch ends empty.
    const empty = await collect(await c.fetch({ max_messages: 5, expires: 1000 }));
    assert.equal(empty.length, 0);
  });
});

test("consume loop delivers every message once", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const { name, prefix } = await addOrders(jsm, created);
    await publishN(js, `${prefix}.created`, 50);
    await jsm.consumers.add(name, { durable_name: "loop", ack_policy: AckPolicy.Explicit });
    const c = await js.consumers.get(name, "loop");
    const messages = await c.consume({ max_messages: 7 });
    const seen = [];
    for await (const m of messages) {
      seen.push(m.info.streamSequence);
      m.ack();
      if (seen.length === 50) break;
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    // Late publishes reach a new consume loop.
    await publishN(js, `${prefix}.late`, 3);
    const more = await c.consume({ max_messages: 2 });
    const late = [];
    for await (const m of more) {
      late.push(m.subject);
      await m.ackAck();
      if (late.length === 3) break;
    }
    assert.deepEqual(late, [`${prefix}.late`, `${prefix}.late`, `${prefix}.late`]);
    const ci = await c.info();
    assert.equal(ci.num_pending, 0);
    assert.equal(ci.delivered.stream_seq, 53);
  });
});

test("ordered consumer replays the stream in order, filtered", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const { name, prefix } = await addOrders(jsm, created);
    for (let i = 0; i < 20; i++) {
      await js.publish(i % 2 ? `${prefix}.paid` : `${prefix}.created`, String(i));
    }
    const all = await js.consumers.get(name);
    const iter = await all.consume();
    const replay = [];
    for await (const m of iter) {
      replay.push([m.info.streamSequence, m.string()]);
      if (replay.length === 20) break;
    }
    assert.deepEqual(
      replay,
      Array.from({ length: 20 }, (_, i) => [i + 1, String(i)]),
    );

    const paid = await js.consumers.get(name, { filterSubjects: [`${prefix}.paid`] });
    const got = await collect(await paid.fetch({ max_messages: 10, expires: 2000 }));
    assert.deepEqual(
      got.map((m) => m.info.streamSequence),
      [2, 4, 6, 8, 10, 12, 14, 16, 18, 20],
    );

    const fromSeq = await js.consumers.get(name, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: 15,
    });
    const tail = await collect(await fromSeq.fetch({ max_messages: 6, expires: 2000 }));
    assert.deepEqual(
      tail.map((m) => m.info.streamSequence),
      [15, 16, 17, 18, 19, 20],
    );
  });
});

test("nak redelivers, term stops, working extends the ack wait", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const { name, prefix } = await addOrders(jsm, created);
    await publishN(js, `${prefix}.created`, 3);
    await jsm.consumers.add(name, {
      durable_name: "flaky",
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(1000),
      max_deliver: 5,
    });
    const c = await js.consumers.get(name, "flaky");

    // Seq 1: nak now; seq 2: term; seq 3: in progress then ack.
    const first = await collect(await c.fetch({ max_messages: 3, expires: 2000 }));
    assert.deepEqual(
      first.map((m) => m.info.streamSequence),
      [1, 2, 3],
    );
    first[0].nak();
    first[1].term();
    const slow = first[2];

    const again = await c.next({ expires: 2000 });
    assert.ok(again, "nak'd message was not redelivered");
    assert.equal(again.info.streamSequence, 1);
    assert.equal(again.info.deliveryCount, 2);
    assert.equal(again.redelivered, true);
    await again.ackAck();

    // Keep seq 3 in progress past its 1s ack wait: it must not come back meanwhile.
    const keepAlive = setInterval(() => slow.working(), 300);
    let none;
    try {
      await new Promise((r) => setTimeout(r, 1200));
      none = await c.next({ expires: 1000 });
    } finally {
      clearInterval(keepAlive);
    }
    assert.equal(none, null, `unexpected redelivery of ${none?.info.streamSequence}`);
    assert.equal(await slow.ackAck(), true);

    // A nak with a delay redelivers only after the delay.
    await js.publish(`${prefix}.created`, "later");
    const fourth = await c.next({ expires: 2000 });
    assert.equal(fourth.info.streamSequence, 4);
    const nakAt = Date.now();
    fourth.nak(600);
    const delayed = await c.next({ expires: 3000 });
    assert.ok(delayed, "delayed nak was not redelivered");
    assert.equal(delayed.info.streamSequence, 4);
    assert.ok(Date.now() - nakAt >= 500, `redelivered after ${Date.now() - nakAt}ms`);
    await delayed.ackAck();

    const ci = await c.info();
    assert.equal(ci.num_ack_pending, 0);
    assert.equal(ci.num_redelivered, 0);
    assert.equal(ci.ack_floor.stream_seq, 4);
  });
});

test("work queue stream removes acked messages", async () => {
  await withJetStream(async ({ jsm, js, created }) => {
    const name = uniqueName("JOBS");
    const prefix = name.toLowerCase();
    await jsm.streams.add({
      name,
      subjects: [`${prefix}.>`],
      retention: RetentionPolicy.Workqueue,
    });
    created.push(name);
    await publishN(js, `${prefix}.job`, 6);
    await jsm.consumers.add(name, { durable_name: "w", ack_policy: AckPolicy.Explicit });
    const c = await js.consumers.get(name, "w");
    for (const m of await collect(await c.fetch({ max_messages: 6, expires: 2000 }))) {
      await m.ackAck();
    }
    const si = await jsm.streams.info(name);
    assert.equal(si.state.messages, 0);
    assert.equal(si.state.first_seq, 7);
    // A second unfiltered consumer on a work queue is refused.
    await assert.rejects(
      jsm.consumers.add(name, { durable_name: "w2", ack_policy: AckPolicy.Explicit }),
    );
  });
});

test("Key-Value: put/get/create/update/delete/purge/keys/watch/history", async () => {
  const nc = await connect({ servers, ...auth });
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const bucket = uniqueName("cfg");
  try {
    const kv = await js.views.kv(bucket, { history: 5 });
    const r1 = await kv.put("color", "red");
    const r2 = await kv.put("color", "blue");
    assert.equal(r2, r1 + 1);
    const e = await kv.get("color");
    assert.equal(e.string(), "blue");
    assert.equal(e.revision, r2);
    assert.equal(e.operation, "PUT");
    assert.equal(await kv.get("missing"), null);

    const r3 = await kv.create("size", "L");
    await assert.rejects(kv.create("size", "M"));
    const r4 = await kv.update("size", "XL", r3);
    await assert.rejects(kv.update("size", "S", r3), "update with a stale revision");
    assert.equal((await kv.get("size")).string(), "XL");

    const hist = await collect(await kv.history({ key: "color" }));
    assert.deepEqual(
      hist.map((h) => h.string()),
      ["red", "blue"],
    );

    await kv.delete("size");
    assert.equal((await kv.get("size")).operation, "DEL");
    // A deleted key can be created again.
    const r6 = await kv.create("size", "M");
    assert.ok(r6 > r4);

    const keys = (await collect(await kv.keys())).sort();
    assert.deepEqual(keys, ["color", "size"]);

    await kv.purge("color");
    assert.equal((await kv.get("color")).operation, "PURGE");
    const purgedHistory = await collect(await kv.history({ key: "color" }));
    assert.equal(purgedHistory.length, 1, "purge keeps only the purge marker");
    assert.deepEqual(await collect(await kv.keys()), ["size"]);

    // Watch: the latest value of each key in stream order (purge markers included),
    // then live updates.
    const watch = await kv.watch({ key: ">", include: KvWatchInclude.LastValue });
    const seen = [];
    const done = (async () => {
      for await (const w of watch) {
        seen.push([w.key, w.operation, w.string()]);
        if (w.key === "live") break;
      }
    })();
    await kv.put("live", "now");
    await Promise.race([
      done,
      new Promise((_, reject) => setTimeout(() => reject(new Error("watch stalled")), 5000).unref()),
    ]);
    assert.deepEqual(seen, [
      ["size", "PUT", "M"],
      ["color", "PURGE", ""],
      ["live", "PUT", "now"],
    ]);

    const status = await kv.status();
    assert.equal(status.history, 5);
    assert.equal(status.bucket, bucket);
  } finally {
    await jsm.streams.delete(`KV_${bucket}`).catch(() => {});
    await nc.close();
  }
});
