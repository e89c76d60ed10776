"""Twelve monthly runs at once, in separate processes (issue 10 › fault suite, item 7), on PostgreSQL.

The demo data set (2025) is ingested once into a template warehouse. Then:

(a) in one copy, the twelve judged months of 2025 run one by one, as the monthly DAG does
    (validate → build_facts → judge → notify_run), and the tables the runs write are dumped:
    the alerts' business columns, the deliveries per alert and audience, the institution file,
    the facts cache and its months; with every email (audience, recipients, subject);
(b) in a second copy of the same loaded state, twelve OS processes (one per month) are
    started at once against it and an SMTP server of their own. Every process must exit 0 —
    a deadlock or serialization failure PostgreSQL detects is retried by the code or fails
    the test — and the tables and emails must equal (a)'s: no row lost or duplicated, no email
    twice or missing, every email's subject naming the period of the alerts it carries.

Surrogate ids, run ids, Message-IDs and wall-clock times are set aside.

RECTIFICATION_OVERDUE is left out on both sides: it reads the alerts of the months before M,
so a month judged before its predecessors have committed sees a shorter run of months. The
DAG runs months one at a time (``max_active_runs = 1``; backfills with Max Active Runs 1, see
the README), and tests/test_monitoring_rectification.py judges the referral itself.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from builders import pg_database
from fixtures_smtp import DATA_TEAM_EMAIL, SmtpTestServer, audit_mail
from vbp_monitor.core import db, formatting
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import alert_deliveries, alerts, metadata
from vbp_monitor.notify.mailer import notify_run
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules import monitoring

DAG = "vbp_monthly_monitoring"
REPO = Path(__file__).resolve().parents[2]
# the run days of the twelve judged months of 2025 (2025-01 … 2025-12)
DAYS = [dt.date(2025 + month // 12, month % 12 + 1, 1).isoformat() for month in range(1, 13)]
ALERT_COLUMNS = ("alert_key", "rule_code", "severity", "period", "branch_code", "institution_code",
                 "metric_value", "threshold_value", "message", "status")
VOLATILE = {"built_at", "run_id", "first_raised_at", "last_raised_at", "notified_at", "sent_at"}
TABLES = ("institution_file_metrics", "purchase_facts", "purchase_facts_months", "selected_purchase_facts",
          "selected_purchase_facts_months")

# one monthly run, as the DAG's tasks do it, in a process of its own: argv = warehouse URL, run day
WORKER = """
import logging
import sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from vbp_monitor.core import db
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.notify.mailer import notify_run
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules import monitoring

monitoring.rectification_candidates = lambda *args, **kwargs: iter(())  # see the module docstring
url, day = sys.argv[1:3]
engine = db.get_engine(url)
run = RunContext.for_test("vbp_monthly_monitoring", judged_month(day), run_id=f"scheduled__{day}")
monitoring.validate(engine, run)
monitoring.build_facts(engine, run)
result = monitoring.judge(engine, run, load_profile("default"))
print(notify_run(engine, run, attachments=result.attachments))
"""


def _value(v):
    return str(Decimal(str(v)).normalize()) if isinstance(v, (float, Decimal)) else v


def dump(engine) -> dict[str, list[tuple]]:
    """The tables the monthly runs write, sorted, without surrogate ids, run ids and times."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        out["alerts"] = sorted((tuple(map(_value, row)) for row in conn.execute(
            select(*(alerts.c[name] for name in ALERT_COLUMNS), alerts.c.notified_at.is_not(None)))), key=repr)
        out["alert_deliveries"] = sorted(tuple(row) for row in conn.execute(
            select(alerts.c.alert_key, alert_deliveries.c.audience)
            .join(alerts, alerts.c.alert_id == alert_deliveries.c.alert_id)))
        for name in TABLES:
            table = metadata.tables[name]
            columns = [c for c in table.c if c.name not in VOLATILE]
            out[name] = sorted((tuple(map(_value, row)) for row in conn.execute(select(*columns))), key=repr)
    return out


def emails(server: SmtpTestServer) -> list[tuple]:
    """(audience, recipients, subject) of every email received, sorted."""
    return sorted((mail.audience or "", tuple(sorted(mail.rcpt_tos)), mail.subject) for mail in server.messages)


def subject_periods(server: SmtpTestServer) -> list[str]:
    """The judged month each email's subject names ("" when none or several)."""
    labels = {formatting.period_zh(f"2025-{month:02d}"): f"2025-{month:02d}" for month in range(1, 13)}
    out = []
    for mail in server.messages:
        named = [period for label, period in labels.items() if label in mail.subject]
        out.append(named[0] if len(named) == 1 else "")
    return out


