"""DAG 5 · 报量审核 (volume-report review) — domain.md DAG 5, seed 002 §二(一).

For every batch whose ``report_deadline`` falls in the judged month M, as of that deadline:
each institution's latest volume report for each selected generic name of the batch is
compared with its same-generic purchases in the calendar year before the deadline's year
(the floor is profile ``[volume_review] history_floor_ratio`` × that history). Besides
alerts, each branch gets a spreadsheet with one row per subject (what was reported, the
history, the ratio, the explanation and the verdict), attached to its email.

Rerunning the month re-judges corrected reports: the AlertStore resolves what is no longer
raised and the spreadsheets are rewritten.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES, rule_title
from vbp_monitor.core.formatting import (
    QUANTITY_PLACES,
    as_date,
    date_iso,
    decimal_of,
    percent,
    quantity,
    rounded,
    share,
)
from vbp_monitor.core.labels import SEVERITY_ORDER
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.outputs.run_files import criteria_sheet, run_file_path, run_folder
from vbp_monitor.outputs.spreadsheets import BookTitle, Column, Sheets, write_branch_files
from vbp_monitor.quality.validation import Where

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

DAG_ID = "vbp_volume_review"
BELOW_FLOOR_UNEXPLAINED, BELOW_FLOOR, BELOW_HISTORY, NOT_REPORTED = (
    "REPORT_BELOW_80_NO_EXPLANATION", "REPORT_BELOW_80", "REPORT_BELOW_HISTORY", "HISTORY_NOT_REPORTED")
RULE_CODES = DAGS[DAG_ID].rule_codes
EPS = 1e-9
# Characters an explanation may consist of and still count as empty (besides spaces).
BLANK_CHARACTERS = {"tab": "\t", "cr": "\r", "lf": "\n", "wide_space": "\u3000"}
# A ratio in a sheet cell: two decimals as a percentage.
RATE_CELL = Decimal("0.0001")
FILE_PREFIX = "报量审核"
LIST_TITLE = "集采报量审核清单"
# What the branch must have the institution do (seed 002 §二(一)).
ACTIONS = {
    BELOW_FLOOR_UNEXPLAINED: "要求医疗机构作出说明；说明依据不充分或填报明显不合理的，退回医疗机构重新填报",
    BELOW_FLOOR: "审核其说明：填报数据明显不合理或说明依据不充分的，退回医疗机构重新填报",
    BELOW_HISTORY: "提醒医疗机构复核：报量原则上不少于上一年度实际采购量",
    NOT_REPORTED: "重点关注：核实未报量原因，督促医疗机构补报",
}


def history_year(period_first_day: dt.date) -> int:
    """The calendar year before the deadline's year (all deadlines judged lie in one month)."""
    return period_first_day.year - 1


def floor_ratio(profile: dict) -> Decimal:
    return decimal_of(profile["volume_review"]["history_floor_ratio"])


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext) -> dict[str, Where | None]:
    """The rows this DAG reads, for ``validation.validate_tables``."""
    year = history_year(run.period.first_day)
    return {
        "batches": None,
        "products": None,
        "institutions": None,
        "volume_reports": Where("report_date <= :last_day"),
        "orders": Where("order_date >= :history_start AND order_date <= :history_end",
                        history_start=dt.date(year, 1, 1), history_end=dt.date(year, 12, 31)),
    }


def validate(engine, run: RunContext) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run))


