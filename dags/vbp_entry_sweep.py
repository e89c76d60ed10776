"""vbp_entry_sweep · 进院排查 (domain.md DAG 1, seed 002 §二(二)). Logic: vbp_monitor.rules.entry_sweep."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_entry_sweep"

ZH_PURPOSE = """进院排查（seed 002 §二(二)）：评判期间为运行月份的上一个月。评判**公立**医疗机构 `agreed_quantity > 0` 的每份协议，
其协议周期第 k 个月（配置 `[entry_sweep] entry_sweep_month`，默认 3）在评判月结束的，以该月最后一天为准。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

每个协议年度只排查一次（续签年度在其自身的第 k 个月再排查）；不足 k 个月的协议年度不排查。
例：2024-01-31 开始的年度，第 3 个月止于 2024-04-29，由评判 2024 年 4 月的运行（逻辑日期在 5 月）排查。

中选采购 = 平台订单行，未取消，为该协议批次中选、同通用名的产品，日期在 `period_start` 至节点日之间。
完成率 = 中选采购量 ÷ 约定采购量；序时进度 = 已过天数 ÷ 协议年度天数（首尾都计）。

**条件**（括号内为指标 / 阈值）：
* `ENTRY_NOT_PURCHASED`：到节点日无中选采购（0 / 约定采购量）。
* `ENTRY_BEHIND_AGREEMENT`：完成率 < `progress_warning_ratio`（配置 `[monitoring]`，默认 0.8；`[entry_sweep]` 可单独设置）
  × 序时进度（完成率 / 比例 × 序时进度）。

恰好等于阈值不预警。每条消息引用配置中该规则的条款（`[entry_sweep.citations]`）。预警带 `milestone_month` = k、`period` = 评判月。

**任务**：`validate`（校验本次读取的数据）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警；各分局 `<VBP_OUTPUT_DIR>/vbp_entry_sweep/<YYYY-MM>/进院排查_<分局>_<YYYY-MM>.xlsx`——
每份被排查协议的指标与结论——作为该分局邮件附件。

**参数**：`branch_code` 只评判并通知一个分局；`batch_code` 只评判一个批次；`force_resend` 重新发送本期已通知的预警。
对同一逻辑日期再次触发：指标重新计算，不再触发的预警变为 `resolved`，已通知的不会重复发送。
"""

ENGLISH = """
### Month-3 entry sweep · 进院排查

**Judges** (run on the first PRC working day, 06:00 Asia/Shanghai; judged period = the month
before the run's month) every agreement of a **public** institution with
`agreed_quantity > 0` whose cycle month k — profile `[entry_sweep] entry_sweep_month`,
default 3 — ends in the judged month, as of that last day. Each agreement year is swept once
(a renewal year is swept again at its own month k). An agreement year shorter than k months
is not swept. Example: a year starting 2024-01-31 has month 3 ending 2024-04-29, judged by
the run for April 2024 (D in May).

Selected purchases = platform order lines, not cancelled, of products selected in the
agreement's batch with its generic name, dated `period_start` … the milestone day.
Completion rate = selected quantity ÷ agreed quantity; time progress = elapsed days ÷ days of
the agreement year (both ends counted).

Conditions (metric / threshold in brackets):
* `ENTRY_NOT_PURCHASED`: no selected purchase by the milestone day (0 / agreed quantity).
* `ENTRY_BEHIND_AGREEMENT`: completion rate < `progress_warning_ratio` (profile `[monitoring]`,
  default 0.8; `[entry_sweep]` may override it) × time progress (completion rate / ratio ×
  time progress).

A value exactly at the threshold does not alert. Every message cites the clause the profile
gives for its rule (`[entry_sweep.citations]`). Alerts carry `milestone_month` = k and
`period` = the judged month.

**Outputs**: alerts, and per branch
`<VBP_OUTPUT_DIR>/vbp_entry_sweep/<YYYY-MM>/进院排查_<branch>_<YYYY-MM>.xlsx` — every swept
agreement with its figures and verdict — attached to the branch's email.

**Corrections**: trigger the DAG again for the same logical date: figures are recomputed,
alerts no longer raised become `resolved`, nothing already notified is mailed twice. Params
`branch_code` / `batch_code` restrict a rerun.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_entry_sweep():
    rule_tasks("vbp_monitor.rules.entry_sweep", steps=["validate"])


vbp_entry_sweep()
