#!/usr/bin/env bash
# Set up a fresh machine: uv, the locked virtualenv in .venv, a project-local Airflow home.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv || python3 -m pip install --quiet --user uv
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "==> uv sync (locked versions from uv.lock into .venv)"
uv sync --frozen --quiet
bash scripts/make_secrets.sh   # .env with generated secrets, only if it does not exist yet
. scripts/env.sh
mkdir -p "$AIRFLOW_HOME" data
echo "==> airflow db migrate (SQLite metadata in $AIRFLOW_HOME)"
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
