"""DAG 6 · 配送响应 (order-response watch) — domain.md DAG 6, seed 002 §二(六).

The run with logical date D judges the day J = D − 1, over platform orders that are not
cancelled:

* ``ORDER_RESPONSE_OVERDUE``: the response mark (order_time + ``response_hours``) falls on J
  and the order had no response at or before the mark. These orders form J's delay list
  (延迟响应清单), written per branch as a spreadsheet grouped by distributor.
* ``ORDER_RESPONSE_ESCALATED`` (critical in the catalog, so the city bureau hears of it too):
  the order's escalation day is J and it had no response by the end of J. The branch has
  the first working day after the mark's day (the "list day") to send the list to the
  distributor, and the distributor ``distributor_grace_hours`` more: the escalation day is
  the calendar day after the list day (``ceil(distributor_grace_hours / 24)`` days after it).

Working days come from the one PRC calendar (``model.calendar_tables.load_calendar``): Python
finds the few mark days whose escalation day is J and binds the matching order_time window;
the order-level work stays in SQL (one query, ``response_late_orders.sql``, for both rules).

Figures (profile ``[order_response]``, default 48 h and 24 h): OVERDUE metric = hours the
order went without a response as of the end of J (or its actual response delay when it was
answered late within J), threshold = response_hours. ESCALATED metric = hours without a
response as of the end of the escalation day, threshold = response_hours + grace hours (the
policy's hours; the list day in between depends on the calendar and is named in the message).
"""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.formatting import as_datetime, date_iso, datetime_local, decimal_of, hours, rounded
from vbp_monitor.core.prc_calendar import WorkCalendar
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.calendar_tables import load_calendar
from vbp_monitor.outputs.run_files import run_file_path, run_folder
from vbp_monitor.outputs.spreadsheets import Sheets, write_branch_files
from vbp_monitor.quality.validation import Where

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

DAG_ID, FILE_PREFIX = "vbp_order_response", "延迟响应清单"
OVERDUE, ESCALATED = RULE_CODES = DAGS[DAG_ID].rule_codes
assert RULE_CODES == ("ORDER_RESPONSE_OVERDUE", "ORDER_RESPONSE_ESCALATED"), RULE_CODES
# Hours as the alerts keep them (4 places: 48 h 1 s is 48.0003 > 48).
HOURS, EPS = Decimal("0.0001"), 1e-9
# Longest run of consecutive non-working days we look back over (Spring Festival is ~9).
MAX_NON_WORKING_RUN = 60


@dataclass(frozen=True)
class ResponseSettings:
    response_hours: int  # 48: the response mark after the order
    grace_hours: int  # 24: the distributor's time after the delay list was sent

    @classmethod
    def from_profile(cls, profile: dict) -> ResponseSettings:
        section = profile["order_response"]
        return cls(int(section["response_hours"]), int(section["distributor_grace_hours"]))

    @property
    def grace_days(self) -> int:
        """Calendar days from the list day to the escalation day (24 h → the next day)."""
        return max(1, math.ceil(self.grace_hours / 24))

    @property
    def escalation_hours(self) -> int:
        return self.response_hours + self.grace_hours


@dataclass(frozen=True)
class OrderWindow:
    """Orders whose response mark falls on one of ``mark_days`` (consecutive days)."""

    mark_days: tuple[dt.date, ...]
    window_start: dt.datetime
    window_end: dt.datetime

    @classmethod
    def for_mark_days(cls, mark_days, settings: ResponseSettings) -> OrderWindow:
        days = tuple(sorted(mark_days))
        lag = dt.timedelta(hours=settings.response_hours)
        start = dt.datetime.combine(days[0], dt.time()) - lag
        end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time()) - lag
        return cls(days, start, end)

    @property
    def first_order_day(self) -> dt.date:
        return self.window_start.date()

    @property
    def last_order_day(self) -> dt.date:
        return (self.window_end - dt.timedelta(microseconds=1)).date()

    def params(self) -> dict:
        return {"window_start": self.window_start, "window_end": self.window_end,
                "first_order_day": self.first_order_day, "last_order_day": self.last_order_day}


