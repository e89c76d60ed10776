"""The distributed set-up for real: the CeleryExecutor with Redis (127.0.0.1:6379), PostgreSQL
metadata, and `airflow scheduler`, `dag-processor`, `api-server` and `celery worker` as separate
processes, as docker-compose.yml runs them on several hosts. The demo data set's ingest and one
month of monitoring must give the same alerts and the same emails as the LocalExecutor
(`airflow dags test`).
"""
from __future__ import annotations

import random

import pytest
import redis
import yaml

from builders import pg_database
from fixtures_smtp import SmtpTestServer
from reliability.conftest import code_env, mails, warehouse_alerts
from reliability.processes import REPO, env_sh, http, wait_until

# the demo's ingest day, then the monthly run of 3 March 2025 (judges February 2025)
PLAN = (("vbp_ingest", "2026-02-02"), ("vbp_monthly_monitoring", "2025-03-03"))


def test_compose_offers_celery_workers_for_several_hosts():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert services["redis"]["image"].startswith("redis:")
    worker = services["airflow-worker"]
    assert worker["command"] == "airflow celery worker" and "healthcheck" in worker
    # a worker on another host reaches the main host's services through VBP_MAIN_HOST
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "VBP_WAREHOUSE_URL"):
        assert "${VBP_MAIN_HOST:-" in worker["environment"][key], key
    lock = (REPO / "uv.lock").read_text()
    assert 'name = "apache-airflow-providers-celery"' in lock and "celery" in (REPO / "pyproject.toml").read_text()


def _local_reference(airflow_home, landing, tmp_path) -> tuple[list[tuple], list[tuple]]:
    """Alerts and emails of the plan under the LocalExecutor path (`airflow dags test`)."""
    from reliability.processes import airflow

    name = f"vbp_ref_{random.randrange(16**8):08x}"
    url = pg_database(name)
    smtp = SmtpTestServer().start()
    try:
        env = code_env(env_sh(smtp.connection_json(), AIRFLOW_HOME=str(airflow_home), VBP_WAREHOUSE_URL=url,
                              VBP_LANDING_DIR=str(landing), VBP_OUTPUT_DIR=str(tmp_path / "output_local"),
                              VBP_DATA_TEAM_EMAILS="data-team@example.org", VBP_RETRY_DELAY_SECONDS="1"))
        for dag_id, day in PLAN:
            airflow(["dags", "test", dag_id, day], env, timeout=900)
        return warehouse_alerts(url), mails(smtp)
    finally:
        smtp.stop()
        pg_database(name, drop=True)


@pytest.mark.e2e
def test_celery_executor_gives_the_alerts_of_the_local_executor(airflow_stack, airflow_home, demo_landing,
                                                                  tmp_path):
    broker_db = random.randrange(1, 16)
    broker = redis.Redis(host="127.0.0.1", port=6379, db=broker_db)
    broker.ping()
    broker.flushdb()
    stack = airflow_stack(
        "CeleryExecutor",
        AIRFLOW__CELERY__BROKER_URL=f"redis://127.0.0.1:6379/{broker_db}",
        AIRFLOW__CELERY__WORKER_CONCURRENCY="2",
    )
    stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + stack.metadata_url  # postgresql+psycopg2://
    try:
        stack.start("api-server", "api-server")
        stack.start("dag-processor", "dag-processor")
        stack.start("scheduler", "scheduler")
        worker = stack.start("celery-worker", "celery", "worker", "--concurrency", "2")
        wait_until(lambda: http("GET", f"http://127.0.0.1:{stack.api_port}/api/v2/monitor/health")[0] == 200,
                   300, "the api-server", watch=list(stack.components.values()))
        wait_until(lambda: b"ready" in worker.log.read_bytes(), 180, "the celery worker", watch=[worker])
        stack.wait_parsed(*(dag_id for dag_id, _ in PLAN))

        for dag_id, day in PLAN:
            stack.airflow("dags", "trigger", dag_id, "--logical-date", f"{day}T00:00:00+08:00",
                          "--run-id", f"celery__{day}")
            runs = stack.wait_runs_done(dag_id, 1, timeout=900)
            assert [row[2] for row in runs] == ["success"], (runs, stack.failed_tasks())
        # every task went through Celery: the worker executed them
        executed = stack.metadata("SELECT count(*), count(DISTINCT hostname) FROM task_instance "
                                  "WHERE state = 'success' AND queue = 'default'")[0]
        assert executed[0] >= 4, executed
        assert "Task airflow.providers.celery.executors.celery_executor_utils.execute_workload" in worker.tail(10**7) \
            or "succeeded" in worker.tail(10**7)
        celery_alerts, celery_mails = warehouse_alerts(stack.warehouse_url), mails(stack.smtp)
        for component in stack.components.values():
            assert component.alive, f"{component.name} died:\n{component.tail()}"
    finally:
        stack.stop_all()
        broker.flushdb()

    local_alerts, local_mails = _local_reference(airflow_home, demo_landing, tmp_path)
    assert celery_alerts, "the demo month raised no alert"
    assert celery_alerts == local_alerts
    assert celery_mails == local_mails
