"""The README's Python snippet (publish, wildcard subscribe) plus request/reply, run
with nats-py against the server under test. The server URL comes from NATS_URL;
NATS_USER / NATS_PASSWORD are used when set, as in the README."""

import asyncio
import json
import os

import nats

URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
TIMEOUT = 5


def connect_options():
    options = {"servers": [URL]}
    if os.environ.get("NATS_USER"):
        options["user"] = os.environ["NATS_USER"]
        options["password"] = os.environ.get("NATS_PASSWORD", "")
    return options


async def wait_until_visible(publisher, subject, inbox):
    """nats-py's flush() is not a barrier (protocol.md §11): keep publishing a probe
    until the subscriber sees one, proving its SUB reached the server."""
    for _ in range(100):
        await publisher.publish(subject, b"probe")
        await publisher.flush()
        try:
            msg = await asyncio.wait_for(inbox.get(), 0.1)
        except asyncio.TimeoutError:
            continue
        assert msg.data == b"probe"
        while not inbox.empty():
            inbox.get_nowait()
        return
    raise AssertionError(f"subscription on {subject} never became visible")


def test_publish_and_wildcard_subscribe():
    async def scenario():
        nc = await nats.connect(**connect_options())
        watcher = await nats.connect(**connect_options())
        try:
            payments = asyncio.Queue()
            orders = asyncio.Queue()

            async def handler(msg):
                await payments.put(msg)

            async def order_handler(msg):
                await orders.put(msg)

            # The README snippet: subscribe to payments.* with a callback.
            await nc.subscribe("payments.*", cb=handler)
            await watcher.subscribe("orders.created", cb=order_handler)
            await wait_until_visible(watcher, "payments.probe", payments)
            await wait_until_visible(nc, "orders.created", orders)

            # The README snippet: publish an order.
            await nc.publish("orders.created", b'{"id": 1}')
            await nc.flush()
            order = await asyncio.wait_for(orders.get(), TIMEOUT)
            assert json.loads(order.data) == {"id": 1}

            await watcher.publish("payments.card", b"paid")
            await watcher.publish("payments.card.visa", b"too deep")
            await watcher.publish("payments", b"too shallow")
            await watcher.publish("payments.wire", b"paid too")
            await watcher.flush()
            first = await asyncio.wait_for(payments.get(), TIMEOUT)
            second = await asyncio.wait_for(payments.get(), TIMEOUT)
            assert (first.subject, first.data.decode()) == ("payments.card", "paid")
            assert (second.subject, second.data.decode()) == ("payments.wire", "paid too")
            assert payments.empty()
        finally:
            await nc.close()
            await watcher.close()

    asyncio.run(scenario())


def test_request_reply():
    async def scenario():
        service = await nats.connect(**connect_options())
        nc = await nats.connect(**connect_options())
        try:
            async def check_stock(msg):
                request = json.loads(msg.data)
                await msg.respond(json.dumps({"sku": request["sku"], "stock": 7}).encode())

            await service.subscribe("inventory.check", cb=check_stock)
            await service.flush()
            # The request retries until the responder's SUB is visible (see §11).
            response = None
            for _ in range(50):
                try:
                    response = await nc.request(
                        "inventory.check", json.dumps({"sku": "ABC123"}).encode(), timeout=TIMEOUT
                    )
                    break
                except nats.errors.NoRespondersError:
                    await asyncio.sleep(0.05)
            assert response is not None, "responder never became visible"
            assert json.loads(response.data) == {"sku": "ABC123", "stock": 7}
        finally:
            await nc.close()
            await service.close()

    asyncio.run(scenario())


def test_request_without_responder_reports_no_responders():
    async def scenario():
        nc = await nats.connect(**connect_options())
        try:
            try:
                await nc.request("nobody.listens", b"?", timeout=TIMEOUT)
            except nats.errors.NoRespondersError:
                return
            raise AssertionError("expected NoRespondersError")
        finally:
            await nc.close()

    asyncio.run(scenario())
