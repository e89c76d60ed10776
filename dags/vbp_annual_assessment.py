"""vbp_annual_assessment · 年度考核与结余留用测算 (domain.md DAG 8). Logic: vbp_monitor.rules.annual_assessment."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.core.catalog import rule_table_md
from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_annual_assessment"

ZH_PURPOSE = """年度考核与结余留用测算（seed 002 附件1、二(八)，seed 003 五(七)，seed 000 第14项）：评判运行日期所在年份的
**上一个自然年** Y，以 Y 年12月31日为准，考核对象为公立医疗机构，并按分局考核网采率。
"""

ZH_BODY = f"""
{rule_table_md(DAG_ID)}

**考核标准**（阈值取自政策配置，括号内为默认值）：
* 标准一 均完成约定采购量：Y 年内有效、约定采购量 > 0 的每份协议，协议年度在 Y 年内结束的期末完成率 ≥ 100%，
  跨年的 12月31日完成率 ≥ 当日序时进度。
* 标准二 中选药品使用比例：上述每份协议在 Y 年内（协议年度以内）的中选产品采购数量占比 ≥ 约定采购比例（无同通用名采购视为达到）。
* 标准三 网采率：Y 年药品 ≥ `online_rate_thresholds.drug`（0.90）、高值医用耗材 ≥ `high_value_consumable`（0.80）；无采购的品类视为达标。

三项均达标为合格，否则 `ASSESSMENT_FAILED`（指标 = 满足项数，阈值 3）。完成标准一的机构按 Y 年中选药品使用量占同通用名药品使用量之比排名
（相同时按机构代码），其余列于其后、不排名（未全部完成约定采购量）。分局辖区公立医疗机构合计网采率低于要求的为
`BRANCH_ASSESSMENT_FAILED`（同时报市局）。

**结余留用测算**：合格机构每份 Y 年内有效协议，节约金额 = Σ 中选产品平台采购数量 × （基期价格 − 采购单价）（基期价格取自
`baseline_prices`；无基期价格不测算；为负按 0 计），可留用上限 = `[assessment] retention_cap_ratio`（0.5）× 节约金额；不合格机构为 0。
测算结果仅供市医保局决策参考。

**任务**：`validate`（校验本次读取的数据，含 `baseline_prices`）→ `judge`（评判、写表格与通报）→ `notify`（通知）。

**输出**：预警（期间 `YYYY`）；`<VBP_OUTPUT_DIR>/vbp_annual_assessment/<YYYY>/年度考核_<市局或分局>_<YYYY>.xlsx`
（考核结果与排名、结余留用测算、分局网采率、考核口径；各分局只含本辖区部分，随该分局邮件发送）；
`年度考核通报_<市局>_<YYYY>.docx`（排名、不合格机构、分局网采率、结余留用测算），随市局邮件发送。

**参数**：`branch_code` 只评判并通知一个分局（不生成全市表格与通报）；`force_resend` 重新发送邮件。数据更正后对同一逻辑日期重跑：
结果重新计算，不再触发的预警变为 `resolved`。
"""

ENGLISH = """
### Annual assessment and savings retention · 年度考核与结余留用测算

**Judges** the calendar year Y before the run's year (yearly on the profile's
`[assessment] assessment_day`, default 1 February, 06:00 Asia/Shanghai), as of 31 December of
Y, for the public institutions (seed 002 附件1 and §二(八), seed 003 §五(七), seed 000 item 14).

Criteria: C1 — every agreement with an agreed quantity active in Y on target (ending in Y:
completion ≥ 100% at its end; running on: completion on 31 December ≥ time progress); C2 —
selected quantity share over Y inside the agreement year ≥ the agreed ratio (no same-generic
purchase: reached); C3 — online rates over Y: drugs ≥ 0.90, high-value consumables ≥ 0.80
(`[monitoring] online_rate_thresholds`; no purchase: passed). All three: 合格; otherwise
`ASSESSMENT_FAILED` (criteria met / 3). Institutions passing C1 are ranked by selected drug
quantity share over Y (ties: institution code); the others follow, unranked. A branch whose
public institutions' summed online rate is below the line: `BRANCH_ASSESSMENT_FAILED` (to the
city bureau as well).

Savings-retention estimate: per agreement of a 合格 institution, Σ quantity × (baseline price −
unit price) over its selected platform purchases in Y inside the agreement year (no baseline
price: no estimate; negative: 0); ceiling `retention_cap_ratio` (0.5) × savings; 不合格: 0.
An estimate for the bureau's decision.

**Tasks**: `validate` → `judge` → `notify`. **Outputs**: alerts (period `YYYY`); the city's
workbook `年度考核_<city>_<YYYY>.xlsx` and notice `年度考核通报_<city>_<YYYY>.docx`, each
branch's part of the workbook, attached to the emails. **Params**: `branch_code` (no city-wide
files then), `force_resend`.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_annual_assessment():
    rule_tasks("vbp_monitor.rules.annual_assessment", steps=["validate"])


vbp_annual_assessment()
