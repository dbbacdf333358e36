#!/usr/bin/env bash
# Install Hongyan into ./.venv and start it on its embedded default:
# domain localhost, SQLite under ./data/, a self-signed certificate made on first start,
# client ports 5222 (STARTTLS) and 5223 (direct TLS), HTTP 5280 and HTTPS 5281 with the web client
# (Converse.js from npm, installed here by scripts/web-deps.sh) at http://localhost:5280/.
# Extra arguments go to `hongyan serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
./scripts/web-deps.sh || echo "(starting without the web client)" >&2
exec .venv/bin/hongyan serve "$@"
