#!/usr/bin/env bash
# The local cluster: `scripts/cluster.sh up|down|status|env` (src/airdock/local/cluster.py says what runs).
# Installs what it needs first: Debian's postgresql and redis-server (and the engine's packages),
# the venv with the cluster extra. The local stack's ECS runs on the engine scripts/engine.sh finds.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    up)
        missing=()
        for pkg in postgresql redis-server; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
        done
        if [ "${#missing[@]}" -gt 0 ]; then
            [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
            say "installing ${missing[*]} with apt-get (one-time, ~1 min)"
            mkdir -p .airdock
            apt-get update -qq >.airdock/apt-cluster.log 2>&1 || { tail -3 .airdock/apt-cluster.log >&2; die "apt-get update failed"; }
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y -qq "${missing[@]}" \
                >>.airdock/apt-cluster.log 2>&1 || { tail -3 .airdock/apt-cluster.log >&2; die "apt-get install ${missing[*]} failed"; }
        fi
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