@pytest.mark.e2e
def test_twelve_monthly_runs_in_twelve_processes_give_the_tables_of_the_runs_one_by_one(
        demo_warehouse, smtp_server, tmp_path, monkeypatch, fault_table):
    names = [f"vbp_seq_{uuid.uuid4().hex[:10]}", f"vbp_par_{uuid.uuid4().hex[:10]}"]
    loaded_template, _landing = demo_warehouse
    sequential_url, parallel_url = (pg_database(name, template=loaded_template) for name in names)
    parallel_smtp = SmtpTestServer().start()
    try:
        # (a) one by one, in this process
        monkeypatch.setenv("VBP_OUTPUT_DIR", str(tmp_path / "sequential"))
        monkeypatch.setattr(monitoring, "rectification_candidates", lambda *args, **kwargs: iter(()))
        engine = db.get_engine(sequential_url)
        for day in DAYS:
            run = RunContext.for_test(DAG, judged_month(day), run_id=f"scheduled__{day}")
            monitoring.validate(engine, run)
            monitoring.build_facts(engine, run)
            result = monitoring.judge(engine, run, load_profile("default"))
            notify_run(engine, run, attachments=result.attachments)
        reference, reference_mail = dump(engine), emails(smtp_server)
        baseline = audit_mail(engine, smtp_server)
        engine.dispose()
        db.get_engine.cache_clear()
        months_alerted = {row[3] for row in reference["alerts"]}
        assert len(months_alerted) >= 6 and reference_mail, months_alerted  # the demo alerts in most months

        # (b) twelve processes at once, on a copy of the same loaded state
        env = dict(os.environ)
        env.update(PYTHONPATH=f"{REPO / 'plugins'}:{REPO / 'demo'}", VBP_DATA_TEAM_EMAILS=DATA_TEAM_EMAIL,
                   VBP_OUTPUT_DIR=str(tmp_path / "parallel"),
                   AIRFLOW_CONN_SMTP_DEFAULT=parallel_smtp.connection_json())
        env.pop("VBP_SMTP_CONN_ID", None)
        started = time.monotonic()
        processes = [subprocess.Popen([sys.executable, "-c", WORKER, parallel_url, day], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for day in DAYS]
        outcomes = [(day, process.wait(timeout=600), *process.communicate()) for day, process in
                    zip(DAYS, processes)]
        elapsed = time.monotonic() - started
        failed = [(day, code, err[-3000:]) for day, code, _, err in outcomes if code != 0]
        # collisions the code retried (the facts cache of a month two runs need: rules/purchase_facts.py)
        retried = sum(err.count("collided with another build") for _, _, _, err in outcomes)

        engine = db.get_engine(parallel_url)
        parallel = dump(engine) if not failed else {}
        parallel_mail = emails(parallel_smtp)
        audit = audit_mail(engine, parallel_smtp)
        wrong_period = subject_periods(parallel_smtp).count("")
        engine.dispose()
        db.get_engine.cache_clear()

        mismatched = sum(len(set(map(repr, reference[n])) ^ set(map(repr, parallel.get(n, [])))) for n in reference)
        lost_mail = Counter(reference_mail) - Counter(parallel_mail)
        extra_mail = Counter(parallel_mail) - Counter(reference_mail)
        keys = [row[0] for row in parallel.get("alerts", [])]
        fault_table.append({
            "case": "12 monthly runs at once, 12 processes", "db": "postgresql", "faults": f"12 at once, {retried} retried",
            "expected": f"runs one by one: {len(reference['alerts'])} alerts in {len(months_alerted)} months, "
                        f"{len(reference_mail)} emails",
            "ended": (f"{len(failed)} processes failed" if failed else "all exit 0")
                     + f", {len(parallel_mail)} emails, {elapsed:.0f} s",
            "lost": sum(lost_mail.values()) + max(0, audit.lost - baseline.lost),
            "duplicates": sum(extra_mail.values()) + audit.duplicates + len(keys) - len(set(keys)),
            "mislabelled": wrong_period + audit.mislabelled,
            "mismatched": mismatched})
        assert failed == [], failed
        assert {n: len(rows) for n, rows in parallel.items()} == {n: len(rows) for n, rows in reference.items()}
        assert parallel == reference
        assert parallel_mail == reference_mail
        assert len({mail.message_id for mail in parallel_smtp.messages}) == len(parallel_smtp.messages)
        # audit_mail's (address, open alert) pairs no email carried: the runs one by one leave the same
        # one — the ingest's own DATA_QUALITY alert (period = the ingest day), which the ingest DAG
        # mails, not a monthly run
        assert audit.lost == baseline.lost, (audit, baseline)
        assert (audit.duplicates, audit.copies, audit.mislabelled, wrong_period) == (0, 0, 0, 0)
    finally:
        parallel_smtp.stop()
        db.get_engine.cache_clear()
        for name in names:
            pg_database(name, drop=True)
