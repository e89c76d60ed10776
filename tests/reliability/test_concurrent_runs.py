"""Runs at once never mail an alert twice, and a claim never loses one.

Threads against the warehouse (PostgreSQL and SQLite) and a slow SMTP server on loopback
(1.5 s per message), as in a parallel backfill: each run claims what it sends in
``alert_deliveries`` before sending (see notify/mailer.py).
"""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import insert, select

from fixtures_smtp import DATA_TEAM_EMAIL, period_files, raise_alerts, record_case, sample_alerts
from vbp_monitor.core.periods import judged_month
from vbp_monitor.model.schema import alert_deliveries, alerts
from vbp_monitor.notify import mailer
from vbp_monitor.notify.mailer import NotificationError, address_key, notify_run
from vbp_monitor.orchestration.run_context import RunContext

DAG = "vbp_monthly_monitoring"
SLOW_SECONDS = 1.5
ADDRESSES = ("b1@example.org", "b2@example.org", "b2b@example.org", "city@example.org", DATA_TEAM_EMAIL)


def _period(month: int):
    return judged_month(dt.date(2025, month + 1, 3))


def _at_once(jobs) -> list:
    """Run the callables in threads released together; every result (or the exception raised)."""
    barrier = threading.Barrier(len(jobs))

    def start(job):
        barrier.wait()
        try:
            return job()
        except Exception as exc:  # collected: the test says which ones may fail
            return exc

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(start, jobs))


def test_four_monthly_runs_at_once_each_mail_their_own_period_once(mail_city, smtp_server, tmp_path,
                                                                   mail_fault_table):
    smtp_server.delay = SLOW_SECONDS
    runs = [RunContext.for_test(DAG, _period(month), run_id=f"backfill__{_period(month).label}")
            for month in (6, 7, 8, 9)]

    def judge_and_notify(run):
        raise_alerts(mail_city, run, sample_alerts(run.period.label))
        return notify_run(mail_city, run, attachments=period_files(tmp_path, run.period.label))

    results = _at_once([lambda run=run: judge_and_notify(run) for run in runs])

    assert [result["alerts"] for result in results] == [5, 5, 5, 5], results
    assert smtp_server.per_recipient() == dict.fromkeys(ADDRESSES, 4)  # one email per period each
    for run in runs:
        label = run.period.label
        subjects = [mail.subject for mail in smtp_server.messages if label in mail.html()]
        assert len(subjects) == 4 and all(f"2025年{int(label[5:])}月" in s for s in subjects)
    audit = record_case(mail_fault_table, "4 monthly runs at once, slow SMTP", mail_city, smtp_server,
                        faults=f"slow ×{len(smtp_server.messages)}")
    assert (audit.lost, audit.duplicates, audit.copies, audit.mislabelled, audit.unnotified) == (0, 0, 0, 0, 0)


def test_four_runs_of_one_period_at_once_mail_each_alert_once(mail_city, smtp_server, mail_fault_table):
    smtp_server.delay = SLOW_SECONDS
    period = _period(6)
    raise_alerts(mail_city, RunContext.for_test(DAG, period), sample_alerts("六月"))
    # a scheduled run, an operator's trigger, a backfill and a retry of the same month
    runs = [RunContext.for_test(DAG, period, run_id=f"{kind}__{period.label}")
            for kind in ("scheduled", "manual", "backfill", "retry")]

    results = _at_once([lambda run=run: notify_run(mail_city, run) for run in runs])

    assert not [result for result in results if isinstance(result, Exception)], results
    assert sum(result["emails"] for result in results) == 4
    assert smtp_server.per_recipient() == dict.fromkeys(ADDRESSES, 1)
    audit = record_case(mail_fault_table, "4 runs of one period at once, slow SMTP", mail_city, smtp_server,
                        faults=f"slow ×{len(smtp_server.messages)}")
    assert (audit.lost, audit.duplicates, audit.copies, audit.mislabelled, audit.unnotified) == (0, 0, 0, 0, 0)
    with mail_city.connect() as conn:  # no claim left: one row per alert and audience
        keys = list(conn.execute(select(alert_deliveries.c.audience)).scalars())
    assert len(keys) == 4 * 2 + 1 and not [key for key in keys if "|" in key]


def _claim_b1(engine, token: str, age: dt.timedelta) -> None:
    """Another attempt's claim on B1's alerts for b1@, taken ``age`` ago."""
    with engine.begin() as conn:
        ids = conn.execute(select(alerts.c.alert_id).where(alerts.c.branch_code == "B1")).scalars().all()
        conn.execute(insert(alert_deliveries), [
            {"alert_id": alert_id, "audience": address_key("branch:B1", "b1@example.org"),
             "sent_at": dt.datetime.now(dt.UTC) - age, "message_id": token} for alert_id in ids])


def test_a_claim_of_an_attempt_that_died_is_taken_over(mail_city, smtp_server, mail_fault_table):
    run = RunContext.for_test(DAG, _period(6))
    raise_alerts(mail_city, run, sample_alerts("六月"))
    _claim_b1(mail_city, "claim:dead-attempt", mailer.CLAIM_TTL + dt.timedelta(minutes=1))

    assert notify_run(mail_city, run)["emails"] == 4
    assert smtp_server.per_recipient() == dict.fromkeys(ADDRESSES, 1)
    audit = record_case(mail_fault_table, "claim left by a dead attempt", mail_city, smtp_server, faults=1)
    assert (audit.lost, audit.duplicates, audit.unnotified) == (0, 0, 0)


def test_a_claim_held_by_a_live_attempt_is_waited_for_not_sent_twice(mail_city, smtp_server, monkeypatch):
    run = RunContext.for_test(DAG, _period(6))
    raise_alerts(mail_city, run, sample_alerts("六月"))
    _claim_b1(mail_city, "claim:live-attempt", dt.timedelta(seconds=1))
    monkeypatch.setattr(mailer, "CLAIM_WAIT_SECONDS", 1.0)

    # the live attempt never confirms within the wait: this attempt sends the rest and fails,
    # so that its retry checks B1's alerts again (they are not lost, and not sent twice)
    with pytest.raises(NotificationError, match="another attempt"):
        notify_run(mail_city, run)
    assert "b1@example.org" not in smtp_server.per_recipient()
    assert smtp_server.per_recipient()["city@example.org"] == 1

    with mail_city.begin() as conn:  # the live attempt failed and released its claim
        conn.execute(alert_deliveries.delete().where(alert_deliveries.c.message_id == "claim:live-attempt"))
    assert notify_run(mail_city, run)["audiences"] == ["branch:B1"]
    assert smtp_server.per_recipient() == dict.fromkeys(ADDRESSES, 1)
