"""End to end: the demo data set through every DAG, under Airflow, on SQLite and PostgreSQL.

This is what the README's first command does, minus the terminal: generate the demo city,
run every planned DAG run with `dag.test()` (scripts/run_dags.py, what `airflow dags test`
calls), then check what a user would see — every rule code alerted, every planted case
raised, one email per branch and run with only its own institutions, and a rerun through
the real `airflow dags test` CLI that changes nothing and mails nothing.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from fixtures_e2e import AIRFLOW, REPO, env_sh
from vbp_demo import generator as demo_data
from vbp_monitor.core.catalog import RULES
from vbp_monitor.model.schema import alerts, branches, distributors, institutions, orders

pytestmark = pytest.mark.e2e

BUSINESS_COLUMNS = ("alert_key", "rule_code", "severity", "period", "branch_code", "metric_value",
                    "threshold_value", "message", "status", "notified_at")


def _alert_rows(url: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(
                select(*[alerts.c[name] for name in BUSINESS_COLUMNS]).order_by(alerts.c.alert_key))]
    finally:
        engine.dispose()


def _file_digests(folder: Path) -> dict[str, str]:
    """The files of the two DAGs whose outputs are stamped with their run's D 06:00 (the
    monthly report, the assessment): a rerun must write the same bytes. The other DAGs'
    workbooks carry the time they were written in their title block."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for dag_id in ("vbp_monthly_report", "vbp_annual_assessment")
            for path in sorted((folder / dag_id).rglob("*")) if path.is_file()}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    Path(env["VBP_OUTPUT_DIR"]).parent.joinpath("run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_demo_year_through_airflow(airflow_home, e2e_warehouse, smtp, tmp_path):
    landing, output = tmp_path / "landing", tmp_path / "output"
    env = env_sh(AIRFLOW_HOME=str(airflow_home), VBP_WAREHOUSE_URL=e2e_warehouse,
                 VBP_LANDING_DIR=str(landing), VBP_OUTPUT_DIR=str(output),
                 AIRFLOW_CONN_SMTP_DEFAULT=smtp.connection_json(),
                 VBP_DATA_TEAM_EMAILS="data-team@example.org", VBP_RETRY_DELAY_SECONDS="1")
    _run([sys.executable, "scripts/generate_demo_data.py", "--out", str(landing)], env)
    result = _run([sys.executable, "scripts/run_dags.py", "--demo"], env)
    runs = sum(len(days) for days in demo_data.DEMO_RUNS.values())
    # one result line per run: "  <dag_id>  <date>  success  1.3s" (task logs are INFO now)
    outcomes = re.findall(r"^\s+vbp_\w+\s+\d{4}-\d{2}-\d{2}\s+(\w+)", result.stdout, flags=re.M)
    assert outcomes == ["success"] * runs, outcomes

    engine = create_engine(e2e_warehouse)
    with engine.connect() as conn:
        open_alerts = [dict(r._mapping) for r in conn.execute(select(alerts).where(alerts.c.status == "open"))]
        branch_of = dict(conn.execute(select(institutions.c.institution_code, institutions.c.branch_code)).all())
    engine.dispose()

    # every rule code of domain.md fires, and every planted case is among the alerts
    assert {a["rule_code"] for a in open_alerts} == set(RULES)
    assert len(open_alerts) == 76  # the demo summary: 76 open alerts over the 31 codes
    for case in demo_data.PLANTED:
        subject = {k: v for k, v in case.items()
                   if k in ("institution_code", "order_id", "batch_code", "generic_name", "branch_code")}
        assert any(a["rule_code"] == case["rule_code"] and a["dag_id"] == case["dag_id"]
                   and all(a[k] == v for k, v in subject.items()) for a in open_alerts), case
    assert all(a["notified_at"] is not None for a in open_alerts)

    # one email per branch and run; a branch's email names only its own institutions
    branch_mails = [m for m in smtp.messages if (m.audience or "").startswith("branch:")]
    assert branch_mails and any(m.audience == "city" for m in smtp.messages)
    per_subject = Counter((m.audience, m.subject) for m in branch_mails)
    assert max(per_subject.values()) == 1
    for mail in branch_mails:
        branch = mail.audience.split(":", 1)[1]
        html = mail.html()
        foreign = [code for code, owner in branch_of.items() if owner != branch and code in html]
        assert not foreign, (mail.subject, foreign)
    assert any(name.startswith("执行报表_") for m in branch_mails for name in m.attachments())
    assert list(output.rglob("*.xlsx")) and list(output.rglob("*.docx"))
    # issue 8: every workbook prints (formats, set-up, ≤ 6 pages a branch report); every
    # message cites the clause of its rule as applied to its case (ownership), no other
    from test_citations import assert_demo_citations
    from test_output_formats import assert_demo_outputs
    assert_demo_outputs(output)
    assert assert_demo_citations(e2e_warehouse) == set(RULES)
    # and so does every workbook attached to an email (the alert workbooks, the delay lists)
    from test_output_formats import workbook_problems
    attached = tmp_path / "attached"
    attached.mkdir()
    for number, mail in enumerate(smtp.messages):
        for name, payload in mail.attachments().items():
            if name.endswith(".xlsx"):
                (attached / f"{number}_{name}").write_bytes(payload)
    problems = {path.name: found for path in attached.iterdir() if (found := workbook_problems(path))}
    assert not problems, problems

    # issue 9: every distributor with an address receives only its own delayed orders, the
    # branch in copy; the distributor without one is named in its branch's email
    engine = create_engine(e2e_warehouse)
    with engine.connect() as conn:
        delayed = dict(conn.execute(
            select(orders.c.order_id, orders.c.distributor_code)
            .join(alerts, alerts.c.order_id == orders.c.order_id)
            .where(alerts.c.rule_code == "ORDER_RESPONSE_OVERDUE")).all())
        directory = {row.distributor_code: row for row in conn.execute(select(distributors))}
        branch_emails = dict(conn.execute(select(branches.c.branch_code, branches.c.emails)).all())
    engine.dispose()
    distributor_mails = [m for m in smtp.messages if (m.audience or "").startswith("distributor:")]
    assert distributor_mails
    for mail in distributor_mails:
        branch, distributor = mail.audience.removeprefix("distributor:").split(":", 1)
        html = mail.html()
        own = [order for order, owner in delayed.items() if owner == distributor and order in html]
        foreign = [order for order, owner in delayed.items() if owner != distributor and order in html]
        assert own and not foreign, (mail.subject, own, foreign)
        assert set(branch_emails[branch].split(";")) <= set(mail.rcpt_tos), mail.rcpt_tos
        assert set(directory[distributor].emails.split(";")) <= set(mail.rcpt_tos)
    unaddressed = {owner for owner in delayed.values() if owner not in directory or not directory[owner].emails}
    for code in unaddressed:
        name = directory[code].distributor_name if code in directory else code
        assert any(name in m.html() for m in branch_mails if "延迟响应" in m.html()), code

    # reruns through the real CLI, after the whole year has run (later months' alerts and the
    # 2025 assessment's are in the table): identical alerts, no email, and the report's and
    # the assessment's files byte-identical
    before, sent, files = _alert_rows(e2e_warehouse), len(smtp.messages), _file_digests(output)
    for dag_id, day in (("vbp_monthly_monitoring", "2025-09-01"), ("vbp_monthly_report", "2025-09-01"),
                        ("vbp_annual_assessment", "2026-02-01")):
        _run([str(AIRFLOW), "dags", "test", dag_id, day], env)
    assert _alert_rows(e2e_warehouse) == before
    assert [mail.subject for mail in smtp.messages[sent:]] == []
    assert files and _file_digests(output) == files
