"""vbp_monthly_report · 月度工作进展报告 (domain.md DAG 7). Logic: vbp_monitor.rules.monthly_report."""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from vbp_monitor.core.catalog import DAGS
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.orchestration.sensors import SameDateRunSensor
from vbp_monitor.orchestration.wiring import WIRED, dag_arguments, dag_doc, json_safe, resolve, run_context, schedule_of

DAG_ID = "vbp_monthly_report"
LOGIC = "vbp_monitor.rules.monthly_report"
# The month's runs of the same logical date the report reads (catalog order).
UPSTREAM = ("vbp_volume_review", "vbp_entry_sweep", "vbp_monthly_monitoring", "vbp_prepayment_reconciliation")
WIRED.append((LOGIC, ("judge", "upstream_succeeded")))


def _wait_timeout() -> dt.timedelta:
    # profile [monthly_report] upstream_wait_hours (read at parse time: a TOML file, no rules)
    hours = load_profile().get("monthly_report", {}).get("upstream_wait_hours", 6)
    return dt.timedelta(hours=float(hours))


UPSTREAM_ZH = "、".join(f"{DAGS[dag_id].title}（`{dag_id}`）" for dag_id in UPSTREAM)

ZH_PURPOSE = f"""月度工作进展报告（seed 001 §七(三) 月报告制，seed 002 §二(二)(三) 飞检线索）：在每月第一个工作日，
待同一逻辑日期的{UPSTREAM_ZH}执行完成后，汇总**上一个自然月** M 的执行情况，生成报市医保局的 Word 报告和 Excel 数据表并发送邮件。
不产生预警、不重新评判规则：全部数据读自这四个任务写入的一院一档、采购汇总、预付对账台账和预警表。
"""

ZH_BODY = """
**报告结构**：一、总体情况（监测机构与协议数；各分局及全市中选产品采购占比、约定采购量完成率与序时进度、进度正常/滞后/严重滞后协议数、
分品类网采率，附图）· 二、预警情况（各分局、各规则本月新增、以前月份未关闭、已解除预警，列示严重预警）· 三、回款与预付（逾期货款、
本月到期的预付款对账节点）· 四、飞检线索（按本月未关闭预警严重程度加权计分（严重 8、高 4、关注 2、提醒 1，配置 `[monthly_report]`）
排名前 `inspection_leads`（10）家医疗机构及原因，同分时完成率低者在前；全市完成率相对序时进度最低的 `lagging_generic_names`（5）个通用名）·
五、下一步工作（每条未关闭严重预警及移交线索一句）。

**任务**：`wait_<任务>` 四个可延迟（deferrable）传感器等待同一逻辑日期的四个月度任务成功，最长 `upstream_wait_hours`（6 小时，
配置 `[monthly_report]`）；任务失败或超时时传感器跳过（soft_fail），`report` 仍然生成报告（`all_done`），并在报告中注明缺失的数据 →
`notify` 发送邮件。四个任务已成功时不等待。

**输出**：`<VBP_OUTPUT_DIR>/vbp_monthly_report/<YYYY-MM>/月度工作进展报告_全市_<YYYY-MM>.docx`（含原生 Word 图表）和
`月度工作进展报告数据_全市_<YYYY-MM>.xlsx`，作为附件发送市医保局一次（表 `document_deliveries` 记录）。

**参数**：`branch_code` 只汇总一个分局（文件名中的“全市”换成分局代码）；`force_resend` 重新发送本期报告邮件。
重跑同一逻辑日期生成相同的文件，不重复发送；数据更新后重跑生成的新报告再发送一次，邮件标题注明【更新】。
"""

ENGLISH = f"""
### Monthly progress report · 月度工作进展报告

Runs on the first PRC working day (06:00 Asia/Shanghai, the same timetable and logical date
as the monthly DAGs) and reports on the calendar month M before it to the city bureau
(seed 001 §七(三), seed 002 §二(二)(三)). It raises no alerts and judges no rule: every
figure is read with set-based SQL (`include/sql/monthly_report_*.sql`) from what
{", ".join(UPSTREAM)} wrote for the same logical date.

**Tasks**: four deferrable sensors (`wait_…`, the trigger of Airflow's
`ExternalTaskSensor`, without its parse-time imports) wait for those runs (timeout
`upstream_wait_hours`, default 6 h; `soft_fail`: a failed or timed-out run skips its
sensor) → `report` (trigger rule `all_done`: written anyway, naming the missing figures) →
`notify` (one email to the city bureau with the DOCX and XLSX, once per distinct report:
table `document_deliveries`). Runs that already succeeded mean no waiting. Under
`airflow dags test` the triggers run in-process, so run the monthly DAGs of the same date
first (the sensors wait for them).

**Outputs**: `<VBP_OUTPUT_DIR>/vbp_monthly_report/<YYYY-MM>/月度工作进展报告_全市_<YYYY-MM>.docx`
(five sections, native Word charts) and `月度工作进展报告数据_全市_<YYYY-MM>.xlsx`.

**Params**: `branch_code` reports on one branch; `force_resend` mails the report again.
A rerun writes identical files and mails nothing; a rerun after the data changed mails the
new report once, marked 【更新】.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@task(task_id="report", trigger_rule="all_done", multiple_outputs=False)
def report(**context) -> dict:
    from vbp_monitor.core.db import get_engine

    run = run_context(context)
    logical = context.get("logical_date") or context["dag_run"].run_after
    upstream = resolve(LOGIC, "upstream_succeeded")(logical)
    return json_safe(resolve(LOGIC, "judge")(get_engine(), run, upstream=upstream))


@task(task_id="notify", multiple_outputs=False)
def notify(judged: dict, **context) -> dict:
    from vbp_monitor.core.db import get_engine
    from vbp_monitor.notify.mailer import notify_documents

    return json_safe(notify_documents(get_engine(), run_context(context), judged))


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_monthly_report():
    waits = [
        SameDateRunSensor(
            task_id=f"wait_{dag_id.removeprefix('vbp_')}",
            external_dag_id=dag_id,
            soft_fail=True,  # failed or timed out: skipped, and the report says what is missing
            timeout=_wait_timeout().total_seconds(),
            poke_interval=60,
        )
        for dag_id in UPSTREAM
    ]
    judged = report()
    waits >> judged
    notify(judged)


vbp_monthly_report()
