#!/usr/bin/env bash
# The Airflow UI on http://localhost:8080 with the project-local home (SQLite metadata).
# Stop it with Ctrl-C, or by process group: kill -- -<pid>.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
exec airflow standalone
