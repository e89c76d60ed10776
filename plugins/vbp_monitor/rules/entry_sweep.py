"""DAG 1 · 进院排查 (month-3 entry sweep) — domain.md DAG 1, seed 002 §二(二).

Every agreement of a public institution with ``agreed_quantity > 0`` is judged once, at the
last day of its cycle month k (profile ``[entry_sweep] entry_sweep_month``, default 3), as
of that day, by the monthly run whose judged month contains that day:

* ``ENTRY_NOT_PURCHASED``: no selected purchase (platform, not cancelled, a product
  selected in the agreement's batch with its generic name) from ``period_start`` to the
  milestone day. metric 0, threshold = agreed quantity.
* ``ENTRY_BEHIND_AGREEMENT``: selected purchases exist but the completion rate is below
  ``progress_warning_ratio`` × time progress. metric = completion rate, threshold = ratio ×
  time progress.

Severities and titles are the catalog's. A renewal agreement year is swept again at its own
month k (purchases counted from its own ``period_start``). Besides alerts, each branch gets
the sweep list (every swept agreement with its figures and verdict) as an XLSX attached to
its email.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.alerts.candidates import one_per_key
from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES, rule_title
from vbp_monitor.core.formatting import as_date, date_iso, decimal_of, number, percent, quantity, rounded
from vbp_monitor.core.labels import SEVERITY_ORDER
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.calendar_tables import ensure_cycle_month_calendar
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.outputs.run_files import criteria_sheet, run_file_path, run_folder
from vbp_monitor.outputs.spreadsheets import BookTitle, Column, Sheets, write_branch_files
from vbp_monitor.quality.validation import Where

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

DAG_ID = "vbp_entry_sweep"
NOT_PURCHASED, BEHIND = "ENTRY_NOT_PURCHASED", "ENTRY_BEHIND_AGREEMENT"
RULE_CODES = DAGS[DAG_ID].rule_codes
# Quantities have at most 4 decimals: "short by more than 1e-6" separates a value exactly at
# the threshold from a real shortfall even on SQLite's REAL arithmetic with large quantities
# (a tolerance on the completion-rate scale would grow with the agreed quantity).
QUANTITY_EPS = 1e-6
# A ratio in a sheet cell: two decimals as a percentage.
RATE_CELL = Decimal("0.0001")
FILE_PREFIX = "进院排查"
LIST_TITLE = "中选产品进院排查清单"
ACTIONS = {
    NOT_PURCHASED: "督促医疗机构尽快落实中选产品进院采购、履行采购协议",
    BEHIND: "督促医疗机构按协议量进行采购",
}


# ------------------------------------------------------------------ settings
def sweep_settings(profile: dict) -> tuple[int, Decimal]:
    """(cycle month k, progress_warning_ratio) from the profile.

    The ratio is the monitoring one (domain.md names the same ``progress_warning_ratio``);
    ``[entry_sweep] progress_warning_ratio`` overrides it for the sweep alone.
    """
    section = profile.get("entry_sweep", {})
    month = int(section.get("entry_sweep_month", 3))
    ratio = section.get("progress_warning_ratio", profile["monitoring"]["progress_warning_ratio"])
    return month, decimal_of(ratio)


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext, profile: dict) -> dict[str, Where | None]:
    """The rows this DAG reads, for ``validation.validate_tables``.

    The swept agreements start about k months before the judged month, so their order lines
    lie between k months before its first day and its last day.
    """
    month, _ = sweep_settings(profile)
    earliest = add_months(run.period.first_day, -month)
    return {
        "agreements": Where("period_start >= :earliest AND period_start <= :last_day", earliest=earliest),
        "institutions": None,
        "batches": None,
        "products": None,
        "orders": Where("order_date >= :earliest AND order_date <= :last_day", earliest=earliest),
    }


def validate(engine, run: RunContext, profile: dict | None = None) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run, profile or load_profile()))


# ------------------------------------------------------------------ judging
def swept_agreements(conn, run: RunContext, profile: dict) -> list[dict]:
    """Every agreement swept in the judged month (within the branch scope), typed."""
    month, ratio = sweep_settings(profile)
    ensure_cycle_month_calendar(conn)
    rows = sqlfiles.query(
        conn, "entry_sweep_agreements",
        k=month, month_start=run.period.first_day, month_end=run.period.last_day,
        ratio=str(ratio), quantity_eps=QUANTITY_EPS, branch_code=run.scope.branch_code,
    )
    for row in rows:
        for name in ("period_start", "period_end", "milestone_day", "first_order_date"):
            row[name] = as_date(row[name])
        row["agreed_quantity"] = decimal_of(row["agreed_quantity"])
        row["selected_quantity"] = decimal_of(row["selected_quantity"]) or Decimal(0)
        row["elapsed_days"] = int(row["elapsed_days"])
        row["total_days"] = int(row["total_days"])
        row["cycle_month"] = month
        # exact: the store keeps 6 places, messages and sheets round by the one rule
        row["completion_rate"] = row["selected_quantity"] / row["agreed_quantity"]
        row["time_progress"] = Decimal(row["elapsed_days"]) / Decimal(row["total_days"])
        row["required_rate"] = ratio * row["elapsed_days"] / row["total_days"]
    return rows


def message_of(row: dict, ratio: Decimal, profile: dict) -> str:
    code = row["verdict"]
    k = row["cycle_month"]
    head = (f"【进院排查】{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}：协议年度 "
            f"{date_iso(row['period_start'])} 至 {date_iso(row['period_end'])}，"
            f"约定采购量 {quantity(row['agreed_quantity'])}。截至执行第{k}个月末（{date_iso(row['milestone_day'])}），")
    if code == NOT_PURCHASED:
        finding = (f"该医疗机构在平台上无该通用名中选产品的采购记录（采购量 0，约定采购量 "
                   f"{quantity(row['agreed_quantity'])}），中选产品尚未进院。请督促该医疗机构尽快与中选企业"
                   f"落实进院采购、履行采购协议，并按协议量进行采购。")
    else:
        finding = (f"平台采购中选产品 {quantity(row['selected_quantity'])}，约定采购量完成率 "
                   f"{percent(row['completion_rate'], breach='below')}，低于序时进度 "
                   f"{percent(row['time_progress'])}（{row['elapsed_days']}/{row['total_days']} 天）"
                   f"× {number(ratio)} = {percent(row['required_rate'])}。请督促该医疗机构按协议量进行采购，"
                   f"优先使用中选产品。")
    return f"{head}{finding}依据：{cite(profile, code)}。"


def candidate_of(row: dict, ratio: Decimal, profile: dict) -> dict:
    code = row["verdict"]
    if code == NOT_PURCHASED:
        metric, threshold = Decimal(0), row["agreed_quantity"]
    else:
        metric, threshold = row["completion_rate"], row["required_rate"]
    return {
        "rule_code": code,
        "severity": RULES[code].severity,
        "branch_code": row["branch_code"],
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "generic_name": row["generic_name"],
        "milestone_month": row["cycle_month"],
        "metric_value": metric,
        "threshold_value": threshold,
        "message": message_of(row, ratio, profile),
    }


def more_severe_then_shorter(candidate: dict) -> tuple:
    """Two agreements of one subject swept in one month (overlapping years: a data error)
    share an alert key: the more severe verdict, then the lower completion, is kept."""
    return (-SEVERITY_ORDER[candidate["severity"]], -candidate["metric_value"])


def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Sweep the agreements whose cycle month k ends in the judged month; write alerts and
    the branches' sweep lists."""
    profile = profile or load_profile()
    month, ratio = sweep_settings(profile)
    with engine.begin() as conn:
        swept = swept_agreements(conn, run, profile)
        in_scope = [row for row in swept
                    if not run.scope.batch_code or row["batch_code"] == run.scope.batch_code]
        candidates = one_per_key([candidate_of(row, ratio, profile) for row in in_scope if row["verdict"]],
                                 rank=more_severe_then_shorter)
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        branches = branch_directory(conn)
        office = branches.get(city_branch_code(conn), {}).get("name", "")
    # The sweep lists show every swept agreement of the branch, even under a batch filter.
    # Title block: the issuing office (the city bureau), the list and its month, the profile.
    title = BookTitle(office=office, title=LIST_TITLE, period=run.period.label, profile=profile)
    attachments = write_branch_files(
        run_folder(DAG_ID, run.period.label), FILE_PREFIX, run.period.label,
        branch_workbooks(swept, branches, sweep_criteria(month, ratio), month),
        scope_branch=run.scope.branch_code, title=title)
    return JudgeResult(period=run.period.label, rule_codes=RULE_CODES, written=written,
                       attachments=attachments, details={"swept": len(in_scope)})


