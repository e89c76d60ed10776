"""vbp_volume_review · 报量审核 (domain.md DAG 5, seed 002 §二(一)). Logic: vbp_monitor.rules.volume_review."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.orchestration.wiring import BACKFILL_DOC, DEFAULT_ARGS, START_DATE, operator_params, rule_tasks
from vbp_monitor.core.timetables import FirstWorkingDayTimetable

DAG_ID = "vbp_volume_review"

DOC = """
## 报量审核 · volume-report review

**Judges** every batch whose `report_deadline` falls in the month before the run's month
(run on the first PRC working day, 06:00 Asia/Shanghai), as of the deadline. Subject:
institution × batch × selected generic name of the batch, for every institution (any
ownership) with a history or a report. The latest report dated on or before the deadline
counts (by `report_date`, then `report_id`). History = the institution's purchases of any
product with that generic name, any channel, not cancelled, in the calendar year before the
deadline's year. Ratio 0.8 = profile `[volume_review] history_floor_ratio`.

| code | condition | severity |
| --- | --- | --- |
| `REPORT_BELOW_80_NO_EXPLANATION` | reported < 0.8 × history, explanation empty or blank | high (要求作出说明) |
| `REPORT_BELOW_80` | reported < 0.8 × history, with an explanation | warning (审核说明，不充分的退回重新填报) |
| `REPORT_BELOW_HISTORY` | 0.8 × history ≤ reported < history | info (原则上不少于上一年度实际采购量) |
| `HISTORY_NOT_REPORTED` | history > 0 and no report by the deadline | high (重点关注) |

metric = reported quantity (0 when not reported); threshold = the limit broken
(0.8 × history, or history).

**Outputs**: alerts (period `YYYY-MM`), and per branch
`<VBP_OUTPUT_DIR>/vbp_volume_review/<YYYY-MM>/报量审核_<branch>_<YYYY-MM>.xlsx` with one row
per subject (history, reported, ratio, explanation, verdict, what to do), attached to the
branch's email.

**Corrections**: after institutions re-report, trigger this DAG again for the same logical
date: corrected subjects' alerts become `resolved`, the spreadsheets are rewritten, and no
alert already notified is mailed twice. Params `branch_code` / `batch_code` restrict a rerun.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(
    dag_id=DAG_ID,
    schedule=FirstWorkingDayTimetable(),
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    params=operator_params(),
    max_active_runs=4,
    tags=["vbp", "monthly", "报量审核"],
    description="报量审核：报量截止日在上月的批次，报量低于上一年度实际采购量（80%）及有历史采购量未报量",
    doc_md=DOC,
)
def vbp_volume_review():
    rule_tasks("volume_review", period="month")


vbp_volume_review()
