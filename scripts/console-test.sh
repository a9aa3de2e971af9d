#!/usr/bin/env bash
# The tenant console in headless Chromium (tests/interop/console_browser.test.mjs, with
# playwright-core from tests/interop's npm dependencies). Chromium is Debian's `chromium`,
# installed here when missing and the machine can (root with apt-get); otherwise the test
# skips itself with a message. Usage: scripts/console-test.sh [path/to/natsd]
# The screenshot lands in target/test-artifacts/console.png (CONSOLE_SCREENSHOT overrides).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/natsd}"
CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM_BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium missing: installing Debian's chromium package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi
if [ ! -d "$ROOT/tests/interop/node_modules/playwright-core" ]; then
    (cd "$ROOT/tests/interop" && npm ci --no-audit --no-fund) || { echo "npm ci failed"; exit 1; }
fi
cd "$ROOT/tests/interop" &&
    NATSD_BIN="$BIN" CHROMIUM_BIN="$CHROMIUM_BIN" node --test console_browser.test.mjs
