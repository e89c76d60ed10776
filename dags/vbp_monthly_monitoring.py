"""vbp_monthly_monitoring · 按月监测、一院一档 (domain.md DAG 2). Logic: vbp_monitor.rules.monitoring."""
from __future__ import annotations

from airflow.sdk import dag, task

from vbp_monitor.orchestration.wiring import BACKFILL_DOC, DEFAULT_ARGS, START_DATE, operator_params
from vbp_monitor.core.timetables import FirstWorkingDayTimetable

DAG_ID = "vbp_monthly_monitoring"

DOC = """
## 按月监测、一院一档 · monthly monitoring

**Judges** the calendar month M before the run's month (run on the first PRC working day,
06:00 Asia/Shanghai), with the records dated on or before the last day of M
(seed 002 §二(三)(四), seed 001 §五(一)(三), seed 004 §二(一)). Thresholds come from the
policy profile `[monitoring]` (`VBP_POLICY_PROFILE`).

| code | subject | condition | severity |
| --- | --- | --- | --- |
| `PROGRESS_BEHIND` | agreement | time progress ≥ 0.25, completion < 0.8 × time progress (high < 0.5 ×) | warning / high |
| `SELECTED_SHARE_LOW` | agreement | selected quantity share in M < agreed ratio | warning |
| `NON_SELECTED_HIGH_PRICE` | institution × generic | non-selected purchases above the highest selected price | warning |
| `ONLY_NON_SELECTED` | institution × generic | as above, with no active agreement and no selected platform purchase | critical |
| `ONLINE_RATE_LOW` | public institution × category | online rate < 90 % (drugs) / 80 % (high-value consumables) | high |
| `BRANCH_ONLINE_RATE_LOW` | branch × category | the same on the branch's public institutions | high |
| `OFFLINE_NOT_FILED` / `OFFLINE_FILED_LATE` | order | filing deadline (7 working days) in M: not filed by the end of M / filed late | high / warning |
| `NON_EVALUATED_PURCHASE` | institution × generic | drugs: non-evaluated products bought where ≥ 3 makers passed | warning |
| `PAYMENT_OVERDUE` | order | payment deadline in M (public: end of next month; military/private: +30 days) not met | high |

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


def _run(context):
    from vbp_monitor.core.periods import judged_month
    from vbp_monitor.orchestration.run_context import RunContext

    return RunContext.from_airflow(context, judged_month)


@dag(
    dag_id=DAG_ID,
    schedule=FirstWorkingDayTimetable(),
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    params=operator_params(),
    max_active_runs=4,
    tags=["vbp", "monthly"],
    description="按月监测、一院一档：约定采购量进度、中选产品占比、高价非中选、网采率、线下备案、一致性评价、货款结算",
    doc_md=DOC,
)
def vbp_monthly_monitoring():
    @task
    def validate(**context) -> dict:
        import json

        from vbp_monitor.core.db import get_engine
        from vbp_monitor.rules.monitoring import validate as validate_inputs

        report = validate_inputs(get_engine(), _run(context))
        return json.loads(json.dumps(report or {}, default=str))

    @task
    def build_facts(**context) -> dict:
        from vbp_monitor.core.db import get_engine
        from vbp_monitor.rules.monitoring import build_facts as build

        return build(get_engine(), _run(context))

    @task
    def judge(**context) -> dict:
        from vbp_monitor.core.db import get_engine
        from vbp_monitor.rules.monitoring import judge as judge_month

        return judge_month(get_engine(), _run(context))

    @task
    def notify(judged: dict, **context) -> dict:
        import json
        from pathlib import Path

        from vbp_monitor.core.db import get_engine
        from vbp_monitor.notify.mailer import notify_run

        attachments = {branch: [Path(p) for p in paths]
                       for branch, paths in (judged.get("attachments") or {}).items()}
        sent = notify_run(get_engine(), _run(context), attachments=attachments)
        return json.loads(json.dumps(sent or {}, default=str))

    judged = judge()
    validate() >> build_facts() >> judged
    notify(judged)


vbp_monthly_monitoring()
