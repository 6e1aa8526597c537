#!/usr/bin/env bash
# Install the Debian packages named as arguments that are missing (one apt-get run for all of them).
#
#   scripts/packages.sh docker.io docker-registry busybox-static   # the engine and registry
#   scripts/packages.sh postgresql redis-server                     # the local cluster
#   scripts/packages.sh chromium                                    # the page's browser check
#
# Prints nothing when every package is there; needs root (or the packages) otherwise. The apt log
# goes to $AIRDOCK_APT_LOG (default ./.airdock/apt.log).
set -euo pipefail
say() { printf 'packages: %s\n' "$*" >&2; }
die() { printf 'packages: error: %s\n' "$*" >&2; exit 1; }

missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
log="${AIRDOCK_APT_LOG:-$PWD/.airdock/apt.log}"
mkdir -p "$(dirname "$log")"
say "installing ${missing[*]} with apt-get (one-time, ~1 min)"
apt-get update -qq >"$log" 2>&1 || { tail -5 "$log" >&2; die "apt-get update failed (log: $log)"; }
DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1 \
    || { tail -5 "$log" >&2; die "apt-get install ${missing[*]} failed (log: $log)"; }
