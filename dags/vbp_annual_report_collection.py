"""vbp_annual_report_collection · 年度报告收集 (domain.md DAG 4, seed 002 §三(二), 附件2).
Logic: vbp_monitor.rules.annual_report."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_annual_report_collection"

ZH_PURPOSE = """年度报告收集（seed 002 §三(二)、附件2）：各分局（`branches` 中级别为 `branch` 的行）须于 **1 月 15 日（含）前**报送上一年度
加强集采监管工作落实情况报告（配置 `[annual_report]`）。逻辑日期为 D 的运行**评判前一天 J = D − 1**，报告年度为 D 的上一年。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

“J 日前已报送”= `submitted_at` 早于 J+1 日 0 时；以分局最近一次报送为准。每次运行评判日期为 J 的报送；首次运行（J = 1 月 1 日）
也评判更早的报送。

**条件**（括号内为指标 / 阈值；日期和标题取自配置）：
* `ANNUAL_REPORT_DUE`：D 为提醒日（`reminder_days`：1 月 5、10、14 日）且 J 日前未报送（0 / 1）。
* `ANNUAL_REPORT_MISSING`：J 为截止日（`annual_report_deadline`：1 月 15 日）且 J 日前未报送（0 / 1）。
* `ANNUAL_REPORT_LATE`：报送日期为 J 且 J 晚于截止日（逾期天数 / 0）。
* `ANNUAL_REPORT_INCOMPLETE`：本次评判的报送缺少模板标题之一（`required_headings`：一、总体进展 · 二、具体工作落实情况 ·
  三、存在的问题 · 四、下一步打算）（已有标题数 / 应有标题数）。

标题识别：段落（DOCX 含表格；Markdown/TXT 按行）去掉编号（一、 1. （三） …）、空格和标点后以标题文字开头即可，无需 Word 自动编号。
文件读取自 `<VBP_LANDING_DIR>/annual_reports/<file_name>`；缺失或无法读取的文件视为缺少全部标题。ANNUAL_REPORT_* 同时报市局。

**任务**：`validate`（校验本次读取的数据）→ `judge`（评判）→ `notify`（通知）。

**输出**：预警（期间 `YYYY-MM-DD` = J，对象为分局）。首个提醒日，未报送的分局邮件附带预填本年度数据的报告草稿（机构、协议、
一院一档完成情况、网采率、进院排查 / 按月监测 / 回款逾期 / 预付预警数、预付台账、主要问题）：
`<VBP_OUTPUT_DIR>/vbp_annual_report_collection/<year>/年度报告草稿_<分局>_<year>.docx`。
应在 12 月的各月度 DAG 运行之后运行，草稿才有其数据。

**参数**：`branch_code` 只重跑一个分局；`force_resend` 重新发送已通知的预警；本 DAG 无批次参数。
"""

ENGLISH = """
### Annual report collection · 年度报告收集

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
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_annual_report_collection():
    rule_tasks("vbp_monitor.rules.annual_report", steps=["validate"])


vbp_annual_report_collection()
