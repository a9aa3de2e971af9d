"""Issue 17, item 5: a passwordless tenant made by `manage --auth nkey`, used by nats-py as an
application would: `nkeys_seed=` with the seed file the credentials name (NATS_NKEY), and
`nkeys_seed_str=` with NATS_NKEY_SEED. The permissions hold, `manage rotate` makes the old seed
useless, and a tampered seed fails closed.

The deployment is the test's own (a temp directory on free ports), run by the manage binary
(MANAGE_BIN, default target/debug/manage) with the server under test (NATSD_BIN, default
target/debug/natsd; scripts/test.sh passes the one the other interop tests use). nats-py needs
the `nkeys` package for NKEY logins (tests/interop/requirements.txt)."""

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

import nats
import pytest

ROOT = Path(__file__).resolve().parents[2]
MANAGE = os.environ.get("MANAGE_BIN", str(ROOT / "target" / "debug" / "manage"))
SERVER = os.environ.get("NATSD_BIN", str(ROOT / "target" / "debug" / "natsd"))
TIMEOUT = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_file(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


@pytest.fixture
def deployment(tmp_path):
    assert Path(MANAGE).is_file(), f"no manage binary at {MANAGE} (cargo build -p manage)"
    assert shutil.which(SERVER) or Path(SERVER).is_file(), f"no server binary {SERVER}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    env.update(
        {
            "MANAGE_DIR": str(tmp_path),
            "NATS_PORT": str(free_port()),
            "NATS_HTTP_PORT": str(free_port()),
            "NATSD_BIN": SERVER,
            "NO_COLOR": "1",
        }
    )

    def manage(*args, check=True):
        done = subprocess.run([MANAGE, *args], env=env, capture_output=True, text=True)
        if check:
            assert done.returncode == 0, f"manage {args}: {done.stdout}{done.stderr}"
        return done

    manage("up")
    try:
        yield tmp_path, manage
    finally:
        manage("down", check=False)


async def connect(url, **auth):
    return await nats.connect(
        servers=[url],
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=TIMEOUT,
        **auth,
    )


async def delivered(publisher, subscriber, subject):
    """Whether a publish to `subject` reaches `subscriber`, retrying while its SUB may not
    have reached the server yet (nats-py's flush is not a barrier)."""
    inbox = asyncio.Queue()
    sub = await subscriber.subscribe(subject, cb=inbox.put)
    await subscriber.flush()
    try:
        for _ in range(10):
            await publisher.publish(subject, b"x")
            await publisher.flush()
            try:
                await asyncio.wait_for(inbox.get(), 0.1)
                return True
            except asyncio.TimeoutError:
                continue
        return False
    finally:
        await sub.unsubscribe()


def test_nkey_tenant_with_nats_py(deployment):
    root, manage = deployment
    manage("add-tenant", "shop", "16MB", "1GB", "--auth", "nkey")
    manage("add-user", "shop", "svc", "--auth", "nkey", "-p", "orders.*", "-s", "payments.*")
    admin_env = env_file(root / ".credentials" / "shop.env")
    svc_env = env_file(root / ".credentials" / "shop_svc.env")
    assert "NATS_PASSWORD" not in svc_env
    assert Path(svc_env["NATS_NKEY"]) == root / ".credentials" / "shop_svc.nk"
    assert Path(svc_env["NATS_NKEY"]).read_text().strip() == svc_env["NATS_NKEY_SEED"]

    async def scenario():
        errors = []

        async def on_error(e):
            errors.append(str(e))

        # The seed file, as nats-py reads it (nkeys_seed=), and the seed string from the env.
        svc = await connect(svc_env["NATS_URL"], nkeys_seed=svc_env["NATS_NKEY"], error_cb=on_error)
        admin = await connect(admin_env["NATS_URL"], nkeys_seed_str=admin_env["NATS_NKEY_SEED"])
        try:
            assert await delivered(svc, admin, "orders.created"), "allowed publish"
            assert await delivered(admin, svc, "payments.card"), "allowed subscribe"
            assert not await delivered(svc, admin, "secret.stuff"), "denied publish delivered"
            assert not await delivered(admin, svc, "orders.created"), "denied subscribe delivered"
            assert any("permissions violation" in e.lower() for e in errors), errors
        finally:
            await svc.close()
            await admin.close()

        # rotate: the old seed is refused from the reload on, the new one works.
        old_seed = svc_env["NATS_NKEY_SEED"]
        manage("rotate", "shop", "svc")
        new_env = env_file(root / ".credentials" / "shop_svc.env")
        assert new_env["NATS_NKEY_SEED"] != old_seed
        with pytest.raises(Exception):
            await connect(svc_env["NATS_URL"], nkeys_seed_str=old_seed)
        fresh = await connect(new_env["NATS_URL"], nkeys_seed=new_env["NATS_NKEY"])
        await fresh.close()

        # A seed file someone changed: no login. One character in the middle is key material
        # (the last ones are mostly the checksum, which nats-py's nkeys does not check).
        seed_file = Path(new_env["NATS_NKEY"])
        seed = new_env["NATS_NKEY_SEED"]
        other = seed[:20] + ("B" if seed[20] != "B" else "C") + seed[21:]
        seed_file.write_text(other + "\n")
        with pytest.raises(Exception):
            await connect(new_env["NATS_URL"], nkeys_seed=str(seed_file))

    asyncio.run(scenario())
    # manage's own test signs with the seed in the credentials file and checks every permission.
    assert "checks passed" in manage("test", "shop", "svc").stdout
    # And `check` notices the seed file no longer matches.
    assert manage("check", check=False).returncode == 1
