"""What every vbp-monitor DAG shares: owner, retries, failure mail, operator params.

Imported by DAG files at parse time: keep it light (no pandas, GX, openpyxl).
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path

OWNER = "vbp-data-team"
START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _on_failure(context) -> None:
    # Airflow calls on_failure_callback only when no retry is left: the data team hears
    # of a failure once, after the last attempt.
    from vbp_monitor.notify.mailer import notify_task_failure

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


def schedule_of(dag_id: str):
    """The DAG's timetable from the catalog: its crons in Asia/Shanghai, or the first PRC
    working day of each month (the project's timetable plugin); a yearly DAG (period kind
    "year") runs on the profile's ``[assessment] assessment_day`` at 06:00."""
    from airflow.timetables.trigger import CronTriggerTimetable, MultipleCronTriggerTimetable

    from vbp_monitor.core.catalog import DAGS
    from vbp_monitor.core.config import LOCAL_TZ
    from vbp_monitor.core.timetables import FirstWorkingDayTimetable

    crons = DAGS[dag_id].crons
    if DAGS[dag_id].period_kind == "year":
        # yearly on the policy profile's assessment day (the catalog's cron is the default's)
        from vbp_monitor.core.periods import yearly_cron
        from vbp_monitor.core.profiles import load_profile

        crons = (yearly_cron(load_profile()["assessment"]["assessment_day"]),)
    if not crons:
        return FirstWorkingDayTimetable()
    if len(crons) == 1:
        return CronTriggerTimetable(crons[0], timezone=LOCAL_TZ.key)
    return MultipleCronTriggerTimetable(*crons, timezone=LOCAL_TZ.key)


def dag_arguments(dag_id: str) -> dict:
    """Everything else ``@dag(...)`` takes for a vbp-monitor DAG, from the catalog: one place.

    (The schedule is passed beside it, ``schedule=schedule_of(DAG_ID)``, so that a reader
    and Airflow's linter see it in the DAG file.)
    """
    from vbp_monitor.core.catalog import DAGS

    entry = DAGS[dag_id]
    return {
        "dag_id": dag_id,
        "start_date": START_DATE,
        "catchup": False,
        "default_args": DEFAULT_ARGS,
        "params": operator_params(batch=entry.batch_param),
        "max_active_runs": entry.max_active_runs,
        "tags": entry.tags,
        "description": entry.description,
    }


BACKFILL_ZH = """
### 回填
* 界面：**Dags** → 选择 `{dag_id}` → 右上角 **触发** → **回填** → **日期范围** → **重新处理行为**
  （一般选 **遗漏的执行**；已执行过的期间**不要**选 **所有执行**，要重跑请在 **执行记录** 标签页打开该次执行并
  **清除**）→ **活跃执行数上限** → **执行回填**；进度见 DAG 页的 **回填** 标签页。
  只补一期：直接 **触发**，逻辑日期选被评判月份**之后**那个月的任一天（按月 DAG），或被评判日的次日（按日 DAG）。
* 命令行：
  `airflow backfill create --dag-id {dag_id} --from-date 2025-02-01 --to-date 2025-12-31 --reprocess-behavior none`
  （只在日期范围内的计划日期运行），或只跑一次：`airflow dags test {dag_id} 2025-03-03`。
同一逻辑日期重跑结果相同（幂等），不会重复发送邮件。
"""

BACKFILL_EN = """
### Backfill
* UI: **Dags** → `{dag_id}` → **Trigger** (top right) → **Backfill** → **Date Range** →
  **Reprocess Behavior** (normally **Missing Runs**; do **not** pick **All Runs** over periods
  that already ran — to redo one, open its run in the **Runs** tab and **Clear** it) →
  **Max Active Runs** → **Run Backfill**; progress in the DAG's **Backfills** tab.
  One period: **Trigger** a single run with a logical date in the month **after** the month
  to judge (monthly DAGs), or the day after the judged day (daily ones).
* CLI: `airflow backfill create --dag-id {dag_id} --from-date 2025-02-01 --to-date 2025-12-31 --reprocess-behavior none`
  or one run: `airflow dags test {dag_id} 2025-03-03`.
Reruns for the same logical date are idempotent and send no second email.
"""

# Bilingual, Chinese first (``str.format(dag_id=…)``).
BACKFILL_DOC = BACKFILL_ZH + BACKFILL_EN


