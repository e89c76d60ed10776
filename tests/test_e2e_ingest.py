"""End to end: `airflow dags test vbp_ingest` in a subprocess, on SQLite and PostgreSQL.

The subprocess gets the environment of scripts/env.sh with a temporary AIRFLOW_HOME (its
metadata DB migrated once per session), a test landing folder, a fresh warehouse and a
throwaway SMTP server on loopback for the notify task.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from conftest import PG_ADMIN_URL, _pg_database
from fixtures_smtp import SmtpTestServer
from landing_builders import full_city, write_landing
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts, metadata, quarantine

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / ".venv" / "bin" / "airflow"
DATA_TEAM = "data-team@example.org"


def env_sh(smtp_connection: str | None = None, **overrides: str) -> dict[str, str]:
    """The environment scripts/env.sh exports, given ``overrides`` it keeps (it uses
    ${VAR:-default} for them). The SMTP connection is set afterwards, as scripts/demo.sh
    does, whatever env.sh makes of a preset one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VBP_"))}
    base.update(overrides)
    out = subprocess.run(["bash", "-c", ". scripts/env.sh && env -0"], cwd=REPO, env=base,
                         capture_output=True, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    if smtp_connection:
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp_connection
    return env


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("airflow_home")
    env = env_sh(AIRFLOW_HOME=str(home))
    result = subprocess.run([str(AIRFLOW), "db", "migrate"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def e2e_warehouse(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e_warehouse.db'}"
        return
    name = f"vbp_e2e_{uuid.uuid4().hex[:12]}"
    _pg_database(name)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    _pg_database(name, drop=True)


@pytest.fixture
def smtp():
    server = SmtpTestServer().start()
    yield server
    server.stop()


def dags_test(env: dict[str, str], day: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(AIRFLOW), "dags", "test", "vbp_ingest", day], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one()
                    for name in [*contract.LOAD_ORDER, "quarantine", "alerts"]}
    finally:
        engine.dispose()


def test_dags_test_loads_the_landing_folder_and_a_rerun_changes_nothing(airflow_home, e2e_warehouse, smtp, tmp_path):
    bad_order = {"order_id": "O-NEG", "institution_code": "H1", "product_code": "P-AML-S", "channel": "platform",
                 "order_time": "2025-02-20 09:00:00", "quantity": "-5", "unit_price": "0.5", "amount": "-2.5",
                 "cancelled": "false"}
    data = full_city(orders=[bad_order])
    landing = write_landing(tmp_path / "landing", data)
    env = env_sh(
        AIRFLOW_HOME=str(airflow_home),
        VBP_LANDING_DIR=str(landing),
        VBP_WAREHOUSE_URL=e2e_warehouse,
        VBP_OUTPUT_DIR=str(tmp_path / "output"),
        VBP_DATA_TEAM_EMAILS=DATA_TEAM,
        VBP_RETRY_DELAY_SECONDS="5",  # a failing task must not make the test wait 2 × 5 minutes
        smtp_connection=smtp.connection_json(),
    )

    dags_test(env, "2025-03-03")  # the warehouse does not exist yet: `migrate` creates it
    first = counts(e2e_warehouse)
    expected = {name: len(rows) for name, rows in data.items()}
    expected["orders"] -= 1  # O-NEG is quarantined
    assert {name: first[name] for name in contract.LOAD_ORDER} == expected
    assert first["quarantine"] == 1 and first["alerts"] == 1

    engine = create_engine(e2e_warehouse)
    with engine.connect() as conn:
        alert = conn.execute(select(alerts)).mappings().one()
        row = conn.execute(select(quarantine)).mappings().one()
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert alert["rule_code"] == "DATA_QUALITY" and alert["source_file"] == "orders.csv"
    assert alert["period"] == "2025-03-03" and alert["dag_id"] == "vbp_ingest"
    assert alert["notified_at"] is not None  # the notify task mailed it to the data team
    assert row["row_key"] == "O-NEG"
    assert version
    assert [m.audience for m in smtp.to(DATA_TEAM)] == ["data_team"]
    assert "orders.csv" in smtp.to(DATA_TEAM)[0].html()

    dags_test(env, "2025-03-03")
    assert counts(e2e_warehouse) == first
    assert len(smtp.to(DATA_TEAM)) == 1  # nothing new to say: no second email
