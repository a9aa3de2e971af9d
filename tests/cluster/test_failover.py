"""Issue 16, part 5: a three-node nats-server cluster managed by manage, one node per host
(network namespaces made here; loopback ports where they cannot be made, said in the output).

A tenant and a user are added; nats-py creates an R3 stream through the cluster's URL list and
publishes with acknowledgements (each message with a Nats-Msg-Id, so a retry after a timeout
is not stored twice); the stream's leader is killed with SIGKILL in the middle; publishing goes
on; `manage add-user` while the node is down reaches the other two and exits 3 naming it; the
node is started again (`manage up --node` on its host) and catches up; `manage reload`
converges it; nothing that was acknowledged is missing. It prints the figures the README
quotes: how long add-tenant takes to be confirmed on every node, and the longest time the
publishing client waited for an acknowledgement across the failover.

Needs nats-server (scripts/test.sh puts it in .venv) and target/debug/manage (cargo test builds
it; MANAGE_BIN names another).
"""

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from binaries import MANAGE, NATS_SERVER
from hosts import Hosts

# Sizes of the run: enough acknowledged messages on both sides of the kill to mean something,
# little enough to stay within seconds.
BEFORE_KILL = 300
AFTER_RESTART = 200


def report(line):
    """A line of the test's own output (pytest -s shows it; scripts/test.sh runs with -s)."""
    print(f"[failover] {line}", flush=True)


