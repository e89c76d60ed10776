"""DAG 1 · 进院排查 (month-3 entry sweep) — domain.md DAG 1, seed 002 §二(二).

Every agreement of a public institution with ``agreed_quantity > 0`` is judged once, at the
last day of its cycle month k (profile ``[entry_sweep] entry_sweep_month``, default 3), as
of that day, by the monthly run whose judged month contains that day:

* ``ENTRY_NOT_PURCHASED`` (high): no selected purchase (platform, not cancelled, a product
  selected in the agreement's batch with its generic name) from ``period_start`` to the
  milestone day. metric 0, threshold = agreed quantity.
* ``ENTRY_BEHIND_AGREEMENT`` (warning): selected purchases exist but the completion rate
  is below ``progress_warning_ratio`` × time progress. metric = completion rate,
  threshold = ratio × time progress.

A renewal agreement year is swept again at its own month k (purchases counted from its own
``period_start``). Besides alerts, each branch gets the sweep list (every swept agreement
with its figures and verdict) as an XLSX attached to its email.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from decimal import Decimal
from pathlib import Path

from vbp_monitor.core import config
from vbp_monitor.core import sqlfiles
from vbp_monitor.alerts.store import alert_key
from vbp_monitor.core.catalog import RULES, SEVERITY_ORDER, rule_title
from vbp_monitor.core.prc_calendar import add_months, ensure_cycle_month_calendar
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.reference import branch_directory
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.core.formatting import as_date, exact_decimal, fmt_quantity

log = logging.getLogger(__name__)

DAG_ID = "vbp_entry_sweep"
NOT_PURCHASED = "ENTRY_NOT_PURCHASED"
BEHIND = "ENTRY_BEHIND_AGREEMENT"
RULE_CODES = (NOT_PURCHASED, BEHIND)
SEVERITY = {NOT_PURCHASED: "high", BEHIND: "warning"}
# Quantities have at most 4 decimals: "short by more than 1e-6" separates a value exactly at
# the threshold from a real shortfall even on SQLite's REAL arithmetic with large quantities
# (a tolerance on the completion-rate scale would grow with the agreed quantity).
QUANTITY_EPS = 1e-6
QUANTITY = Decimal("0.0001")
RATIO = Decimal("0.000001")
OUTPUT_SUBDIR = "vbp_entry_sweep"


# ------------------------------------------------------------------ settings
def sweep_settings(profile: dict) -> tuple[int, Decimal]:
    """(cycle month k, progress_warning_ratio) from the profile.

    The ratio is the monitoring one (domain.md names the same ``progress_warning_ratio``);
    ``[entry_sweep] progress_warning_ratio`` overrides it for the sweep alone.
    """
    section = profile.get("entry_sweep", {})
    month = int(section.get("entry_sweep_month", 3))
    ratio = section.get("progress_warning_ratio", profile["monitoring"]["progress_warning_ratio"])
    return month, Decimal(str(ratio))


# ------------------------------------------------------------------ small helpers
_decimal = exact_decimal
_date = as_date



def fmt_percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext, profile: dict) -> dict[str, str | None]:
    """The rows this DAG reads, for ``validation.validate_tables``.

    The swept agreements start about k months before the judged month, so their order lines
    lie between k months before its first day and its last day.
    """
    month, _ = sweep_settings(profile)
    earliest = add_months(run.period.first_day, -month)
    last = run.period.last_day.isoformat()
    return {
        "agreements": f"period_start >= '{earliest.isoformat()}' AND period_start <= '{last}'",
        "institutions": None,
        "batches": None,
        "products": None,
        "orders": f"order_date >= '{earliest.isoformat()}' AND order_date <= '{last}'",
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
        ratio=float(ratio), quantity_eps=QUANTITY_EPS, branch_code=run.scope.branch_code,
    )
    for row in rows:
        for name in ("period_start", "period_end", "milestone_day", "first_order_date"):
            row[name] = _date(row[name])
        row["agreed_quantity"] = _decimal(row["agreed_quantity"])
        row["selected_quantity"] = _decimal(row["selected_quantity"]) or Decimal(0)
        row["line_count"] = int(row["line_count"] or 0)
        row["elapsed_days"] = int(row["elapsed_days"])
        row["total_days"] = int(row["total_days"])
        row["cycle_month"] = month
        row["completion_rate"] = (row["selected_quantity"] / row["agreed_quantity"]).quantize(RATIO)
        row["time_progress"] = (Decimal(row["elapsed_days"]) / Decimal(row["total_days"])).quantize(RATIO)
        row["required_rate"] = (ratio * row["elapsed_days"] / row["total_days"]).quantize(RATIO)
    return rows


def _subject_label(row: dict) -> str:
    return (f"{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}")


def message_of(row: dict, ratio: Decimal) -> str:
    code = row["verdict"]
    k = row["cycle_month"]
    head = (f"【进院排查】{_subject_label(row)}：协议年度 {row['period_start'].isoformat()} 至 "
            f"{row['period_end'].isoformat()}，约定采购量 {fmt_quantity(row['agreed_quantity'])}。")
    clause = (f"依据：{RULES[code].clause}（各分局从中选结果落地执行第3个月起对本辖区公立医疗机构"
              f"中选产品进院及使用情况开展排查，督促尚未完成进院采购的医疗机构尽快履行协议，并按协议量进行采购）。")
    if code == NOT_PURCHASED:
        return (
            f"{head}截至执行第{k}个月末（{row['milestone_day'].isoformat()}），该医疗机构在平台上"
            f"无该通用名中选产品的采购记录（采购量 0，约定采购量 {fmt_quantity(row['agreed_quantity'])}），"
            f"中选产品尚未进院。请督促该医疗机构尽快与中选企业落实进院采购、履行采购协议，"
            f"并按协议量进行采购。{clause}"
        )
    return (
        f"{head}截至执行第{k}个月末（{row['milestone_day'].isoformat()}），平台采购中选产品 "
        f"{fmt_quantity(row['selected_quantity'])}，约定采购量完成率 {fmt_percent(row['completion_rate'])}，"
        f"低于序时进度 {fmt_percent(row['time_progress'])}（{row['elapsed_days']}/{row['total_days']} 天）"
        f"× {ratio:g} = {fmt_percent(row['required_rate'])}。请督促该医疗机构按协议量进行采购，"
        f"优先使用中选产品。{clause}"
    )


def candidate_of(row: dict, ratio: Decimal) -> dict:
    code = row["verdict"]
    if code == NOT_PURCHASED:
        metric, threshold = Decimal(0), row["agreed_quantity"]
    else:
        metric, threshold = row["completion_rate"], row["required_rate"]
    return {
        "rule_code": code,
        "severity": SEVERITY[code],
        "branch_code": row["branch_code"],
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "generic_name": row["generic_name"],
        "milestone_month": row["cycle_month"],
        "metric_value": metric,
        "threshold_value": threshold,
        "message": message_of(row, ratio),
    }


def unique_subjects(candidates: list[dict], run: RunContext) -> list[dict]:
    """One candidate per alert key. Two agreements of one institution, batch and generic name
    swept in the same month (overlapping years: a data error) would share a key; the more
    severe verdict wins so the upsert never touches a row twice."""
    best: dict[str, dict] = {}
    for candidate in sorted(candidates, key=lambda c: (SEVERITY_ORDER[c["severity"]], c["metric_value"])):
        key = alert_key({**candidate, "period": run.period.label})
        if key in best:
            log.warning("%s/%s/%s: two agreements swept in %s; kept the more severe verdict",
                        candidate["institution_code"], candidate["batch_code"],
                        candidate["generic_name"], run.period.label)
            continue
        best[key] = candidate
    return list(best.values())


def judge(engine, run: RunContext, profile: dict | None = None) -> dict:
    """Sweep the agreements whose cycle month k ends in the judged month; write alerts and
    the branches' sweep lists. Returns a small JSON-able summary with attachment paths."""
    profile = profile or load_profile()
    _, ratio = sweep_settings(profile)
    with engine.begin() as conn:
        swept = swept_agreements(conn, run, profile)
        in_scope = [row for row in swept
                    if not run.scope.batch_code or row["batch_code"] == run.scope.batch_code]
        candidates = unique_subjects([candidate_of(row, ratio) for row in in_scope if row["verdict"]], run)
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        branches = branch_directory(conn)
    # The sweep lists show every swept agreement of the branch, even under a batch filter.
    attachments = write_branch_workbooks(swept, run, ratio, branches)
    result = {
        "period": run.period.label,
        "swept": len(in_scope),
        "raised": written.raised,
        "new": written.new,
        "resolved": written.resolved,
        "by_rule": dict(Counter(c["rule_code"] for c in candidates)),
        "attachments": {branch: [str(path) for path in paths] for branch, paths in attachments.items()},
    }
    log.info("%s %s: %s", DAG_ID, run.period.label, result)
    return result


