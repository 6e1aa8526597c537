#!/usr/bin/env bash
# The local cluster: `scripts/cluster.sh up|down|status|env` (src/airdock/local/cluster.py says what runs).
# Installs what it needs first: Debian's postgresql and redis-server (and the engine's packages),
# the venv with the cluster extra. The local stack's ECS runs on the engine scripts/engine.sh finds.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    up)
        AIRDOCK_APT_LOG=.airdock/apt-cluster.log scripts/packages.sh postgresql redis-server
        make -s install
        eval "$(scripts/engine.sh ensure)"
        export DOCKER_HOST
        ;;
    down|status|env)
        [ -x .venv/bin/python ] || die "no .venv here: \`make cluster\` (or scripts/cluster.sh up) installs and starts it"
        ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
exec .venv/bin/python -m airdock.local.cluster "$@"
