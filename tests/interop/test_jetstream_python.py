"""JetStream acknowledgement kinds with nats-py against the server under test (which
runs with JetStream on): nak (now and delayed), term, in-progress, ack-sync, and the
work-queue stream that drops acked messages. Pull fetch, ordered replay and KV with
nats-py are covered by server/tests/consumers.rs. The server URL comes from NATS_URL."""

import asyncio
import os
import time
import uuid

import nats
from nats.js.api import ConsumerConfig, RetentionPolicy

URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


def connect_options():
    options = {"servers": [URL]}
    if os.environ.get("NATS_USER"):
        options["user"] = os.environ["NATS_USER"]
        options["password"] = os.environ.get("NATS_PASSWORD", "")
    return options


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_nak_term_in_progress():
    async def scenario():
        nc = await nats.connect(**connect_options())
        js = nc.jetstream()
        name = unique("ACKS")
        subject = f"{name.lower()}.job"
        await js.add_stream(name=name, subjects=[f"{name.lower()}.*"])
        try:
            for i in range(3):
                ack = await js.publish(subject, str(i).encode())
                assert (ack.stream, ack.seq) == (name, i + 1)
            sub = await js.pull_subscribe(
                subject,
                durable="w",
                stream=name,
                config=ConsumerConfig(ack_wait=1.0, max_deliver=5),
            )
            first = await sub.fetch(3, timeout=2)
            assert [m.metadata.sequence.stream for m in first] == [1, 2, 3]
            await first[0].nak()
            await first[1].term()
            slow = first[2]

            again = (await sub.fetch(1, timeout=2))[0]
            assert again.metadata.sequence.stream == 1
            assert again.metadata.num_delivered == 2
            await again.ack_sync()

            # In progress past the 1s ack wait: seq 3 must not come back meanwhile.
            deadline = time.monotonic() + 1.8
            while time.monotonic() < deadline:
                await slow.in_progress()
                try:
                    extra = await sub.fetch(1, timeout=0.3)
                except nats.errors.TimeoutError:
                    continue
                raise AssertionError(f"redelivered {extra[0].metadata.sequence.stream}")
            await slow.ack_sync()

            # A delayed nak comes back only after the delay.
            await js.publish(subject, b"later")
            fourth = (await sub.fetch(1, timeout=2))[0]
            assert fourth.metadata.sequence.stream == 4
            nak_at = time.monotonic()
            await fourth.nak(delay=0.6)
            redelivered = (await sub.fetch(1, timeout=3))[0]
            assert redelivered.metadata.sequence.stream == 4
            assert time.monotonic() - nak_at >= 0.5
            await redelivered.ack_sync()

            info = await js.consumer_info(name, "w")
            assert info.num_ack_pending == 0, info
            assert info.ack_floor.stream_seq == 4, info
        finally:
            await js.delete_stream(name)
            await nc.close()

    asyncio.run(scenario())


def test_work_queue_drops_acked_messages():
    async def scenario():
        nc = await nats.connect(**connect_options())
        js = nc.jetstream()
        name = unique("JOBS")
        subject = f"{name.lower()}.job"
        await js.add_stream(
            name=name, subjects=[f"{name.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE
        )
        try:
            for i in range(5):
                await js.publish(subject, str(i).encode())
            sub = await js.pull_subscribe(subject, durable="w", stream=name)
            got = []
            while len(got) < 5:
                for m in await sub.fetch(5, timeout=2):
                    got.append(int(m.data))
                    await m.ack_sync()
            assert got == [0, 1, 2, 3, 4]
            info = await js.stream_info(name)
            assert info.state.messages == 0, info.state
            assert info.state.first_seq == 6, info.state
            # A second consumer overlapping the first is refused on a work queue.
            try:
                await js.add_consumer(name, ConsumerConfig(durable_name="w2"))
            except nats.js.errors.BadRequestError as err:
                assert err.err_code == 10099, err
            else:
                raise AssertionError("overlapping work-queue consumer was accepted")
        finally:
            await js.delete_stream(name)
            await nc.close()

    asyncio.run(scenario())
