"""What selected and sanctioned makers supplied, institution × product × M:
SELECTED_PRICE_EXCEEDED (bought above the selected price while the batch's cycle runs,
seed 002 §二(五), seed 000 item 4) and SANCTIONED_SUPPLIER_PURCHASE (a public institution
bought a product of a maker on the sanction list, seed 004 §二(二)).
Conditions: include/sql/monitoring_selected_price.sql, monitoring_sanctioned_supplier.sql."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.formatting import as_date, date_zh, decimal_of, money, month_zh, quantity
from vbp_monitor.core.periods import JudgedPeriod
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.rules.monitoring.common import (
    EPS,
    MonitoringSettings,
    candidate,
    institution_label,
    product_label,
)

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

PRICE_EXCEEDED = "SELECTED_PRICE_EXCEEDED"
SANCTIONED = "SANCTIONED_SUPPLIER_PURCHASE"


def price_exceeded_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    rows = sqlfiles.query(conn, "monitoring_selected_price", month_start=run.period.first_day,
                          month_end=run.period.last_day, eps=EPS, branch_code=run.scope.branch_code)
    for row in rows:
        selected_price, highest = decimal_of(row["selected_price"]), decimal_of(row["highest_unit_price"])
        body = (
            f"{month_zh(run.period.first_day)}采购中选产品{product_label(row)}（{row['manufacturer']}，"
            f"批次 {row['batch_code']}，中选价 {money(selected_price)}）{row['line_count']} 笔订单行的单价高于中选价，"
            f"数量 {quantity(row['quantity'])}，金额 {money(row['amount'])}，"
            f"最高采购单价 {money(highest, breach='above')}，"
            f"高于中选价的金额合计 {money(row['excess_amount'], breach='above')}。"
            "超出协议采购量的部分，中选生产企业仍应按中选价格供应，直至采购周期届满："
            "请核实采购价格，督促中选企业、配送企业按中选价供应，并向市医疗保障局报告不按协议供应的企业。"
        )
        yield candidate(PRICE_EXCEEDED, row, settings.message(PRICE_EXCEEDED, institution_label(row), body),
                        highest, selected_price, product_code=row["product_code"],
                        generic_name=row["generic_name"])


def sanction_window(period: JudgedPeriod, years: int) -> dict:
    """The dates ``monitoring_sanctioned_supplier.sql`` places a blank sanction end with
    (see there): the month 12 × ``years`` months before M, the next one, and the days from
    the first to M's first day."""
    window_start = add_months(period.first_day, -12 * years)
    return {
        "window_start": window_start,
        "window_next": add_months(window_start, 1),
        "shift_days": (period.first_day - window_start).days,
        "month_end_eve": period.last_day - dt.timedelta(days=1),
    }


def sanction_end(start: dt.date, end: dt.date | None, years: int) -> dt.date:
    """The last day of a sanction: ``end``, or start + ``years`` years − 1 day when blank.
    (For the message only: the SQL places the days itself.)"""
    return end if end is not None else add_months(start, 12 * years) - dt.timedelta(days=1)


def _sanctions_of(conn, makers: set[str], years: int) -> dict[str, list[tuple[dt.date, dt.date, str | None]]]:
    """The sanction rows of ``makers`` (a few rows), for the messages."""
    from vbp_monitor.model.schema import supplier_sanctions as table

    if not makers:
        return {}
    out: dict[str, list[tuple[dt.date, dt.date, str | None]]] = {}
    query = (select(table.c.manufacturer, table.c.sanction_start, table.c.sanction_end, table.c.reason)
             .where(table.c.manufacturer.in_(sorted(makers))).order_by(table.c.sanction_start))
    for maker, start, end, reason in conn.execute(query):
        start = as_date(start)
        out.setdefault(maker, []).append((start, sanction_end(start, as_date(end), years), reason))
    return out


def sanctioned_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    years = settings.sanction_years
    rows = sqlfiles.query(conn, "monitoring_sanctioned_supplier", month_start=run.period.first_day,
                          month_end=run.period.last_day, branch_code=run.scope.branch_code,
                          **sanction_window(run.period, years))
    sanctions = _sanctions_of(conn, {row["manufacturer"] for row in rows}, years)
    first, last = run.period.first_day, run.period.last_day
    for row in rows:
        amount = decimal_of(row["amount"])
        spans = [f"{date_zh(start)}至{date_zh(end)}" + (f"（{reason}）" if reason else "")
                 for start, end, reason in sanctions.get(row["manufacturer"], []) if start <= last and end >= first]
        body = (
            f"{month_zh(first)}采购{product_label(row)}，生产企业{row['manufacturer']}列入失信企业名单"
            f"（处理期 {'；'.join(spans)}），处理期内采购 {row['line_count']} 笔订单行"
            f"（{date_zh(row['first_day'])}至{date_zh(row['last_day'])}），数量 {quantity(row['quantity'])}，"
            f"金额 {money(amount)}。失信企业所有产品{years}年内不得参加本市公立医疗机构药品和医用耗材集中采购："
            "请督促医疗机构立即停止采购该企业产品，改为采购其他企业的中选或挂网产品。"
        )
        yield candidate(SANCTIONED, row, settings.message(SANCTIONED, institution_label(row), body),
                        amount, Decimal(0), product_code=row["product_code"], generic_name=row["generic_name"])
