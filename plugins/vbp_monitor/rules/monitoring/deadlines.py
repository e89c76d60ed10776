"""Order deadlines falling in M: OFFLINE_NOT_FILED / OFFLINE_FILED_LATE (filing within the
profile's working days, seed 002 §二(四)) and PAYMENT_OVERDUE (public: end of the month
after acceptance; military/private: the profile's days, seed 000 item 11, seed 001 §五(三)9).
Conditions: include/sql/monitoring_offline_filing.sql, monitoring_payment_overdue.sql."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.formatting import as_date, date_zh, decimal_of, money, quantity
from vbp_monitor.core.labels import OWNERSHIP_ZH, label
from vbp_monitor.core.periods import JudgedPeriod
from vbp_monitor.core.prc_calendar import STATUTORY, month_bounds
from vbp_monitor.rules.monitoring.common import (
    EPS,
    MonitoringSettings,
    candidate,
    institution_label,
    product_label,
)

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

NOT_FILED = "OFFLINE_NOT_FILED"
PAYMENT = "PAYMENT_OVERDUE"


def payment_acceptance_window(period: JudgedPeriod, private_days: int) -> tuple[dt.date, dt.date]:
    """Acceptance days whose payment deadline can fall in M (public: the month before M;
    military/private: M shifted back by ``private_days``)."""
    previous_first, previous_last = month_bounds(period.first_day - dt.timedelta(days=1))
    shifted_first = period.first_day - dt.timedelta(days=private_days)
    shifted_last = period.last_day - dt.timedelta(days=private_days)
    return min(previous_first, shifted_first), max(previous_last, shifted_last)


def filing_order_window(conn, period: JudgedPeriod, working_days: int) -> tuple[dt.date, dt.date] | None:
    (row,) = sqlfiles.query(conn, "monitoring_filing_window", month_start=period.first_day,
                            month_end=period.last_day, working_days=working_days)
    if row["order_from"] is None:
        return None
    return as_date(row["order_from"]), as_date(row["order_to"])


def _order_subject(row: dict) -> dict:
    return {"product_code": row["product_code"], "order_id": row["order_id"]}


def filing_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    days = settings.filing_working_days
    window = filing_order_window(conn, run.period, days)
    if window is None:
        return
    rows = sqlfiles.query(
        conn, "monitoring_offline_filing", month_start=run.period.first_day,
        month_end=run.period.last_day, order_from=window[0], order_to=window[1],
        working_days=days, branch_code=run.scope.branch_code,
    )
    for row in rows:
        code = row["rule_code"]
        order_day, deadline = as_date(row["order_date"]), as_date(row["filing_deadline"])
        body = (f"线下议价采购订单 {row['order_id']}（{date_zh(order_day)}，{product_label(row)}，"
                f"数量 {quantity(row['quantity'])}，金额 {money(row['amount'])}），"
                f"应在{days}个工作日内即{date_zh(deadline)}前备案")
        note = STATUTORY.fallback_note((order_day, deadline)) if row["uses_fallback"] else ""
        if code == NOT_FILED:
            body += (f"，截至{date_zh(run.period.last_day)}仍未备案。请督促医疗机构立即通过省医保信息平台"
                     f"招采子系统向市医疗保障局基金管理中心补办备案，并说明未在平台采购的原因。{note}")
            metric, threshold = Decimal(0), Decimal(1)
        else:
            metric, threshold = Decimal(int(row["filed_working_days"])), Decimal(days)
            body += (f"，实际于{date_zh(row['filed_date'])}备案（第 {metric} 个工作日），逾期备案。"
                     f"请提醒医疗机构今后在{days}个工作日内及时、规范、如实备案。{note}")
        yield candidate(code, row, settings.message(code, institution_label(row), body), metric, threshold,
                        **_order_subject(row))


def payment_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    accept_from, accept_to = payment_acceptance_window(run.period, settings.private_payment_days)
    # no JIT: compiling this plan costs about 0.5 s, more than it saves on a month's orders
    with planner_settings(conn, jit="off"):
        rows = sqlfiles.query(
            conn, "monitoring_payment_overdue", month_start=run.period.first_day,
            month_end=run.period.last_day, accept_from=accept_from, accept_to=accept_to,
            private_days=settings.private_payment_days, eps=EPS, branch_code=run.scope.branch_code,
        )
    for row in rows:
        unpaid = decimal_of(row["unpaid_amount"])
        ownership = row["ownership"]
        if ownership == "public":
            deadline_rule = "公立医疗机构应在交货验收合格后次月底前结清货款"
        else:
            deadline_rule = (f"{label(OWNERSHIP_ZH, ownership)}医疗机构应在交货验收合格后"
                             f"{settings.private_payment_days}天内结清货款")
        body = (
            f"平台订单 {row['order_id']}（{product_label(row)}，金额 {money(row['amount'])}）"
            f"于{date_zh(row['acceptance_date'])}验收，{deadline_rule}，即{date_zh(row['payment_deadline'])}前；"
            f"截至该日已付 {money(row['paid_amount'])}，未结清 {money(unpaid, breach='above')}。"
            f"请督促医疗机构立即结清货款，按合同约定及时回款。"
        )
        # the clause of the deadline that applied: it depends on the institution's ownership
        yield candidate(PAYMENT, row, settings.message(PAYMENT, institution_label(row), body, variant=ownership),
                        unpaid, Decimal(0), **_order_subject(row))