# ------------------------------------------------------------------ judging
def review_subjects(conn, run: RunContext, ratio: Decimal) -> list[dict]:
    """Every subject of the judged month (within the operator's branch scope), typed."""
    year = history_year(run.period.first_day)
    rows = sqlfiles.query(
        conn, "volume_review_subjects",
        first_day=run.period.first_day, last_day=run.period.last_day,
        history_start=dt.date(year, 1, 1), history_end=dt.date(year, 12, 31),
        ratio=str(ratio), eps=EPS, branch_code=run.scope.branch_code, **BLANK_CHARACTERS,
    )
    for row in rows:
        row["history_quantity"] = decimal_of(row["history_quantity"]) or Decimal(0)
        row["reported_quantity"] = decimal_of(row["reported_quantity"])
        row["report_deadline"] = as_date(row["report_deadline"])
        row["report_date"] = as_date(row["report_date"])
        row["explanation_given"] = bool(row["explanation_given"])
        row["history_year"] = year
        # the floor as the alerts keep it: a quantity (4 places)
        row["floor_quantity"] = rounded(ratio * row["history_quantity"], QUANTITY_PLACES)
    return rows


def threshold_of(row: dict) -> Decimal:
    """The limit the verdict broke: the floor, or the history itself."""
    below_floor = row["verdict"] in (BELOW_FLOOR_UNEXPLAINED, BELOW_FLOOR)
    return row["floor_quantity"] if below_floor else row["history_quantity"]


def message_of(row: dict, ratio: Decimal, profile: dict) -> str:
    code = row["verdict"]
    history, reported, year = row["history_quantity"], row["reported_quantity"], row["history_year"]
    head = (f"【报量审核】{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}：")
    deadline = f"报量截止日 {date_iso(row['report_deadline'])}"
    floor = f"{percent(ratio)}（{quantity(row['floor_quantity'])}）"
    if code == NOT_REPORTED:
        finding = (f"{year}年实际采购量 {quantity(history)}，但截至{deadline} 仍未报量。"
                   f"对有历史采购量而不参与报量的医疗机构需重点关注：请核实原因并督促其补报。")
    else:
        figures = (f"报量 {quantity(reported)}（{date_iso(row['report_date'])} 填报），"
                   f"{year}年实际采购量 {quantity(history)}，报量为历史采购量的 "
                   f"{share(reported, history, breach='below')}")
        if code == BELOW_FLOOR_UNEXPLAINED:
            finding = (f"{figures}，低于{floor}，且未作说明（{deadline}）。请要求该医疗机构作出说明；"
                       f"说明依据不充分或填报数据明显不合理的，退回医疗机构重新填报，报量原则上不少于上一年度实际采购量。")
        elif code == BELOW_FLOOR:
            explanation = " ".join((row["explanation"] or "").split())
            finding = (f"{figures}，低于{floor}；医疗机构说明：“{explanation}”（{deadline}）。"
                       f"请审核该说明：填报数据明显不合理或说明依据不充分的，应退回医疗机构重新填报。")
        else:
            finding = (f"{figures}，不低于{floor}但低于上一年度实际采购量（{deadline}）。"
                       f"报量原则上不少于上一年度实际采购量，请提醒医疗机构结合临床需求复核报量。")
    return f"{head}{finding}依据：{cite(profile, code)}。"


def candidate_of(row: dict, ratio: Decimal, profile: dict) -> dict:
    return {
        "rule_code": row["verdict"],
        "severity": RULES[row["verdict"]].severity,
        "branch_code": row["branch_code"],
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "generic_name": row["generic_name"],
        "metric_value": row["reported_quantity"] or Decimal(0),
        "threshold_value": threshold_of(row),
        "message": message_of(row, ratio, profile),
    }


