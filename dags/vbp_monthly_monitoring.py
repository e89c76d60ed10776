"""vbp_monthly_monitoring · 按月监测、一院一档 (domain.md DAG 2). Logic: vbp_monitor.rules.monitoring."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_monthly_monitoring"

DOC = """
## 按月监测、一院一档 · monthly monitoring

**Judges** the calendar month M before the run's month (run on the first PRC working day,
06:00 Asia/Shanghai), with the records dated on or before the last day of M
(seed 002 §二(三)(四), seed 001 §五(一)(三), seed 004 §二(一)). Thresholds come from the
policy profile `[monitoring]` (`VBP_POLICY_PROFILE`).

""" + rule_table_md(DAG_ID) + """

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
military/private: `private_payment_days`, 30 days) not met. A value exactly at a threshold
does not alert.

**Tasks**: `validate` (expectation suites on what the run reads) → `build_facts` (one
aggregation pass over M's order lines into `purchase_facts`, plus earlier months the
cumulative figures need, cached in `purchase_facts_months`) → `judge` → `notify`.

**Outputs**: alerts (period `YYYY-MM`); the institution file `institution_file_metrics`
(一院一档: one row per agreement active in M); per branch the execution report
`<VBP_OUTPUT_DIR>/vbp_monthly_monitoring/<YYYY-MM>/执行报表_<branch>_<YYYY-MM>.xlsx`
(per institution and batch: time progress, agreed / zero-purchase / behind / on-track /
over-volume generic names, non-selected products, selected and non-selected amounts; plus
the institution-file rows), attached to that branch's email.

**Params**: `branch_code` judges one branch's institutions; `batch_code` judges only that
batch's agreement rules (PROGRESS_BEHIND, SELECTED_SHARE_LOW); `force_resend` re-mails.
After corrected platform files are ingested (which clears the facts cache), rerun the same
logical date: figures are rebuilt and alerts no longer raised become `resolved`.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_monthly_monitoring():
    rule_tasks("vbp_monitor.rules.monitoring", steps=["validate", "build_facts"])


vbp_monthly_monitoring()
