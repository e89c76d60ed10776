"""vbp_annual_report_collection · 年度报告收集 (domain.md DAG 4, seed 002 §三(二), 附件2).
Logic: vbp_monitor.rules.annual_report."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_annual_report_collection"

DOC = f"""
## 年度报告收集 · annual report collection

Each branch bureau (`branches` rows with level `branch`) reports on the previous year's
supervision (加强集采监管工作落实情况报告, seed 002 附件2) **before 15 January, inclusive**
(profile `[annual_report]`). Daily at 06:00 Asia/Shanghai from **2 January to 1 February**
(`0 6 2-31 1 *` + `0 6 1 2 *`); the run with logical date D **judges the day J = D − 1** for
report year D.year − 1. "Submitted by J" = `submitted_at` before J+1 00:00; a branch's latest
submission counts. Every run judges the submissions dated J; the first run (J = 1 January)
also those dated earlier.

Conditions (metric / threshold in brackets; dates and headings from the profile):
* `ANNUAL_REPORT_DUE`: D is a reminder day (`reminder_days`: 5, 10, 14 January) and nothing
  submitted by J (0 / 1).
* `ANNUAL_REPORT_MISSING`: J is the deadline (`annual_report_deadline`: 15 January) and
  nothing submitted by J (0 / 1).
* `ANNUAL_REPORT_LATE`: the submission is dated J and J is after the deadline (days late / 0).
* `ANNUAL_REPORT_INCOMPLETE`: the submission judged now lacks one of the template's headings
  (`required_headings`: 一、总体进展 · 二、具体工作落实情况 · 三、存在的问题 · 四、下一步打算)
  (headings found / headings required).

{rule_table_md(DAG_ID)}

Headings: a paragraph (DOCX incl. tables; Markdown/TXT lines) that, stripped of its numbering
(一、 1. （三） …), spaces and punctuation, starts with the heading's words; Word's automatic
numbering is not needed. Files are read from `<VBP_LANDING_DIR>/annual_reports/<file_name>`;
a missing or unreadable file lacks every heading. ANNUAL_REPORT_* also go to the city bureau.

**Outputs**: alerts (period `YYYY-MM-DD` = J, subject = the branch). On the first reminder day
each branch that has not submitted gets, attached to its email, a draft report pre-filled
with its figures of the year (institutions, agreements, 一院一档 completion, online purchase
rates, entry-sweep / monitoring / overdue-payment / prepayment alert counts, prepayment
ledger, top problems): `<VBP_OUTPUT_DIR>/vbp_annual_report_collection/<year>/年度报告草稿_<branch>_<year>.docx`.
Run it after the monthly DAGs of December so the draft has their figures. Param
`branch_code` restricts a rerun to one branch.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_annual_report_collection():
    rule_tasks("vbp_monitor.rules.annual_report", steps=["validate"])


vbp_annual_report_collection()
