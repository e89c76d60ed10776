"""The alert store: deterministic keys, upsert on re-raise, resolution within scope."""
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from vbp_monitor.alerts.store import AlertStore, Scope, alert_key
from vbp_monitor.model.schema import alerts

T0 = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)


def _candidate(institution="H1", branch="B1", metric="0.24", **extra):
    row = {
        "rule_code": "PROGRESS_BEHIND", "severity": "warning", "branch_code": branch,
        "institution_code": institution, "batch_code": "NB1", "generic_name": "氨氯地平",
        "metric_value": Decimal(metric), "threshold_value": Decimal("0.3156"),
        "message": f"{institution} 完成率 {metric}",
    }
    row.update(extra)
    return row


def _rows(conn):
    return {r.institution_code: r for r in conn.execute(select(alerts)).all()}


def test_key_is_deterministic_and_null_is_explicit():
    a = {"rule_code": "X", "period": "2025-02", "branch_code": "B1", "order_id": None}
    b = {"rule_code": "X", "period": "2025-02", "branch_code": "B1", "order_id": ""}
    assert alert_key(a) == alert_key(dict(a))
    assert alert_key(a) != alert_key(b)


def test_rerun_updates_in_place_and_keeps_first_raised_and_notified(engine):
    first = AlertStore("vbp_monthly_monitoring", "run-1", "2025-02", now=T0)
    with engine.begin() as conn:
        result = first.replace(conn, ["PROGRESS_BEHIND"], [_candidate()])
        assert (result.raised, result.new, result.resolved) == (1, 1, 0)
        conn.execute(alerts.update().values(notified_at=T0))
    second = AlertStore("vbp_monthly_monitoring", "run-2", "2025-02", now=T0 + dt.timedelta(hours=1))
    with engine.begin() as conn:
        result = second.replace(conn, ["PROGRESS_BEHIND"], [_candidate(metric="0.20")])
        assert (result.raised, result.new, result.resolved) == (1, 0, 0)
        (row,) = conn.execute(select(alerts)).all()
    assert row.run_id == "run-2" and row.status == "open"
    assert Decimal(row.metric_value) == Decimal("0.2")
    assert row.first_raised_at.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert row.notified_at is not None


def test_alerts_no_longer_raised_are_resolved_only_within_dag_period_codes_and_scope(engine):
    store = AlertStore("vbp_monthly_monitoring", "r1", "2025-02", now=T0)
    other_period = AlertStore("vbp_monthly_monitoring", "r0", "2025-01", now=T0)
    with engine.begin() as conn:
        store.replace(conn, ["PROGRESS_BEHIND"], [_candidate("H1"), _candidate("H2", branch="B2")])
        other_period.replace(conn, ["PROGRESS_BEHIND"], [_candidate("H1")])
    # a branch-restricted rerun that no longer raises anything for B1
    rerun = AlertStore("vbp_monthly_monitoring", "r2", "2025-02", now=T0 + dt.timedelta(days=1))
    with engine.begin() as conn:
        result = rerun.replace(conn, ["PROGRESS_BEHIND"], [], scope=Scope(branch_code="B1"))
        assert result.resolved == 1
        statuses = {(r.period, r.institution_code): r.status for r in conn.execute(select(alerts)).all()}
    assert statuses == {
        ("2025-02", "H1"): "resolved",
        ("2025-02", "H2"): "open",  # other branch: outside the operator's scope
        ("2025-01", "H1"): "open",  # other period
    }


def test_unknown_rule_code_or_severity_is_refused(engine):
    store = AlertStore("d", "r", "2025-02", now=T0)
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown severity urgent"):
        store.replace(conn, ["PROGRESS_BEHIND"], [_candidate(severity="urgent")])
    # listed among the write's codes, so only the catalog check can stop it
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown rule code NOT_A_RULE"):
        store.replace(conn, ["NOT_A_RULE"], [_candidate(rule_code="NOT_A_RULE")])
    with engine.begin() as conn, pytest.raises(ValueError, match="not among this write's rule codes"):
        store.replace(conn, ["PROGRESS_BEHIND"], [_candidate(rule_code="PAYMENT_OVERDUE", severity="high")])
    with engine.connect() as conn:
        assert conn.execute(select(alerts)).all() == []
