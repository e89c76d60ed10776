#!/usr/bin/env bash
# Lint (ruff, with its Airflow rules), type check (mypy) and the test suite on SQLite and
# PostgreSQL. Usage: scripts/test.sh [pytest args]
#   scripts/test.sh -m "not e2e"   # the unit, rule and mail tests, without the Airflow runs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "==> starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
echo "==> ruff"
ruff check .
echo "==> mypy"
mypy
echo "==> pytest"
# Two workers (pytest-xdist): the Airflow end-to-end tests spend much of their time waiting on
# subprocesses, so two at once use both cores (whole suite: ~20 min → ~14 min on 2 cores).
# VBP_TEST_WORKERS=0 runs everything in this one process.
exec python -m pytest -n "${VBP_TEST_WORKERS:-2}" "$@"
