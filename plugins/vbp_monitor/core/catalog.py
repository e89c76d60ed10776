"""The one registry: every DAG and every rule code of domain.md.

Everything that lists DAGs or codes — the mailer's routing and names, the DAG files'
``doc_md`` rule tables, ``scripts/run_dags.py``, the demo plan, the README table and the
tests — is derived from here. A rule's **condition** lives in its SQL file
(``include/sql/``), its **parameters and citation** in the policy profile section named by
``Rule.citation`` (``include/profiles/``), and its **title, severity and routing** here.

Rule codes and DAG ids are a contract (other tools and acceptance tests read them): never
rename. Imported by DAG files at parse time: keep it free of heavy imports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vbp_monitor.core.labels import SEVERITY_ORDER, SEVERITY_ZH  # noqa: F401  (re-exported)

# Who receives an alert besides its branch (operations.md › Notification).
BRANCH = "branch"
CITY = "city"
DATA_TEAM = "data_team"


@dataclass(frozen=True)
class Rule:
    code: str
    dag_id: str
    title: str  # 中文名称, the heading of every message of this rule
    subject: str  # what one alert is about, in Chinese (预警对象)
    # The severity of each level the rule can break; most rules have one ("" → severity).
    severities: Mapping[str, str]
    # Profile key of the clause the rule applies: "<section>.citations.<CODE>" (a table
    # keyed by a variant, e.g. ownership, where the clause depends on the case).
    citation: str
    # Routed to the city bureau in detail as well as to the branch (critical ones always are).
    to_city: bool = False
    # Only the data team hears of it (DATA_QUALITY).
    data_team_only: bool = False

    @property
    def severity(self) -> str:
        """The rule's severity when it has one level (the highest when it has several)."""
        return min(self.severities.values(), key=SEVERITY_ORDER.__getitem__)

    def severity_for(self, level: str = "") -> str:
        return self.severities[level]


@dataclass(frozen=True)
class Dag:
    dag_id: str
    title: str  # 中文名称: subjects, greetings, file titles, the DAG's Chinese tag
    period_kind: str  # "month" (month before D), "day" (D − 1), "ingest" (D)
    logic: str  # the module that holds validate/judge (documentation; DAG files import it)
    schedule_zh: str  # the schedule, as an operator reads it
    description: str  # the UI's one-line description (Chinese)
    # Cron expressions in Asia/Shanghai; none = the first PRC working day of each month, 06:00.
    crons: tuple[str, ...] = ()
    max_active_runs: int = 4
    batch_param: bool = True  # the operator may restrict a run to one batch
    outputs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tags(self) -> list[str]:
        cadence = {"month": "monthly", "day": "daily", "ingest": "daily"}[self.period_kind]
        return ["vbp", cadence, self.title]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in RULES.values() if rule.dag_id == self.dag_id)

    @property
    def rule_codes(self) -> tuple[str, ...]:
        return tuple(rule.code for rule in self.rules)


def _one(severity: str) -> dict[str, str]:
    return {"": severity}


