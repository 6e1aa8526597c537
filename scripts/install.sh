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
echo "install: installing airdock (editable) with Airflow, providers and test tools — first run takes under a minute"
# uv (from PyPI, into the venv) resolves and installs the ~220 packages in seconds where pip takes
# minutes; the constraints keep its picks to pip's (uv otherwise backtracks to an older kombu/redis).
# Bytecode is compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set nothing would
# cache it later, and every process would compile Airflow anew. pip is the fallback when uv cannot be had.
if .venv/bin/python -m pip install -q --disable-pip-version-check --progress-bar off uv 2>/dev/null; then
    .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -c scripts/install-constraints.txt \
        -e '.[test,cluster]'
else
    echo "install: uv not available; installing with pip (a few minutes)"
    .venv/bin/python -m pip install -q --disable-pip-version-check --progress-bar off \
        -c scripts/install-constraints.txt -e '.[test,cluster]' 2>&1 | grep -v "^WARNING: Location 'file://" || true
fi
.venv/bin/python -c 'import airdock, airflow, docker' \
    || { echo "install: error: the install did not complete; see the pip output above" >&2; exit 1; }
echo "install: ready (.venv)"