@dataclass(frozen=True)
class Timeline:
    """One order's dates: the mark, the branch's list day and the escalation day."""

    mark: dt.datetime
    list_day: dt.date
    escalation_day: dt.date
    note: str  # fallback_note when a day involved used the Monday–Friday fallback

    @property
    def mark_day(self) -> dt.date:
        return self.mark.date()


def timeline(cal: WorkCalendar, order_time: dt.datetime, settings: ResponseSettings) -> Timeline:
    mark = order_time + dt.timedelta(hours=settings.response_hours)
    list_day = cal.nth_working_day_after(mark.date(), 1)
    escalation_day = list_day + dt.timedelta(days=settings.grace_days)
    return Timeline(mark, list_day, escalation_day,
                    cal.fallback_note([mark.date(), list_day, escalation_day]))


def overdue_window(judged: dt.date, settings: ResponseSettings) -> OrderWindow:
    return OrderWindow.for_mark_days([judged], settings)


def escalation_mark_days(cal: WorkCalendar, judged: dt.date, settings: ResponseSettings) -> list[dt.date]:
    """Mark days whose escalation day is ``judged``.

    The list day must be ``judged − grace_days`` and a working day; its mark days are the
    days from the previous working day up to the day before it (each has it as the first
    working day strictly after).
    """
    list_day = judged - dt.timedelta(days=settings.grace_days)
    if not cal.is_working_day(list_day):
        return []
    days, day = [], list_day
    for _ in range(MAX_NON_WORKING_RUN):
        day -= dt.timedelta(days=1)
        days.append(day)
        if cal.is_working_day(day):
            break
    return sorted(days)


def escalation_window(cal: WorkCalendar, judged: dt.date, settings: ResponseSettings) -> OrderWindow | None:
    days = escalation_mark_days(cal, judged, settings)
    return OrderWindow.for_mark_days(days, settings) if days else None


