"""nats-py's WebSocket transport (aiohttp) against the server under test: publish and
subscribe across a ws:// and a TCP connection, and request/reply. NATS_WS_URL names the
WebSocket listener, NATS_URL the TCP one."""

import asyncio
import os

import nats

WS_URL = os.environ.get("NATS_WS_URL", "")
URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
TIMEOUT = 5


def test_websocket_url_is_set():
    assert WS_URL.startswith("ws"), "set NATS_WS_URL (scripts/test.sh does) to the ws:// listener"


def test_pubsub_between_websocket_and_tcp():
    async def scenario():
        ws = await nats.connect(servers=[WS_URL])
        tcp = await nats.connect(servers=[URL])
        try:
            got = asyncio.Queue()

            async def handler(msg):
                await got.put(msg)

            await ws.subscribe("browser.*", cb=handler)
            # A round trip on the subscriber's connection: its SUB has been handled.
            await ws.flush()
            # flush() is not a barrier for other connections (protocol.md): probe until seen.
            for _ in range(100):
                await tcp.publish("browser.probe", b"probe")
                try:
                    await asyncio.wait_for(got.get(), 0.1)
                    break
                except asyncio.TimeoutError:
                    continue
            while not got.empty():
                got.get_nowait()

            payload = b"y" * 100_000
            await tcp.publish("browser.big", payload)
            msg = await asyncio.wait_for(got.get(), TIMEOUT)
            assert msg.subject == "browser.big"
            assert msg.data == payload

            sub = await tcp.subscribe("from.ws")
            await tcp.flush()
            await ws.publish("from.ws", b"over websocket")
            await ws.flush()
            msg = await sub.next_msg(timeout=TIMEOUT)
            assert msg.data == b"over websocket"
        finally:
            await ws.close()
            await tcp.close()

    asyncio.run(scenario())


def test_request_reply_over_websocket():
    async def scenario():
        ws = await nats.connect(servers=[WS_URL])
        tcp = await nats.connect(servers=[URL])
        try:

            async def responder(msg):
                await msg.respond(b"stock: " + msg.data)

            await tcp.subscribe("inventory.check", cb=responder)
            await tcp.flush()
            reply = await ws.request("inventory.check", b"7", timeout=TIMEOUT)
            assert reply.data == b"stock: 7"
        finally:
            await ws.close()
            await tcp.close()

    asyncio.run(scenario())
