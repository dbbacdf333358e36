#!/usr/bin/env bash
# Install Hongyan with its test dependencies into ./.venv and run the whole suite:
# ruff (lint), mypy (types), pytest (unit, integration over real sockets, SQLite and PostgreSQL,
# and the benchmarks' smoke mode), in $HONGYAN_TEST_JOBS processes (default 3; 0: one). PostgreSQL tests use $HONGYAN_TEST_PG
# (default postgresql://postgres@127.0.0.1:5432/postgres); without it they skip, except under CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# the web client and the browser test's driver (npm); the browser test skips without them,
# except under CI
if ! ./scripts/web-deps.sh && [ -n "${CI:-}" ]; then exit 1; fi
echo "== ruff"
.venv/bin/ruff check hongyan tests bench fuzz
echo "== mypy"
.venv/bin/python -m mypy
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${HONGYAN_TEST_JOBS:-3}" --dist worksteal "$@"
