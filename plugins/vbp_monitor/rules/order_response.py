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
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.formatting import as_datetime, date_iso, datetime_local, decimal_of, hours, rounded
from vbp_monitor.core.prc_calendar import WorkCalendar
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.calendar_tables import load_calendar
from vbp_monitor.model.reference import branch_directory, distributor_audience, split_emails
from vbp_monitor.outputs.run_files import run_file_path, run_folder
from vbp_monitor.outputs.spreadsheets import (
    BookTitle,
    Column,
    SectionRow,
    Sheets,
    branch_file_path,
    safe_name_part,
    write_branch_files,
)
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
        attachments = write_delay_lists(conn, run, overdue, escalated, settings, profile)
    return JudgeResult(period=run.period.label, rule_codes=RULE_CODES, written=written,
                       attachments=attachments, details={"overdue": len(overdue), "escalated": len(escalated)})


# ------------------------------------------------------------------ spreadsheets
# The delay list is a document the branch sends as it is (seed 002 §二(六): 汇总形成延迟响应
# 清单，发送给配送企业): a title block naming the issuing branch, the day and the rule, one
# section per distributor (its name and addresses from distributors.csv, then its orders),
# typed cells. Each distributor also gets a file of its own orders only, which the branch (or
# the distributor's own email) carries.
LIST_TITLE = "延迟响应清单"
DISTRIBUTOR_FOLDER = "配送企业清单"  # beside the branch files: one sub-folder per branch
UNREGISTERED = "未登记配送企业"
DELAY_HOURS_TITLE = "未响应小时数（截至清单日终）或实际响应用时"


def workbook_path(period_label: str, branch_code: str) -> Path:
    return run_file_path(DAG_ID, FILE_PREFIX, period_label, branch_code)


def distributor_folder(period_label: str, branch_code: str) -> Path:
    return run_folder(DAG_ID, period_label) / DISTRIBUTOR_FOLDER / safe_name_part(branch_code)


def distributor_workbook_path(period_label: str, branch_code: str, distributor_code: str) -> Path:
    return branch_file_path(distributor_folder(period_label, branch_code), FILE_PREFIX,
                            f"{branch_code}_{distributor_code}", period_label)


def _columns(settings: ResponseSettings, hours_title: str) -> list[Column]:
    return [
        Column("序号", "integer"), Column("订单号"), Column("医疗机构代码"), Column("医疗机构名称"),
        Column("产品代码"), Column("通用名"), Column("规格"), Column("数量", "quantity"),
        Column("金额（元）", "money"), Column("下单时间", "datetime"),
        Column(f"{settings.response_hours}小时节点", "datetime"), Column("响应时间", "datetime"),
        Column(hours_title, "decimal", breach="above"),  # past the limit: never reads as less
        Column("分局发送清单截止日", "date"), Column(f"升级判定日（再{settings.grace_hours}小时期满）", "date"),
    ]


def _sheet_row(number: int, row: dict) -> list:
    line: Timeline = row["timeline"]
    return [
        number, row["order_id"], row["institution_code"], row["institution_name"], row["product_code"],
        row["generic_name"] or "", row.get("specification") or "", row["quantity"], row["amount"],
        row["order_time"], line.mark, row["response_time"] or "未响应", row["late_hours"],
        line.list_day, line.escalation_day,
    ]


def _by_distributor(row: dict):
    return (row["distributor_code"] or "\uffff", row["order_time"], row["order_id"])


@dataclass(frozen=True)
class Distributor:
    code: str
    name: str
    emails: tuple[str, ...]

    @classmethod
    def of(cls, row: dict) -> Distributor:
        return cls(row["distributor_code"] or "", row["distributor_name"] or UNREGISTERED,
                   tuple(split_emails(row.get("distributor_emails"))))

    @property
    def label(self) -> str:
        return f"{self.name}（{self.code}）" if self.code else self.name

    def contact(self, mailed: bool) -> str:
        if not self.emails:
            return "未登记联系邮箱，请分局自行联系送达"
        addresses = "；".join(self.emails)
        return f"联系邮箱：{addresses}" + ("（本清单已由系统直接发送，抄送分局）" if mailed else "")


def _sections(rows: list[dict], mailed: bool) -> list:
    """The rows of one sheet: per distributor a heading row, then its orders (numbered)."""
    out: list = []
    for _, group in groupby(sorted(rows, key=_by_distributor), key=lambda r: r["distributor_code"] or ""):
        orders = list(group)
        who = Distributor.of(orders[0])
        out.append(SectionRow(f"配送企业：{who.label}　{who.contact(mailed)}　共 {len(orders)} 笔订单"))
        out += [_sheet_row(number, row) for number, row in enumerate(orders, 1)]
    return out


