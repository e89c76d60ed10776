"""vbp_volume_review · 报量审核 (domain.md DAG 5, seed 002 §二(一)). Logic: vbp_monitor.rules.volume_review."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_volume_review"

DOC = f"""
## 报量审核 · volume-report review

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

{rule_table_md(DAG_ID)}

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
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_volume_review():
    rule_tasks("vbp_monitor.rules.volume_review", steps=["validate"])


vbp_volume_review()
