"""Issue 16, item 6: docker-compose.cluster.yml run for real, on the node files manage generates:

    ./manage init --nodes 3                              config/cluster.toml, config/nodes/*.conf
    docker compose -f docker-compose.cluster.yml up -d  three nodes, healthy (their healthcheck),
                                                         routes to each other, one meta leader
    ./manage add-tenant shop                             reloaded on every node through the
                                                         system account, confirmed by each
                                                         node's config_digest
    a client with the cluster's URL list makes an R3 stream and publishes
    one node stopped (publishing goes on), started again: it catches up
    docker compose down / up keeps the stream and its messages (data/nodes/ on the host)

No registry is reachable on the test machines, so the official nats image cannot be pulled:
scripts/compose-test.sh builds a STAND-IN from the reference nats-server of the same release
(.venv, 2.15.1) and names it in NATS_CLUSTER_IMAGE, which the compose file takes instead of
nats:2.15-alpine. Without the script the test is skipped.
"""

import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest

ROOT = Path(__file__).resolve().parents[2]
MANAGE = os.environ.get("MANAGE_BIN", str(ROOT / "target" / "debug" / "manage"))
CLUSTER_IMAGE = os.environ.get("NATS_CLUSTER_IMAGE")
NATS_SERVER = os.environ.get("NATS_SERVER_BIN")
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME")
NODES = ["nats-1", "nats-2", "nats-3"]
COMPOSE = ["compose", "-f", "docker-compose.cluster.yml"]

pytestmark = pytest.mark.skipif(
    not (CLUSTER_IMAGE and NATS_SERVER and PROJECT),
    reason="run by scripts/compose-test.sh (engine, compose plugin, nats stand-in image)",
)


def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_bases():
    """Three bases with three free ports each (node i takes base+i): the nodes bind the host's
    ports (host network), as the ports in cluster.toml say."""
    for _ in range(50):
        bases = [random.randrange(20000, 40000, 10) for _ in range(3)]
        ports = [b + i for b in bases for i in range(3)]
        if len(set(ports)) == 9 and all(free(p) for p in ports):
            return bases
    pytest.fail("no free ports for three nodes")


def http_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
        return json.loads(r.read())


