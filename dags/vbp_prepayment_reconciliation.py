"""vbp_prepayment_reconciliation · 预付对账 (domain.md DAG 3, seed 001 §五(三)8). Logic: vbp_monitor.rules.prepayment."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_prepayment_reconciliation"

DOC = f"""
## 预付对账 · prepayment reconciliation

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

{rule_table_md(DAG_ID)}

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
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_prepayment_reconciliation():
    rule_tasks("vbp_monitor.rules.prepayment", steps=["validate"])


vbp_prepayment_reconciliation()