_G28 = "vbp_monthly_monitoring"
RULES: dict[str, Rule] = {r.code: r for r in [
    Rule("DATA_QUALITY", "*",  # raised by the validation of every DAG
         "数据质量问题", "文件或数据表", _one("high"),
         "data_quality.citations.DATA_QUALITY", data_team_only=True),
    Rule("ENTRY_NOT_PURCHASED", "vbp_entry_sweep", "中选产品未进院采购", "协议（执行第k个月末）",
         _one("high"), "entry_sweep.citations.ENTRY_NOT_PURCHASED"),
    Rule("ENTRY_BEHIND_AGREEMENT", "vbp_entry_sweep", "未按协议量采购", "协议（执行第k个月末）",
         _one("warning"), "entry_sweep.citations.ENTRY_BEHIND_AGREEMENT"),
    Rule("PROGRESS_BEHIND", _G28, "约定采购量完成进度滞后", "协议 × 月",
         {"warning_ratio": "warning", "high_ratio": "high"}, "monitoring.citations.PROGRESS_BEHIND"),
    Rule("SELECTED_SHARE_LOW", _G28, "中选产品采购数量占比低于约定比例", "协议 × 月",
         _one("warning"), "monitoring.citations.SELECTED_SHARE_LOW"),
    Rule("NON_SELECTED_HIGH_PRICE", _G28, "采购高价非中选产品", "医疗机构 × 通用名 × 月",
         _one("warning"), "monitoring.citations.NON_SELECTED_HIGH_PRICE"),
    Rule("ONLY_NON_SELECTED", _G28, "不报量不采购中选产品而只采购高价非中选产品", "医疗机构 × 通用名 × 月",
         _one("critical"), "monitoring.citations.ONLY_NON_SELECTED"),
    Rule("ONLINE_RATE_LOW", _G28, "网采率不达标", "公立医疗机构 × 品类 × 月",
         _one("high"), "monitoring.citations.ONLINE_RATE_LOW"),
    Rule("BRANCH_ONLINE_RATE_LOW", _G28, "分局辖区网采率不达标", "分局 × 品类 × 月",
         _one("high"), "monitoring.citations.BRANCH_ONLINE_RATE_LOW", to_city=True),
    Rule("OFFLINE_NOT_FILED", _G28, "线下议价采购未备案", "订单",
         _one("high"), "monitoring.citations.OFFLINE_NOT_FILED"),
    Rule("OFFLINE_FILED_LATE", _G28, "线下议价采购逾期备案", "订单",
         _one("warning"), "monitoring.citations.OFFLINE_FILED_LATE"),
    Rule("NON_EVALUATED_PURCHASE", _G28, "采购未通过一致性评价药品", "医疗机构 × 通用名 × 月",
         _one("warning"), "monitoring.citations.NON_EVALUATED_PURCHASE"),
    Rule("PAYMENT_OVERDUE", _G28, "货款逾期未结清", "订单",
         _one("high"), "monitoring.citations.PAYMENT_OVERDUE"),
    Rule("PREPAY_UNDER_DISBURSED", "vbp_prepayment_reconciliation", "医保基金预付款拨付不足",
         "医疗机构 × 批次 × 协议年度 × 节点", _one("high"),
         "prepayment.citations.PREPAY_UNDER_DISBURSED", to_city=True),
    Rule("PREPAY_RECOVERY_SHORT", "vbp_prepayment_reconciliation", "预付款归还（冲抵）不足",
         "医疗机构 × 批次 × 协议年度 × 节点", _one("high"), "prepayment.citations.PREPAY_RECOVERY_SHORT"),
    Rule("PREPAY_OVER_RECOVERED", "vbp_prepayment_reconciliation", "预付款归还超过已拨付（台账差错）",
         "医疗机构 × 批次 × 协议年度 × 节点", _one("critical"), "prepayment.citations.PREPAY_OVER_RECOVERED"),
    Rule("ANNUAL_REPORT_DUE", "vbp_annual_report_collection", "年度集采监管工作报告待报送", "分局 × 年度",
         _one("info"), "annual_report.citations.ANNUAL_REPORT_DUE", to_city=True),
    Rule("ANNUAL_REPORT_MISSING", "vbp_annual_report_collection", "年度集采监管工作报告逾期未报", "分局 × 年度",
         _one("critical"), "annual_report.citations.ANNUAL_REPORT_MISSING", to_city=True),
    Rule("ANNUAL_REPORT_LATE", "vbp_annual_report_collection", "年度集采监管工作报告逾期报送", "分局 × 年度",
         _one("warning"), "annual_report.citations.ANNUAL_REPORT_LATE", to_city=True),
    Rule("ANNUAL_REPORT_INCOMPLETE", "vbp_annual_report_collection", "年度集采监管工作报告缺少模板章节",
         "分局 × 年度", _one("high"), "annual_report.citations.ANNUAL_REPORT_INCOMPLETE", to_city=True),
    Rule("REPORT_BELOW_80_NO_EXPLANATION", "vbp_volume_review", "报量低于历史采购量预警线且未作说明",
         "医疗机构 × 批次 × 通用名", _one("high"), "volume_review.citations.REPORT_BELOW_80_NO_EXPLANATION"),
    Rule("REPORT_BELOW_80", "vbp_volume_review", "报量低于历史采购量预警线（已说明，需审核）",
         "医疗机构 × 批次 × 通用名", _one("warning"), "volume_review.citations.REPORT_BELOW_80"),
    Rule("REPORT_BELOW_HISTORY", "vbp_volume_review", "报量低于上一年度实际采购量",
         "医疗机构 × 批次 × 通用名", _one("info"), "volume_review.citations.REPORT_BELOW_HISTORY"),
    Rule("HISTORY_NOT_REPORTED", "vbp_volume_review", "有历史采购量而未报量",
         "医疗机构 × 批次 × 通用名", _one("high"), "volume_review.citations.HISTORY_NOT_REPORTED"),
    Rule("ORDER_RESPONSE_OVERDUE", "vbp_order_response", "订单超时未响应", "订单",
         _one("high"), "order_response.citations.ORDER_RESPONSE_OVERDUE"),
    Rule("ORDER_RESPONSE_ESCALATED", "vbp_order_response", "督促后仍未响应，上报市局", "订单",
         _one("critical"), "order_response.citations.ORDER_RESPONSE_ESCALATED"),
]}

