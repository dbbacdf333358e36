#!/usr/bin/env bash
# Install Hongyan into ./.venv and start it on its embedded default:
# domain localhost, SQLite under ./data/, a self-signed certificate made on first start,
# client ports 5222 (STARTTLS) and 5223 (direct TLS). Extra arguments go to `hongyan serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/hongyan serve "$@"
