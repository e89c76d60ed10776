"""DAG 5 · 报量审核 (volume-report review) — domain.md DAG 5, seed 002 §二(一).

For every batch whose ``report_deadline`` falls in the judged month M, as of that deadline:
each institution's latest volume report for each selected generic name of the batch is
compared with its same-generic purchases in the calendar year before the deadline's year.
Besides alerts, each branch gets a spreadsheet with one row per subject (what was reported,
the history, the ratio, the explanation and the verdict), attached to its email.

Rerunning the month re-judges corrected reports: the AlertStore resolves what is no longer
raised and the spreadsheets are rewritten.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from vbp_monitor.core import config
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import RULES, SEVERITY_ORDER, rule_title
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.reference import branch_directory
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.core.formatting import as_date, exact_decimal, fmt_quantity

log = logging.getLogger(__name__)

DAG_ID = "vbp_volume_review"
RULE_CODES = (
    "REPORT_BELOW_80_NO_EXPLANATION", "REPORT_BELOW_80", "REPORT_BELOW_HISTORY",
    "HISTORY_NOT_REPORTED",
)
SEVERITY = {
    "REPORT_BELOW_80_NO_EXPLANATION": "high",
    "REPORT_BELOW_80": "warning",
    "REPORT_BELOW_HISTORY": "info",
    "HISTORY_NOT_REPORTED": "high",
}
EPS = 1e-9
# Characters an explanation may consist of and still count as empty (besides spaces).
BLANK_CHARACTERS = {"tab": "\t", "cr": "\r", "lf": "\n", "wide_space": "\u3000"}
QUANTUM = Decimal("0.0001")
OUTPUT_SUBDIR = "vbp_volume_review"


# ------------------------------------------------------------------ small helpers
_decimal = exact_decimal
_date = as_date



def _percent(part: Decimal | None, whole: Decimal) -> str:
    if part is None or not whole:
        return "—"
    # rounded down: a share just below a limit never reads as the limit itself
    return format((part / whole * 100).quantize(Decimal("0.01"), rounding=ROUND_DOWN), "f") + "%"


def history_year(period_first_day: dt.date) -> int:
    """The calendar year before the deadline's year (all deadlines judged lie in one month)."""
    return period_first_day.year - 1


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext) -> dict[str, str | None]:
    """The rows this DAG reads, for ``validation.validate_tables``."""
    year = history_year(run.period.first_day)
    return {
        "batches": None,
        "products": None,
        "institutions": None,
        "volume_reports": f"report_date <= '{run.period.last_day.isoformat()}'",
        "orders": f"order_date >= '{year}-01-01' AND order_date <= '{year}-12-31'",
    }


def validate(engine, run: RunContext) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run))


# ------------------------------------------------------------------ judging
def review_subjects(conn, run: RunContext, ratio: float) -> list[dict]:
    """Every subject of the judged month (within the operator's branch scope), typed."""
    year = history_year(run.period.first_day)
    rows = sqlfiles.query(
        conn, "volume_review_subjects",
        first_day=run.period.first_day, last_day=run.period.last_day,
        history_start=dt.date(year, 1, 1), history_end=dt.date(year, 12, 31),
        ratio=ratio, eps=EPS, branch_code=run.scope.branch_code, **BLANK_CHARACTERS,
    )
    for row in rows:
        row["history_quantity"] = _decimal(row["history_quantity"]) or Decimal(0)
        row["reported_quantity"] = _decimal(row["reported_quantity"])
        row["report_deadline"] = _date(row["report_deadline"])
        row["report_date"] = _date(row["report_date"])
        row["explanation_given"] = bool(row["explanation_given"])
        row["history_year"] = year
    return rows


def threshold_of(row: dict, ratio: float) -> Decimal:
    if row["verdict"] in ("REPORT_BELOW_80_NO_EXPLANATION", "REPORT_BELOW_80"):
        return (Decimal(str(ratio)) * row["history_quantity"]).quantize(QUANTUM)
    return row["history_quantity"]


def _subject_label(row: dict) -> str:
    return (f"{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}")