DAGS: dict[str, Dag] = {d.dag_id: d for d in [
    # In the order a day's runs go: ingest first, the annual report's draft reads the others.
    Dag("vbp_ingest", "数据接入", "ingest", "vbp_monitor.quality.ingest",
        "每天 05:00（上海时间）及手动触发",
        "数据接入：读取平台导出文件，按数据契约与GX期望套件校验，隔离问题行并入库",
        crons=("0 5 * * *",), max_active_runs=1,  # two ingests at once would race on the same tables
        batch_param=False, outputs=("warehouse tables", "quarantine")),
    Dag("vbp_volume_review", "报量审核", "month", "vbp_monitor.rules.volume_review",
        "每月第一个工作日 06:00（上海时间）",
        "报量审核：报量截止日在上月的批次，报量低于上一年度实际采购量及有历史采购量未报量",
        outputs=("报量审核清单 XLSX",)),
    Dag("vbp_entry_sweep", "进院排查", "month", "vbp_monitor.rules.entry_sweep",
        "每月第一个工作日 06:00（上海时间）",
        "进院排查：执行第k个月末公立医疗机构中选产品未进院采购、未按协议量采购",
        outputs=("进院排查清单 XLSX",)),
    Dag("vbp_monthly_monitoring", "月度监测", "month", "vbp_monitor.rules.monitoring",
        "每月第一个工作日 06:00（上海时间）",
        "按月监测、一院一档：约定采购量进度、中选产品占比、高价非中选、网采率、线下备案、一致性评价、货款结算",
        outputs=("institution_file_metrics", "带量执行报表 XLSX")),
    Dag("vbp_prepayment_reconciliation", "预付对账", "month", "vbp_monitor.rules.prepayment",
        "每月第一个工作日 06:00（上海时间）",
        "预付对账：协议年度节点月末医保基金预付款拨付、归还（冲抵）进度与台账核对",
        outputs=("prepayment_ledger", "预付对账台账 XLSX")),
    Dag("vbp_order_response", "配送响应", "day", "vbp_monitor.rules.order_response",
        "每天 06:00（上海时间）",
        "配送响应：订单超时未响应（延迟响应清单）及督促后仍未响应上报市局",
        crons=("0 6 * * *",), batch_param=False, outputs=("延迟响应清单 XLSX",)),
    Dag("vbp_annual_report_collection", "年度报告收集", "day", "vbp_monitor.rules.annual_report",
        "每年1月2日至2月1日每天 06:00（上海时间）",
        "年度报告收集：分局年度集采监管工作报告（提醒、逾期未报、逾期报送、章节缺失；首次提醒附预填草稿）",
        # 2 January – 1 February: the judged day J runs from 1 to 31 January
        crons=("0 6 2-31 1 *", "0 6 1 2 *"), batch_param=False, outputs=("年度报告草稿 DOCX",)),
]}


def rule_title(code: str) -> str:
    rule = RULES.get(code)
    return rule.title if rule else code


def dag_title(dag_id: str) -> str:
    dag = DAGS.get(dag_id)
    return dag.title if dag else dag_id


def routed_to_city(rule_code: str, severity: str) -> bool:
    """The city bureau receives every critical alert and the rules routed to it."""
    rule = RULES.get(rule_code)
    return severity == "critical" or bool(rule and rule.to_city)


def rule_table_md(dag_id: str) -> str:
    """The rule table of a DAG's ``doc_md``: code, title, subject, severity."""
    lines = ["| 规则代码 code | 名称 | 预警对象 | 严重程度 severity |", "| --- | --- | --- | --- |"]
    for rule in DAGS[dag_id].rules:
        severities = " / ".join(f"{SEVERITY_ZH[s]} {s}" for s in sorted(
            set(rule.severities.values()), key=SEVERITY_ORDER.__getitem__, reverse=True))
        lines.append(f"| `{rule.code}` | {rule.title} | {rule.subject} | {severities} |")
    return "\n".join(lines)
