"""Issue 18, item 1: the README's docker compose flow, for real, in a fresh deployment:

    ./manage init; NATS_RELOAD=compose in .env; ./manage up   (docker compose up -d nats)
    the container becomes healthy (its own healthcheck)
    ./manage add-tenant myapp; a client connects with the printed URL and pub/subs
    a reload by signal (the system password changed) prints no docker output
    a reload the container cannot take (paused) leaves nothing of the new tenant behind
    JetStream data survives ./manage down, docker compose down and ./manage up

scripts/compose-test.sh provides the engine, the compose plugin and the natsd image
(NATSD_IMAGE, built from the canonical Dockerfile's runtime stage) and runs this; without
it the test is skipped. .dockerignore is checked by the engine itself: a build of a copy of
the repository with a planted target/, .env and .credentials/ must not see them.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nats
import pytest

ROOT = Path(__file__).resolve().parents[2]
MANAGE = os.environ.get("MANAGE_BIN", str(ROOT / "target" / "debug" / "manage"))
IMAGE = os.environ.get("NATSD_IMAGE")
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME")

pytestmark = pytest.mark.skipif(
    not (IMAGE and PROJECT),
    reason="run by scripts/compose-test.sh (engine, compose plugin, natsd image)",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_env_lines(path, values):
    """Set KEY=value lines in .env as a user editing it would (replacing the template's)."""
    text = path.read_text()
    for key, value in values.items():
        line = f"{key}={value}"
        text, n = re.subn(rf"^#?{key}=.*$", line, text, count=1, flags=re.M)
        if n == 0:
            text += f"{line}\n"
    path.write_text(text)


class Deployment:
    def __init__(self, root):
        self.root = root
        # Only what .env says: none of the caller's NATS_* settings leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
        self.env.update({"MANAGE_DIR": str(root), "NO_COLOR": "1"})

    def manage(self, *args, ok=True, timeout=120):
        started = time.monotonic()
        out = subprocess.run(
            [MANAGE, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )
        print(f"$ ./manage {' '.join(args)}  ({time.monotonic() - started:.1f} s, exit {out.returncode})")
        print(out.stdout + out.stderr)
        if ok:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def docker(self, *args, ok=True):
        out = subprocess.run(
            ["docker", *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=120,
        )
        if ok:
            assert out.returncode == 0, f"docker {' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    def health(self):
        out = self.docker("inspect", "-f", "{{.State.Health.Status}}", "nats", ok=False)
        return out.stdout.strip()

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health() == "healthy":
                return
            time.sleep(0.5)
        logs = self.docker("logs", "--tail", "30", "nats", ok=False)
        pytest.fail(f"container nats is {self.health()!r} after {timeout} s:\n{logs.stdout}{logs.stderr}")

    def snapshot(self):
        """Every file manage owns, with its contents."""
        files = {}
        for sub in ["config", ".credentials", "data"]:
            for path in sorted((self.root / sub).rglob("*")):
                if path.is_file():
                    files[str(path.relative_to(self.root))] = path.read_bytes()
        return files


def url_of(output):
    match = re.search(r"^\s*URL:\s+(nats://\S+)$", output, re.M)
    assert match, f"no URL in:\n{output}"
    return match.group(1)


async def pub_sub(url):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        sub = await nc.subscribe("orders.*")
        await nc.flush()
        await nc.publish("orders.created", b'{"id": 1}')
        msg = await sub.next_msg(timeout=5)
        assert (msg.subject, msg.data) == ("orders.created", b'{"id": 1}')
    finally:
        await nc.close()


async def fill_stream(url):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"], storage="file")
        for i in range(3):
            await js.publish("orders.kept", f"order {i}".encode())
    finally:
        await nc.close()


async def read_stream(url):
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ORDERS")
        last = await js.get_last_msg("ORDERS", "orders.kept")
        return info.state.messages, last.data
    finally:
        await nc.close()


@pytest.fixture
def deployment(tmp_path):
    root = tmp_path / "nats"
    root.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", root)
    d = Deployment(root)
    yield d
    # The script's trap removes anything left; this is the normal way out.
    d.docker("compose", "down", "--volumes", "--remove-orphans", ok=False)


def test_the_readme_compose_flow(deployment):
    d = deployment
    started = time.monotonic()
    d.manage("init")
    port, http_port = free_port(), free_port()
    set_env_lines(
        d.root / ".env",
        {"NATS_RELOAD": "compose", "NATS_PORT": port, "NATS_HTTP_PORT": http_port},
    )

    # up: compose starts the container, manage waits for /healthz through the published port.
    up = d.manage("up")
    assert "natsd is running (docker compose)" in up.stdout
    assert f"nats://localhost:{port}" in up.stdout
    d.wait_healthy()
    print(f"healthy after {time.monotonic() - started:.1f} s")
    inspect = d.docker("inspect", "-f", "{{.Config.Image}} {{.HostConfig.NanoCpus}}", "nats")
    assert inspect.stdout.split() == [IMAGE, "1000000000"], "NATS_CPU_LIMIT=1 by default"

    # add-tenant: reloaded through the system account; the printed URL works at once.
    added = d.manage("add-tenant", "myapp")
    assert "Reloaded natsd" in added.stderr and "system account" in added.stderr
    url = url_of(added.stdout)
    assert url.startswith("nats://myapp:") and url.endswith(f"@localhost:{port}")
    asyncio.run(pub_sub(url))
    assert "runs the files in config/" in d.manage("status").stdout

    # A reload by signal: the system password changed, so the system account cannot log in
    # until the server has the new auth.conf; manage signals the container, and nothing of
    # docker's shows.
    set_env_lines(d.root / ".env", {"NATS_SYS_PASSWORD": "rotated-" + "x" * 24})
    reload = d.manage("reload")
    assert re.search(r"Reloaded natsd \(\d+ ms, compose\)", reload.stderr), reload.stderr
    assert "Container" not in reload.stdout + reload.stderr
    assert not re.search(r"^nats$", reload.stdout + reload.stderr, re.M), "docker kill's echo"
    assert "runs the files in config/" in d.manage("status").stdout

    # A reload the container cannot take (paused: the published ports accept, nothing answers):
    # add-tenant fails and leaves no trace of the tenant, so it can simply be run again.
    before = d.snapshot()
    d.docker("pause", "nats")
    try:
        failed = d.manage("add-tenant", "second", "--json", ok=False)
    finally:
        d.docker("unpause", "nats")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    doc = json.loads(failed.stdout)
    assert (doc["ok"], doc["code"]) == (False, "server_unreachable"), doc
    assert doc["error"].startswith("nothing was changed"), doc
    assert d.snapshot() == before, "a failed add-tenant changed files"
    assert "second" not in d.manage("list").stdout
    d.manage("check")
    second = d.manage("add-tenant", "second", "1MB", "10MB")
    asyncio.run(pub_sub(url_of(second.stdout)))

    # JetStream data lives in the nats-data volume: down (stop), compose down (the container
    # goes), up (a new container) keeps the stream and its messages.
    asyncio.run(fill_stream(url))
    d.manage("down")
    running = d.docker("inspect", "-f", "{{.State.Running}}", "nats").stdout.strip()
    assert running == "false", "manage down stops the container"
    d.docker("compose", "down")
    assert d.docker("ps", "-aq", "--filter", "name=^nats$").stdout.strip() == ""
    d.manage("up")
    d.wait_healthy()
    assert asyncio.run(read_stream(url)) == (3, b"order 2")
    print(f"compose flow: {time.monotonic() - started:.1f} s")


def test_dockerignore_keeps_build_output_and_secrets_out(tmp_path):
    """What a `docker build .` of this repository sends, seen by the engine itself."""
    copy = tmp_path / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy / name)
    planted = [
        "target/debug/natsd", ".env", ".credentials/myapp.env", "config/auth.conf",
        "config/tenants/myapp.toml", "data/jetstream/x", ".git/HEAD", ".venv/bin/python",
        "tests/interop/node_modules/x/index.js",
    ]
    for name in planted:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("secret\n")
    (copy / "Dockerfile.context").write_text(
        "FROM natsd-test-base:bookworm\nCOPY . /context\n"
    )
    tag = f"natsd-context-test:{os.getpid()}"
    build = subprocess.run(
        ["docker", "build", "-q", "-f", "Dockerfile.context", "-t", tag, "."],
        cwd=copy, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    try:
        listing = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "find", tag, "/context"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
    sent = {p.removeprefix("/context/") for p in listing}
    assert "Cargo.toml" in sent and "server/src/main.rs" in sent, "the sources are sent"
    assert ".env.example" in sent, ".env.example is kept"
    leaked = [name for name in planted if name in sent]
    assert leaked == [], f"the build context holds {leaked}"
