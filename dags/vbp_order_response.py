"""vbp_order_response · 配送响应 (domain.md DAG 6, seed 002 §二(六)). Logic: vbp_monitor.rules.order_response."""
from __future__ import annotations

from airflow.sdk import dag
from airflow.timetables.trigger import CronTriggerTimetable

from vbp_monitor.orchestration.wiring import BACKFILL_DOC, DEFAULT_ARGS, START_DATE, operator_params, rule_tasks

DAG_ID = "vbp_order_response"

DOC = """
## 配送响应 · order-response watch

Daily at 06:00 Asia/Shanghai; the run with logical date D **judges the day J = D − 1**, over
platform orders that are not cancelled (off-platform and cancelled orders are never judged).

| code | condition | severity |
| --- | --- | --- |
| `ORDER_RESPONSE_OVERDUE` | the 48-hour mark (`order_time + 48 h`) falls on J and there was no response at or before it | high |
| `ORDER_RESPONSE_ESCALATED` | the escalation day is J and there was no response by the end of J | critical (also to the city bureau) |

The orders overdue on J form J's delay list (延迟响应清单). The branch has the first PRC
working day after the mark's day to send it to the distributor, and the distributor 24 more
hours: the escalation day is the calendar day after that working day (e.g. an order at
2025-01-26 10:00: mark 28 January, Spring Festival until 4 February, list day 5 February,
escalation day 6 February → escalated by the run of 7 February). Hours and grace come from
profile `[order_response]`. OVERDUE: metric = hours without response as of the end of J (or
the actual response delay), threshold 48. ESCALATED: metric = hours without response as of
the end of J, threshold 48 + 24 = 72. A day that used the Monday–Friday fallback calendar is
noted in the message.

**Outputs**: alerts (period `YYYY-MM-DD` = J; subject = the order), and per branch
`<VBP_OUTPUT_DIR>/vbp_order_response/<J>/延迟响应清单_<branch>_<J>.xlsx`: J's delay list
grouped by distributor (distributor, order, institution, product, order time, mark, list day,
escalation day), a per-distributor count, and the orders escalated on J; attached to the
branch's email. Param `branch_code` restricts a rerun to one branch.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(
    dag_id=DAG_ID,
    schedule=CronTriggerTimetable("0 6 * * *", timezone="Asia/Shanghai"),
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    params=operator_params(batch=False),
    max_active_runs=4,
    tags=["vbp", "daily", "配送响应"],
    description="配送响应：订单超过48小时未响应（延迟响应清单）及督促后再24小时仍未响应上报市局",
    doc_md=DOC,
)
def vbp_order_response():
    rule_tasks("order_response", period="day")


vbp_order_response()