# ------------------------------------------------------------------ spreadsheets
def sheet_header(month: int) -> list[Column]:
    """The list's columns, typed (outputs.spreadsheets): quantities, rates as percentages,
    dates as date cells; the milestone names the profile's cycle month."""
    return [
        Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"), Column("批次代码"), Column("批次名称"),
        Column("通用名"), Column("协议编号"), Column("协议年度起", "date"), Column("协议年度止", "date"),
        Column(f"排查节点（执行第{month}个月末）", "date"), Column("约定采购量", "quantity"),
        Column("中选产品平台采购量", "quantity"), Column("首次采购日期", "date"),
        # rounded row by row before the cell (the one rounding rule: see _sheet_row)
        Column("约定采购量完成率", "percent"), Column("序时进度", "percent"),
        Column("预警线（比例×序时进度）", "percent"), Column("排查结论"), Column("处理要求", "long_text"),
    ]


SHEET_HEADER = sheet_header(3)


def workbook_path(period_label: str, branch_code: str) -> Path:
    return run_file_path(DAG_ID, FILE_PREFIX, period_label, branch_code)


def sweep_criteria(month: int, ratio: Decimal) -> tuple[list[str], list[list]]:
    """How the sweep judges, with the profile's figures: the sheet beside every list."""
    conditions = {
        NOT_PURCHASED: f"协议年度起至执行第{month}个月末，平台上无该通用名中选产品采购（不含取消订单、线下采购）",
        BEHIND: f"已有中选产品采购，但约定采购量完成率 < {number(ratio)} × 序时进度",
    }
    return criteria_sheet(conditions, ACTIONS,
                          f"排查对象：公立医疗机构约定采购量大于0的采购协议，于每个协议年度执行第{month}个月末排查一次"
                          "（含续签年度）；完成率 = 中选产品平台采购量 ÷ 约定采购量；"
                          "序时进度 = （排查节点 − 协议年度起 + 1天）÷（协议年度止 − 协议年度起 + 1天）")


