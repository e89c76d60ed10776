"""Mail under faults, against real SMTP servers on loopback that misbehave (tests/fixtures_smtp.py).

Each case ends with an audit of what the server received against what every address must get
(``audit_mail``): no alert lost, none twice, every email under its own period; the module prints
the summary table (cases, faults injected, alerts, lost, duplicates, copies, mislabelled).
"""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import func, select

from fixtures_smtp import DATA_TEAM_EMAIL, log_text, period_files, raise_alerts, record_case, sample_alerts
from vbp_monitor.core.periods import judged_month
from vbp_monitor.model.schema import alert_deliveries, alerts
from vbp_monitor.notify import mailer
from vbp_monitor.notify.mailer import NotificationError, notify_run, notify_task_failure
from vbp_monitor.orchestration.run_context import RunContext

DAG = "vbp_monthly_monitoring"
B1, B2, B2B, CITY = "b1@example.org", "b2@example.org", "b2b@example.org", "city@example.org"
EVERYONE_ONCE = {B1: 1, B2: 1, B2B: 1, CITY: 1, DATA_TEAM_EMAIL: 1}


def _run(month: int, **kwargs) -> RunContext:
    period = judged_month(dt.date(2025, month + 1, 3))
    return RunContext.for_test(DAG, period, run_id=f"scheduled__{period.label}", **kwargs)


def _unnotified(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(alerts).where(
            alerts.c.status == "open", alerts.c.notified_at.is_(None))).scalar_one()


def _delivery_keys(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(alert_deliveries.c.audience)).scalars())


def _assert_clean(audit) -> None:
    assert (audit.lost, audit.duplicates, audit.mislabelled, audit.unnotified) == (0, 0, 0, 0), audit


def test_two_periods_unnotified_each_run_mails_only_its_own_period(mail_city, smtp_server, tmp_path,
                                                                    mail_fault_table, mail_log):
    june, july = _run(6), _run(7)
    raise_alerts(mail_city, june, sample_alerts("六月"))
    smtp_server.stop()
    smtp_server.note("down")
    with pytest.raises(NotificationError):  # June's notify failed: its alerts wait for its retry
        notify_run(mail_city, june, attachments=period_files(tmp_path, "2025-06"))
    smtp_server.start()

    raise_alerts(mail_city, july, sample_alerts("七月"))
    result = notify_run(mail_city, july, attachments=period_files(tmp_path, "2025-07"))
    assert result["alerts"] == 5 and smtp_server.per_recipient() == EVERYONE_ONCE
    for mail in smtp_server.messages:  # July only, under July, with July's files
        assert "2025年7月" in mail.subject and "六月" not in mail.html()
        assert not [name for name in mail.attachments() if "2025-06" in name]
    assert _unnotified(mail_city) == 5
    assert "alerts of other periods are still un-notified (2025-06: 5)" in log_text(mail_log)

    # June's retry: June's alerts, under June, with June's files
    assert notify_run(mail_city, june, attachments=period_files(tmp_path, "2025-06"))["alerts"] == 5
    june_mails = [mail for mail in smtp_server.messages if "2025年6月" in mail.subject]
    assert len(june_mails) == 4
    assert "执行报表_B2_2025-06.xlsx" in next(m for m in june_mails if m.audience == "branch:B2").attachments()

    _assert_clean(record_case(mail_fault_table, "two periods un-notified, later run first", mail_city,
                              smtp_server, faults=1))


def test_smtp_down_for_a_whole_run_keeps_every_alert_for_the_next_attempt(mail_city, smtp_server,
                                                                          mail_fault_table):
    run = _run(6)
    raise_alerts(mail_city, run, sample_alerts("六月"))
    smtp_server.stop()
    smtp_server.note("down")

    with pytest.raises(NotificationError, match="unreachable"):
        notify_run(mail_city, run)
    assert _unnotified(mail_city) == 5 and _delivery_keys(mail_city) == set()  # no claim left behind

    smtp_server.start()
    assert notify_run(mail_city, run)["emails"] == 4
    assert notify_run(mail_city, run)["emails"] == 0
    assert smtp_server.per_recipient() == EVERYONE_ONCE
    _assert_clean(record_case(mail_fault_table, "SMTP down for a whole run", mail_city, smtp_server, faults=1))


