#!/usr/bin/env bash
# Ensure a Docker engine answers, starting a private one when none does.
#
#   scripts/engine.sh ensure      # prints `export DOCKER_HOST=...`; starts dockerd if needed
#   scripts/engine.sh stop        # stops the dockerd this script started (no-op otherwise)
#   scripts/engine.sh run CMD...  # ensure, run CMD with DOCKER_HOST set, stop what it started
#
# A private engine keeps its data root under ./.airdock/docker/ and runs with
# --bridge=none --iptables=false --ip6tables=false: no bridge network, no private
# address range is ever touched. Its socket and exec root stay under the working
# directory when the path is short enough for a unix socket, else under /run.
set -euo pipefail

ROOT="${AIRDOCK_ENGINE_DIR:-$PWD/.airdock}"
DATA_ROOT="$ROOT/docker/data"
SHORT="$ROOT/docker"
if [ "${#SHORT}" -gt 60 ]; then
    SHORT="/run/airdock-$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)"
fi
SOCK="$SHORT/docker.sock"
EXEC_ROOT="$SHORT/exec"
PIDFILE="$SHORT/dockerd.pid"
LOG="$ROOT/docker/dockerd.log"

say() { printf 'engine: %s\n' "$*" >&2; }
die() { printf 'engine: error: %s\n' "$*" >&2; exit 1; }

answers() {  # answers DOCKER_HOST_VALUE -> 0 when an engine replies on it
    DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_packages() {
    if command -v dpkg-query >/dev/null 2>&1; then
        AIRDOCK_APT_LOG="$ROOT/apt.log" "$(dirname "${BASH_SOURCE[0]}")/packages.sh" docker.io docker-registry busybox-static
        return
    fi
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    [ "${#missing[@]}" -eq 0 ] || die "missing ${missing[*]}; install them with your package manager"
}

ensure() {
    install_packages
    command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH; install docker.io"
    # 1. An engine the caller already points at, or the default socket.
    if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
        echo "export DOCKER_HOST=$DOCKER_HOST"; return 0
    fi
    if [ -S "$SOCK" ] && answers "unix://$SOCK"; then
        echo "export DOCKER_HOST=unix://$SOCK"; return 0
    fi
    if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock; then
        echo "export DOCKER_HOST=unix:///var/run/docker.sock"; return 0
    fi
    # 2. Our private engine may be starting (another caller) or wedged: wait, or restart it.
    if dockerd_alive; then
        for _ in $(seq 1 60); do
            answers "unix://$SOCK" && { echo "export DOCKER_HOST=unix://$SOCK"; return 0; }
            sleep 0.5
        done
        say "dockerd (pid $(cat "$PIDFILE")) does not answer on $SOCK; restarting it"
        stop_engine
    fi
    # 3. Start a private engine.
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting one needs root"
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
    rm -f "$SOCK"
    say "starting dockerd (data root $DATA_ROOT)"
    # Its own identity key: engines sharing /etc/docker/key.json report the same `docker info` ID.
    printf '{"deprecated-key-path": "%s"}\n' "$ROOT/docker/key.json" >"$ROOT/docker/daemon.json"
    setsid dockerd --config-file "$ROOT/docker/daemon.json" --bridge=none --iptables=false --ip6tables=false \
        --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
        -H "unix://$SOCK" >"$LOG" 2>&1 </dev/null &
    echo "$!" >"$SHORT/started-by-airdock"
    for _ in $(seq 1 60); do
        if answers "unix://$SOCK"; then
            say "dockerd ready on unix://$SOCK"
            echo "export DOCKER_HOST=unix://$SOCK"; return 0
        fi
        sleep 0.5
    done
    die "dockerd did not answer within 30 s; see $LOG"
}

dockerd_alive() {  # the dockerd named by our pid file runs
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null
}

stop_engine() {
    local marker="$SHORT/started-by-airdock" pid
    [ -f "$marker" ] || dockerd_alive || return 0
    pid="$(cat "$PIDFILE" 2>/dev/null || cat "$marker")"
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$marker"
}

locked() {  # run "$@" holding the engine lock: concurrent callers start one engine, not several
    mkdir -p "$SHORT"
    exec 9>"$SHORT/engine.lock"
    flock 9
    "$@"
    flock -u 9
}

case "${1:-}" in
    ensure) locked ensure ;;
    stop) locked stop_engine ;;
    run)
        shift
        started=0
        [ -f "$SHORT/started-by-airdock" ] || started=1
        eval "$(locked ensure)"
        [ -f "$SHORT/started-by-airdock" ] || started=0
        if [ "$started" -eq 1 ] && [ "${AIRDOCK_KEEP_ENGINE:-0}" != 1 ]; then trap 'locked stop_engine' EXIT; fi
        export DOCKER_HOST
        "$@"
        ;;
    *) echo "usage: $0 ensure|stop|run CMD..." >&2; exit 2 ;;
esac
