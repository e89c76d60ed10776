#!/usr/bin/env bash
# One command: set up, generate the demo data set, start a local SMTP sink, run every DAG
# over the demo period on a fresh SQLite warehouse, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VBP_WAREHOUSE_URL="sqlite:///$PWD/data/warehouse.db"
. scripts/env.sh
export VBP_SMTP_PORT="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export AIRFLOW_CONN_SMTP_DEFAULT="{\"conn_type\": \"smtp\", \"host\": \"127.0.0.1\", \"port\": $VBP_SMTP_PORT, \"extra\": {\"from_email\": \"vbp-monitor@localhost\", \"disable_tls\": true, \"disable_ssl\": true, \"timeout\": 10, \"retry_limit\": 1}}"

echo "==> fresh demo folders (data/landing, data/outbox, data/output, data/warehouse.db)"
rm -rf data/landing data/outbox data/output data/warehouse.db data/warehouse.db-wal data/warehouse.db-shm
mkdir -p data/outbox data/output
python scripts/generate_demo_data.py --out data/landing --seed 20250101 --scale 1

echo "==> SMTP sink on 127.0.0.1:$VBP_SMTP_PORT saving .eml files to data/outbox"
setsid python scripts/smtp_sink.py --host 127.0.0.1 --port "$VBP_SMTP_PORT" --outbox data/outbox >data/smtp_sink.log 2>&1 &
SINK_PID=$!
trap 'kill -- -$SINK_PID 2>/dev/null || kill $SINK_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do grep -q "ready" data/smtp_sink.log 2>/dev/null && break; sleep 0.2; done

echo "==> running the DAGs over the demo period (airflow dags test, one process)"
python scripts/run_dags.py --demo
python scripts/demo_summary.py data/outbox
