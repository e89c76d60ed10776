"""Online purchase rates: ONLINE_RATE_LOW (public institution × category) and
BRANCH_ONLINE_RATE_LOW (branch × category), seed 002 §二(四) and 附件1.
Condition: include/sql/monitoring_online_rates.sql."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.formatting import decimal_of, money, month_zh, percent, rounded
from vbp_monitor.core.labels import CATEGORY_ZH, label
from vbp_monitor.rules.monitoring.common import EPS, RATIO_PLACES, MonitoringSettings, candidate, institution_label

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

INSTITUTION_RATE = "ONLINE_RATE_LOW"
BRANCH_RATE = "BRANCH_ONLINE_RATE_LOW"


def online_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    thresholds = settings.online_rate_thresholds
    drug, hvc = thresholds.get("drug"), thresholds.get("high_value_consumable")
    if drug is None and hvc is None:
        return
    # The minimum rates go to SQL as floats on both databases (see :eps there).
    rows = sqlfiles.query(
        conn, "monitoring_online_rates", month_start=run.period.first_day,
        drug_min_rate=None if drug is None else float(drug),
        hvc_min_rate=None if hvc is None else float(hvc),
        eps=EPS, branch_code=run.scope.branch_code,
    )
    for row in rows:
        platform, total = decimal_of(row["platform_amount"]), decimal_of(row["total_amount"])
        rate = platform / total
        minimum = thresholds[row["category"]]
        figures = (
            f"{month_zh(run.period.first_day)}{label(CATEGORY_ZH, row['category'])}采购总金额 {money(total)}，"
            f"其中平台采购 {money(platform)}、线下采购 {money(total - platform)}，"
            f"网采率 {percent(rate, breach='below')}，低于 {percent(minimum)} 的要求。"
        )
        if row["level"] == "branch":
            code = BRANCH_RATE
            subject = f"{row['branch_name']}（{row['branch_code']}）辖区 {row['institution_count']} 家公立医疗机构"
            action = ("请分局加强对辖区公立医疗机构的督导，落实通过省级平台“全品种、全数量”采购，"
                      "规范线下议价采购及备案。")
        else:
            code, subject = INSTITUTION_RATE, institution_label(row)
            action = (f"请督促医疗机构通过省级平台“全品种、全数量”采购；确需线下议价采购的，"
                      f"须在{settings.filing_working_days}个工作日内备案。")
        yield candidate(code, row, settings.message(code, subject, figures + action),
                        rounded(rate, RATIO_PLACES, breach="below"), minimum,
                        institution_code=row["institution_code"], category=row["category"])