# ------------------------------------------------------------------ spreadsheets
SHEET_HEADER = [
    "分局", "医疗机构代码", "医疗机构名称", "批次代码", "批次名称", "通用名", "协议编号",
    "协议年度起", "协议年度止", "排查节点（执行第k个月末）", "约定采购量", "中选产品平台采购量",
    "首次采购日期", "约定采购量完成率", "序时进度", "预警线（比例×序时进度）", "排查结论", "处理要求",
]


def action_of(code: str | None) -> str:
    return {
        NOT_PURCHASED: "督促医疗机构尽快落实中选产品进院采购、履行采购协议",
        BEHIND: "督促医疗机构按协议量进行采购",
    }.get(code, "无需处理")


def workbook_path(period_label: str, branch_code: str) -> Path:
    return config.output_dir() / OUTPUT_SUBDIR / period_label / f"进院排查_{branch_code}_{period_label}.xlsx"


def _verdict_text(row: dict) -> str:
    return rule_title(row["verdict"]) if row["verdict"] else "已进院，进度符合要求"


def _sheet_row(row: dict, branches: dict) -> list:
    branch = branches.get(row["branch_code"], {}).get("name", row["branch_code"])
    return [
        branch, row["institution_code"], row["institution_name"], row["batch_code"],
        row["batch_name"], row["generic_name"], row["agreement_id"], row["period_start"],
        row["period_end"], f"第{row['cycle_month']}个月末 {row['milestone_day'].isoformat()}",
        row["agreed_quantity"], row["selected_quantity"], row["first_order_date"] or "无",
        row["completion_rate"], row["time_progress"], row["required_rate"],
        _verdict_text(row), action_of(row["verdict"]),
    ]


