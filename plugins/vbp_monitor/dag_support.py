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
