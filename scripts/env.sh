# Source me: the project-local Airflow and warehouse environment.
#   . scripts/env.sh
VBP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VBP_ROOT
export AIRFLOW_HOME="${AIRFLOW_HOME:-$VBP_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$VBP_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$VBP_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Shanghai
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
# INFO: a task's log shows what it read, judged, wrote and sent (the project logs counts)
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
# Secrets (Fernet key, JWT secret, API key) come from .env, written once by
# scripts/make_secrets.sh and never committed: the CLI and the UI must share them.
if [ -f "$VBP_ROOT/.env" ]; then
  set -a; . "$VBP_ROOT/.env"; set +a
  export AIRFLOW__CORE__FERNET_KEY="${VBP_FERNET_KEY:-}"
  export AIRFLOW__API_AUTH__JWT_SECRET="${VBP_JWT_SECRET:-}"
  export AIRFLOW__API__SECRET_KEY="${VBP_API_SECRET_KEY:-}"
fi
export PYTHONPATH="$VBP_ROOT/plugins:$VBP_ROOT/demo${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$VBP_ROOT/.venv/bin:$PATH"
export VBP_WAREHOUSE_URL="${VBP_WAREHOUSE_URL:-sqlite:///$VBP_ROOT/data/warehouse.db}"
export VBP_LANDING_DIR="${VBP_LANDING_DIR:-$VBP_ROOT/data/landing}"
export VBP_OUTPUT_DIR="${VBP_OUTPUT_DIR:-$VBP_ROOT/data/output}"
export VBP_SMTP_PORT="${VBP_SMTP_PORT:-1025}"
# (an if, not ${VAR:-…}: the JSON's braces would end the expansion early)
if [ -z "${AIRFLOW_CONN_SMTP_DEFAULT:-}" ]; then
  export AIRFLOW_CONN_SMTP_DEFAULT="{\"conn_type\": \"smtp\", \"host\": \"127.0.0.1\", \"port\": $VBP_SMTP_PORT, \"extra\": {\"from_email\": \"vbp-monitor@localhost\", \"disable_tls\": true, \"disable_ssl\": true, \"timeout\": 10, \"retry_limit\": 1}}"
fi
export VBP_DATA_TEAM_EMAILS="${VBP_DATA_TEAM_EMAILS:-data-team@example.org}"