def action_of(code: str | None) -> str:
    """What the branch must have the institution do (seed 002 §二(一))."""
    return {
        "REPORT_BELOW_80_NO_EXPLANATION":
            "要求医疗机构作出说明；说明依据不充分或填报明显不合理的，退回医疗机构重新填报",
        "REPORT_BELOW_80":
            "审核其说明：填报数据明显不合理或说明依据不充分的，退回医疗机构重新填报",
        "REPORT_BELOW_HISTORY":
            "提醒医疗机构复核：报量原则上不少于上一年度实际采购量",
        "HISTORY_NOT_REPORTED":
            "重点关注：核实未报量原因，督促医疗机构补报",
    }.get(code, "无需处理")


def message_of(row: dict, ratio: float) -> str:
    code = row["verdict"]
    history = row["history_quantity"]
    reported = row["reported_quantity"]
    floor_pct = format((Decimal(str(ratio)) * 100).normalize(), "f") + "%"
    floor = threshold_of({**row, "verdict": "REPORT_BELOW_80"}, ratio)
    head = f"【报量审核】{_subject_label(row)}："
    deadline = f"报量截止日 {row['report_deadline'].isoformat()}"
    year = row["history_year"]
    clause = f"依据：{RULES[code].clause}（医疗机构报量原则上不少于上一年度实际采购量；低于历史采购量80%的，要求作出说明）。"
    if code == "HISTORY_NOT_REPORTED":
        return (
            f"{head}{year}年实际采购量 {fmt_quantity(history)}，但截至{deadline} 仍未报量。"
            f"对有历史采购量而不参与报量的医疗机构需重点关注：请核实原因并督促其补报。{clause}"
        )
    figures = (f"报量 {fmt_quantity(reported)}（{row['report_date'].isoformat()} 填报），"
               f"{year}年实际采购量 {fmt_quantity(history)}，报量为历史采购量的 {_percent(reported, history)}")
    if code == "REPORT_BELOW_80_NO_EXPLANATION":
        return (
            f"{head}{figures}，低于{floor_pct}（{fmt_quantity(floor)}），且未作说明（{deadline}）。"
            f"请要求该医疗机构作出说明；说明依据不充分或填报数据明显不合理的，退回医疗机构重新填报，"
            f"报量原则上不少于上一年度实际采购量。{clause}"
        )
    if code == "REPORT_BELOW_80":
        explanation = " ".join((row["explanation"] or "").split())
        return (
            f"{head}{figures}，低于{floor_pct}（{fmt_quantity(floor)}）；医疗机构说明：“{explanation}”（{deadline}）。"
            f"请审核该说明：填报数据明显不合理或说明依据不充分的，应退回医疗机构重新填报。{clause}"
        )
    return (
        f"{head}{figures}，不低于{floor_pct}（{fmt_quantity(floor)}）但低于上一年度实际采购量"
        f"（{deadline}）。报量原则上不少于上一年度实际采购量，请提醒医疗机构结合临床需求复核报量。{clause}"
    )


def candidate_of(row: dict, ratio: float) -> dict:
    return {
        "rule_code": row["verdict"],
        "severity": SEVERITY[row["verdict"]],
        "branch_code": row["branch_code"],
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "generic_name": row["generic_name"],
        "metric_value": row["reported_quantity"] or Decimal(0),
        "threshold_value": threshold_of(row, ratio),
        "message": message_of(row, ratio),
    }


def judge(engine, run: RunContext, profile: dict | None = None) -> dict:
    """Judge the month's report deadlines; write alerts and the branches' spreadsheets."""
    profile = profile or load_profile()
    ratio = float(profile["volume_review"]["history_floor_ratio"])
    with engine.begin() as conn:
        subjects = review_subjects(conn, run, ratio)
        in_scope = [row for row in subjects
                    if not run.scope.batch_code or row["batch_code"] == run.scope.batch_code]
        candidates = [candidate_of(row, ratio) for row in in_scope if row["verdict"]]
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        branches = branch_directory(conn)
    # The workbooks show the whole month of each branch, even under a batch filter.
    attachments = write_branch_workbooks(subjects, run, ratio, branches)
    result = {
        "period": run.period.label,
        "batches": sorted({row["batch_code"] for row in subjects}),
        "subjects": len(in_scope),
        "raised": written.raised,
        "new": written.new,
        "resolved": written.resolved,
        "by_rule": dict(Counter(c["rule_code"] for c in candidates)),
        "attachments": {branch: [str(path) for path in paths] for branch, paths in attachments.items()},
    }
    log.info("vbp_volume_review %s: %s", run.period.label, result)
    return result


