#!/usr/bin/env bash
# Create .venv/ with airdock installed editable plus the test tools; idempotent.
set -euo pipefail
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "install: error: $PY not found; install Python 3.11+" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install: error: $("$PY" --version) is too old; airdock needs Python 3.11+" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    echo "install: creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
echo "install: installing airdock (editable) with Airflow, providers and test tools — first run takes about a minute"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 \
    | grep -v "^WARNING: Location 'file://" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --progress-bar off -e '.[test,cluster]' 2>&1 \
    | grep -v "^WARNING: Location 'file://" || true
.venv/bin/python -c 'import airdock, airflow, docker' \
    || { echo "install: error: the install did not complete; see the pip output above" >&2; exit 1; }
echo "install: ready (.venv)"
