"""A real Airflow deployment per test: PostgreSQL metadata and warehouse databases of its own,
the demo data set as landing files, a loopback SMTP server, and components (scheduler,
dag-processor, api-server, celery worker) started on demand and stopped by process group.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from builders import pg_database
from fixtures_smtp import SmtpTestServer
from reliability.processes import REPO, Component, airflow, env_sh, free_port, wait_until

# The code under test: this checkout, or another one (VBP_RELIABILITY_CODE_ROOT, e.g. an exported
# release `git archive v1 | tar -x -C DIR`) run by this checkout's Airflow and tests.
CODE_ROOT = Path(os.environ.get("VBP_RELIABILITY_CODE_ROOT") or REPO)


def code_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` (from scripts/env.sh) pointed at CODE_ROOT's DAGs, plugins and demo package."""
    env = dict(env)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(CODE_ROOT / "dags")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(CODE_ROOT / "plugins")
    env["PYTHONPATH"] = f"{CODE_ROOT / 'plugins'}:{CODE_ROOT / 'demo'}"
    return env


# the alert columns that must not depend on how or when a run was executed
ALERT_COLUMNS = ("alert_key", "rule_code", "severity", "period", "branch_code", "institution_code",
                 "metric_value", "threshold_value", "message", "status")


@pytest.fixture(scope="session")
def demo_landing(tmp_path_factory) -> Path:
    """The demo data set's landing files (the DAGs only read them)."""
    landing = tmp_path_factory.mktemp("demo") / "landing"
    subprocess.run([sys.executable, "scripts/generate_demo_data.py", "--out", str(landing)], cwd=CODE_ROOT,
                   env=code_env(env_sh()), check=True, capture_output=True, timeout=600)
    return landing


@dataclass
class Stack:
    """One Airflow installation on PostgreSQL; ``start`` its components, ``stop_all`` at the end."""

    home: Path
    env: dict[str, str]
    metadata_url: str
    warehouse_url: str
    smtp: SmtpTestServer
    api_port: int
    components: dict[str, Component] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> Component:
        component = Component(name, list(args), self.env, self.home)
        self.components[name] = component
        return component

    def stop_all(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return airflow(list(args), self.env, timeout=timeout)

    def metadata(self, sql: str, **params) -> list[tuple]:
        engine = create_engine(self.metadata_url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def metadata_execute(self, sql: str, **params) -> None:
        engine = create_engine(self.metadata_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql), params)
        finally:
            engine.dispose()

    def runs(self, dag_id: str) -> list[tuple]:
        """(run_id, run_type, state, logical_date) of the DAG's runs, oldest logical date first."""
        return self.metadata("SELECT run_id, run_type, state, logical_date FROM dag_run WHERE dag_id = :dag_id "
                             "ORDER BY logical_date, id", dag_id=dag_id)

    def wait_parsed(self, *dag_ids: str, timeout: float = 300) -> None:
        wanted = set(dag_ids)
        wait_until(lambda: wanted <= {row[0] for row in self.metadata(
            "SELECT dag_id FROM serialized_dag")}, timeout, f"{', '.join(dag_ids)} parsed",
            watch=list(self.components.values()))

    def wait_runs_done(self, dag_id: str, count: int, timeout: float = 900) -> list[tuple]:
        """Wait until ``count`` runs of the DAG have finished; fail on a dead component."""
        def finished():
            rows = self.runs(dag_id)
            done = [row for row in rows if row[2] in ("success", "failed")]
            return rows if len(done) >= count and len(done) == len(rows) else None
        return wait_until(finished, timeout, f"{count} finished runs of {dag_id}", interval=3,
                          watch=list(self.components.values()))

    def failed_tasks(self) -> list[tuple]:
        return self.metadata("SELECT dag_id, run_id, task_id, state FROM task_instance "
                             "WHERE state NOT IN ('success', 'skipped')")


def warehouse_alerts(url: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(
                f"SELECT {', '.join(ALERT_COLUMNS)}, notified_at IS NOT NULL FROM alerts ORDER BY alert_key"))]
    finally:
        engine.dispose()


def mails(smtp: SmtpTestServer) -> list[tuple]:
    """What was mailed, independent of order and timing: (subject, recipients, attachments)."""
    return sorted((mail.subject, tuple(sorted(mail.rcpt_tos)), tuple(sorted(mail.attachments())))
                  for mail in smtp.messages)


@pytest.fixture
def airflow_stack(tmp_path, demo_landing):
    """Factory: ``airflow_stack(executor)`` → a migrated Stack (nothing started yet)."""
    created: list[tuple[Stack, list[str]]] = []

    def make(executor: str = "LocalExecutor", **overrides: str) -> Stack:
        suffix = uuid.uuid4().hex[:10]
        metadata_db, warehouse_db = f"af_meta_{suffix}", f"vbp_wh_{suffix}"
        metadata_url, warehouse_url = pg_database(metadata_db), pg_database(warehouse_db)
        smtp = SmtpTestServer().start()
        home = tmp_path / f"home_{suffix}"
        home.mkdir()
        api_port = free_port()
        env = env_sh(
            smtp.connection_json(), AIRFLOW_HOME=str(home), VBP_WAREHOUSE_URL=warehouse_url,
            VBP_LANDING_DIR=str(demo_landing), VBP_OUTPUT_DIR=str(tmp_path / f"output_{suffix}"),
            VBP_DATA_TEAM_EMAILS="data-team@example.org", VBP_RETRY_DELAY_SECONDS="1")
        env = code_env(env)
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            # only the runs a test creates (triggers, backfills): no cron-scheduled ones
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 3,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex * 2,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        })
        env.update(overrides)
        stack = Stack(home, env, metadata_url, warehouse_url, smtp, api_port)
        created.append((stack, [metadata_db, warehouse_db]))
        stack.airflow("db", "migrate")
        return stack

    yield make
    for stack, databases in created:
        stack.stop_all()
        stack.smtp.stop()
        time.sleep(1)
        for name in databases:
            pg_database(name, drop=True)


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory, warehouse_templates):
    """(a PostgreSQL template database with the demo data set ingested, its landing folder)."""
    from vbp_demo import generator as demo_data
    from vbp_monitor.core import db
    from vbp_monitor.core.periods import ingest_period
    from vbp_monitor.orchestration.run_context import RunContext
    from vbp_monitor.quality.ingest import ingest_landing

    landing = tmp_path_factory.mktemp("demo") / "landing"
    demo_data.generate(landing)
    name = f"vbp_demo_{uuid.uuid4().hex[:10]}"
    engine = db.get_engine(pg_database(name, template=warehouse_templates("postgresql")))
    ingest_landing(engine, RunContext.for_test("vbp_ingest", ingest_period(demo_data.DEMO_RUNS["vbp_ingest"][0]),
                                               run_id="manual__demo"), landing)
    engine.dispose()
    db.get_engine.cache_clear()
    yield name, landing
    pg_database(name, drop=True)
