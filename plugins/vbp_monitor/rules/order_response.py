"""DAG 6 · 配送响应 (order-response watch) — domain.md DAG 6, seed 002 §二(六).

The run with logical date D judges the day J = D − 1, over platform orders that are not
cancelled:

* ``ORDER_RESPONSE_OVERDUE`` (high): the response mark (order_time + 48 h) falls on J and
  the order had no response at or before the mark. These orders form J's delay list
  (延迟响应清单), written per branch as a spreadsheet grouped by distributor.
* ``ORDER_RESPONSE_ESCALATED`` (critical, so the city bureau hears of it too): the order's
  escalation day is J and it had no response by the end of J. The branch has the first
  working day after the mark's day (the "list day") to send the list to the distributor,
  and the distributor 24 more hours: the escalation day is the calendar day after the list
  day (``ceil(distributor_grace_hours / 24)`` days after it).

Working days come from the one PRC calendar (``prc_calendar.load_calendar``): Python
finds the few mark days whose escalation day is J and binds the matching order_time window;
the order-level work stays in SQL.

Figures: OVERDUE metric = hours the order went without a response as of the end of J (or
its actual response delay when it was answered late within J), threshold = 48.
ESCALATED metric = hours without a response as of the end of the escalation day,
threshold = 48 + 24 = 72 (the policy's hours; the list day in between depends on the
calendar and is named in the message).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from vbp_monitor.core import config
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.prc_calendar import WorkCalendar, load_calendar
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.reference import branch_directory
from vbp_monitor.orchestration.run_context import RunContext, as_of_end

log = logging.getLogger(__name__)

DAG_ID = "vbp_order_response"
OVERDUE = "ORDER_RESPONSE_OVERDUE"
ESCALATED = "ORDER_RESPONSE_ESCALATED"
RULE_CODES = (OVERDUE, ESCALATED)
SEVERITY = {OVERDUE: "high", ESCALATED: "critical"}
EPS = 1e-9
HOURS = Decimal("0.0001")  # metric precision: 48 h 1 s is 48.0003 > 48
OUTPUT_SUBDIR = "vbp_order_response"
# Longest run of consecutive non-working days we look back over (Spring Festival is ~9).
MAX_NON_WORKING_RUN = 60


@dataclass(frozen=True)
class ResponseSettings:
    response_hours: int  # 48: the response mark after the order
    grace_hours: int  # 24: the distributor's time after the delay list was sent

    @classmethod
    def from_profile(cls, profile: dict) -> "ResponseSettings":
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
    def for_mark_days(cls, mark_days, settings: ResponseSettings) -> "OrderWindow":
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


# ------------------------------------------------------------------ small helpers
def _datetime(value) -> dt.datetime | None:
    """SQLite returns timestamps as text from a plain SQL query."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _decimal(value) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        value = Decimal(repr(value))
    return Decimal(value)


def hours_between(start: dt.datetime, end: dt.datetime) -> Decimal:
    return (Decimal((end - start).total_seconds()) / Decimal(3600)).quantize(HOURS)


