"""vbp_order_response · 配送响应 (domain.md DAG 6, seed 002 §二(六)). Logic: vbp_monitor.rules.order_response."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_order_response"

DOC = f"""
## 配送响应 · order-response watch

Daily at 06:00 Asia/Shanghai; the run with logical date D **judges the day J = D − 1**, over
platform orders that are not cancelled (off-platform and cancelled orders are never judged).

Conditions (hours from profile `[order_response]`: `response_hours`, default 48, and
`distributor_grace_hours`, default 24):
* `ORDER_RESPONSE_OVERDUE`: the response mark (`order_time + response_hours`) falls on J and
  there was no response at or before it.
* `ORDER_RESPONSE_ESCALATED`: the escalation day is J and there was no response by the end of
  J (critical: the city bureau hears of it too).

{rule_table_md(DAG_ID)}

The orders overdue on J form J's delay list (延迟响应清单). The branch has the first PRC
working day after the mark's day to send it to the distributor, and the distributor
`distributor_grace_hours` more: the escalation day is the calendar day after that working day
(e.g. an order at 2025-01-26 10:00: mark 28 January, Spring Festival until 4 February, list
day 5 February, escalation day 6 February → escalated by the run of 7 February). OVERDUE: metric = hours
without response as of the end of J (or the actual response delay), threshold =
`response_hours`. ESCALATED: metric = hours without response as of the end of J, threshold =
`response_hours + distributor_grace_hours` (72 by default). A day that used the Monday–Friday
fallback calendar is noted in the message; every message cites the clause the profile gives
for its rule (`[order_response.citations]`).

**Outputs**: alerts (period `YYYY-MM-DD` = J; subject = the order), and per branch
`<VBP_OUTPUT_DIR>/vbp_order_response/<J>/延迟响应清单_<branch>_<J>.xlsx`: J's delay list
grouped by distributor (distributor, order, institution, product, order time, mark, list day,
escalation day), a per-distributor count, and the orders escalated on J; attached to the
branch's email. Param `branch_code` restricts a rerun to one branch.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_order_response():
    rule_tasks("vbp_monitor.rules.order_response", steps=["validate"])


vbp_order_response()
