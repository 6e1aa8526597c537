#!/usr/bin/env bash
# `make test`'s body (run inside scripts/engine.sh run): every tier of tests/, in two steps.
#
#   1. Two lanes at once, each mostly waiting on Airflow (together about two busy cores):
#      tests/e2e on this engine, beside tests/cluster (its own PostgreSQL, Redis, worker engines
#      and stack) followed by tests/unit on a second private engine (its images, containers and
#      state never meet the e2e lane's: hygiene and GC tests there act on their own engine);
#   2. alone on the machine, the tests with timing checks: tests/integration (loop lag, outage
#      fail-fast, token TTLs) and tests/e2e/test_deferral_deployment.py (deferral against blocking).
#
# The lanes' output is shown in turn (the e2e lane's as it runs). Arguments go to every pytest
# run. When one of them names a test path, that is a single run of pytest with them, as plain
# `pytest ARGS` would do.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=.venv/bin/pytest

for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
        exec "$PYTEST" "$@"
    fi
done

passed() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }  # 5: nothing selected (a -k or -m filter)

ALONE=(tests/integration tests/e2e/test_deferral_deployment.py)
mkdir -p .airdock
side_log=.airdock/test-cluster-unit.log
(
    "$PYTEST" tests/cluster "$@"
    echo "cluster=$?" >.airdock/test-cluster.rc
    # A second private engine for the unit tier (DOCKER_HOST unset: engine.sh starts one and stops it).
    env -u DOCKER_HOST AIRDOCK_ENGINE_DIR="$PWD/.airdock/unit-engine" scripts/engine.sh run "$PYTEST" tests/unit "$@"
    echo "unit=$?" >.airdock/test-unit.rc
) >"$side_log" 2>&1 &
side_pid=$!
"$PYTEST" tests/e2e --ignore=tests/e2e/test_deferral_deployment.py "$@"
e2e=$?
wait "$side_pid"
echo "== tests/cluster, then tests/unit on their own engine (ran beside tests/e2e; their output follows)"
cat "$side_log"
cluster=$(sed -n 's/^cluster=//p' .airdock/test-cluster.rc 2>/dev/null || echo 1)
unit=$(sed -n 's/^unit=//p' .airdock/test-unit.rc 2>/dev/null || echo 1)
rm -f .airdock/test-cluster.rc .airdock/test-unit.rc

echo "== tests/integration and tests/e2e/test_deferral_deployment.py (alone: their timing checks)"
"$PYTEST" "${ALONE[@]}" "$@"
alone=$?

failed=()
passed "$e2e" || failed+=("e2e")
passed "${cluster:-1}" || failed+=("cluster")
passed "${unit:-1}" || failed+=("unit")
passed "$alone" || failed+=("integration/deferral")
if [ "${#failed[@]}" -gt 0 ]; then
    echo "test: failed: ${failed[*]}" >&2
    exit 1
fi
echo "test: every tier passed"
