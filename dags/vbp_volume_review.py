"""vbp_volume_review · 报量审核 (domain.md DAG 5, seed 002 §二(一)). Logic: vbp_monitor.rules.volume_review."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_volume_review"

ZH_PURPOSE = """报量审核（seed 002 §二(一)）：评判报量截止日 `report_deadline` 落在运行月份**上一个月**的每个批次，以截止日为准。
评判对象：机构 × 批次 × 该批次中选通用名，覆盖有历史采购或有报量的所有机构（不限所有制）。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

截止日当天或之前最近一次报量有效（按 `report_date`，再按 `report_id`）。历史采购量 = 该机构在截止日所在年份的**上一自然年**
内对该通用名任何产品、任何渠道、未取消的采购量。比例下限为配置 `[volume_review] history_floor_ratio`（默认 0.8，即代码中的“80”）。

**条件**（括号内为分局应做的处理）：
* `REPORT_BELOW_80_NO_EXPLANATION`：报量 < 比例 × 历史采购量，且说明为空（要求作出说明）。
* `REPORT_BELOW_80`：报量 < 比例 × 历史采购量，有说明（审核说明，不充分的退回重新填报）。
* `REPORT_BELOW_HISTORY`：比例 × 历史采购量 ≤ 报量 < 历史采购量（原则上不少于上一年度实际采购量）。
* `HISTORY_NOT_REPORTED`：历史采购量 > 0 且截止日前未报量（重点关注）。

指标 = 报量（未报为 0）；阈值 = 被突破的界限（比例 × 历史采购量，或历史采购量）。每条消息引用配置中该规则的条款（`[volume_review.citations]`）。

**任务**：`validate`（校验本次读取的数据）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警（期间 `YYYY-MM`）；各分局 `<VBP_OUTPUT_DIR>/vbp_volume_review/<YYYY-MM>/报量审核_<分局>_<YYYY-MM>.xlsx`，
每个评判对象一行（历史采购量、报量、比例、说明、结论、处理要求），作为该分局邮件附件。

**参数**：`branch_code` 只评判并通知一个分局；`batch_code` 只评判一个批次；`force_resend` 重新发送本期已通知的预警。
机构重新报量后，对同一逻辑日期再次触发：已更正对象的预警变为 `resolved`，表格重写，已通知的预警不会重复发送。
"""

ENGLISH = """
### Volume-report review · 报量审核

**Judges** every batch whose `report_deadline` falls in the month before the run's month
(run on the first PRC working day, 06:00 Asia/Shanghai), as of the deadline. Subject:
institution × batch × selected generic name of the batch, for every institution (any
ownership) with a history or a report. The latest report dated on or before the deadline
counts (by `report_date`, then `report_id`). History = the institution's purchases of any
product with that generic name, any channel, not cancelled, in the calendar year before the
deadline's year. The floor ratio is profile `[volume_review] history_floor_ratio` (default
0.8, the "80" of the codes).

Conditions (what the branch does in brackets):
* `REPORT_BELOW_80_NO_EXPLANATION`: reported < ratio × history, explanation empty or blank
  (要求作出说明).
* `REPORT_BELOW_80`: reported < ratio × history, with an explanation (审核说明，不充分的退回重新填报).
* `REPORT_BELOW_HISTORY`: ratio × history ≤ reported < history (原则上不少于上一年度实际采购量).
* `HISTORY_NOT_REPORTED`: history > 0 and no report by the deadline (重点关注).

metric = reported quantity (0 when not reported); threshold = the limit broken
(ratio × history, or history). Every message cites the clause the profile gives for its rule
(`[volume_review.citations]`).

**Outputs**: alerts (period `YYYY-MM`), and per branch
`<VBP_OUTPUT_DIR>/vbp_volume_review/<YYYY-MM>/报量审核_<branch>_<YYYY-MM>.xlsx` with one row
per subject (history, reported, ratio, explanation, verdict, what to do), attached to the
branch's email.

**Corrections**: after institutions re-report, trigger this DAG again for the same logical
date: corrected subjects' alerts become `resolved`, the spreadsheets are rewritten, and no
alert already notified is mailed twice. Params `branch_code` / `batch_code` restrict a rerun.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_volume_review():
    rule_tasks("vbp_monitor.rules.volume_review", steps=["validate"])


vbp_volume_review()
