"""vbp_prepayment_reconciliation · 预付对账 (domain.md DAG 3, seed 001 §五(三)8). Logic: vbp_monitor.rules.prepayment."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_prepayment_reconciliation"

ZH_PURPOSE = """预付对账（seed 001 §五(三)8）：评判期间为运行月份的上一个月。评判每个（机构、批次、协议年度）——其协议机构的所有制属于配置
`[prepayment] applies_to_ownership`——节点日落在评判月的，以节点日为准，核对医保基金预付款拨付、归还（冲抵）进度与台账。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

节点：协议周期第 3、6、9、12 个月的最后一天（`milestones`）；不足 12 个月的年度，月末在 `period_end` 当天或之后的节点合并为
`period_end` 一个最终节点，按第 12 个月的比例。`agreed_amount_total` = 该年度 `agreed_amount` 之和。预付交易归入其日期所在的
年度（早于第一年 → 第一年；落在间隔或最后一年之后 → 最近的前一年度）。

**条件**（节点 k，差额超过配置 `shortfall_tolerance`，1 元）：
* `PREPAY_UNDER_DISBURSED`：已拨付 < 第 k 月适用的拨付比例 × agreed_amount_total（同时报市局）；
* `PREPAY_RECOVERY_SHORT`：已归还 < 第 k 月归还比例 × 基数（以已拨付为上限）；
* `PREPAY_OVER_RECOVERED`：已归还 > 已拨付。

每条消息引用配置中该规则的条款（`[prepayment.citations]`）。
配置（`VBP_POLICY_PROFILE`）：`default`——自第 1 个月起预付 30 %，按节点归还截至该节点已拨付金额的 10/30/60/100 %；
`ningxia_2019`——仅公立机构，第 1 个月起 50 %、第 7 个月起 100 %，归还 `agreed_amount_total` 的 10/30/60/100 %。

**任务**：`validate`（校验本次读取的数据）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警（`milestone_month` = k，`period` = 评判月）；`prepayment_ledger` 台账表（每个对象每个节点一行：已拨付、已归还、
应达、差额、配置；按评判月重写）；供财务人员使用的表格，位于 `<VBP_OUTPUT_DIR>/vbp_prepayment_reconciliation/<YYYY-MM>/`：
全市 `预付对账台账_<市代码>_<YYYY-MM>.xlsx`（附于市局邮件）和各分局 `预付对账台账_<分局>_<YYYY-MM>.xlsx`（附于分局邮件）。

**参数**：`branch_code` 只评判并通知一个分局；`batch_code` 只评判一个批次；`force_resend` 重新发送本期已通知的预警。
预付文件更正后，对同一逻辑日期再次触发：台账行被替换，不再触发的预警变为 `resolved`，已通知的不会重复发送。
"""

ENGLISH = """
### Prepayment reconciliation · 预付对账

**Judges** (run on the first PRC working day, 06:00 Asia/Shanghai; judged period = the month
before the run's month) every (institution, batch, agreement year) with agreements — of the
ownerships in the profile's `[prepayment] applies_to_ownership` — whose milestone day falls in
the judged month, as of that day. Milestones: the last day of cycle months 3, 6, 9 and 12
(`milestones`); in a year shorter than 12 months the milestones whose month-end is on or after
`period_end` collapse into one final milestone at `period_end` carrying month 12's steps.
`agreed_amount_total` = sum of the year's `agreed_amount`. A prepayment transaction belongs to
the year containing its date (before the first year → the first year; in a gap or after the
last year → the nearest earlier year).

Conditions at milestone k, each by more than the profile's `shortfall_tolerance` (1 yuan):
* `PREPAY_UNDER_DISBURSED`: disbursed < schedule step in force at month k × agreed_amount_total
  (also routed to the city bureau);
* `PREPAY_RECOVERY_SHORT`: recovered < recovery fraction at k × base, capped at disbursed;
* `PREPAY_OVER_RECOVERED`: recovered > disbursed.

Every message cites the clause the profile gives for its rule (`[prepayment.citations]`).

Profile (`VBP_POLICY_PROFILE`): `default` — 30 % from month 1, recovery 10/30/60/100 % of the
amount disbursed by the milestone; `ningxia_2019` — public institutions only, 50 % from
month 1 and 100 % from month 7, recovery 10/30/60/100 % of `agreed_amount_total`.

**Outputs**: alerts (`milestone_month` = k, `period` = judged month); the `prepayment_ledger`
table (one row per subject and milestone: disbursed, recovered, required, gaps, profile;
rewritten for the judged month); spreadsheets for finance staff in
`<VBP_OUTPUT_DIR>/vbp_prepayment_reconciliation/<YYYY-MM>/`: the city-wide
`预付对账台账_<city code>_<YYYY-MM>.xlsx` (attached to the city bureau's email) and
`预付对账台账_<branch>_<YYYY-MM>.xlsx` (attached to each branch's email).

**Corrections**: after the prepayment file is corrected, trigger the DAG again for the same
logical date: the ledger rows are replaced, alerts no longer raised become `resolved`, nothing
already notified is mailed twice. Params `branch_code` / `batch_code` restrict a rerun.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_prepayment_reconciliation():
    rule_tasks("vbp_monitor.rules.prepayment", steps=["validate"])


vbp_prepayment_reconciliation()
