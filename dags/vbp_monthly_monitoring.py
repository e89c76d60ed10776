"""vbp_monthly_monitoring · 按月监测、一院一档 (domain.md DAG 2). Logic: vbp_monitor.rules.monitoring."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_monthly_monitoring"

ZH_PURPOSE = """按月监测、一院一档（seed 002 §二(三)(四)(五)，seed 001 §五(一)(三)，seed 004 §二(一)(二)）：评判运行月份的**上一个自然月** M，
使用 M 月最后一天及之前的记录。阈值取自政策配置 `[monitoring]`（`VBP_POLICY_PROFILE`）。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

**条件**（阈值取自配置，括号内为默认值）：
* `PROGRESS_BEHIND`：序时进度 ≥ `progress_min_time_progress`（0.25）且完成率 < `progress_warning_ratio`（0.8）× 序时进度；
  低于 `progress_high_ratio`（0.5）× 序时进度为 high。
* `SELECTED_SHARE_LOW`：M 月中选产品采购量占比 < 协议约定比例。
* `NON_SELECTED_HIGH_PRICE`：非中选产品采购价高于同通用名中选产品最高价（机构同时无有效协议、也无平台中选采购时为 `ONLY_NON_SELECTED`）。
* `ONLINE_RATE_LOW` / `BRANCH_ONLINE_RATE_LOW`：公立机构（分局合计）网采率低于 `online_rate_thresholds`（药品 0.90，高值医用耗材 0.80）。
* `OFFLINE_NOT_FILED` / `OFFLINE_FILED_LATE`：备案期限（`offline_filing_working_days`，7 个工作日）在 M 月，M 月末仍未备案 / 逾期备案。
* `NON_EVALUATED_PURCHASE`：药品，已有 ≥ `min_evaluated_manufacturers`（3）家企业通过一致性评价，仍采购未过评产品。
* `PAYMENT_OVERDUE`：回款期限在 M 月（公立：验收次月月底；军队、民营：验收后 `private_payment_days`，30 天）未结清。
* `SELECTED_PRICE_EXCEEDED`：M 月采购中选产品（订单日在批次采购周期内）单价高于中选价（seed 002 §二(五)）。
* `SANCTIONED_SUPPLIER_PURCHASE`：公立机构 M 月采购失信企业名单（`supplier_sanctions`）处理期内企业的产品；
  未写结束日的，处理期为 `sanction_years`（2）年（seed 004 §二(二)）。
* `RECTIFICATION_OVERDUE`：同一机构 × 通用名（或品类网采率）截至 M 月连续 `rectification_months`（3）个月均有未整改的
  进度、占比、高价非中选或网采率预警，移交行风主管部门和纪检监察部门（seed 002 §二(三)；在本月其他预警写入后评判）。

恰好等于阈值不预警。

**任务**：`validate`（对本次读取的数据运行期望套件）与 `build_facts` 同时运行（一次汇总 M 月订单行写入 `purchase_facts`；
累计指标所需的协议年度各月中选产品网采量另汇总进 `selected_purchase_facts`，已建月份缓存复用）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警（期间 `YYYY-MM`）；一院一档表 `institution_file_metrics`（M 月有效的每份协议一行）；各分局带量执行报表
`<VBP_OUTPUT_DIR>/vbp_monthly_monitoring/<YYYY-MM>/执行报表_<分局>_<YYYY-MM>.xlsx`（按机构、批次：序时进度，
约定 / 零采购 / 进度滞后 / 正常 / 超量的通用名，非中选产品，中选与非中选金额；另附一院一档行），作为该分局邮件附件。

**参数**：`branch_code` 只评判一个分局的机构；`batch_code` 只评判该批次的协议类规则（`PROGRESS_BEHIND`、`SELECTED_SHARE_LOW`）；
`force_resend` 重新发送邮件。平台更正文件接入后（订单文件清空其订单行所在月份的汇总缓存，产品、批次、协议文件清空全部月份），对同一逻辑日期重跑：指标重新计算，不再触发的预警变为 `resolved`。
"""

ENGLISH = """
### Monthly monitoring · 按月监测、一院一档

**Judges** the calendar month M before the run's month (run on the first PRC working day,
06:00 Asia/Shanghai), with the records dated on or before the last day of M
(seed 002 §二(三)(四), seed 001 §五(一)(三), seed 004 §二(一)). Thresholds come from the
policy profile `[monitoring]` (`VBP_POLICY_PROFILE`).

Conditions (thresholds from the profile, default values in brackets): `PROGRESS_BEHIND` —
time progress ≥ `progress_min_time_progress` (0.25) and completion < `progress_warning_ratio`
(0.8) × time progress, high below `progress_high_ratio` (0.5) ×; `SELECTED_SHARE_LOW` —
selected quantity share in M < agreed ratio; `NON_SELECTED_HIGH_PRICE` — non-selected
purchases above the generic's highest selected price (`ONLY_NON_SELECTED` when the
institution also has no active agreement and no selected platform purchase);
`ONLINE_RATE_LOW` / `BRANCH_ONLINE_RATE_LOW` — public institutions' (a branch's summed)
online rate below `online_rate_thresholds` (drugs 0.90, high-value consumables 0.80);
`OFFLINE_NOT_FILED` / `OFFLINE_FILED_LATE` — filing deadline (`offline_filing_working_days`,
7 working days) in M, not filed by the end of M / filed late; `NON_EVALUATED_PURCHASE` —
drugs: non-evaluated products bought where ≥ `min_evaluated_manufacturers` (3) makers
passed; `PAYMENT_OVERDUE` — payment deadline in M (public: end of next month;
military/private: `private_payment_days`, 30 days) not met; `SELECTED_PRICE_EXCEEDED` —
selected products bought above the selected price on days inside the batch's cycle;
`SANCTIONED_SUPPLIER_PURCHASE` — public institutions buying from a maker on the sanction
list on the order day (a blank end: `sanction_years`, 2); `RECTIFICATION_OVERDUE` — the
same institution × generic name (or category) with an open progress, share, price or
online-rate alert in each of `rectification_months` (3) consecutive months ending with M,
judged after M's other alerts are written. A value exactly at a threshold does not alert.

**Tasks**: `validate` (expectation suites on what the run reads) beside `build_facts` (one
aggregation pass over M's order lines into `purchase_facts`; the platform purchases of
selected products of every month of the agreement years, which the cumulative figures
sum, into `selected_purchase_facts`; built months are cached) → `judge` → `notify`.

**Outputs**: alerts (period `YYYY-MM`); the institution file `institution_file_metrics`
(一院一档: one row per agreement active in M); per branch the execution report
`<VBP_OUTPUT_DIR>/vbp_monthly_monitoring/<YYYY-MM>/执行报表_<branch>_<YYYY-MM>.xlsx`
(per institution and batch: time progress, agreed / zero-purchase / behind / on-track /
over-volume generic names, non-selected products, selected and non-selected amounts; plus
the institution-file rows), attached to that branch's email.

**Params**: `branch_code` judges one branch's institutions; `batch_code` judges only that
batch's agreement rules (PROGRESS_BEHIND, SELECTED_SHARE_LOW); `force_resend` re-mails.
After corrected platform files are ingested (orders clear the cached facts of the months
of their lines, products, batches or agreements every month), rerun the same
logical date: figures are rebuilt and alerts no longer raised become `resolved`.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_monthly_monitoring():
    rule_tasks("vbp_monitor.rules.monitoring", steps=["validate"], alongside=["build_facts"])


vbp_monthly_monitoring()
