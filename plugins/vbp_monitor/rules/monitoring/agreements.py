"""PROGRESS_BEHIND and SELECTED_SHARE_LOW: agreement × M, from the institution file
(seed 002 §二(三)). Conditions: include/sql/monitoring_agreement_alerts.sql."""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.formatting import as_date, date_iso, date_zh, decimal_of, percent, quantity, rounded
from vbp_monitor.rules.monitoring.common import EPS, RATIO_PLACES, MonitoringSettings, candidate, institution_label

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

PROGRESS = "PROGRESS_BEHIND"
SHARE = "SELECTED_SHARE_LOW"


def agreement_label(row: dict) -> str:
    return (f"{institution_label(row)}「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}"
            f"（协议年度 {date_iso(row['period_start'])} 至 {date_iso(row['period_end'])}）")


def _agreement_candidate(code: str, row: dict, message: str, metric: Decimal, threshold: Decimal,
                         severity: str | None = None) -> dict:
    # _period_start: which of two agreement years active in M wins the alert key (one_per_key)
    return candidate(code, row, message, metric, threshold, severity, batch_code=row["batch_code"],
                     generic_name=row["generic_name"], _period_start=as_date(row["period_start"]))


def progress_candidate(row: dict, settings: MonitoringSettings) -> dict:
    level = row["progress_line"]  # 'high_ratio' or 'warning_ratio': the line broken
    high = level == "high_ratio"
    ratio = settings.high_ratio if high else settings.warning_ratio
    elapsed, total = int(row["elapsed_days"]), int(row["total_days"])
    agreed, cumulative = decimal_of(row["agreed_quantity"]), decimal_of(row["cumulative_selected_quantity"])
    progress = Decimal(elapsed) / Decimal(total)
    completion = cumulative / agreed
    required = ratio * progress
    if high:
        action = (f"完成率不足序时进度的{percent(ratio)}，请分局约谈医疗机构、重点督导，督促其按协议量加快采购"
                  "中选产品，并将其列为基金监管飞检重要线索。")
    else:
        action = "请督促医疗机构按约定采购量加快采购中选产品，确保协议期内完成约定采购量。"
    body = (
        f"截至{date_zh(row['as_of_date'])}，序时进度 {elapsed}/{total} 天 = {percent(progress)}；"
        f"约定采购量 {quantity(agreed)}，自协议期起平台采购中选产品 {quantity(cumulative)}，"
        f"完成率 {percent(completion, breach='below')}，低于序时进度的 {percent(ratio)}"
        f"（{percent(required)}）。{action}"
    )
    return _agreement_candidate(
        PROGRESS, row, settings.message(PROGRESS, agreement_label(row), body),
        rounded(completion, RATIO_PLACES, breach="below"), rounded(required, RATIO_PLACES),
        severity=RULES[PROGRESS].severity_for(level),
    )


def share_candidate(row: dict, settings: MonitoringSettings, run: RunContext) -> dict:
    selected, same = decimal_of(row["selected_quantity"]), decimal_of(row["same_generic_quantity"])
    agreed_ratio = decimal_of(row["agreed_ratio"])
    share = selected / same
    from_day = max(run.period.first_day, as_date(row["period_start"]))
    body = (
        f"{date_zh(from_day)}至{date_zh(row['as_of_date'])}采购同通用名产品 {quantity(same)}，"
        f"其中平台采购中选产品 {quantity(selected)}，中选产品采购数量占比 {percent(share, breach='below')}，"
        f"低于约定采购比例 {percent(agreed_ratio)}。请督促医疗机构优先采购使用中选产品，达到约定采购比例。"
    )
    return _agreement_candidate(SHARE, row, settings.message(SHARE, agreement_label(row), body),
                                rounded(share, RATIO_PLACES, breach="below"), agreed_ratio)


def agreement_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    # The ratios go to SQL as floats on both databases; :eps keeps "exactly at the line" quiet.
    rows = sqlfiles.query(
        conn, "monitoring_agreement_alerts", period=run.period.label,
        min_progress=float(settings.min_time_progress), warning_ratio=float(settings.warning_ratio),
        high_ratio=float(settings.high_ratio), eps=EPS, branch_code=run.scope.branch_code,
        batch_code=run.scope.batch_code,
    )
    for row in rows:
        if row["progress_line"]:
            yield progress_candidate(row, settings)
        if row["share_low"]:
            yield share_candidate(row, settings, run)