def rule_note(settings: ResponseSettings, profile: dict) -> str:
    """The rule as the list states it (the title block)."""
    return (f"依据{cite(profile, OVERDUE)}：医疗机构发送给配送企业的订单超过{settings.response_hours}小时未响应的，"
            f"列入本清单；配送企业须在收到本清单后{settings.grace_hours}小时内响应并配送到位，"
            f"无不可抗力原因再次超过{settings.grace_hours}小时仍未响应的，分局将报告市医疗保障局。")


def _title(branch_name: str, period_label: str, profile: dict, notes: tuple[str, ...]) -> BookTitle:
    return BookTitle(office=branch_name, title=LIST_TITLE, period=period_label, profile=profile, notes=notes)


def send_to_distributors(profile: dict) -> bool:
    return bool(profile.get("order_response", {}).get("send_to_distributors", True))


def delay_list_workbooks(overdue: list[dict], escalated: list[dict], settings: ResponseSettings,
                         mailed: bool = True) -> dict[str, Sheets]:
    """Per branch: J's delay list in sections by distributor (each heading names it, its contact
    and its count of orders), and the orders escalated on J. ``mailed``: the system sends each
    distributor with an address its part."""
    workbooks: dict[str, Sheets] = {}
    for branch_code in sorted({row["branch_code"] for row in overdue + escalated}):
        delay = [r for r in overdue if r["branch_code"] == branch_code]
        late = [r for r in escalated if r["branch_code"] == branch_code]
        sheets: Sheets = {}
        if delay:
            sheets[LIST_TITLE] = (_columns(settings, DELAY_HOURS_TITLE), _sections(delay, mailed))
        if late:
            sheets["督促后仍未响应（上报市局）"] = (_columns(settings, "未响应小时数（截至升级判定日终）"),
                                         _sections(late, mailed))
        workbooks[branch_code] = sheets
    return workbooks


def distributor_workbooks(overdue: list[dict], settings: ResponseSettings,
                          mailed: bool = True) -> dict[tuple[str, str], Sheets]:
    """Per (branch, distributor code): that distributor's part of the branch's delay list only."""
    parts: dict[tuple[str, str], list[dict]] = {}
    for row in overdue:
        if row["distributor_code"]:  # an order without a distributor has nobody to send to
            parts.setdefault((row["branch_code"], row["distributor_code"]), []).append(row)
    return {key: {LIST_TITLE: (_columns(settings, DELAY_HOURS_TITLE),
                               _sections(rows, mailed))}
            for key, rows in sorted(parts.items())}


def write_delay_lists(conn, run: RunContext, overdue: list[dict], escalated: list[dict],
                      settings: ResponseSettings, profile: dict) -> dict[str, list[Path]]:
    """Write the branch lists and the distributors' parts; returns the files per audience: a
    branch gets its list and the parts of the distributors it must contact itself; a
    distributor with an address (when the profile sends to distributors) its own part."""
    period = run.period.label
    mailed = send_to_distributors(profile)
    branches = branch_directory(conn)
    note = rule_note(settings, profile)

    def branch_name(code: str) -> str:
        return branches.get(code, {}).get("name") or code

    titles = {code: _title(branch_name(code), period, profile, (note,))
              for code in {row["branch_code"] for row in overdue + escalated}}
    attachments = write_branch_files(run_folder(DAG_ID, period), FILE_PREFIX, period,
                                     delay_list_workbooks(overdue, escalated, settings, mailed),
                                     scope_branch=run.scope.branch_code, title=titles)
    parts = distributor_workbooks(overdue, settings, mailed)
    by_branch: dict[str, dict[str, Sheets]] = {}
    for (branch_code, distributor_code), sheets in parts.items():
        by_branch.setdefault(branch_code, {})[f"{branch_code}_{distributor_code}"] = sheets
    distributors = {row["distributor_code"]: Distributor.of(row) for row in overdue if row["distributor_code"]}
    folder = run_folder(DAG_ID, period) / DISTRIBUTOR_FOLDER
    stale = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    for branch_code in sorted(set(by_branch) | stale):  # a branch no longer listed: its old parts go
        if run.scope.branch_code and branch_code != safe_name_part(run.scope.branch_code):
            continue
        books = by_branch.get(branch_code, {})
        code_of = {f"{branch_code}_{code}": code for (b, code) in parts if b == branch_code}
        part_titles = {key: _title(branch_name(branch_code), period, profile,
                                   (f"致：{distributors[code].label}　{distributors[code].contact(mailed)}", note))
                       for key, code in code_of.items()}
        written = write_branch_files(folder / safe_name_part(branch_code), FILE_PREFIX, period, books,
                                     title=part_titles)
        for key, paths in written.items():
            who = distributors[code_of[key]]
            if mailed and who.emails:
                attachments.setdefault(distributor_audience(branch_code, who.code), []).extend(paths)
            else:  # the branch sends it itself: it comes with the branch's email
                attachments.setdefault(branch_code, []).extend(paths)
    return dict(sorted(attachments.items()))
