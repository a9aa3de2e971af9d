#!/usr/bin/env python3
"""Soak: a multi-tenant natsd deployment (run by manage) under mixed load and faults for a
given time, then checks that nothing acknowledged was lost or doubled, that memory stayed
bounded and that no file descriptor leaked.

    .venv/bin/python scripts/soak.py [--minutes 60] [--out soak-report.json]

Not part of the test command (it runs for as long as it is told). Needs target/debug (or
$SOAK_BIN_DIR) natsd and manage built, and nats-py (scripts/test.sh puts it in .venv).
Everything binds 127.0.0.1 on free ports; run it under `nice -n 19` on a shared machine.

Load, all in the tenant `soak` (its admin user):
  - JetStream: a publisher with a Msg-Id per message, retried with the same id until acked
    (every ack is recorded); a durable pull consumer fetching and acking.
  - KV: a writer putting keys, a watcher counting updates (re-watching after reconnects).
  - core: a publisher, a fast subscriber, a slow subscriber (small pending limits, so the
    server drops for it as a slow consumer) and a subscriber that disconnects and
    reconnects every few seconds.
Faults: every few seconds a tenant is added or removed (`manage add-tenant` /
`remove-tenant`, each a config reload), and every `--kill-every` seconds natsd is killed
with -9 and started again with `manage up`.
At the end: natsd is killed and restarted once more; every acknowledged message the stream
still retains (it has `--max-msgs`, so the index and RSS stay bounded) must be in it exactly
once, at its acknowledged sequence with its payload; natsd's RSS must stay under
`--max-rss-mb` and must not grow across the run's second half; descriptors minus client
connections must not drift (sampled every few seconds).
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Deployment:
    def __init__(self, bin_dir, work):
        self.dir = work
        self.port = free_port()
        self.http = free_port()
        self.env = dict(os.environ)
        self.env.update(
            NATSD_BIN=os.path.join(bin_dir, "natsd"),
            NATS_PORT=str(self.port),
            NATS_HTTP_PORT=str(self.http),
            NATS_HOST="127.0.0.1",
            NO_COLOR="1",
        )
        self.manage_bin = os.path.join(bin_dir, "manage")
        self.kills = 0
        self.reloads = 0

    def manage(self, *args, check=True):
        out = subprocess.run(
            [self.manage_bin, "--config-dir", self.dir, "--no-progress", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"manage {' '.join(args)}: {out.stdout}{out.stderr}")
        return out

    def pid(self):
        try:
            with open(os.path.join(self.dir, "data", "natsd.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def up(self):
        self.manage("up")

    def healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
                return r.status == 200
        except Exception:
            return False

    def up_patiently(self, minutes=5):
        """`manage up` gives natsd 20 s; on a loaded machine at nice 19 a restart that
        replays a full stream took longer (the first hour-long run lost its final check
        that way). Waits for /healthz, starting again only if natsd is gone."""
        deadline = time.time() + minutes * 60
        while True:
            try:
                self.up()
                return
            except RuntimeError:
                if time.time() > deadline:
                    raise
            while time.time() < deadline and self.pid() and os.path.exists(f"/proc/{self.pid()}"):
                if self.healthy():
                    return
                time.sleep(1)

    def kill9(self):
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.kills += 1

    def varz(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/varz", timeout=5) as r:
            return json.load(r)

    def credentials(self, tenant):
        values = {}
        with open(os.path.join(self.dir, ".credentials", f"{tenant}.env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.strip().split("=", 1)
                    values[k] = v
        return values["NATS_USER"], values["NATS_PASSWORD"]


class Stats(dict):
    def bump(self, key, n=1):  # noqa: D401 - counters
        self[key] = self.get(key, 0) + n


async def connect(dep, user, password, name, stats=None, **kw):
    async def on_error(e):
        # Expected under this load: slow-consumer drops, connections cut by kill -9.
        if stats is not None:
            stats.bump("client_errors_" + type(e).__name__)

    opts = dict(
        error_cb=on_error,
        servers=[f"nats://127.0.0.1:{dep.port}"],
        user=user,
        password=password,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        allow_reconnect=True,
        connect_timeout=2,
    )
    opts.update(kw)
    while True:
        try:
            return await nats.connect(**opts)
        except Exception:
            await asyncio.sleep(0.5)


async def js_publisher(dep, creds, stop, acked, stats):
    nc = await connect(dep, *creds, "soak-js-pub")
    js = nc.jetstream(timeout=3)
    n = 0
    while not stop.is_set():
        n += 1
        msg_id = f"m{n}"
        payload = f"{msg_id}:{random.random()}".encode()
        while True:
            try:
                ack = await js.publish("soak.js", payload, headers={"Nats-Msg-Id": msg_id})
                acked[msg_id] = (ack.seq, payload)
                stats.bump("js_acked")
                if ack.duplicate:
                    stats.bump("js_ack_duplicate")
                break
            except Exception:
                # Timeout or error (server being killed): same Msg-Id again.
                stats.bump("js_publish_retries")
                await asyncio.sleep(0.2)
                if stop.is_set():
                    break
    await nc.close()


async def js_consumer(dep, creds, stop, stats):
    nc = await connect(dep, *creds, "soak-js-sub")
    js = nc.jetstream(timeout=5)
    sub = None
    while not stop.is_set():
        try:
            if sub is None:
                sub = await js.pull_subscribe("soak.js", "worker", stream="SOAK")
            msgs = await sub.fetch(50, timeout=1)
            for m in msgs:
                await m.ack()
            stats.bump("js_consumed", len(msgs))
        except NatsTimeout:
            pass
        except Exception:
            stats.bump("js_consumer_errors")
            sub = None
            await asyncio.sleep(0.5)
    await nc.close()


async def kv_load(dep, creds, stop, stats):
    nc = await connect(dep, *creds, "soak-kv")
    js = nc.jetstream(timeout=5)
    kv = None
    watcher = None
    n = 0
    while not stop.is_set():
        try:
            if kv is None:
                kv = await js.key_value("SOAKKV")
                watcher = await kv.watchall()
            n += 1
            await kv.put(f"k{n % 50}", str(n).encode())
            stats.bump("kv_puts")
            while True:
                try:
                    entry = await watcher.updates(timeout=0.05)
                except NatsTimeout:
                    break
                if entry is not None:
                    stats.bump("kv_watch_updates")
            await asyncio.sleep(0.02)
        except Exception:
            stats.bump("kv_errors")
            kv = None
            await asyncio.sleep(0.5)
    await nc.close()


async def core_load(dep, creds, stop, stats):
    pub = await connect(dep, *creds, "soak-core-pub")
    fast = await connect(dep, *creds, "soak-core-fast")
    slow = await connect(dep, *creds, "soak-core-slow", stats, pending_size=64 * 1024)

    async def on_fast(msg):
        stats.bump("core_fast_received")

    async def on_slow(msg):
        stats.bump("core_slow_received")
        await asyncio.sleep(0.01)

    await fast.subscribe("soak.core", cb=on_fast)
    await slow.subscribe("soak.core", cb=on_slow, pending_msgs_limit=100)

    async def reconnecting():
        while not stop.is_set():
            nc = await connect(dep, *creds, "soak-core-reconnect")
            got = 0

            async def cb(msg):
                nonlocal got
                got += 1

            await nc.subscribe("soak.core", cb=cb)
            await asyncio.sleep(random.uniform(1, 4))
            stats.bump("core_reconnect_received", got)
            stats.bump("core_reconnects")
            await nc.close()

    task = asyncio.create_task(reconnecting())
    payload = b"x" * 256
    while not stop.is_set():
        try:
            for _ in range(100):
                await pub.publish("soak.core", payload)
            stats.bump("core_published", 100)
            await pub.flush(timeout=2)
        except Exception:
            stats.bump("core_publish_errors")
        await asyncio.sleep(0.02)
    await task
    for nc in (pub, fast, slow):
        await nc.close()


def sample(dep, samples):
    pid = dep.pid()
    if not pid:
        return
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        conns = dep.varz()["connections"]
    except Exception:
        return
    samples.append({"t": time.time(), "pid": pid, "rss_kb": rss, "fds": fds, "conns": conns})


async def chaos(dep, stop, args, stats, samples):
    tenants = []
    n = 0
    next_kill = time.time() + args.kill_every
    next_reload = time.time() + args.reload_every
    while not stop.is_set():
        await asyncio.sleep(1)
        await asyncio.to_thread(sample, dep, samples)
        now = time.time()
        # A failing manage command (the machine's disk was once full for a while during a
        # soak here) is counted and reported, and the run goes on: the server must ride
        # through whatever caused it.
        try:
            if now >= next_reload:
                next_reload = now + args.reload_every
                if len(tenants) < 3 or (random.random() < 0.5 and len(tenants) < 8):
                    n += 1
                    name = f"tmp{n}"
                    await asyncio.to_thread(dep.manage, "add-tenant", name, "8MB", "32MB")
                    tenants.append(name)
                    stats.bump("tenants_added")
                else:
                    name = tenants[0]
                    await asyncio.to_thread(dep.manage, "remove-tenant", name, "--yes")
                    tenants.pop(0)
                    stats.bump("tenants_removed")
                dep.reloads += 1
            if now >= next_kill:
                next_kill = now + args.kill_every
                await asyncio.to_thread(dep.kill9)
                await asyncio.to_thread(dep.up)
                stats.bump("kill9_restarts")
        except Exception as e:
            stats.bump("manage_errors")
            stats.setdefault("manage_error_examples", [])
            if len(stats["manage_error_examples"]) < 3:
                stats["manage_error_examples"].append(str(e)[:300])
            if dep.pid() is None or not os.path.exists(f"/proc/{dep.pid()}"):
                await asyncio.sleep(1)
                try:
                    await asyncio.to_thread(dep.up)
                except Exception:
                    pass


async def verify(dep, creds, acked):
    """Reads the whole stream with one ephemeral pull consumer (big batches, no acks)."""
    nc = await connect(dep, *creds, "soak-verify")
    js = nc.jetstream(timeout=10)
    info = await js.stream_info("SOAK")
    first, last = info.state.first_seq, info.state.last_seq
    sub = await js.pull_subscribe(
        "soak.js",
        stream="SOAK",
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=60,
        ),
    )
    seen, payloads = {}, {}
    shifted = 0
    read_to = first - 1
    while read_to < last:
        try:
            msgs = await sub.fetch(1000, timeout=5)
        except NatsTimeout:
            break
        for m in msgs:
            seq = m.metadata.sequence.stream
            read_to = max(read_to, seq)
            mid = (m.headers or {}).get("Nats-Msg-Id")
            seen[mid] = seen.get(mid, 0) + 1
            # The stream starts empty and m<n> is published only after m<n-1> is acked: a
            # message ever stored twice or lost (even one evicted since) shifts this.
            if not (mid or "").startswith("m") or mid[1:] != str(seq):
                shifted += 1
            payloads[mid] = (seq, m.data)
    retained = {k: v for k, v in acked.items() if v[0] >= first}
    missing = [
        (mid, seq, payloads.get(mid))
        for mid, (seq, payload) in retained.items()
        if payloads.get(mid) != (seq, payload)
    ]
    doubled = {k: v for k, v in seen.items() if v > 1}
    await nc.close()
    return {
        "stream_messages": info.state.messages,
        "stream_first_seq": first,
        "stream_last_seq": last,
        "read_to_seq": read_to,
        "acked": len(acked),
        "acked_retained": len(retained),
        "acked_evicted_by_max_msgs": len(acked) - len(retained),
        "acked_missing_or_changed": len(missing),
        "missing_examples": [str(x) for x in missing[:5]],
        "msg_ids_stored_more_than_once": len(doubled),
        "unacked_but_stored": len(set(seen) - set(acked)),
        "seq_not_equal_msg_number": shifted,
    }


def judge(samples, max_rss_mb):
    if not samples:
        return {"ok": False, "why": "no samples"}
    rss = [s["rss_kb"] for s in samples]
    half = samples[len(samples) // 2 :]
    # Growth across the second half: the highest RSS of its last quarter against the
    # highest of its first quarter (restarts reset RSS, so both windows see fresh servers).
    q = max(1, len(half) // 4)
    early = max(s["rss_kb"] for s in half[:q])
    late = max(s["rss_kb"] for s in half[-q:])
    overhead = [s["fds"] - s["conns"] for s in samples]
    warm = overhead[len(overhead) // 10 :] or overhead
    result = {
        "samples": len(samples),
        "rss_mb_min": min(rss) // 1024,
        "rss_mb_max": max(rss) // 1024,
        "rss_mb_second_half_early_max": early // 1024,
        "rss_mb_second_half_late_max": late // 1024,
        "fds_minus_connections_min": min(warm),
        "fds_minus_connections_max": max(warm),
    }
    problems = []
    if max(rss) > max_rss_mb * 1024:
        problems.append(f"RSS {max(rss) // 1024} MB over {max_rss_mb} MB")
    if late > early * 1.5 + 20 * 1024:
        problems.append("RSS grew across the second half")
    if max(warm) - min(warm) > 32:
        problems.append("descriptors not held by connections drifted")
    result["ok"] = not problems
    result["problems"] = problems
    return result


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--kill-every", type=float, default=120, help="seconds between kill -9")
    ap.add_argument("--reload-every", type=float, default=5, help="seconds between tenant changes")
    ap.add_argument("--max-rss-mb", type=int, default=512)
    ap.add_argument("--max-msgs", type=int, default=200_000, help="the SOAK stream's max_msgs")
    ap.add_argument("--out", default=None, help="write the JSON report here too")
    ap.add_argument("--keep", action="store_true", help="keep the deployment directory")
    args = ap.parse_args()
    bin_dir = os.environ.get("SOAK_BIN_DIR", os.path.join(ROOT, "target", "debug"))
    work = tempfile.mkdtemp(prefix="natsd-soak-")
    dep = Deployment(bin_dir, work)
    started = time.time()
    report = {"minutes": args.minutes, "dir": work}
    try:
        dep.manage("init")
        dep.manage("add-tenant", "soak", "128MB", "2GB")
        dep.up()
        creds = dep.credentials("soak")
        nc = await connect(dep, *creds, "soak-setup")
        js = nc.jetstream(timeout=10)
        # max_msgs keeps the index (and so RSS) from growing with the run's length: a
        # bounded-RSS check then means something. Evicted acks are counted, not checked.
        await js.add_stream(
            StreamConfig(
                name="SOAK", subjects=["soak.js"], duplicate_window=300, max_msgs=args.max_msgs
            )
        )
        await js.add_consumer(
            "SOAK", ConsumerConfig(durable_name="worker", ack_policy=AckPolicy.EXPLICIT)
        )
        await js.create_key_value(bucket="SOAKKV", history=5)
        await nc.close()

        stop = asyncio.Event()
        acked, stats, samples = {}, Stats(), []
        tasks = [
            asyncio.create_task(js_publisher(dep, creds, stop, acked, stats)),
            asyncio.create_task(js_consumer(dep, creds, stop, stats)),
            asyncio.create_task(kv_load(dep, creds, stop, stats)),
            asyncio.create_task(core_load(dep, creds, stop, stats)),
            asyncio.create_task(chaos(dep, stop, args, stats, samples)),
        ]
        deadline = started + args.minutes * 60
        while time.time() < deadline:
            await asyncio.sleep(10)
            done = [t for t in tasks if t.done()]
            for t in done:
                if t.exception():
                    raise t.exception()
            # The latest resource sample too, so the figures so far survive a failed end.
            last = samples[-1] if samples else {}
            print(
                f"[soak] {int(time.time() - started)}s "
                + f"rss_mb={last.get('rss_kb', 0) // 1024} fds={last.get('fds')} "
                + f"conns={last.get('conns')} "
                + " ".join(
                    f"{k}={v}" for k, v in sorted(stats.items()) if isinstance(v, int)
                ),
                flush=True,
            )
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        # A last kill -9 and restart before checking.
        dep.kill9()
        dep.up_patiently()
        check = await verify(dep, creds, acked)
        health = judge(samples, args.max_rss_mb)
        report.update(
            elapsed_s=int(time.time() - started),
            kill9_restarts=dep.kills,
            reloads=dep.reloads,
            load=dict(stats),
            check=check,
            resources=health,
        )
        report["ok"] = (
            check["acked_missing_or_changed"] == 0
            and check["read_to_seq"] == check["stream_last_seq"]
            and check["msg_ids_stored_more_than_once"] == 0
            and check["seq_not_equal_msg_number"] == 0
            and health["ok"]
        )
    finally:
        try:
            dep.manage("down", check=False)
        except Exception:
            pass
        dep.kill9()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
