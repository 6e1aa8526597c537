#!/usr/bin/env bash
# `make demo` body; scripts/engine.sh has already pointed DOCKER_HOST at a live engine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py
