"""Issue 16, part 6: docker-compose.cluster.yml runs three nodes of the official nats image on
the very files manage generates. This validates the file with Docker Compose v2 itself
(`config`, which resolves the file as `up` would) against a deployment made by `manage init
--nodes 3`, and checks that what each container would run is what nats-server accepts, without
an engine; tests/compose/test_compose_cluster.py (scripts/compose-test.sh) runs it in one.

scripts/test.sh installs the compose binary (COMPOSE_BIN) and sets REQUIRE_COMPOSE, so the
test fails there when it is missing; elsewhere it is skipped without one.
"""

import json
import os
import shutil
import subprocess
import tomllib

import pytest

from binaries import MANAGE, NATS_SERVER, ROOT


def compose_command():
    if os.environ.get("COMPOSE_BIN"):
        return [os.environ["COMPOSE_BIN"]]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True
    ).returncode == 0:
        return ["docker", "compose"]
    return None


def test_compose_cluster_runs_the_generated_node_files(tmp_path):
    compose = compose_command()
    if compose is None:
        if os.environ.get("REQUIRE_COMPOSE"):
            pytest.fail("docker compose v2 is missing (scripts/test.sh installs it)")
        pytest.skip("no docker compose v2 binary (scripts/test.sh installs one)")
    assert NATS_SERVER, "nats-server is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    env.update(
        {
            "MANAGE_DIR": str(tmp_path),
            "NATS_CLUSTER_BIN": NATS_SERVER,
            "NATS_PORT": "24322",
            "NATS_HTTP_PORT": "28322",
            "NATS_CLUSTER_PORT": "26322",
            "NO_COLOR": "1",
        }
    )
    made = subprocess.run(
        [MANAGE, "init", "--nodes", "3"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    shutil.copy(ROOT / "docker-compose.cluster.yml", tmp_path)
    out = subprocess.run(
        [*compose, "-f", "docker-compose.cluster.yml", "config", "--format", "json"],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if k != "MANAGE_DIR"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]

    cluster = tomllib.loads((tmp_path / "config" / "cluster.toml").read_text())
    names = [n["name"] for n in cluster["node"]]
    assert sorted(services) == sorted(names) == ["nats-1", "nats-2", "nats-3"]
    for node in cluster["node"]:
        name = node["name"]
        svc = services[name]
        assert svc["image"].startswith("nats:"), "the official image"
        assert svc["network_mode"] == "host", "the addresses of cluster.toml are the host's"
        assert svc["working_dir"] == "/srv/nats"
        # The pid file is the container's own: its pid means nothing on the host.
        assert svc["command"] == [
            "-c", f"/srv/nats/config/nodes/{name}.conf", "--pid", "/tmp/nats-server.pid"
        ]
        mounts = {(v["source"], v["target"]): v for v in svc["volumes"]}
        config = mounts[(str(tmp_path / "config"), "/srv/nats/config")]
        assert config.get("read_only") is True
        assert (str(tmp_path / "data" / "nodes"), "/srv/nats/data/nodes") in mounts
        # What the container runs: the generated node file, read relative to /srv/nats as
        # here relative to the deployment root; nats-server accepts it.
        conf_rel = f"config/nodes/{name}.conf"
        text = (tmp_path / conf_rel).read_text()
        assert "include ../auth.conf" in text
        assert f'store_dir: "./data/nodes/{name}"' in text, "the store is in the mounted volume"
        check = subprocess.run(
            [NATS_SERVER, "-t", "-c", conf_rel], cwd=tmp_path, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        # The healthcheck reads the node's monitoring port from its file.
        health = " ".join(svc["healthcheck"]["test"])
        assert "http_port" in health and "healthz" in health
        port = subprocess.run(
            ["awk", "/^http_port:/ {print $2}", conf_rel], cwd=tmp_path, capture_output=True, text=True
        ).stdout.strip()
        assert port == str(node["http_port"])