def _sheet_row(row: dict, branches: dict) -> list:
    return [
        branches.get(row["branch_code"], {}).get("name", row["branch_code"]),
        row["institution_code"], row["institution_name"], row["batch_code"],
        row["batch_name"], row["generic_name"], row["agreement_id"], row["period_start"],
        row["period_end"], row["milestone_day"],
        row["agreed_quantity"], row["selected_quantity"], row["first_order_date"] or "无",
        # the completion rate that fell below the line is rounded down (never reads as the
        # line), the line and every other rate half up (core.formatting's one rule)
        rounded(row["completion_rate"], RATE_CELL, "below" if row["verdict"] == BEHIND else None),
        rounded(row["time_progress"], RATE_CELL), rounded(row["required_rate"], RATE_CELL),
        rule_title(row["verdict"]) if row["verdict"] else "已进院，进度符合要求",
        ACTIONS.get(row["verdict"], "无需处理"),
    ]


def _sort_key(row: dict):
    severity = SEVERITY_ORDER[RULES[row["verdict"]].severity] if row["verdict"] else len(SEVERITY_ORDER)
    return (severity, row["institution_code"], row["batch_code"], row["generic_name"], row["agreement_id"])


def branch_workbooks(swept: list[dict], branches: dict, criteria: tuple, month: int = 3) -> dict[str, Sheets]:
    """Per branch: every swept agreement, the most severe verdicts first, and the criteria."""
    listed: dict[str, list[list]] = {}
    for row in sorted(swept, key=_sort_key):
        listed.setdefault(row["branch_code"], []).append(_sheet_row(row, branches))
    header = sheet_header(month)
    return {branch: {"进院排查": (header, rows), "排查口径": criteria} for branch, rows in listed.items()}
