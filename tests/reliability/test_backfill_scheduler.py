"""Backfills an operator can trust: a real `airflow scheduler` (LocalExecutor, PostgreSQL
metadata, bounded in time) through `airflow backfill create` of three months of
vbp_monthly_monitoring on the demo data, with each reprocess behaviour, over a month that
already has a manual run (the situation in which the scheduler died with
``ObjectDeletedError: Instance '<DagRun …>' has been deleted``).

Checked after every backfill: which runs exist and how they ended, the alerts (the same as
the first clean runs: reruns are idempotent), the emails (each under its own month, none
twice), and that the scheduler is still alive.

Finding (Airflow 3.3.2, PostgreSQL): a backfill with reprocess "failed" or "completed" over a
month with a finished manual run clears that run in place and relabels it a backfill run (run_id
kept, apache/airflow#46959); nothing is deleted and the scheduler lives on. The reported
ObjectDeletedError was seen under `airflow standalone` (SQLite), where a "database is locked"
error while creating the backfill makes Airflow delete the runs it had attached to it
(models/backfill.py `_cleanup_partial_backfill`). Rule for operators (README): backfill with
"Missing Runs"/"Missing and Errored Runs"; rerun a completed month by clearing its run.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from reliability.conftest import warehouse_alerts
from reliability.processes import http, wait_until

DAG_ID = "vbp_monthly_monitoring"
# the runs of March–May 2025 (first working days at 06:00 Shanghai) judge February–April
RUN_DAYS = ("2025-03-03", "2025-04-01", "2025-05-06")
JUDGED = {"2025-03-03": "2025年2月", "2025-04-01": "2025年3月", "2025-05-06": "2025年4月"}
FROM, TO = "2025-03-01T00:00:00+08:00", "2025-05-31T00:00:00+08:00"


def _logical(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T06:00:00+08:00").astimezone(dt.UTC)


@pytest.mark.e2e
def test_backfill_with_each_reprocess_behaviour(airflow_stack):
    stack = airflow_stack("LocalExecutor")
    try:
        stack.start("api-server", "api-server")
        stack.start("dag-processor", "dag-processor")
        scheduler = stack.start("scheduler", "scheduler")
        wait_until(lambda: http("GET", f"http://127.0.0.1:{stack.api_port}/api/v2/monitor/health")[0] == 200,
                   300, "the api-server", watch=list(stack.components.values()))
        stack.wait_parsed("vbp_ingest", DAG_ID)

        stack.airflow("dags", "trigger", "vbp_ingest", "--logical-date", "2026-02-02T00:00:00+08:00")
        assert [r[2] for r in stack.wait_runs_done("vbp_ingest", 1)] == ["success"], stack.failed_tasks()

        # an operator's manual run of 3 March 2025 (the logical date the timetable gives that day)
        stack.airflow("dags", "trigger", DAG_ID, "--logical-date", _logical(RUN_DAYS[0]).isoformat(),
                      "--run-id", "manual__operator_2025-03-03")
        assert [r[2] for r in stack.wait_runs_done(DAG_ID, 1)] == ["success"], stack.failed_tasks()
        after_manual = warehouse_alerts(stack.warehouse_url)
        mailed_manual = len(stack.smtp.messages)
        assert after_manual and mailed_manual

        def backfill(reprocess: str) -> list[tuple]:
            stack.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", FROM, "--to-date", TO,
                          "--reprocess-behavior", reprocess, "--max-active-runs", "3")
            wait_until(lambda: stack.metadata("SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0] == 0,
                       900, f"the backfill ({reprocess}) to complete", interval=3,
                       watch=list(stack.components.values()))
            runs = stack.wait_runs_done(DAG_ID, 3)
            assert scheduler.alive, f"the scheduler died after a backfill ({reprocess}):\n{scheduler.tail()}"
            return runs

        # reprocess "none": the existing manual run stays as it is, the two missing months run
        runs = backfill("none")
        assert [(r[0].split("__")[0], r[2], r[3]) for r in runs] == [
            ("manual", "success", _logical(RUN_DAYS[0])),
            ("backfill", "success", _logical(RUN_DAYS[1])),
            ("backfill", "success", _logical(RUN_DAYS[2]))]
        alerts_after_none = warehouse_alerts(stack.warehouse_url)
        assert set(after_manual) <= set(alerts_after_none)
        periods = Counter(row[3] for row in alerts_after_none)
        assert {"2025-02", "2025-03", "2025-04"} <= set(periods), periods
        # every month with mailed alerts has its own email (checked last: the rest still runs)
        months_mailed = _months_in_subjects(stack.smtp)
        months_alerted = {_month_zh(row[3]) for row in alerts_after_none if row[-1]
                          and row[1] != "DATA_QUALITY"}
        mailed_after_none = len(stack.smtp.messages)
        assert _no_email_twice(stack.smtp)

        # reprocess "failed": one month failed (as after an SMTP outage) → only that one reruns
        april = next(r[0] for r in runs if r[3] == _logical(RUN_DAYS[1]))
        stack.metadata_execute("UPDATE dag_run SET state = 'failed' WHERE dag_id = :dag AND run_id = :run",
                               dag=DAG_ID, run=april)
        runs = backfill("failed")
        assert [r[2] for r in runs] == ["success"] * 3
        reran = stack.metadata("SELECT count(*) FROM backfill_dag_run b JOIN backfill f ON f.id = b.backfill_id "
                               "WHERE f.reprocess_behavior = 'failed' AND b.dag_run_id IS NOT NULL")[0][0]
        assert reran == 1
        assert warehouse_alerts(stack.warehouse_url) == alerts_after_none  # a rerun changes nothing
        assert len(stack.smtp.messages) == mailed_after_none               # and mails nothing

        # reprocess "completed": every month again, the manual run of March included
        runs = backfill("completed")
        assert len(runs) == 3 and [r[2] for r in runs] == ["success"] * 3, runs
        assert warehouse_alerts(stack.warehouse_url) == alerts_after_none
        assert len(stack.smtp.messages) == mailed_after_none
        assert _no_email_twice(stack.smtp)
        # Airflow 3.3 clears the existing manual run in place and relabels it a backfill run
        # (same run_id); it is not deleted
        manual = stack.metadata("SELECT run_type, state FROM dag_run WHERE run_id = 'manual__operator_2025-03-03'")
        assert manual == [("backfill", "success")], manual
        for component in stack.components.values():
            assert component.alive, f"{component.name} died:\n{component.tail()}"
        assert months_alerted <= set(JUDGED.values())
        assert months_mailed == months_alerted, [mail.subject for mail in stack.smtp.messages]
    finally:
        stack.stop_all()


def _month_zh(period: str) -> str:
    year, month = period.split("-")[:2]
    return f"{year}年{int(month)}月"


def _months_in_subjects(smtp) -> set[str]:
    """The months named by the monthly monitoring emails' subjects."""
    return {month for mail in smtp.messages if "月度监测" in mail.subject
            for month in re.findall(r"\d{4}年\d{1,2}月", mail.subject)}


def _no_email_twice(smtp) -> bool:
    sent = Counter((mail.subject, tuple(sorted(mail.rcpt_tos))) for mail in smtp.messages)
    twice = {key: n for key, n in sent.items() if n > 1}
    assert not twice, twice
    return True