class Deployment:
    def __init__(self, hosts, root):
        self.hosts = hosts
        self.root = root
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("NATS_") and k != "NATSD_BIN"
        }
        self.env.update(
            {
                "MANAGE_DIR": str(root),
                "NATS_CLUSTER_BIN": NATS_SERVER,
                "NO_COLOR": "1",
                "NATS_URL_HOST": "127.0.0.1",
            }
        )
        # The deployment's own ports are the first node's (on loopback, free ones: the
        # defaults may be another deployment's on this machine).
        _, port, http_port, cluster_port = hosts.addresses[0]
        self.env.update(
            {
                "NATS_PORT": str(port),
                "NATS_HTTP_PORT": str(http_port),
                "NATS_CLUSTER_PORT": str(cluster_port),
            }
        )

    def argv(self, args, where=None):
        return self.hosts.prefix(where) + [MANAGE, *args]

    def run(self, args, where=None, expect=0, timeout=120):
        out = subprocess.run(
            self.argv(args, where), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if expect is not None:
            assert out.returncode == expect, (
                f"manage {' '.join(args)} exited {out.returncode}, expected {expect}\n"
                f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
            )
        return out

    def json(self, args, where=None, expect=0):
        out = self.run([*args, "--json"], where, expect)
        return json.loads(out.stdout)

    async def arun(self, args, where=None):
        """`manage` without blocking the publisher's event loop."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv([*args, "--json"], where),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode, json.loads(out or b"{}"), err.decode()

    def credentials(self, name):
        values = {}
        for line in (self.root / ".credentials" / f"{name}.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
        return values

    def node_pids(self):
        status = self.json(["status"])
        return {n["name"]: n["pid"] for n in status["nodes"]}


@pytest.fixture
def deployment():
    if not NATS_SERVER:
        pytest.fail("nats-server is not installed (scripts/test.sh puts it in .venv)")
    if not Path(MANAGE).is_file():
        pytest.fail(f"{MANAGE} is missing (cargo build -p manage)")
    with Hosts(3) as hosts, tempfile.TemporaryDirectory(prefix="h16-failover-") as tmp:
        report(f"hosts: {hosts.describe()}")
        dep = Deployment(hosts, Path(tmp))
        try:
            yield dep
        finally:
            # Stop every node of the deployment (their processes are visible from here
            # whatever namespace they run in), then whatever is left in the namespaces.
            subprocess.run(dep.argv(["down"]), env=dep.env, capture_output=True, timeout=60)
            for pid_file in (Path(tmp) / "data" / "nodes").glob("*.pid"):
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
                except (ValueError, ProcessLookupError):
                    pass


async def stream_leader(js, name):
    info = await js.stream_info(name)
    return info.cluster.leader


def test_failover_on_separate_hosts(deployment):
    dep = deployment
    hosts = dep.hosts
    dep.run(["init"], expect=0)
    (dep.root / "config" / "cluster.toml").write_text(hosts.cluster_toml())
    # Each node is started on its own host, as an operator would: manage up --node <name>.
    for i in range(3):
        dep.run(["up", "--node", f"nats-{i + 1}"], where=i)
    # From the hub, `up` finds all three running elsewhere and waits for a healthy cluster.
    up = dep.json(["up"])
    assert up["started"] == [], up
    assert all(n["up"] and n["healthy"] and n["routes"] == 2 for n in up["nodes"]), up
    assert up["meta_leader"], up

    started = time.monotonic()
    added = dep.json(["add-tenant", "shop", "64MB", "1GB"])
    add_tenant_s = time.monotonic() - started
    nodes = added["apply"]["reload"]["nodes"]
    assert [n["confirmed"] for n in nodes] == [True] * 3, added
    reload_ms = max(n["ms"] for n in nodes)
    report(
        f"add-tenant confirmed on all 3 nodes: {add_tenant_s * 1000:.0f} ms for the whole "
        f"command (bcrypt included), the slowest node's reload {reload_ms} ms"
    )
    dep.json(["add-user", "shop", "svc", "-p", "fail.>", "-s", "fail.>"])

    admin = dep.credentials("shop")
    servers = [f"nats://{u.split('@', 1)[1]}" for u in admin["NATS_URL"].split(",")]
    assert len(servers) == 3, servers
    with hosts.on_hub():
        result = asyncio.run(publish_through_failover(dep, servers, admin["NATS_PASSWORD"]))

    report(
        f"failover: killed {result['killed']} (the stream leader); the publisher's longest "
        f"wait for an ack was {result['failover_ms']:.0f} ms while it was down and "
        f"{result['rejoin_ms']:.0f} ms after it came back; {result['acked']} acked, "
        f"{result['retries']} publish attempts retried, none lost"
    )
    # Convergence: the restarted node loaded the files at start; reload confirms all three.
    reload = dep.json(["reload"])
    assert reload["apply"]["reload"]["confirmed_nodes"] == 3, reload
    test = dep.json(["test", "shop", "late"])
    assert test["ok"] and len(test["nodes"]) == 3, test
    check = dep.json(["check"])
    assert check["ok"], check


async def publish_through_failover(dep, servers, password):
    nc = await nats.connect(
        servers=servers,
        user="shop",
        password=password,
        reconnect_time_wait=0.05,
        max_reconnect_attempts=-1,
        connect_timeout=2,
    )
    js = nc.jetstream(timeout=2)
    await js.add_stream(StreamConfig(name="FAIL", subjects=["fail.>"], num_replicas=3))
    acked = {}  # i -> time of its ack
    retries = 0
    kill_at = None
    state = {"stop": False, "target": BEFORE_KILL}

    async def publisher():
        nonlocal retries
        i = 0
        while not state["stop"]:
            try:
                ack = await js.publish(
                    f"fail.{i % 10}",
                    str(i).encode(),
                    headers={"Nats-Msg-Id": f"p{i}"},
                    timeout=0.5,
                )
                assert ack.stream == "FAIL"
                acked[i] = time.monotonic()
                i += 1
            except AssertionError:
                raise
            except Exception:  # timeouts, no responders, a connection lost mid-request
                retries += 1
                await asyncio.sleep(0.02)

    pids = dep.node_pids()
    task = asyncio.create_task(publisher())
    while len(acked) < BEFORE_KILL:
        await asyncio.sleep(0.01)
    leader = await stream_leader(js, "FAIL")
    index = int(leader.rsplit("-", 1)[1]) - 1
    pid = pids[leader]
    assert pid, f"no pid for {leader}"
    kill_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    acked_at_kill = len(acked)

    # While the node is down: the change reaches the other two, exit 3 names the one missing.
    code, doc, err = await dep.arun(["add-user", "shop", "late", "-p", "fail.>"])
    assert code == 3, (code, doc, err)
    assert doc["code"] == "partial_reload", doc
    assert leader in doc["error"], doc
    missed = [n["name"] for n in doc["apply"]["reload"]["nodes"] if not n["confirmed"]]
    assert missed == [leader], doc

    while len(acked) < acked_at_kill + 50:
        await asyncio.sleep(0.01)
    # Back on its host; it loads the current files (with `late`) and catches up.
    code, doc, err = await dep.arun(["up", "--node", leader], where=index)
    assert code == 0, (code, doc, err)
    restart_at = time.monotonic()
    restarted_at = len(acked)
    while len(acked) < restarted_at + AFTER_RESTART:
        await asyncio.sleep(0.01)
    state["stop"] = True
    await task

    # Nothing acknowledged is missing, nothing is stored twice.
    info = await js.stream_info("FAIL")
    stored = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg("FAIL", seq)
        stored.append(int(msg.data))
    assert sorted(stored) == sorted(set(stored)), "a message is stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"

    # The restarted node caught up: it reports the same stream state as the others.
    deadline = time.monotonic() + 30
    while True:
        info = await js.stream_info("FAIL")
        replicas = {r.name: r for r in info.cluster.replicas or []}
        peer = replicas.get(leader)
        if info.cluster.leader == leader or (peer and peer.current and not peer.lag):
            break
        assert time.monotonic() < deadline, f"{leader} did not catch up: {info.cluster}"
        await asyncio.sleep(0.1)
    await nc.close()

    times = sorted(acked.values())

    def longest_wait(start, end):
        # From the last ack before `start` to the first after it, and every gap up to `end`.
        inside = [t for t in times if start <= t <= end]
        before = [t for t in times if t < start]
        points = before[-1:] + inside
        return max((b - a for a, b in zip(points, points[1:])), default=0.0)

    return {
        "failover_ms": longest_wait(kill_at, restart_at) * 1000,
        "rejoin_ms": longest_wait(restart_at, times[-1]) * 1000,
        "acked": len(acked),
        "retries": retries,
        "killed": leader,
    }
