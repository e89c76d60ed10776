"""Builders shared by the monthly-monitoring tests (DAG 2). Holds no tests itself.

The city of ``helpers.city()``: branches B1 (H1 public, M1 military) and B2 (H2 public,
P1 private); batch NB1 (drug, 2025-01-01, 24 months); P-AML-S selected at 0.50 and
P-AML-N non-selected, both 氨氯地平.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from vbp_monitor.rules.monitoring import DAG_ID
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.model.schema import alerts, institution_file_metrics

GENERIC = "氨氯地平"


def order(order_id, institution, quantity, when, product="P-AML-S", channel="platform",
          price="0.50", cancelled="false", acceptance=None):
    quantity, price = Decimal(str(quantity)), Decimal(str(price))
    if len(when) == 10:
        when += " 10:00:00"
    return {"order_id": order_id, "institution_code": institution, "product_code": product,
            "distributor_code": "D1", "channel": channel, "order_time": when,
            "quantity": str(quantity), "unit_price": str(price), "amount": str(quantity * price),
            "cancelled": cancelled, "acceptance_date": acceptance}


def agreement(agreement_id, institution, start="2025-01-01", end="2025-12-31", quantity=1000,
              ratio="0.6", batch="NB1", generic=GENERIC, amount="500"):
    return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "period_start": start, "period_end": end,
            "agreed_quantity": str(quantity), "agreed_ratio": str(ratio), "agreed_amount": amount}


def product(code, generic=GENERIC, manufacturer="丙药业", selected=False, price=None, batch=None,
            category="drug", passed=True):
    return {"product_code": code, "generic_name": generic, "manufacturer": manufacturer,
            "category": category, "consistency_passed": "true" if passed else "false",
            "is_selected": "true" if selected else "false", "batch_code": batch,
            "selected_price": price}


def batch(code, start, months=24, category="drug"):
    return {"batch_code": code, "batch_name": f"批次{code}", "level": "provincial",
            "category": category, "start_date": start, "cycle_months": months}


def institution(code, branch="B1", ownership="public"):
    return {"institution_code": code, "institution_name": f"{code}医院", "branch_code": branch,
            "ownership": ownership}


def run_for(month: str, run_id: str = "test", **kwargs) -> RunContext:
    """The run that judges ``month`` ('YYYY-MM'): D = the first day of the next month."""
    first = dt.date.fromisoformat(month + "-01")
    return RunContext.for_test(DAG_ID, judged_month(add_months(first, 1)), run_id=run_id, **kwargs)


def open_alerts(engine, rule_code=None) -> list[dict]:
    query = select(alerts).where(alerts.c.status == "open")
    if rule_code:
        query = query.where(alerts.c.rule_code == rule_code)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(alerts.c.alert_key)).mappings()]


def all_alerts(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).order_by(alerts.c.alert_key)).mappings().all()
    return [dict(row) for row in rows]


def by_subject(rows, *fields) -> dict:
    return {tuple(row[f] for f in fields) if len(fields) > 1 else row[fields[0]]: row for row in rows}


def metrics(engine, period: str) -> dict[str, dict]:
    query = select(institution_file_metrics).where(institution_file_metrics.c.period == period)
    with engine.connect() as conn:
        return {row["agreement_id"]: dict(row) for row in conn.execute(query).mappings()}


def num(value) -> Decimal:
    """A stored figure as an exact Decimal rounded to 4 places (SQLite gives floats)."""
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value).quantize(Decimal("0.0001"))


def business(rows: list[dict]) -> list[dict]:
    """Alert rows without their audit columns (operations.md › Idempotency)."""
    audit = {"alert_id", "dag_id", "run_id", "first_raised_at", "last_raised_at", "notified_at"}
    return [{k: v for k, v in row.items() if k not in audit} for row in rows]
