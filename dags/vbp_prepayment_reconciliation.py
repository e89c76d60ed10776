"""vbp_prepayment_reconciliation · 预付对账 (domain.md DAG 3, seed 001 §五(三)8). Logic: vbp_monitor.rules.prepayment."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.orchestration.wiring import BACKFILL_DOC, DEFAULT_ARGS, START_DATE, operator_params, rule_tasks
from vbp_monitor.core.timetables import FirstWorkingDayTimetable

DAG_ID = "vbp_prepayment_reconciliation"

DOC = """
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

| code | condition at milestone k (short by more than `shortfall_tolerance` = 1 yuan) | severity |
| --- | --- | --- |
| `PREPAY_UNDER_DISBURSED` | disbursed < schedule step in force at month k × agreed_amount_total | high (also to the city bureau) |
| `PREPAY_RECOVERY_SHORT` | recovered < recovery fraction at k × base, capped at disbursed | high |
| `PREPAY_OVER_RECOVERED` | recovered > disbursed | critical |

Profile (`VBP_POLICY_PROFILE`): `default` — 30 % from month 1, recovery 10/30/60/100 % of the
amount disbursed by the milestone; `ningxia_2019` — public institutions only, 50 % from
month 1 and 100 % from month 7, recovery 10/30/60/100 % of `agreed_amount_total`.

**Outputs**: alerts (`milestone_month` = k, `period` = judged month); the `prepayment_ledger`
table (one row per subject and milestone: disbursed, recovered, required, gaps, profile;
rewritten for the judged month); spreadsheets for finance staff in
`<VBP_OUTPUT_DIR>/vbp_prepayment_reconciliation/<YYYY-MM>/`: the city-wide
`预付对账台账_<YYYY-MM>.xlsx` (attached to the city bureau's email) and
`预付对账台账_<branch>_<YYYY-MM>.xlsx` (attached to each branch's email).

**Corrections**: after the prepayment file is corrected, trigger the DAG again for the same
logical date: the ledger rows are replaced, alerts no longer raised become `resolved`, nothing
already notified is mailed twice. Params `branch_code` / `batch_code` restrict a rerun.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(
    dag_id=DAG_ID,
    schedule=FirstWorkingDayTimetable(),
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    params=operator_params(),
    max_active_runs=4,
    tags=["vbp", "monthly", "预付对账"],
    description="预付对账：执行第3、6、9、12个月末医保基金预付款拨付、归还（冲抵）进度与台账核对",
    doc_md=DOC,
)
def vbp_prepayment_reconciliation():
    rule_tasks("prepayment", period="month")


vbp_prepayment_reconciliation()
