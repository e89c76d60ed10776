"""vbp_entry_sweep · 进院排查 (domain.md DAG 1, seed 002 §二(二)). Logic: vbp_monitor.rules.entry_sweep."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_entry_sweep"

DOC = f"""
## 进院排查 · month-3 entry sweep

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

{rule_table_md(DAG_ID)}

A value exactly at the threshold does not alert. Every message cites the clause the profile
gives for its rule (`[entry_sweep.citations]`). Alerts carry `milestone_month` = k and
`period` = the judged month.

**Outputs**: alerts, and per branch
`<VBP_OUTPUT_DIR>/vbp_entry_sweep/<YYYY-MM>/进院排查_<branch>_<YYYY-MM>.xlsx` — every swept
agreement with its figures and verdict — attached to the branch's email.

**Corrections**: trigger the DAG again for the same logical date: figures are recomputed,
alerts no longer raised become `resolved`, nothing already notified is mailed twice. Params
`branch_code` / `batch_code` restrict a rerun.
""" + BACKFILL_DOC.format(dag_id=DAG_ID)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_entry_sweep():
    rule_tasks("vbp_monitor.rules.entry_sweep", steps=["validate"])


vbp_entry_sweep()