def _sort_key(row: dict):
    severity = SEVERITY_ORDER[SEVERITY[row["verdict"]]] if row["verdict"] else len(SEVERITY_ORDER)
    return (severity, row["institution_code"], row["batch_code"], row["generic_name"], row["agreement_id"])


def write_branch_workbooks(swept: list[dict], run: RunContext, ratio: Decimal,
                           branches: dict) -> dict[str, list[Path]]:
    """One XLSX per branch listing every swept agreement; stale ones of the scope removed."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx, remove_stale_branch_files

    by_branch: dict[str, list[dict]] = {}
    for row in swept:
        by_branch.setdefault(row["branch_code"], []).append(row)
    criteria_header = ["规则代码", "结论", "判定口径", "预警级别", "处理要求"]
    criteria = [
        [NOT_PURCHASED, rule_title(NOT_PURCHASED),
         "协议年度起至执行第k个月末，平台上无该通用名中选产品采购（不含取消订单、线下采购）", "高",
         action_of(NOT_PURCHASED)],
        [BEHIND, rule_title(BEHIND),
         f"已有中选产品采购，但约定采购量完成率 < {ratio:g} × 序时进度", "关注", action_of(BEHIND)],
        ["", "口径说明",
         "排查对象：公立医疗机构约定采购量大于0的采购协议，于每个协议年度执行第k个月末排查一次"
         "（含续签年度）；完成率 = 中选产品平台采购量 ÷ 约定采购量；"
         "序时进度 = （排查节点 − 协议年度起 + 1天）÷（协议年度止 − 协议年度起 + 1天）", "", ""],
    ]
    written: dict[str, list[Path]] = {}
    for branch_code, rows in sorted(by_branch.items()):
        path = workbook_path(run.period.label, branch_code)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_xlsx(path, {
            "进院排查": (SHEET_HEADER, [_sheet_row(row, branches) for row in sorted(rows, key=_sort_key)]),
            "排查口径": (criteria_header, criteria),
        })
        written[branch_code] = [path]
    remove_stale_branch_files(config.output_dir() / OUTPUT_SUBDIR / run.period.label, "进院排查", run.period.label,
                              set(written), run.scope.branch_code)
    return written


