#!/usr/bin/env bash
# Soak: kill -9 natsd in the middle of an acked publish loop, restart on the same store,
# and check that every acked message is still there and sequences continue.
#   scripts/soak-js-kill.sh [iterations=200]
# Needs a built natsd (target/debug or $NATSD) and python3 with nats-py ($PYTHON).
set -euo pipefail
ITER=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NATSD=${NATSD:-$ROOT/target/debug/natsd}
PYTHON=${PYTHON:-python3}
if [ -x "$ROOT/.venv/bin/python" ] && ! "$PYTHON" -c "import nats" 2>/dev/null; then
  PYTHON="$ROOT/.venv/bin/python"
fi
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  PORT=$(free_port)
  "$NATSD" -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/store" >"$WORK/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do
    grep -q "Server is ready" "$WORK/log" && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/log"; exit 1; }
    sleep 0.05
  done
  echo "natsd not ready"; cat "$WORK/log"; exit 1
}

cat >"$WORK/round.py" <<'PY'
import asyncio, json, os, random, sys, nats
port, state_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
final = len(sys.argv) > 4 and sys.argv[4] == "--final"
async def main():
    nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=0)
    js = nc.jetstream()
    acked = json.load(open(state_file)) if os.path.exists(state_file) else []
    if not acked:
        await js.add_stream(name="SOAK", subjects=["soak.>"])
    # Each round checks the newest acks and a random sample of older ones, so it gets to
    # publish before the kill; `--final` checks every acked message.
    check = acked if final else acked[-100:] + random.sample(acked, min(50, len(acked)))
    for seq, payload in check:
        m = await js.get_msg("SOAK", seq)
        assert m.data.decode() == payload, (seq, payload, m.data)
    last = (await js.stream_info("SOAK")).state.last_seq
    assert last >= (acked[-1][0] if acked else 0)
    # 32 publishes in flight, so the server stores and acks them in batches.
    for i in range(0, n, 32):
        payloads = [f"{len(acked)}-{i + j}" for j in range(32)]
        acks = await asyncio.gather(*(js.publish("soak.x", p.encode()) for p in payloads))
        for ack, payload in zip(acks, payloads):
            assert ack.seq > last
            acked.append([ack.seq, payload])
        # Record after every batch so a kill at any point leaves a consistent list.
        with open(state_file + ".tmp", "w") as f:
            json.dump(acked, f)
        os.replace(state_file + ".tmp", state_file)
asyncio.run(main())
PY

for i in $(seq 1 "$ITER"); do
  start
  # The verifier publishes until killed; kill it (and the server) at a random point.
  "$PYTHON" "$WORK/round.py" "$PORT" "$WORK/acked.json" 100000 >"$WORK/py.log" 2>&1 &
  PY=$!
  sleep "0.$((RANDOM % 5 + 2))"
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  # nats-py may wait forever on a dead connection; what it acked is already on disk
  # (it records each ack atomically), so stop it outright.
  kill -9 "$PY" 2>/dev/null || true
  wait "$PY" 2>/dev/null || true
  if grep -q AssertionError "$WORK/py.log"; then
    echo "iteration $i: FAILED"; cat "$WORK/py.log"; exit 1
  fi
  n=$("$PYTHON" -c "import json;print(len(json.load(open('$WORK/acked.json'))))" 2>/dev/null || echo 0)
  echo "iteration $i: ok ($n acked messages so far)"
done
# Final check on a clean restart.
start
"$PYTHON" "$WORK/round.py" "$PORT" "$WORK/acked.json" 1 --final
echo "soak passed: $ITER kill -9 iterations"
