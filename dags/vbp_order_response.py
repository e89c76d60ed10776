"""vbp_order_response · 配送响应 (domain.md DAG 6, seed 002 §二(六)). Logic: vbp_monitor.rules.order_response."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_order_response"

ZH_PURPOSE = """配送响应（seed 002 §二(六)）：逻辑日期为 D 的运行**评判前一天 J = D − 1**，范围为未取消的平台订单（线下订单和已取消订单不评判）。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

**条件**（小时数取自配置 `[order_response]`：`response_hours` 默认 48，`distributor_grace_hours` 默认 24）：
* `ORDER_RESPONSE_OVERDUE`：响应时限（`order_time + response_hours`）落在 J，且在时限前（含）未响应。
* `ORDER_RESPONSE_ESCALATED`：督促期满日为 J，且到 J 日结束仍未响应（critical：同时报市局）。

J 日超时的订单构成 J 的延迟响应清单。分局须在时限当日之后的第一个工作日把清单发给配送企业，配送企业再有
`distributor_grace_hours` 小时：督促期满日为该工作日的次日（例：2025-01-26 10:00 下单，时限 1 月 28 日，春节放假至 2 月 4 日，
清单日 2 月 5 日，督促期满日 2 月 6 日 → 由 2 月 7 日的运行上报）。OVERDUE：指标 = 截至 J 日结束未响应的小时数（或实际响应延迟），
阈值 = `response_hours`。ESCALATED：指标 = 截至 J 日结束未响应的小时数，阈值 = `response_hours + distributor_grace_hours`
（默认 72）。使用周一至周五后备日历的日期会在消息中注明；每条消息引用配置中该规则的条款（`[order_response.citations]`）。

**任务**：`validate`（校验本次读取的数据）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警（期间 `YYYY-MM-DD` = J，对象为订单）；各分局 `<VBP_OUTPUT_DIR>/vbp_order_response/<J>/延迟响应清单_<分局>_<J>.xlsx`：
可直接发送的 J 日延迟响应清单（标题区：分局、日期、48小时规则与24小时期限；每家配送企业一节：名称、联系邮箱、订单数，
其下为订单、机构、产品、下单时间、时限、清单日、督促期满日），以及 J 日上报的订单；作为该分局邮件附件。
每家配送企业另有只含本企业订单的清单（`配送企业清单/<分局>/延迟响应清单_<分局>_<配送企业>_<J>.xlsx`）：
`distributors.csv` 登记了邮箱且配置 `[order_response] send_to_distributors`（默认 true）时，系统直接发给该企业并抄送分局；
否则随分局邮件附上，分局邮件列出需自行联系的配送企业。

**参数**：`branch_code` 只重跑一个分局；`force_resend` 重新发送已通知的预警；本 DAG 无批次参数。
"""

ENGLISH = """
### Order-response watch · 配送响应

Daily at 06:00 Asia/Shanghai; the run with logical date D **judges the day J = D − 1**, over
platform orders that are not cancelled (off-platform and cancelled orders are never judged).

Conditions (hours from profile `[order_response]`: `response_hours`, default 48, and
`distributor_grace_hours`, default 24):
* `ORDER_RESPONSE_OVERDUE`: the response mark (`order_time + response_hours`) falls on J and
  there was no response at or before it.
* `ORDER_RESPONSE_ESCALATED`: the escalation day is J and there was no response by the end of
  J (critical: the city bureau hears of it too).

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
`<VBP_OUTPUT_DIR>/vbp_order_response/<J>/延迟响应清单_<branch>_<J>.xlsx`: J's delay list as a
document the branch can send (title block with the 48-hour rule and the 24-hour deadline; one
section per distributor with its name, addresses and count, then its orders), and the orders
escalated on J; attached to the branch's email. Each distributor's own part
(`配送企业清单/<branch>/延迟响应清单_<branch>_<distributor>_<J>.xlsx`) is emailed to it, the branch
in copy, when `distributors.csv` has its address and `[order_response] send_to_distributors`
(default true); otherwise it comes with the branch's email, which names the distributors the
branch must contact itself. Param `branch_code` restricts a rerun to one branch.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_order_response():
    rule_tasks("vbp_monitor.rules.order_response", steps=["validate"])


vbp_order_response()