class Cluster:
    def __init__(self, root):
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
        self.env.update(
            {"MANAGE_DIR": str(root), "NO_COLOR": "1", "NATS_CLUSTER_BIN": NATS_SERVER}
        )

    def manage(self, *args, ok=True):
        started = time.monotonic()
        out = subprocess.run(
            [MANAGE, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=120,
        )
        print(f"$ ./manage {' '.join(args)}  ({time.monotonic() - started:.1f} s, exit {out.returncode})")
        print(out.stdout + out.stderr)
        if ok:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def docker(self, *args, ok=True):
        # The compose file's image: the stand-in (the official one cannot be pulled here).
        env = {**self.env, "NATS_CLUSTER_IMAGE": CLUSTER_IMAGE}
        env.pop("MANAGE_DIR")
        started = time.monotonic()
        out = subprocess.run(
            ["docker", *args], cwd=self.root, env=env, capture_output=True, text=True,
            timeout=120,
        )
        if args[0] == "compose":
            print(f"$ docker {' '.join(args)}  ({time.monotonic() - started:.1f} s)")
            print(out.stdout + out.stderr)
        if ok:
            assert out.returncode == 0, f"docker {' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    def ports(self, kind):
        return [self.bases[kind] + i for i in range(3)]

    def wait_healthy(self, names=NODES, timeout=60):
        """Docker's own verdict: the compose file's healthcheck in every container."""
        deadline = time.monotonic() + timeout
        while True:
            states = {
                n: self.docker("inspect", "-f", "{{.State.Health.Status}}", n, ok=False).stdout.strip()
                for n in names
            }
            if all(s == "healthy" for s in states.values()):
                return
            if time.monotonic() > deadline:
                logs = {n: self.docker("logs", "--tail", "20", n, ok=False) for n in names}
                pytest.fail(f"not healthy after {timeout} s: {states}\n"
                            + "\n".join(f"{n}:\n{o.stdout}{o.stderr}" for n, o in logs.items()))
            time.sleep(0.5)

    def wait_ready(self, timeout=60):
        """Every node answers /healthz ok, has routes to both others, and all follow one meta
        leader (what ./manage up --nodes 3 waits for)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen = {}
                for name, port in zip(NODES, self.ports("http")):
                    health = http_json(port, "/healthz")
                    peers = {r["remote_name"] for r in http_json(port, "/routez").get("routes") or []}
                    leader = http_json(port, "/jsz").get("meta_cluster", {}).get("leader")
                    seen[name] = (health.get("status"), peers, leader)
                leaders = {s[2] for s in seen.values()}
                if all(
                    s[0] == "ok" and s[1] == set(NODES) - {n} for n, s in seen.items()
                ) and len(leaders) == 1 and None not in leaders and "" not in leaders:
                    return leaders.pop()
            except OSError as e:
                seen = repr(e)
            if time.monotonic() > deadline:
                pytest.fail(f"cluster not ready after {timeout} s: {seen}")
            time.sleep(0.2)

    def varz(self):
        return {n: http_json(p, "/varz") for n, p in zip(NODES, self.ports("http"))}

    def credentials(self, name):
        values = {}
        for line in (self.root / ".credentials" / f"{name}.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
        return values


async def make_stream_and_publish(servers, user, password, count):
    nc = await nats.connect(servers=servers, user=user, password=password, connect_timeout=5)
    try:
        js = nc.jetstream()
        info = await js.add_stream(name="ORDERS", subjects=["orders.>"], num_replicas=3)
        assert info.config.num_replicas == 3
        for i in range(count):
            ack = await js.publish("orders.new", f"order {i}".encode())
            assert ack.seq == i + 1
        info = await js.stream_info("ORDERS")
        return info.cluster.leader, sorted(r.name for r in info.cluster.replicas or [])
    finally:
        await nc.close()


async def publish(servers, user, password, start, count):
    nc = await nats.connect(servers=servers, user=user, password=password, connect_timeout=5)
    try:
        js = nc.jetstream()
        for i in range(start, start + count):
            await js.publish("orders.new", f"order {i}".encode(), timeout=10)
    finally:
        await nc.close()


async def caught_up(servers, user, password, node, timeout=30):
    """The stream as seen from the restarted node's replica: current, nothing behind."""
    nc = await nats.connect(servers=servers, user=user, password=password, connect_timeout=5)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            info = await stream_info(js)
            replicas = {r.name: r for r in info.cluster.replicas or []}
            peer = replicas.get(node)
            if info.cluster.leader == node or (peer and peer.current and not peer.lag):
                return info.state.messages
            assert time.monotonic() < deadline, f"{node} did not catch up: {info.cluster}"
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def stream_info(js, timeout=30):
    """The stream's info once it has a leader again (the nodes elect one after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info("ORDERS")
            if info.cluster and info.cluster.leader:
                return info
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
            pass
        assert time.monotonic() < deadline, "the stream has no leader"
        await asyncio.sleep(0.2)


async def read_stream(servers, user, password):
    nc = await nats.connect(servers=servers, user=user, password=password, connect_timeout=5)
    try:
        js = nc.jetstream()
        info = await stream_info(js)
        last = await js.get_last_msg("ORDERS", "orders.new")
        return info.state.messages, last.data, info.config.num_replicas
    finally:
        await nc.close()


@pytest.fixture
def cluster(tmp_path):
    root = tmp_path / "cluster"
    root.mkdir()
    shutil.copy(ROOT / "docker-compose.cluster.yml", root)
    c = Cluster(root)
    yield c
    # The script's trap removes anything left; this is the normal way out.
    c.docker(*COMPOSE, "down", "--remove-orphans", ok=False)


def test_the_compose_cluster(cluster):
    c = cluster
    started = time.monotonic()
    client, http, route = free_bases()
    c.bases = {"client": client, "http": http, "route": route}
    c.env.update(
        {"NATS_PORT": str(client), "NATS_HTTP_PORT": str(http), "NATS_CLUSTER_PORT": str(route)}
    )
    print(f"NATS_PORT={client} NATS_HTTP_PORT={http} NATS_CLUSTER_PORT={route}")
    c.manage("init", "--nodes", "3")
    for name in NODES:
        assert (c.root / "config" / "nodes" / f"{name}.conf").is_file()

    c.docker(*COMPOSE, "up", "-d")
    image = c.docker("inspect", "-f", "{{.Config.Image}}", "nats-1").stdout.strip()
    assert image == CLUSTER_IMAGE
    print(f"NOTE: the nodes run {image}, a STAND-IN for the official nats:2.15-alpine image "
          "(no registry is reachable): the reference nats-server of the same release on a "
          "local Debian base")
    leader = c.wait_ready()
    c.wait_healthy()
    print(f"cluster healthy after {time.monotonic() - started:.1f} s, JetStream meta leader {leader}")
    versions = {n: v["version"] for n, v in c.varz().items()}
    assert versions == {n: "2.15.1" for n in NODES}, versions
    status = json.loads(c.manage("status", "--json").stdout)
    assert [n["name"] for n in status["nodes"]] == NODES
    assert all(n["up"] and n["healthy"] and n["routes"] == 2 for n in status["nodes"]), status
    assert status["meta_leader"] == leader, status
    c.manage("status")
    # The containers' pids mean nothing here: their pid files stay inside them, so manage
    # sees three nodes that answer and run elsewhere (it neither starts nor stops them).
    assert sorted((c.root / "data" / "nodes").glob("*.pid")) == []
    up = json.loads(c.manage("up", "--json").stdout)
    assert up["started"] == [] and up["meta_leader"] == leader, up
    down = json.loads(c.manage("down", "--json").stdout)
    assert (down["stopped"], down["running_elsewhere"]) == ([], NODES), down
    c.manage("down")

    # add-tenant: every node reloads the new auth.conf through the system account, and
    # manage confirms it by each node's config_digest (so does this test).
    before = {n: v["config_digest"] for n, v in c.varz().items()}
    added = c.manage("add-tenant", "shop", "64MB", "1GB")
    for name in NODES:
        assert re.search(rf"Reloaded {name} \(\d+ ms, system account\)", added.stderr), added.stderr
    after = {n: v["config_digest"] for n, v in c.varz().items()}
    changed = [n for n in NODES if after[n] != before[n]]
    assert changed == NODES, f"config_digest before {before}, after {after}"
    doc = json.loads(c.manage("reload", "--json").stdout)
    assert [n["confirmed"] for n in doc["apply"]["reload"]["nodes"]] == [True] * 3, doc

    creds = c.credentials("shop")
    user, password = creds["NATS_USER"], creds["NATS_PASSWORD"]
    servers = [f"nats://{u.split('@', 1)[1]}" for u in creds["NATS_URL"].split(",")]
    assert servers == [f"nats://localhost:{p}" for p in c.ports("client")], creds["NATS_URL"]
    stream_leader, replicas = asyncio.run(make_stream_and_publish(servers, user, password, 20))
    assert replicas == sorted(set(NODES) - {stream_leader}), replicas

    # One node stopped: the others go on (the stream keeps its quorum), and the node, started
    # again, catches up with what it missed.
    stopped = next(n for n in NODES if n != stream_leader)
    c.docker(*COMPOSE, "stop", stopped)
    asyncio.run(publish(servers, user, password, 20, 10))
    c.docker(*COMPOSE, "start", stopped)
    c.wait_ready()
    assert asyncio.run(caught_up(servers, user, password, stopped)) == 30
    print(f"{stopped} stopped, 10 messages published without it, started again: caught up")

    # down / up: new containers, the same data/nodes/ on the host.
    c.docker(*COMPOSE, "down")
    assert c.docker("ps", "-aq", "--filter", "name=^nats-[123]$").stdout.strip() == ""
    c.docker(*COMPOSE, "up", "-d")
    c.wait_ready()
    assert asyncio.run(read_stream(servers, user, password)) == (30, b"order 29", 3)
    c.wait_healthy()
    assert sorted((c.root / "data" / "nodes").glob("*.pid")) == []
    print(f"compose cluster flow: {time.monotonic() - started:.1f} s")