# ------------------------------------------------------------------ spreadsheets
SHEET_HEADER = [
    "分局", "医疗机构代码", "医疗机构名称", "批次代码", "批次名称", "报量截止日", "通用名",
    "上一年度实际采购量", "报量", "报量/历史采购量", "填报说明", "报量日期", "审核结论", "处理要求",
]
CRITERIA_ROWS = [
    ["REPORT_BELOW_80_NO_EXPLANATION", rule_title("REPORT_BELOW_80_NO_EXPLANATION"),
     "报量 < 80% × 上一年度实际采购量，且未作说明", "高", action_of("REPORT_BELOW_80_NO_EXPLANATION")],
    ["REPORT_BELOW_80", rule_title("REPORT_BELOW_80"),
     "报量 < 80% × 上一年度实际采购量，已作说明", "关注", action_of("REPORT_BELOW_80")],
    ["REPORT_BELOW_HISTORY", rule_title("REPORT_BELOW_HISTORY"),
     "80% × 上一年度实际采购量 ≤ 报量 < 上一年度实际采购量", "提醒", action_of("REPORT_BELOW_HISTORY")],
    ["HISTORY_NOT_REPORTED", rule_title("HISTORY_NOT_REPORTED"),
     "上一年度有采购量，截至报量截止日未报量", "高", action_of("HISTORY_NOT_REPORTED")],
]


def workbook_path(period_label: str, branch_code: str) -> Path:
    return config.output_dir() / OUTPUT_SUBDIR / period_label / f"报量审核_{branch_code}_{period_label}.xlsx"


def _verdict_text(row: dict) -> str:
    if row["verdict"]:
        return rule_title(row["verdict"])
    if row["history_quantity"] > 0:
        return "符合要求（不低于上一年度实际采购量）"
    return "上一年度无采购量"


def _sheet_row(row: dict, branches: dict) -> list:
    history, reported = row["history_quantity"], row["reported_quantity"]
    ratio = (reported / history).quantize(Decimal("0.0001")) if reported is not None and history else None
    branch = branches.get(row["branch_code"], {}).get("name", row["branch_code"])
    return [
        branch, row["institution_code"], row["institution_name"], row["batch_code"], row["batch_name"],
        row["report_deadline"], row["generic_name"], history,
        reported if reported is not None else "未报量", ratio if ratio is not None else "—",
        row["explanation"] or "", row["report_date"] or "", _verdict_text(row), action_of(row["verdict"]),
    ]


def _sort_key(row: dict):
    severity = SEVERITY_ORDER[SEVERITY[row["verdict"]]] if row["verdict"] else len(SEVERITY_ORDER)
    return (severity, row["institution_code"], row["batch_code"], row["generic_name"])


def write_branch_workbooks(subjects: list[dict], run: RunContext, ratio: float,
                           branches: dict) -> dict[str, list[Path]]:
    """One XLSX per branch with every subject of the month; stale ones of the scope removed."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx, remove_stale_branch_files

    by_branch: dict[str, list[dict]] = {}
    for row in subjects:
        by_branch.setdefault(row["branch_code"], []).append(row)
    criteria_header = ["规则代码", "结论", "判定口径", "预警级别", "处理要求"]
    criteria = CRITERIA_ROWS + [[
        "", "口径说明",
        f"历史采购量 = 该医疗机构{history_year(run.period.first_day)}年同通用名产品采购量（含线下，不含取消订单）；"
        f"以报量截止日前最新一次填报为准；80%系数取自政策参数 {ratio:g}", "", "",
    ]]
    written: dict[str, list[Path]] = {}
    for branch_code, rows in sorted(by_branch.items()):
        path = workbook_path(run.period.label, branch_code)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_xlsx(path, {
            "报量审核": (SHEET_HEADER, [_sheet_row(row, branches) for row in sorted(rows, key=_sort_key)]),
            "审核口径": (criteria_header, criteria),
        })
        written[branch_code] = [path]
    remove_stale_branch_files(config.output_dir() / OUTPUT_SUBDIR / run.period.label, "报量审核", run.period.label,
                              set(written), run.scope.branch_code)
    return written


