"""What every vbp-monitor DAG shares: owner, retries, failure mail, operator params.

Imported by DAG files at parse time: keep it light (no pandas, GX, openpyxl).
"""
from __future__ import annotations

import datetime as dt
import os

OWNER = "vbp-data-team"
START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _on_failure(context) -> None:
    # Airflow calls on_failure_callback only when no retry is left: the data team hears
    # of a failure once, after the last attempt.
    from vbp_monitor.mailer import notify_task_failure

    notify_task_failure(context)


DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 2,
    # VBP_RETRY_DELAY_SECONDS: tests and demos shorten the wait between attempts.
    "retry_delay": dt.timedelta(seconds=int(os.environ.get("VBP_RETRY_DELAY_SECONDS", "300"))),
    "on_failure_callback": _on_failure,
}


def operator_params(batch: bool = True) -> dict:
    """Params an operator sets when triggering: restrict to a branch/batch, force re-sending."""
    from airflow.sdk import Param

    params = {
        "branch_code": Param(None, type=["null", "string"], title="分局代码 branch_code",
                             description="只评判并通知这个分局（留空 = 全部分局）"),
        "force_resend": Param(False, type="boolean", title="重新发送 force_resend",
                              description="重新发送本期已通知过的预警邮件"),
    }
    if batch:
        params["batch_code"] = Param(None, type=["null", "string"], title="批次代码 batch_code",
                                     description="只评判这个集采批次（留空 = 全部批次）")
    return params


BACKFILL_DOC = """
### Backfill
* UI: *Trigger DAG* → choose the logical date (any day of the month **after** the month to judge
  for monthly DAGs, the day after the judged day for daily ones), or Browse → Backfills →
  *Backfill* a date range (Airflow 3).
* CLI: `airflow backfill create --dag-id {dag_id} --from-date 2025-02-01 --to-date 2025-12-31`
  or one run: `airflow dags test {dag_id} 2025-03-03`.
Reruns for the same logical date are idempotent and send no second email.
"""


def _json_safe(value) -> dict:
    import json

    return json.loads(json.dumps(value or {}, default=str))


def rule_tasks(logic_module: str, period: str = "month", extra_before_judge=None):
    """Wire validate → judge → notify for a rule DAG whose logic lives in
    ``vbp_monitor.<logic_module>`` (functions ``validate(engine, run)`` and
    ``judge(engine, run) -> {"attachments": {branch: [path]}, …}``). Call it inside the
    ``@dag`` function; ``period`` is ``"month"`` (the month before D) or ``"day"`` (D − 1).
    """
    from airflow.sdk import task

    def run_of(context):
        from vbp_monitor import periods
        from vbp_monitor.runs import RunContext

        period_of = periods.judged_month if period == "month" else periods.judged_day
        return RunContext.from_airflow(context, period_of)

    def logic():
        import importlib

        return importlib.import_module(f"vbp_monitor.{logic_module}")

    @task
    def validate(**context) -> dict:
        from vbp_monitor.db import get_engine

        return _json_safe(logic().validate(get_engine(), run_of(context)))

    @task
    def judge(**context) -> dict:
        from vbp_monitor.db import get_engine

        return _json_safe(logic().judge(get_engine(), run_of(context)))

    @task
    def notify(judged: dict, **context) -> dict:
        from pathlib import Path

        from vbp_monitor.db import get_engine
        from vbp_monitor.mailer import notify_run

        attachments = {branch: [Path(p) for p in paths]
                       for branch, paths in (judged.get("attachments") or {}).items()}
        return _json_safe(notify_run(get_engine(), run_of(context), attachments=attachments))

    judged = judge()
    validate() >> judged
    notify(judged)
    return judged