def fmt_time(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def fmt_hours(hours: Decimal) -> str:
    """A duration for people: 48小时0分1秒, 62小时."""
    whole, rest = divmod(int((hours * 3600).to_integral_value()), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{whole}小时"
    if minutes or seconds:
        text += f"{minutes}分"
    if seconds:
        text += f"{seconds}秒"
    return text


def _typed(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["order_time"] = _datetime(row["order_time"])
        row["response_time"] = _datetime(row["response_time"])
        row["response_hours"] = _decimal(row["response_hours"])
        row["quantity"] = _decimal(row["quantity"])
        row["amount"] = _decimal(row["amount"])
    return rows


# ------------------------------------------------------------------ validation
def validation_scope(conn, run: RunContext, settings: ResponseSettings) -> dict[str, str | None]:
    judged = run.period.last_day
    windows = [overdue_window(judged, settings)]
    escalation = escalation_window(load_calendar(conn), judged, settings)
    if escalation:
        windows.append(escalation)
    first = min(w.first_order_day for w in windows).isoformat()
    last = max(w.last_order_day for w in windows).isoformat()
    return {
        "orders": f"channel = 'platform' AND order_date >= '{first}' AND order_date <= '{last}'",
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


def overdue_candidate(row: dict, line: Timeline, judged: dt.date, settings: ResponseSettings) -> dict:
    end_of_judged = as_of_end(judged)
    answered = row["response_time"] is not None and row["response_time"] < end_of_judged
    metric = (row["response_hours"].quantize(HOURS) if answered
              else hours_between(row["order_time"], end_of_judged))
    h = settings.response_hours
    state = (f"于 {fmt_time(row['response_time'])} 才响应，响应用时 {fmt_hours(metric)}" if answered
             else f"截至 {judged.isoformat()} 日终仍未响应，已 {fmt_hours(metric)}未响应")
    message = (
        f"【配送响应】{_order_label(row)}于 {fmt_time(row['order_time'])} 下单，"
        f"至{h}小时节点 {fmt_time(line.mark)} 未响应（{state}，超过{h}小时）。"
        f"该订单列入 {judged.isoformat()} 延迟响应清单：请分局于 {line.list_day.isoformat()}"
        f"（节点日后第1个工作日）内汇总清单发送配送企业，督促及时配送到位；"
        f"配送企业再超过{settings.grace_hours}小时（{line.escalation_day.isoformat()} 日终）仍未响应的，"
        f"分局应报告市医疗保障局。依据：{RULES[OVERDUE].clause}。{line.note}"
    )
    return {
        "rule_code": OVERDUE, "severity": SEVERITY[OVERDUE], "branch_code": row["branch_code"],
        "institution_code": row["institution_code"], "product_code": row["product_code"],
        "order_id": row["order_id"], "metric_value": metric, "threshold_value": Decimal(h),
        "message": message,
    }


def escalated_candidate(row: dict, line: Timeline, judged: dt.date, settings: ResponseSettings) -> dict:
    metric = hours_between(row["order_time"], as_of_end(judged))
    h, grace = settings.response_hours, settings.grace_hours
    message = (
        f"【配送响应·上报市局】{_order_label(row)}于 {fmt_time(row['order_time'])} 下单，"
        f"超过{h}小时未响应（节点 {fmt_time(line.mark)}），已列入 {line.mark_day.isoformat()} 延迟响应清单"
        f"（分局应于 {line.list_day.isoformat()} 发送配送企业）；配送企业被督促后再超过{grace}小时，"
        f"截至 {judged.isoformat()} 日终仍未响应（下单后已 {fmt_hours(metric)}，限 {h}+{grace} 小时）。"
        f"分局应及时将相关情况报告市医疗保障局，通过约谈、暂停拨付结算款、建议生产企业取消配送企业的委托资格等方式，"
        f"督促配送企业切实落实配送计划。依据：{RULES[ESCALATED].clause}。{line.note}"
    )
    return {
        "rule_code": ESCALATED, "severity": SEVERITY[ESCALATED], "branch_code": row["branch_code"],
        "institution_code": row["institution_code"], "product_code": row["product_code"],
        "order_id": row["order_id"], "metric_value": metric,
        "threshold_value": Decimal(settings.escalation_hours), "message": message,
    }


def find_orders(conn, run: RunContext, settings: ResponseSettings, cal: WorkCalendar) -> tuple[list[dict], list[dict]]:
    """(delay list of J, orders escalated on J), each row with its ``timeline``."""
    judged = run.period.last_day
    common = {"eps": EPS, "branch_code": run.scope.branch_code}
    overdue = _typed(sqlfiles.query(
        conn, "response_overdue_orders", response_hours=settings.response_hours,
        **overdue_window(judged, settings).params(), **common))
    escalation = escalation_window(cal, judged, settings)
    escalated = [] if escalation is None else _typed(sqlfiles.query(
        conn, "response_escalated_orders", escalation_day_end=as_of_end(judged),
        **escalation.params(), **common))
    for row in overdue + escalated:
        row["timeline"] = timeline(cal, row["order_time"], settings)
    return overdue, escalated


def judge(engine, run: RunContext, profile: dict | None = None) -> dict:
    """Judge day J; write alerts and each branch's delay list."""
    settings = ResponseSettings.from_profile(profile or load_profile())
    judged = run.period.last_day
    with engine.begin() as conn:
        cal = load_calendar(conn)
        overdue, escalated = find_orders(conn, run, settings, cal)
        candidates = (
            [overdue_candidate(row, row["timeline"], judged, settings) for row in overdue]
            + [escalated_candidate(row, row["timeline"], judged, settings) for row in escalated]
        )
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        branches = branch_directory(conn)
    attachments = write_delay_lists(overdue, escalated, run, settings, branches)
    result = {
        "period": run.period.label,
        "overdue": len(overdue),
        "escalated": len(escalated),
        "raised": written.raised,
        "new": written.new,
        "resolved": written.resolved,
        "by_rule": dict(Counter(c["rule_code"] for c in candidates)),
        "attachments": {branch: [str(path) for path in paths] for branch, paths in attachments.items()},
    }
    log.info("vbp_order_response %s: %s", run.period.label, result)
    return result


# ------------------------------------------------------------------ spreadsheets
def workbook_path(period_label: str, branch_code: str) -> Path:
    return config.output_dir() / OUTPUT_SUBDIR / period_label / f"延迟响应清单_{branch_code}_{period_label}.xlsx"


def _header(settings: ResponseSettings, last: str) -> list[str]:
    h = settings.response_hours
    return [
        "配送企业代码", "配送企业名称", "订单号", "医疗机构代码", "医疗机构名称", "产品代码", "通用名",
        "数量", "金额（元）", "下单时间", f"{h}小时节点", "响应时间", last,
        "分局发送清单截止日", f"升级判定日（再{settings.grace_hours}小时期满）",
    ]


def _sheet_row(row: dict, hours: Decimal) -> list:
    line: Timeline = row["timeline"]
    return [
        row["distributor_code"] or "", row["distributor_name"] or "（未登记）", row["order_id"],
        row["institution_code"], row["institution_name"], row["product_code"], row["generic_name"] or "",
        row["quantity"], row["amount"], fmt_time(row["order_time"]), fmt_time(line.mark),
        fmt_time(row["response_time"]) or "未响应", hours,
        line.list_day, line.escalation_day,
    ]


def _by_distributor(row: dict):
    return (row["distributor_code"] or "\uffff", row["order_time"], row["order_id"])


def write_delay_lists(overdue: list[dict], escalated: list[dict], run: RunContext,
                      settings: ResponseSettings, branches: dict) -> dict[str, list[Path]]:
    """Per branch: J's delay list grouped by distributor (+ the orders escalated on J)."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx, remove_stale_branch_files

    judged = run.period.last_day
    end = as_of_end(judged)
    branch_codes = sorted({row["branch_code"] for row in overdue + escalated})
    written: dict[str, list[Path]] = {}
    for branch_code in branch_codes:
        delay = sorted((r for r in overdue if r["branch_code"] == branch_code), key=_by_distributor)
        late = sorted((r for r in escalated if r["branch_code"] == branch_code), key=_by_distributor)
        sheets = {}
        if delay:
            rows = []
            for row in delay:
                answered = row["response_time"] is not None and row["response_time"] < end
                hours = (row["response_hours"].quantize(HOURS) if answered
                         else hours_between(row["order_time"], end))
                rows.append(_sheet_row(row, hours))
            sheets["延迟响应清单"] = (_header(settings, "未响应小时数（截至判定日终）/响应用时"), rows)
            summary: dict[tuple, int] = {}
            for row in delay:
                key = (row["distributor_code"] or "", row["distributor_name"] or "（未登记）")
                summary[key] = summary.get(key, 0) + 1
            sheets["按配送企业汇总"] = (["配送企业代码", "配送企业名称", "延迟响应订单数"],
                                  [[code, name, count] for (code, name), count in summary.items()])
        if late:
            sheets["督促后仍未响应（上报市局）"] = (
                _header(settings, "未响应小时数（截至升级判定日终）"),
                [_sheet_row(row, hours_between(row["order_time"], end)) for row in late])
        path = workbook_path(run.period.label, branch_code)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_xlsx(path, sheets)
        written[branch_code] = [path]
    remove_stale_branch_files(config.output_dir() / OUTPUT_SUBDIR / run.period.label, "延迟响应清单", run.period.label,
                              set(written), run.scope.branch_code)
    return written


