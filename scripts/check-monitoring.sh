#!/usr/bin/env bash
# Checks the shipped Prometheus configuration and alert rules with promtool:
#   promtool check config  (prometheus.yml and the rule files it loads)
#   promtool test rules    (each alert fires on the series it is meant for, and only then)
# promtool comes from Debian's `prometheus` package; it is installed here when missing and
# the machine can (root with apt-get). Otherwise the check is SKIPPED with a message, and the
# script exits 0 unless CHECK_MONITORING_REQUIRED=1. The metric names are checked against
# natsd's /metrics by `cargo test -p natsd --test monitoring shipped_dashboard`.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROM="$ROOT/monitoring/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "promtool missing: installing Debian's prometheus package"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
    fi
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "!!!!! promtool not available (Debian package prometheus): SKIPPING the promtool checks !!!!!"
    [ "${CHECK_MONITORING_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
fi
echo "promtool: $(promtool --version 2>&1 | head -1)"
promtool check config "$PROM/prometheus.yml" &&
    promtool check rules "$PROM"/rules/*.yml &&
    promtool test rules "$PROM"/tests/*.yml