def dag_doc(dag_id: str, purpose_zh: str, body_zh: str, english: str) -> str:
    """A DAG's ``doc_md``: the Chinese section first — heading, 用途, 计划 (the catalog's
    ``schedule_zh``), ``body_zh`` (任务、输出、参数 …), 回填 — then the English text under
    ``---`` / English, with its backfill section."""
    from vbp_monitor.core.catalog import DAGS

    entry = DAGS[dag_id]
    return (f"\n## {entry.title}\n\n**用途**：{purpose_zh.strip()}\n\n**计划**：{entry.schedule_zh}\n\n"
            f"{body_zh.strip()}\n" + BACKFILL_ZH.format(dag_id=dag_id)
            + "\n---\n\n## English\n" + english + BACKFILL_EN.format(dag_id=dag_id))


def json_safe(value) -> dict:
    """A task's return value for XCom: a JudgeResult's summary, or any dict made JSON-safe."""
    import json

    if hasattr(value, "as_xcom"):
        value = value.as_xcom()
    return json.loads(json.dumps(value or {}, default=str))


def run_context(context):
    """The RunContext of the running task: its DAG's judged period (from the catalog)."""
    from vbp_monitor.core import periods
    from vbp_monitor.core.catalog import DAGS
    from vbp_monitor.orchestration.run_context import RunContext

    dag_id = context["dag_run"].dag_id
    return RunContext.from_airflow(context, periods.PERIOD_OF[DAGS[dag_id].period_kind])


# (module, callable names) wired by the DAG files parsed in this process: the integrity
# test checks that every one of them resolves.
WIRED: list[tuple[str, tuple[str, ...]]] = []


def resolve(module: str, name: str) -> Callable:
    """``module.name``, imported when a task runs (never when the DAG file is parsed)."""
    import importlib

    return getattr(importlib.import_module(module), name)


def rule_tasks(module: str, judge: str = "judge", steps: Sequence[str] = (), notify: bool = True,
               judge_task_id: str = "judge", alongside: Sequence[str] = ()):
    """Wire ``steps… → judge → notify`` for a vbp-monitor DAG; call it inside ``@dag``.

    ``module`` holds the logic (e.g. ``vbp_monitor.rules.monitoring``); ``steps`` and
    ``judge`` name its functions, imported only when a task runs, so that a DAG file parses
    without pandas, SQLAlchemy or the rules. Every function takes ``(engine, run)``:
    ``steps`` run first, in order (validation, a pre-judge step such as building the facts
    cache or migrating the schema), each a task named after its function; ``judge`` returns
    a ``JudgeResult`` (or a dict) whose ``attachments`` the ``notify`` task mails with the
    run's new alerts. ``alongside`` names steps that start with the first step and run beside
    the others (building a cache while the data is validated): ``judge`` waits for them all.
    The run context, the engine and JSON-safety are built here once for every DAG.
    """
    from airflow.sdk import task

    WIRED.append((module, (*steps, *alongside, judge)))

    def as_task(name: str, task_id: str):
        @task(task_id=task_id, multiple_outputs=False)
        def step(**context) -> dict:
            from vbp_monitor.core.db import get_engine

            return json_safe(resolve(module, name)(get_engine(), run_context(context)))

        return step

    @task(multiple_outputs=False)
    def notify_task(judged: dict, **context) -> dict:
        from vbp_monitor.core.db import get_engine
        from vbp_monitor.notify.mailer import notify_run

        attachments = {audience: [Path(p) for p in paths]
                       for audience, paths in (judged.get("attachments") or {}).items()}
        run = run_context(context)
        sent = notify_run(get_engine(), run, attachments=attachments)
        if judged.get("documents"):  # files mailed on their own, once per content
            from vbp_monitor.notify.mailer import notify_documents

            sent = {**sent, "documents": notify_documents(get_engine(), run, judged)}
        return json_safe(sent)

    previous = None
    for name in steps:
        current = as_task(name, name)()
        if previous is not None:
            previous >> current
        previous = current
    judged = as_task(judge, judge_task_id)()
    if previous is not None:
        previous >> judged
    for name in alongside:
        as_task(name, name)() >> judged
    if notify:
        notify_task.override(task_id="notify")(judged)
    return judged
