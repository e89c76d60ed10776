"""What was bought: NON_SELECTED_HIGH_PRICE / ONLY_NON_SELECTED (seed 002 §二(三)) and
NON_EVALUATED_PURCHASE (seed 001 §五(一)4, seed 004 §二(一)), institution × generic × M.
Conditions: include/sql/monitoring_non_selected_price.sql, monitoring_non_evaluated.sql."""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.formatting import decimal_of, money, month_zh, quantity
from vbp_monitor.rules.monitoring.common import EPS, MonitoringSettings, candidate, institution_label

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

ONLY_NON_SELECTED = "ONLY_NON_SELECTED"
NON_EVALUATED = "NON_EVALUATED_PURCHASE"


def price_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    rows = sqlfiles.query(conn, "monitoring_non_selected_price", month_start=run.period.first_day,
                          month_end=run.period.last_day, eps=EPS, branch_code=run.scope.branch_code)
    for row in rows:
        code = row["rule_code"]
        cap, amount = decimal_of(row["highest_selected_price"]), decimal_of(row["amount"])
        body = (
            f"{month_zh(run.period.first_day)}采购{row['generic_name']}非中选产品 {row['product_count']} 个品规，"
            f"单价高于该通用名中选产品最高中选价 {money(cap)}"
            f"（最高采购单价 {money(row['highest_unit_price'], breach='above')}），"
            f"数量 {quantity(row['quantity'])}，金额 {money(amount, breach='above')}"
        )
        if code == ONLY_NON_SELECTED:
            body += ("；该机构本月无该通用名在执行期内的约定采购量（未报量），也未在平台采购该通用名中选产品。"
                     "请约谈医疗机构负责人，督促整改；拒不整改的，将有关线索移交同级行风主管部门和纪检监察部门。")
        else:
            body += "。请督促医疗机构整改，优先采购使用中选产品，避免采购高价非中选产品。"
        yield candidate(code, row, settings.message(code, institution_label(row), body), amount, cap,
                        generic_name=row["generic_name"])


def non_evaluated_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    minimum = settings.min_evaluated_manufacturers
    # PostgreSQL would probe the month's facts product by product through the key, whose
    # product_code is its 4th column (4.4 s at 1,000,000 lines a month); one hashed pass
    # over the month's facts takes 0.5 s
    with planner_settings(conn, enable_nestloop="off"):
        rows = sqlfiles.query(conn, "monitoring_non_evaluated", month_start=run.period.first_day,
                              min_makers=minimum, eps=EPS, branch_code=run.scope.branch_code)
    for row in rows:
        amount = decimal_of(row["amount"])
        body = (
            f"{row['generic_name']}已有 {row['evaluated_makers']} 家生产企业的产品通过仿制药质量和疗效一致性评价"
            f"（不少于 {minimum} 家），但{month_zh(run.period.first_day)}仍采购未通过一致性评价的产品 "
            f"{row['product_count']} 个品规，数量 {quantity(row['quantity'])}，金额 {money(amount, breach='above')}。"
            f"同品种通过一致性评价的生产企业达到{minimum}家以上的，原则上不再采购未通过一致性评价的品种："
            f"请核实并督促医疗机构改为采购通过一致性评价的产品。"
        )
        yield candidate(NON_EVALUATED, row, settings.message(NON_EVALUATED, institution_label(row), body),
                        amount, Decimal(0), generic_name=row["generic_name"])