def test_a_refused_address_keeps_its_alerts_pending_for_that_address_only(mail_city, smtp_server,
                                                                          mail_fault_table, mail_log):
    run = _run(6)
    raise_alerts(mail_city, run, sample_alerts("六月"))
    smtp_server.refuse_recipient(B2B)  # 550 at RCPT TO: b2@ gets the email, b2b@ does not

    with pytest.raises(NotificationError, match=B2B) as refused:
        notify_run(mail_city, run)
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, CITY: 1, DATA_TEAM_EMAIL: 1}
    assert _unnotified(mail_city) == 2  # B2's two alerts: not counted as notified for branch:B2
    keys = _delivery_keys(mail_city)
    assert "branch:B2" not in keys and f"branch:B2|{B2}" in keys and f"branch:B2|{B2B}" not in keys
    # the task log says what went where and which address refused
    assert f"sent branch:B2 to {B2}: 2 alerts" in log_text(mail_log)
    assert any(r.levelno == logging.ERROR and B2B in r.getMessage() and "550" in r.getMessage()
               for r in mail_log)

    # the retry while the address is still refused: nothing again to b2@, still failing
    with pytest.raises(NotificationError, match=B2B):
        notify_run(mail_city, run)
    assert smtp_server.per_recipient()[B2] == 1
    # after the last retry the data team hears of it: the failure email names the address
    notify_task_failure({"exception": refused.value, "run_id": run.run_id})
    assert B2B in smtp_server.to(DATA_TEAM_EMAIL)[-1].html()

    smtp_server.accept_all()  # the branch fixed its mailbox: the next attempt sends to b2b@ alone
    assert notify_run(mail_city, run) == {"emails": 1, "alerts": 2, "audiences": ["branch:B2"]}
    (b2_mail,), (b2b_mail,) = smtp_server.to(B2), smtp_server.to(B2B)
    assert b2b_mail.rcpt_tos == [B2B] and b2b_mail.message_id == b2_mail.message_id
    assert _unnotified(mail_city) == 0
    assert not [key for key in _delivery_keys(mail_city) if "|" in key]  # one row per alert and audience
    faults = smtp_server.faults["refused_rcpt"]
    _assert_clean(record_case(mail_fault_table, "550 for one of a branch's two addresses", mail_city,
                              smtp_server, faults=faults))


def test_a_connection_dropped_after_the_server_stored_a_message_is_resumed(mail_city, smtp_server,
                                                                           mail_fault_table, mail_log):
    run = _run(6)
    raise_alerts(mail_city, run, sample_alerts("六月"))
    smtp_server.drop_after_storing(1)  # the first email is stored but its 250 never arrives

    assert notify_run(mail_city, run)["emails"] == 4  # reconnected: nothing waits for a retry
    assert "reconnecting" in log_text(mail_log)
    # b1@ holds two copies of one email with one Message-ID: a mail client shows one
    assert smtp_server.per_recipient()[B1] == 2
    assert smtp_server.distinct_per_recipient() == EVERYONE_ONCE
    assert _unnotified(mail_city) == 0
    audit = record_case(mail_fault_table, "connection dropped after storing", mail_city, smtp_server, faults=1)
    _assert_clean(audit)
    assert audit.copies == 1


def test_a_connection_dropped_mid_message_is_resumed_without_a_copy(mail_city, smtp_server, mail_fault_table):
    run = _run(6)
    raise_alerts(mail_city, run, sample_alerts("六月"))
    smtp_server.drop_before_storing(2)

    assert notify_run(mail_city, run)["emails"] == 4
    assert smtp_server.per_recipient() == EVERYONE_ONCE
    audit = record_case(mail_fault_table, "connection dropped mid-message (×2)", mail_city, smtp_server, faults=2)
    _assert_clean(audit)
    assert audit.copies == 0


def test_after_a_drop_the_next_attempt_sends_the_same_message_id(mail_city, smtp_server, mail_fault_table,
                                                                  monkeypatch):
    run = _run(6)
    raise_alerts(mail_city, run, sample_alerts("六月"))
    smtp_server.drop_after_storing(1)
    monkeypatch.setattr(mailer, "MAX_CONNECTIONS", 1)  # no reconnect within the attempt

    with pytest.raises(NotificationError):
        notify_run(mail_city, run)
    (stored,) = smtp_server.messages
    assert _unnotified(mail_city) == 5  # the client never heard the 250: nothing counted as sent

    monkeypatch.setattr(mailer, "MAX_CONNECTIONS", 4)
    assert notify_run(mail_city, run)["emails"] == 4  # the task's retry
    again = [mail for mail in smtp_server.messages if mail.audience == stored.audience]
    assert len(again) == 2 and {mail.message_id for mail in again} == {stored.message_id}
    assert smtp_server.distinct_per_recipient() == EVERYONE_ONCE
    audit = record_case(mail_fault_table, "drop, then the task's retry", mail_city, smtp_server, faults=1)
    _assert_clean(audit)
    assert audit.copies == 1
