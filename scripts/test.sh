#!/usr/bin/env bash
# `make test`'s body (run inside scripts/engine.sh run): every tier of tests/, in two steps.
#
#   1. tests/e2e and tests/integration, alone on the machine (their timing checks: loop lag,
#      outage fail-fast, deferral against blocking);
#   2. tests/unit beside tests/cluster: the local cluster has its own PostgreSQL, Redis, engines and
#      stack and mostly waits on Airflow, the unit tier is one busy core; their output is shown in
#      turn (the cluster's when both have ended).
#
# Arguments go to every pytest run. When one of them names a test path, that is a single run of
# pytest with them, as plain `pytest ARGS` would do.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=.venv/bin/pytest

for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
        exec "$PYTEST" "$@"
    fi
done

passed() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }  # 5: nothing selected (a -k or -m filter)

"$PYTEST" tests/e2e tests/integration "$@"
first=$?

cluster_log=.airdock/test-cluster.log
mkdir -p .airdock
"$PYTEST" tests/cluster "$@" >"$cluster_log" 2>&1 &
cluster_pid=$!
"$PYTEST" tests/unit "$@"
unit=$?
echo "== tests/cluster (ran beside tests/unit; its output follows)"
wait "$cluster_pid"
cluster=$?
cat "$cluster_log"

failed=()
passed "$first" || failed+=("e2e/integration")
passed "$unit" || failed+=("unit")
passed "$cluster" || failed+=("cluster")
if [ "${#failed[@]}" -gt 0 ]; then
    echo "test: failed: ${failed[*]}" >&2
    exit 1
fi
echo "test: every tier passed"
