"""End to end: `airflow dags test vbp_ingest` in a subprocess, on SQLite and PostgreSQL.

The subprocess gets the environment of scripts/env.sh with a temporary AIRFLOW_HOME, a test
landing folder, a fresh warehouse and a throwaway SMTP server on loopback for the notify
task (fixtures in tests/fixtures_e2e.py).
"""
from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import create_engine, func, select, text

from builders import full_city, write_landing
from fixtures_e2e import AIRFLOW, REPO, env_sh
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts, metadata, quarantine

pytestmark = pytest.mark.e2e

DATA_TEAM = "data-team@example.org"


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
