"""Reruns of every DAG (issue 10 › a fault suite with figures), on PostgreSQL with the demo data set.

Each rule module had its own rerun test comparing the alerts' business columns; none compared
the derived tables in full, and only two checked that a rerun mails nothing. Here every DAG
of the catalog judges its busiest demo period and mails, then runs again for the same period
(a new run id, as an operator's rerun): every table — inbound, derived, alerts, deliveries —
must be identical in full, except the two audit columns that record the last run
(``run_id``, ``last_raised_at``; operations.md › Idempotency) and the quarantine's own
surrogate id and time, and the second run must mail nothing.
"""
from __future__ import annotations

import importlib
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from builders import pg_database
from vbp_demo import generator as demo_data
from vbp_monitor.core import db, formatting
from vbp_monitor.core.catalog import DAGS
from vbp_monitor.core.periods import ingest_period, judged_day, judged_month, judged_year
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import metadata
from vbp_monitor.notify.mailer import notify_documents, notify_run
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.quality.ingest import ingest_landing

AUDIT = {"alerts": {"run_id", "last_raised_at"}, "quarantine": {"quarantine_id", "run_id", "quarantined_at"}}
PERIODS = {"ingest": ingest_period, "month": judged_month, "day": judged_day, "year": judged_year}


def busiest_day(dag_id: str) -> str:
    """The demo run of the DAG with the most planted cases (its one run for the ingest)."""
    planted = Counter(case["logical_date"] for case in demo_data.PLANTED if case["dag_id"] == dag_id)
    return planted.most_common(1)[0][0] if planted else demo_data.DEMO_RUNS[dag_id][0]


def everything(engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.c if c.name not in AUDIT.get(table.name, ())]
            rows = conn.execute(select(*columns)).all()
            out[table.name] = sorted((tuple(str(Decimal(str(v)).normalize()) if isinstance(v, (float, Decimal))
                                            else v for v in row) for row in rows), key=repr)
    return out


def run_dag(engine, dag_id: str, day: str, run_id: str, landing) -> dict:
    dag = DAGS[dag_id]
    run = RunContext.for_test(dag_id, PERIODS[dag.period_kind](day), run_id=run_id)
    attachments = None
    if dag.period_kind == "ingest":
        ingest_landing(engine, run, landing)
    else:
        judged = importlib.import_module(dag.logic).judge(engine, run, load_profile("default"))
        if isinstance(judged, dict):  # the monthly report: documents, no alerts
            return notify_documents(engine, run, judged)
        attachments = judged.attachments
    return notify_run(engine, run, attachments=attachments)


@pytest.mark.parametrize("dag_id", list(DAGS))
def test_a_rerun_for_the_same_period_leaves_identical_tables_and_mails_nothing(
        dag_id, demo_warehouse, smtp_server, output_dir, monkeypatch, fault_table):
    template, landing = demo_warehouse
    monkeypatch.setenv("VBP_LANDING_DIR", str(landing))
    name = f"vbp_rerun_{uuid.uuid4().hex[:10]}"
    engine = db.get_engine(pg_database(name, template=template))
    try:
        day = busiest_day(dag_id)
        first = run_dag(engine, dag_id, day, f"scheduled__{day}", landing)
        tables = everything(engine)
        mailed = len(smtp_server.messages)
        second = run_dag(engine, dag_id, day, f"manual__rerun_{day}", landing)
        again = everything(engine)
        changed = {table: len(set(map(repr, tables[table])) ^ set(map(repr, again[table])))
                   for table in tables if tables[table] != again[table]}
        resent = len(smtp_server.messages) - mailed
        period = PERIODS[DAGS[dag_id].period_kind](day).label
        alerts = [row for row in tables["alerts"] if row[4] == period]  # (alert_id, alert_key, rule, severity, period…)
        mislabelled = sum(1 for mail in smtp_server.messages if formatting.period_zh(period) not in mail.subject)
        fault_table.append({
            "case": f"{dag_id} {day} run twice", "db": "postgresql", "faults": 1,
            "expected": "identical, 0 emails", "ended": f"{sum(changed.values())} rows changed, {resent} emails",
            "lost": 0, "duplicates": resent, "mislabelled": mislabelled, "mismatched": sum(changed.values())})
        # the monthly report raises no alerts: it mails its documents
        assert first["emails"] > 0 and (alerts or dag_id == "vbp_monthly_report"), (
            first, "the busiest period raises and mails something")
        assert mislabelled == 0
        assert changed == {}
        assert second["emails"] == 0 and resent == 0
    finally:
        engine.dispose()
        db.get_engine.cache_clear()
        pg_database(name, drop=True)