# ------------------------------------------------------------------ figures
def hours_between(start: dt.datetime, end: dt.datetime) -> Decimal:
    """Exact hours from ``start`` to ``end``."""
    return Decimal((end - start) // dt.timedelta(microseconds=1)) / Decimal(3_600_000_000)


def _typed(rows: list[dict], judged_end: dt.datetime) -> list[dict]:
    """Typed rows, each with ``late_hours``: how long it went without a response by
    ``judged_end`` (or its actual delay when it was answered late before then)."""
    for row in rows:
        row["order_time"] = as_datetime(row["order_time"])
        row["response_time"] = as_datetime(row["response_time"])
        row["quantity"] = decimal_of(row["quantity"])
        row["amount"] = decimal_of(row["amount"])
        row["answered_late"] = row["response_time"] is not None and row["response_time"] < judged_end
        row["late_hours"] = (decimal_of(row["response_hours"]) if row["answered_late"]
                             else hours_between(row["order_time"], judged_end))
    return rows


# ------------------------------------------------------------------ validation
def validation_scope(conn, run: RunContext, settings: ResponseSettings) -> dict[str, Where | None]:
    judged = run.period.last_day
    windows = [overdue_window(judged, settings)]
    escalation = escalation_window(load_calendar(conn), judged, settings)
    if escalation:
        windows.append(escalation)
    return {
        "orders": Where("channel = 'platform' AND order_date >= :first_order_day AND order_date <= :last_order_day",
                        first_order_day=min(w.first_order_day for w in windows),
                        last_order_day=max(w.last_order_day for w in windows)),
        "products": None,
        "institutions": None,
    }


def validate(engine, run: RunContext, profile: dict | None = None) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    settings = ResponseSettings.from_profile(profile or load_profile())
    with engine.connect() as conn:
        scope = validation_scope(conn, run, settings)
    return validate_tables(engine, run, scope)


# ------------------------------------------------------------------ judging
def _order_label(row: dict) -> str:
    product = row["product_code"] + (f"（{row['generic_name']}）" if row.get("generic_name") else "")
    distributor = row["distributor_name"] or row["distributor_code"] or "未登记配送企业"
    if row["distributor_name"] and row["distributor_code"]:
        distributor = f"{row['distributor_name']}（{row['distributor_code']}）"
    return (f"{row['institution_name']}（{row['institution_code']}）订单 {row['order_id']}"
            f"（产品 {product}，配送企业 {distributor}）")


def _candidate(code: str, heading: str, row: dict, threshold: int, finding: str, profile: dict) -> dict:
    line: Timeline = row["timeline"]
    return {
        "rule_code": code, "severity": RULES[code].severity, "branch_code": row["branch_code"],
        "institution_code": row["institution_code"], "product_code": row["product_code"],
        "order_id": row["order_id"], "metric_value": rounded(row["late_hours"], HOURS),
        "threshold_value": Decimal(threshold),
        "message": (f"{heading}{_order_label(row)}于 {datetime_local(row['order_time'])} 下单，{finding}"
                    f"{line.note}依据：{cite(profile, code)}。"),
    }


def overdue_candidate(row: dict, judged: dt.date, settings: ResponseSettings, profile: dict) -> dict:
    line: Timeline = row["timeline"]
    h = settings.response_hours
    state = (f"于 {datetime_local(row['response_time'])} 才响应，响应用时 {hours(row['late_hours'])}"
             if row["answered_late"] else f"截至 {date_iso(judged)} 日终仍未响应，已 {hours(row['late_hours'])}未响应")
    finding = (
        f"至{h}小时节点 {datetime_local(line.mark)} 未响应（{state}，超过{h}小时）。"
        f"该订单列入 {date_iso(judged)} 延迟响应清单：请分局于 {date_iso(line.list_day)}"
        f"（节点日后第1个工作日）内汇总清单发送配送企业，督促及时配送到位；"
        f"配送企业再超过{settings.grace_hours}小时（{date_iso(line.escalation_day)} 日终）仍未响应的，"
        f"分局应报告市医疗保障局。"
    )
    return _candidate(OVERDUE, "【配送响应】", row, h, finding, profile)


def escalated_candidate(row: dict, judged: dt.date, settings: ResponseSettings, profile: dict) -> dict:
    line: Timeline = row["timeline"]
    h, grace = settings.response_hours, settings.grace_hours
    finding = (
        f"超过{h}小时未响应（节点 {datetime_local(line.mark)}），已列入 {date_iso(line.mark_day)} 延迟响应清单"
        f"（分局应于 {date_iso(line.list_day)} 发送配送企业）；配送企业被督促后再超过{grace}小时，"
        f"截至 {date_iso(judged)} 日终仍未响应（下单后已 {hours(row['late_hours'])}，限 {h}+{grace} 小时）。"
        f"分局应及时将相关情况报告市医疗保障局，通过约谈、暂停拨付结算款、建议生产企业取消配送企业的委托资格等方式，"
        f"督促配送企业切实落实配送计划。"
    )
    return _candidate(ESCALATED, "【配送响应·上报市局】", row, settings.escalation_hours, finding, profile)


def find_orders(conn, run: RunContext, settings: ResponseSettings, cal: WorkCalendar) -> tuple[list[dict], list[dict]]:
    """(delay list of J, orders escalated on J), each row with its ``timeline``."""
    judged = run.period.last_day
    end = dt.datetime.combine(judged + dt.timedelta(days=1), dt.time())  # J's end: "by the end of J" is < end
    common = {"response_hours": settings.response_hours, "eps": EPS, "branch_code": run.scope.branch_code}
    overdue = _typed(sqlfiles.query(conn, "response_late_orders", silent_until=None,
                                    **overdue_window(judged, settings).params(), **common), end)
    escalation = escalation_window(cal, judged, settings)
    escalated = [] if escalation is None else _typed(sqlfiles.query(
        conn, "response_late_orders", silent_until=end, **escalation.params(), **common), end)
    for row in overdue + escalated:
        row["timeline"] = timeline(cal, row["order_time"], settings)
    return overdue, escalated


def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Judge day J; write alerts and each branch's delay list."""
    profile = profile or load_profile()
    settings = ResponseSettings.from_profile(profile)
    judged = run.period.last_day
    with engine.begin() as conn:
        cal = load_calendar(conn)
        overdue, escalated = find_orders(conn, run, settings, cal)
        candidates = ([overdue_candidate(row, judged, settings, profile) for row in overdue]
                      + [escalated_candidate(row, judged, settings, profile) for row in escalated])
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
    attachments = write_branch_files(run_folder(DAG_ID, run.period.label), FILE_PREFIX, run.period.label,
                                     delay_list_workbooks(overdue, escalated, settings),
                                     scope_branch=run.scope.branch_code)
    return JudgeResult(period=run.period.label, rule_codes=RULE_CODES, written=written,
                       attachments=attachments, details={"overdue": len(overdue), "escalated": len(escalated)})


# ------------------------------------------------------------------ spreadsheets
def workbook_path(period_label: str, branch_code: str) -> Path:
    return run_file_path(DAG_ID, FILE_PREFIX, period_label, branch_code)


def _header(settings: ResponseSettings, last: str) -> list[str]:
    h = settings.response_hours
    return [
        "配送企业代码", "配送企业名称", "订单号", "医疗机构代码", "医疗机构名称", "产品代码", "通用名",
        "数量", "金额（元）", "下单时间", f"{h}小时节点", "响应时间", last,
        "分局发送清单截止日", f"升级判定日（再{settings.grace_hours}小时期满）",
    ]


def _sheet_row(row: dict) -> list:
    line: Timeline = row["timeline"]
    return [
        row["distributor_code"] or "", row["distributor_name"] or "（未登记）", row["order_id"],
        row["institution_code"], row["institution_name"], row["product_code"], row["generic_name"] or "",
        row["quantity"], row["amount"], datetime_local(row["order_time"]), datetime_local(line.mark),
        datetime_local(row["response_time"]) or "未响应",
        rounded(row["late_hours"], HOURS, breach="above"),  # past the limit: never reads as less
        line.list_day, line.escalation_day,
    ]


def _by_distributor(row: dict):
    return (row["distributor_code"] or "\uffff", row["order_time"], row["order_id"])


def delay_list_workbooks(overdue: list[dict], escalated: list[dict],
                         settings: ResponseSettings) -> dict[str, Sheets]:
    """Per branch: J's delay list grouped by distributor, a count per distributor, and the
    orders escalated on J."""
    workbooks: dict[str, Sheets] = {}
    for branch_code in sorted({row["branch_code"] for row in overdue + escalated}):
        delay = sorted((r for r in overdue if r["branch_code"] == branch_code), key=_by_distributor)
        late = sorted((r for r in escalated if r["branch_code"] == branch_code), key=_by_distributor)
        sheets: Sheets = {}
        if delay:
            sheets["延迟响应清单"] = (_header(settings, "未响应小时数（截至判定日终）/响应用时"),
                                [_sheet_row(row) for row in delay])
            counts = Counter((row["distributor_code"] or "", row["distributor_name"] or "（未登记）") for row in delay)
            sheets["按配送企业汇总"] = (["配送企业代码", "配送企业名称", "延迟响应订单数"],
                                  [[code, name, count] for (code, name), count in counts.items()])
        if late:
            sheets["督促后仍未响应（上报市局）"] = (_header(settings, "未响应小时数（截至升级判定日终）"),
                                         [_sheet_row(row) for row in late])
        workbooks[branch_code] = sheets
    return workbooks
