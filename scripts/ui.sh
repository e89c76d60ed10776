#!/usr/bin/env bash
# The Airflow UI on http://localhost:8080 with the project-local home (SQLite metadata), behind
# a login: Airflow's simple auth manager with named users and roles.
#   admin     role admin   the data team: everything, connections and variables included
#   operator  role user    bureau operators: trigger, clear, mark and backfill DAG runs
#   viewer    role viewer  branch staff: read-only
# Passwords are generated on the first start into
#   $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated   (readable by you only)
# and can be changed there. Secrets (Fernet key, JWT secret, API secret key) come from .env,
# written by scripts/make_secrets.sh on the first run. Stop with Ctrl-C, or kill -- -<pid>.
#
#   scripts/ui.sh           set up, then run `airflow standalone`
#   . scripts/ui.sh --env   only export these settings (tests start components from them)
# VBP_UI_HOST (default 127.0.0.1: this machine only), VBP_UI_PORT (8080), VBP_ENV_FILE (.env)
# and VBP_UI_USERS (the user:role list above) may be preset.
set -euo pipefail
VBP_UI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" != "--env" ]; then
  bash "$VBP_UI_ROOT/scripts/setup.sh"
fi
. "$VBP_UI_ROOT/scripts/env.sh"

VBP_ENV_FILE="${VBP_ENV_FILE:-$VBP_UI_ROOT/.env}"
bash "$VBP_UI_ROOT/scripts/make_secrets.sh" "$VBP_ENV_FILE" >&2
set -a
. "$VBP_ENV_FILE"
set +a
export AIRFLOW__CORE__FERNET_KEY="$VBP_FERNET_KEY"
export AIRFLOW__API_AUTH__JWT_SECRET="$VBP_JWT_SECRET"
export AIRFLOW__API__SECRET_KEY="$VBP_API_SECRET_KEY"

export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${VBP_UI_USERS:-admin:admin,operator:user,viewer:viewer}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
export AIRFLOW__API__HOST="${VBP_UI_HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${VBP_UI_PORT:-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW__API__PORT/execution/"
export AIRFLOW__API__EXPOSE_CONFIG=False

# the password file is created by Airflow on first start: make it private beforehand
mkdir -p "$AIRFLOW_HOME"
touch "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
chmod 600 "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"

if [ "${1:-}" = "--env" ]; then
  return 0 2>/dev/null || exit 0
fi
echo "==> UI: http://localhost:$AIRFLOW__API__PORT  (users: $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS)"
echo "==> passwords: $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE (written on the first start)"
exec airflow standalone