def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Judge the month's report deadlines; write alerts and the branches' spreadsheets."""
    profile = profile or load_profile()
    ratio = floor_ratio(profile)
    with engine.begin() as conn:
        subjects = review_subjects(conn, run, ratio)
        in_scope = [row for row in subjects
                    if not run.scope.batch_code or row["batch_code"] == run.scope.batch_code]
        candidates = [candidate_of(row, ratio, profile) for row in in_scope if row["verdict"]]
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        branches = branch_directory(conn)
        office = branches.get(city_branch_code(conn), {}).get("name", "")
    # The workbooks show the whole month of each branch, even under a batch filter.
    # Title block: the issuing office (the city bureau), the list and its month, the profile.
    title = BookTitle(office=office, title=LIST_TITLE, period=run.period.label, profile=profile)
    attachments = write_branch_files(
        run_folder(DAG_ID, run.period.label), FILE_PREFIX, run.period.label,
        branch_workbooks(subjects, branches, review_criteria(ratio, history_year(run.period.first_day))),
        scope_branch=run.scope.branch_code, title=title)
    return JudgeResult(period=run.period.label, rule_codes=RULE_CODES, written=written,
                       attachments=attachments,
                       details={"batches": sorted({row["batch_code"] for row in subjects}),
                                "subjects": len(in_scope)})


# ------------------------------------------------------------------ spreadsheets
# Typed (outputs.spreadsheets): quantities, the ratio as a percentage (rounded row by row
# before the cell: see _sheet_row), dates as date cells, long texts wrapped.
SHEET_HEADER = [
    Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"), Column("批次代码"), Column("批次名称"),
    Column("报量截止日", "date"), Column("通用名"), Column("上一年度实际采购量", "quantity"),
    Column("报量", "quantity"), Column("报量/历史采购量", "percent"), Column("填报说明", "long_text"),
    Column("报量日期", "date"), Column("审核结论"), Column("处理要求", "long_text"),
]


def workbook_path(period_label: str, branch_code: str) -> Path:
    return run_file_path(DAG_ID, FILE_PREFIX, period_label, branch_code)


def review_criteria(ratio: Decimal, year: int) -> tuple[list[str], list[list]]:
    """How the review judges, with the profile's floor: the sheet beside every list."""
    floor = f"{percent(ratio)} × 上一年度实际采购量"
    conditions = {
        BELOW_FLOOR_UNEXPLAINED: f"报量 < {floor}，且未作说明",
        BELOW_FLOOR: f"报量 < {floor}，已作说明",
        BELOW_HISTORY: f"{floor} ≤ 报量 < 上一年度实际采购量",
        NOT_REPORTED: "上一年度有采购量，截至报量截止日未报量",
    }
    return criteria_sheet(conditions, ACTIONS,
                          f"历史采购量 = 该医疗机构{year}年同通用名产品采购量（含线下，不含取消订单）；"
                          f"以报量截止日前最新一次填报为准；{percent(ratio)}系数取自政策口径（报量下限比例）")


def _verdict_text(row: dict) -> str:
    if row["verdict"]:
        return rule_title(row["verdict"])
    if row["history_quantity"] > 0:
        return "符合要求（不低于上一年度实际采购量）"
    return "上一年度无采购量"


def _sheet_row(row: dict, branches: dict) -> list:
    history, reported = row["history_quantity"], row["reported_quantity"]
    # below the history (a verdict) → rounded down, so it never reads as the limit; else half up
    ratio = (rounded(reported / history, RATE_CELL, "below" if row["verdict"] else None)
             if reported is not None and history else None)
    return [
        branches.get(row["branch_code"], {}).get("name", row["branch_code"]),
        row["institution_code"], row["institution_name"], row["batch_code"], row["batch_name"],
        row["report_deadline"], row["generic_name"], history,
        reported if reported is not None else "未报量", ratio if ratio is not None else "—",
        row["explanation"] or None, row["report_date"], _verdict_text(row),
        ACTIONS.get(row["verdict"], "无需处理"),
    ]


def _sort_key(row: dict):
    severity = SEVERITY_ORDER[RULES[row["verdict"]].severity] if row["verdict"] else len(SEVERITY_ORDER)
    return (severity, row["institution_code"], row["batch_code"], row["generic_name"])


def branch_workbooks(subjects: list[dict], branches: dict, criteria: tuple) -> dict[str, Sheets]:
    """Per branch: every subject of the month, the most severe verdicts first, and the criteria."""
    listed: dict[str, list[list]] = {}
    for row in sorted(subjects, key=_sort_key):
        listed.setdefault(row["branch_code"], []).append(_sheet_row(row, branches))
    return {branch: {"报量审核": (SHEET_HEADER, rows), "审核口径": criteria} for branch, rows in listed.items()}
