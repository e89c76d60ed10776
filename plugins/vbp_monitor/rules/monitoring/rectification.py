"""RECTIFICATION_OVERDUE: urged and not rectified (seed 002 §二(三) 督促整改；拒不整改的，将有关
线索移交同级行风主管部门和纪检监察部门), institution × generic name or institution × category.

Judged from the ``alerts`` table after M's other monthly alerts are written (``judge`` calls
it in the same transaction, after the store wrote them): the subject has an open alert of a
watched code in each of the ``rectification_months`` consecutive months ending with M.
A resolved alert, or a month not judged, breaks the run; the alert's own code is not
watched, so a rerun of M gives the same result. Condition:
include/sql/monitoring_rectification.sql.
"""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import groupby
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.formatting import period_zh
from vbp_monitor.core.labels import CATEGORY_ZH, label
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.rules.monitoring.common import DAG_ID, MonitoringSettings, candidate, institution_label

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

RECTIFICATION = "RECTIFICATION_OVERDUE"
# A run of months is counted back at most this far (domain.md).
LOOKBACK_MONTHS = 12
# A month's codes are listed in the catalog's order.
ORDER = list(RULES).index


def month_labels(run: RunContext) -> dict[str, str]:
    """``period_0`` … ``period_11``: the labels of M and the 11 months before it."""
    return {f"period_{back}": add_months(run.period.first_day, -back).strftime("%Y-%m")
            for back in range(LOOKBACK_MONTHS)}


def _subject(row: dict) -> tuple:
    return row["institution_code"], row["subject_kind"], row["subject_name"]


def rectification_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    needed = settings.rectification_months
    rows = sqlfiles.query(conn, "monitoring_rectification", dag_id=DAG_ID, rectification_months=needed,
                          branch_code=run.scope.branch_code, **month_labels(run))
    # rows come ordered by subject, then month (earliest first): one alert per subject
    for _key, group in groupby(rows, key=_subject):
        listed = list(group)
        first = listed[0]
        run_months = int(first["run_months"])
        by_month = {period: [row["rule_code"] for row in month_rows]
                    for period, month_rows in groupby(listed, key=lambda row: row["period"])}
        months = "；".join(f"{period_zh(period)}：{'、'.join(RULES[code].title for code in sorted(codes, key=ORDER))}"
                          for period, codes in by_month.items())
        if first["subject_kind"] == "category":
            what, subject = f"{label(CATEGORY_ZH, first['subject_name'])}网采率", {"category": first["subject_name"]}
        else:
            what, subject = f"{first['subject_name']}", {"generic_name": first["subject_name"]}
        since = period_zh(min(by_month))
        body = (
            f"{what}自{since}起连续 {run_months} 个月（不少于 {needed} 个月）均有未整改的按月监测预警（{months}），"
            "经督促仍未整改，视为拒不整改。下一步：移交行风主管部门和纪检监察部门（将有关线索移交同级行风主管部门、纪检监察部门）。"
        )
        yield candidate(RECTIFICATION, first,
                        settings.message(RECTIFICATION, institution_label(first), body),
                        Decimal(run_months), Decimal(needed), **subject)
