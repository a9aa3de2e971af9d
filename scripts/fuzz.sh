#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for N seconds each, at the lowest CPU
# priority, and saves what crashes as regression inputs:
#   scripts/fuzz.sh [-t SECONDS] [target ...]      (default 60 s each, all targets)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the normal test
# command never does: server/tests/fuzz_replay.rs replays fuzz/seeds and
# fuzz/regressions on stable.
# Per target: the working corpus is fuzz/corpus/<target> (not committed, grows run to run,
# starts from fuzz/seeds/<target>); a crash, leak, timeout or OOM input is copied to
# fuzz/regressions/<target>/ (commit it with the fix). A line per target goes to stdout and
# to fuzz/runs.log: date, target, seconds it ran, executions, corpus size, saved inputs.
# Exits non-zero when any target found something. FUZZ_TARGET_DIR reuses another build
# directory (e.g. when fuzzing a snapshot of the tree while editing this one).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz" || exit 1
SECONDS_EACH=60
if [ "${1:-}" = "-t" ]; then
    SECONDS_EACH="${2:?-t needs seconds}"
    shift 2
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs nightly and cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)" >&2
    exit 2
fi
tdir=()
[ -n "${FUZZ_TARGET_DIR:-}" ] && tdir=(--target-dir "$FUZZ_TARGET_DIR")
nice -n 19 cargo +nightly fuzz build "${tdir[@]}" || exit 2

found=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    log="$(mktemp -t "fuzz-$t.XXXXXX.log")"
    before="$(ls "artifacts/$t" | wc -l)"
    started=$SECONDS
    # -timeout: one input over 10 s is a finding; -rss_limit_mb bounds memory per input.
    nice -n 19 cargo +nightly fuzz run "${tdir[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    saved=0
    for f in "artifacts/$t"/*; do
        [ -f "$f" ] || continue
        name="$(basename "$f")"
        if [ ! -e "regressions/$t/$name" ]; then
            cp "$f" "regressions/$t/$name"
            saved=$((saved + 1))
        fi
    done
    if [ "$rc" -ne 0 ] && [ "$saved" -eq 0 ] && [ "$(ls "artifacts/$t" | wc -l)" -eq "$before" ]; then
        echo "fuzz.sh: $t failed without an artifact; log: $log" >&2
        found=1
    fi
    [ "$saved" -gt 0 ] && found=1
    # Wall time of the run (a crash ends it early), build included when one was needed.
    line="$(date -u +%FT%TZ) $t $((SECONDS - started))s execs=${execs:-?} corpus=$(ls "corpus/$t" | wc -l) saved=$saved"
    echo "$line" | tee -a runs.log
    [ "$saved" -gt 0 ] && grep -m1 -A3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log"
done
exit "$found"
