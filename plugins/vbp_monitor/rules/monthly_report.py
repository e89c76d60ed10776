"""DAG 7 · 月度工作进展报告 (monthly progress report) — domain.md DAG 7, seed 001 §七(三),
seed 002 §二(二)(三).

The run with logical date D (the first PRC working day of a month, the same logical date as
that day's monthly runs) reports on month M, the calendar month before D, to the city bureau:
a DOCX in five sections (一、总体情况 · 二、预警情况 · 三、回款与预付 · 四、飞检线索 ·
五、下一步工作) with charts, and an XLSX of its figures. It raises no alerts and judges no
rule: every figure is read, with set-based SQL (``include/sql/monthly_report_*.sql``), from
what the month's runs of ``vbp_entry_sweep``, ``vbp_monthly_monitoring``,
``vbp_prepayment_reconciliation`` and ``vbp_volume_review`` wrote (the institution file,
the purchase facts of M, the prepayment ledger and the ``alerts`` table).

The DAG waits for those four runs; when one of them has not succeeded by the time the
report must go out, the report is written anyway and says, in its notes and in the
sections concerned, which figures are missing (``upstream``: DAG id → succeeded).

Flight-inspection leads (飞检线索, seed 002 §二(二)): the ``inspection_leads`` (profile)
institutions ranked by the sum over their open alerts of M of the profile's severity
weights (critical 8, high 4, warning 2, info 1), ties by the lower completion rate, then
the institution code; and the ``lagging_generic_names`` generic names with the lowest
city-wide completion against time progress.

Files: ``<VBP_OUTPUT_DIR>/vbp_monthly_report/<YYYY-MM>/月度工作进展报告_<全市|分局>_<YYYY-MM>.docx``
and ``月度工作进展报告数据_…xlsx``; stamped with D, so a rerun on the same figures writes the
same bytes. The email (notify/mailer.py › notify_documents) goes to the city bureau once
per distinct report (the files' digest is part of its delivery key).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES, rule_actor, rule_title
from vbp_monitor.core.formatting import (
    Breach,
    date_zh,
    decimal_of,
    money,
    money_plain,
    percent,
    period_zh,
    quantity,
    rounded,
    share,
)
from vbp_monitor.core.labels import CATEGORY_ZH, ONLINE_CATEGORIES, SEVERITY_ORDER, SEVERITY_ZH, label
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.core.profiles import load_profile, profile_title
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.outputs.documents import DraftTable
from vbp_monitor.outputs.report_document import Chart, ReportDocument, ReportSection, Series
from vbp_monitor.outputs.run_files import files_digest, run_file_path, run_folder, run_stamp
from vbp_monitor.outputs.spreadsheets import BookTitle, Column
from vbp_monitor.rules.purchase_facts import build_month

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext

log = logging.getLogger(__name__)

DAG_ID = "vbp_monthly_report"
# The month's runs the report reads, in the catalog's order.
UPSTREAM_DAGS = ("vbp_volume_review", "vbp_entry_sweep", "vbp_monthly_monitoring", "vbp_prepayment_reconciliation")
REPORT_PREFIX = "月度工作进展报告"
DATA_PREFIX = "月度工作进展报告数据"
REPORT_NAME = "集中带量采购工作月度进展报告"
HEADINGS = ("一、总体情况", "二、预警情况", "三、回款与预付", "四、飞检线索", "五、下一步工作")
CITY_WIDE = "全市"
RATIO_SHOWN = Decimal("0.0001")  # a percentage with two decimals
NO_DATA = "暂无数据"
# What is missing from the report when a month's run has not succeeded, and where.
MISSING_FIGURES = {
    "vbp_monthly_monitoring": ("一院一档指标（中选产品采购占比、约定采购量完成率与序时进度）、网采率、"
                               "按月监测预警与逾期货款"),
    "vbp_entry_sweep": "进院排查预警",
    "vbp_prepayment_reconciliation": "预付款对账节点及预付款预警",
    "vbp_volume_review": "报量审核预警",
}
SECTION_SOURCES = {  # section index → the runs whose figures it shows
    0: ("vbp_monthly_monitoring",),
    1: UPSTREAM_DAGS,
    2: ("vbp_monthly_monitoring", "vbp_prepayment_reconciliation"),
    3: UPSTREAM_DAGS,
    4: UPSTREAM_DAGS,
}
PAYMENT_CODE = "PAYMENT_OVERDUE"
REFERRAL_CODE = "RECTIFICATION_OVERDUE"
PREPAY_CODES = ("PREPAY_UNDER_DISBURSED", "PREPAY_RECOVERY_SHORT", "PREPAY_OVER_RECOVERED")
# The next step a critical alert calls for (五、下一步工作), by rule, else by who must act.
NEXT_STEP_BY_RULE = {
    REFERRAL_CODE: "经督促仍未整改，拟将有关线索移交同级行风主管部门和纪检监察部门",
    "ONLY_NON_SELECTED": "约谈医疗机构负责人，督促报量并采购中选产品",
    "PREPAY_OVER_RECOVERED": "督促医保经办机构核对并更正预付款台账",
    "ORDER_RESPONSE_ESCALATED": "约谈配送企业，必要时暂停拨付结算款或建议取消其配送资格",
    "ANNUAL_REPORT_MISSING": "督促分局限期报送年度报告并说明逾期原因",
}
NEXT_STEP_BY_ACTOR = {
    "institution": "由分局督促医疗机构限期整改，市局跟踪督办",
    "distributor": "督促配送企业落实配送",
    "branch": "督促分局限期落实",
    "fund": "督促医保经办机构核对落实",
    "data_team": "由数据组核对数据",
}


# ------------------------------------------------------------------ settings and period
@dataclass(frozen=True)
class ReportSettings:
    """The profile's ``[monthly_report]`` section, and the online-rate lines it draws."""

    inspection_leads: int
    lagging_generic_names: int
    severity_weights: dict[str, int]
    online_rate_thresholds: dict[str, Decimal]

    @classmethod
    def from_profile(cls, profile: dict) -> ReportSettings:
        section = profile.get("monthly_report", {})
        weights = {"critical": 8, "high": 4, "warning": 2, "info": 1}
        weights.update({key: int(value) for key, value in section.get("severity_weights", {}).items()})
        return cls(
            inspection_leads=int(section.get("inspection_leads", 10)),
            lagging_generic_names=int(section.get("lagging_generic_names", 5)),
            severity_weights=weights,
            online_rate_thresholds={key: decimal_of(value) for key, value
                                    in profile["monitoring"]["online_rate_thresholds"].items()},
        )


def upstream_wait(profile: dict | None = None) -> dt.timedelta:
    """How long the DAG waits for the month's runs (profile ``upstream_wait_hours``)."""
    section = (profile or load_profile()).get("monthly_report", {})
    return dt.timedelta(hours=float(section.get("upstream_wait_hours", 6)))


def next_period(label_: str) -> str:
    """'2025-08' → '2025-09': the alerts of M are those with M ≤ period < the next month."""
    return add_months(dt.date.fromisoformat(label_ + "-01"), 1).strftime("%Y-%m")


def report_rule_codes() -> list[str]:
    """Every rule a person is told about (DATA_QUALITY goes to the data team only) whose
    period is a month or a day. A year's alerts (`YYYY`, the annual assessment) are not "of
    M" nor "from an earlier month" (as text '2025' < '2025-08'), and they are raised in
    February by another DAG: counting them would make a month's report depend on whether the
    assessment had run yet, so a rerun would mail a different report. The assessment has its
    own notice."""
    return [code for code, rule in RULES.items()
            if not rule.data_team_only and DAGS[rule.dag_id].period_kind != "year"]


def as_shown(ratio: Decimal | None, breach: Breach = None) -> Decimal | None:
    """A ratio for a chart: rounded as the tables show it (formatting's one rule), so a bar's
    label reads like the table beside it."""
    return None if ratio is None else rounded(ratio, RATIO_SHOWN, breach)


def _ratio(part, whole) -> Decimal | None:
    part, whole = decimal_of(part), decimal_of(whole)
    if part is None or not whole:
        return None
    return part / whole


# ------------------------------------------------------------------ figures (SQL)
@dataclass
class ReportFigures:
    """Everything the report shows, read once."""

    office: str
    city_code: str
    branches: list[dict]
    online: dict[tuple[str, str], dict]
    alert_counts: list[dict]
    critical: list[dict]
    prepayment: list[dict]
    leads: list[dict]
    lagging: list[dict]
    branch_names: dict[str, str] = field(default_factory=dict)

    def counts_of(self, codes) -> dict[str, dict[str, Decimal]]:
        """{branch: {new, earlier_open, resolved, critical, metric_total, institutions}} of ``codes``."""
        out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for row in self.alert_counts:
            if row["rule_code"] in codes:
                for key in ("new_alerts", "earlier_open", "resolved", "critical_alerts", "metric_total",
                            "institutions"):
                    out[row["branch_code"]][key] += decimal_of(row[key] or 0)
        return out


def read_figures(conn, run: RunContext, settings: ReportSettings) -> ReportFigures:
    period, branch_code = run.period.label, run.scope.branch_code
    codes = report_rule_codes()
    window = {"period": period, "next_period": next_period(period), "rule_codes": codes,
              "branch_code": branch_code}
    directory = branch_directory(conn)
    city_code = city_branch_code(conn)
    online = {(row["branch_code"], row["category"]): row for row in sqlfiles.query(
        conn, "monthly_report_online_rates", month_start=run.period.first_day,
        categories=list(ONLINE_CATEGORIES), branch_code=branch_code)}
    weights = settings.severity_weights
    leads = sqlfiles.query(
        conn, "monthly_report_leads", lead_limit=settings.inspection_leads,
        w_critical=weights["critical"], w_high=weights["high"], w_warning=weights["warning"],
        w_info=weights["info"], **window)
    if leads:
        reasons: dict[str, list[dict]] = defaultdict(list)
        for row in sqlfiles.query(conn, "monthly_report_lead_reasons",
                                  institution_codes=[lead["institution_code"] for lead in leads],
                                  **{k: v for k, v in window.items() if k != "branch_code"}):
            reasons[row["institution_code"]].append(row)
        for lead in leads:
            lead["reasons"] = sorted(reasons[lead["institution_code"]],
                                     key=lambda r: (SEVERITY_ORDER.get(r["severity"], 9), -int(r["alerts"]),
                                                    r["rule_code"]))
    return ReportFigures(
        office=directory.get(city_code, {}).get("name") or "市医疗保障局",
        city_code=city_code,
        branches=sqlfiles.query(conn, "monthly_report_branches", period=period, branch_code=branch_code),
        online=online,
        alert_counts=sqlfiles.query(conn, "monthly_report_alert_counts", **window),
        critical=sqlfiles.query(conn, "monthly_report_critical", **window),
        prepayment=sqlfiles.query(conn, "monthly_report_prepayment", first_day=run.period.first_day,
                                  last_day=run.period.last_day, branch_code=branch_code),
        leads=leads,
        lagging=sqlfiles.query(conn, "monthly_report_lagging_generics", period=period,
                               generic_limit=settings.lagging_generic_names, branch_code=branch_code),
        branch_names={code: entry.get("name") or code for code, entry in directory.items()},
    )


# ------------------------------------------------------------------ derived per-branch rows
def _sum(rows: list[dict], key: str) -> Decimal:
    return sum((decimal_of(row[key] or 0) for row in rows), Decimal(0))


SUMMED = ("institutions", "agreements", "agreements_with_quantity", "agreed_quantity",
          "cumulative_selected_quantity", "progress_weighted_quantity", "selected_quantity",
          "same_generic_quantity", "agreements_behind", "agreements_behind_high")


def city_row(branches: list[dict]) -> dict:
    """The branches' figures summed: the city-wide line."""
    return {"branch_code": "", "branch_name": CITY_WIDE, **{key: _sum(branches, key) for key in SUMMED}}


def completion_of(row: dict) -> Decimal | None:
    return _ratio(row["cumulative_selected_quantity"], row["agreed_quantity"])


def progress_of(row: dict) -> Decimal | None:
    return _ratio(row["progress_weighted_quantity"], row["agreed_quantity"])


def on_track(row: dict) -> int:
    return int(decimal_of(row["agreements_with_quantity"]) - decimal_of(row["agreements_behind"])
               - decimal_of(row["agreements_behind_high"]))


def _completion_breach(row: dict) -> Breach:
    completion, progress = completion_of(row), progress_of(row)
    if completion is not None and progress is not None and completion < progress:
        return "below"
    return None


def online_of(figures: ReportFigures, branch_code: str | None, category: str) -> tuple[Decimal, Decimal]:
    """(platform, total) amounts of a branch's public institutions, or the city's (None)."""
    rows = [row for (code, cat), row in figures.online.items()
            if cat == category and (branch_code is None or code == branch_code)]
    return _sum(rows, "platform_amount"), _sum(rows, "total_amount")


def online_text(platform: Decimal, total: Decimal, threshold: Decimal | None) -> str:
    if not total:
        return NO_DATA
    breach: Breach = "below" if threshold is not None and platform < threshold * total else None
    return share(platform, total, breach)


# ------------------------------------------------------------------ the report's text
@dataclass
class Missing:
    """Which of the month's runs had not succeeded when the report was written."""

    dags: tuple[str, ...]

    @classmethod
    def of(cls, upstream: Mapping[str, bool] | None) -> Missing:
        return cls(tuple(dag_id for dag_id in UPSTREAM_DAGS if upstream is not None and not upstream.get(dag_id)))

    def titles(self, dags=None) -> str:
        return "、".join(DAGS[dag_id].title for dag_id in self.dags if dags is None or dag_id in dags)

    def notes(self) -> list[str]:
        if not self.dags:
            return []
        figures = "；".join(f"{DAGS[dag_id].title}：{MISSING_FIGURES[dag_id]}" for dag_id in self.dags)
        return [f"特别说明：截至本报告生成时，本月{self.titles()}任务未成功完成（执行失败或等待超时），"
                f"报告中下列数据缺失或不完整——{figures}。相关任务补跑完成后将重新生成并报送本报告。"]

    def section_note(self, index: int) -> str | None:
        concerned = [dag_id for dag_id in self.dags if dag_id in SECTION_SOURCES[index]]
        if not concerned:
            return None
        figures = "；".join(MISSING_FIGURES[dag_id] for dag_id in concerned)
        return f"（注：本月{self.titles(concerned)}未成功完成，本节{figures}缺失或不完整。）"


def _n(value) -> str:
    return quantity(value or 0)


def overview_section(figures: ReportFigures, settings: ReportSettings, month: str) -> list:
    rows = figures.branches
    total = city_row(rows)
    items: list = []
    if not decimal_of(total["agreements"]):
        items.append(f"{month}，一院一档监测数据：{NO_DATA}。")
    else:
        items.append(
            f"{month}，全市纳入一院一档监测的医疗机构{_n(total['institutions'])}家、约定采购协议"
            f"{_n(total['agreements'])}份（其中有约定采购量的{_n(total['agreements_with_quantity'])}份）。"
            f"全市约定采购量完成率{percent(completion_of(total), _completion_breach(total))}"
            f"（序时进度{percent(progress_of(total))}），本月中选产品采购数量占同通用名采购数量的"
            f"{share(total['selected_quantity'], total['same_generic_quantity'], none=NO_DATA)}；"
            f"{on_track(total)}份协议进度正常，{_n(total['agreements_behind'])}份进度滞后，"
            f"{_n(total['agreements_behind_high'])}份严重滞后（完成率低于序时进度的一半）。")
    items.append(DraftTable(
        ["分局", "监测机构（家）", "协议（份）", "中选产品采购占比", "完成率", "序时进度", "正常", "滞后", "严重滞后"],
        [[row["branch_name"], _n(row["institutions"]), _n(row["agreements"]),
          share(row["selected_quantity"], row["same_generic_quantity"]),
          percent(completion_of(row), _completion_breach(row)), percent(progress_of(row)),
          str(on_track(row)), _n(row["agreements_behind"]), _n(row["agreements_behind_high"])]
         for row in [*rows, total]]))
    if rows:
        items.append(Chart(
            title=f"各分局约定采购量完成率与序时进度（{month}）",
            categories=[row["branch_name"] for row in rows] + [CITY_WIDE],
            bars=[Series("约定采购量完成率", [as_shown(completion_of(row), _completion_breach(row))
                                        for row in [*rows, total]]),
                  Series("序时进度", [as_shown(progress_of(row)) for row in [*rows, total]])],
            caption="完成率 = 累计中选产品采购量 ÷ 约定采购量；序时进度按约定采购量加权。",
        ))
    thresholds = settings.online_rate_thresholds
    parts = []
    for category in ONLINE_CATEGORIES:
        platform, total_amount = online_of(figures, None, category)
        limit = thresholds.get(category)
        required = f"（要求不低于{percent(limit)}）" if limit is not None else ""
        parts.append(f"{CATEGORY_ZH[category]}网采率{online_text(platform, total_amount, limit)}{required}")
    items.append("全市公立医疗机构本月" + "，".join(parts) + "。")
    header = ["分局"]
    for category in ONLINE_CATEGORIES:
        header += [f"{CATEGORY_ZH[category]}平台采购（元）", f"{CATEGORY_ZH[category]}采购总额（元）",
                   f"{CATEGORY_ZH[category]}网采率"]
    table_rows = []
    for code, name in [*((row["branch_code"], row["branch_name"]) for row in rows), (None, CITY_WIDE)]:
        cells = [name]
        for category in ONLINE_CATEGORIES:
            platform, total_amount = online_of(figures, code, category)
            cells += [money_plain(platform), money_plain(total_amount),
                      online_text(platform, total_amount, thresholds.get(category))]
        table_rows.append(cells)
    items.append(DraftTable(header, table_rows))
    if rows:
        bars, lines = [], []
        for category in ONLINE_CATEGORIES:
            values = []
            for code in [row["branch_code"] for row in rows]:
                platform, total_amount = online_of(figures, code, category)
                limit = thresholds.get(category)
                breach: Breach = "below" if limit is not None and platform < limit * total_amount else None
                values.append(as_shown(platform / total_amount, breach) if total_amount else None)
            bars.append(Series(f"{CATEGORY_ZH[category]}网采率", values))
            if thresholds.get(category) is not None:
                lines.append(Series(f"{CATEGORY_ZH[category]}要求（{percent(thresholds[category])}）",
                                    [thresholds[category]] * len(rows)))
        items.append(Chart(title=f"各分局公立医疗机构网采率与要求（{month}）",
                           categories=[row["branch_name"] for row in rows], bars=bars, lines=lines,
                           caption="网采率 = 平台采购金额 ÷（平台 + 线下采购金额）；虚线为政策要求。"))
    return items


def _alert_title(code: str) -> str:
    return rule_title(code)


def alerts_section(figures: ReportFigures, month: str) -> list:
    counts = figures.alert_counts
    new = sum(int(row["new_alerts"]) for row in counts)
    earlier = sum(int(row["earlier_open"]) for row in counts)
    resolved = sum(int(row["resolved"]) for row in counts)
    critical = sum(int(row["critical_alerts"]) for row in counts)
    items: list = [
        f"{month}各项监测共产生预警{new}条（其中严重{critical}条），以前月份尚未关闭的预警{earlier}条，"
        f"本月经重新核查已解除的预警{resolved}条。分局、规则分布如下表。"
    ]
    order = {code: index for index, code in enumerate(RULES)}
    rows = sorted(counts, key=lambda row: (row["branch_code"], order.get(row["rule_code"], 99), row["rule_code"]))
    items.append(DraftTable(
        ["分局", "预警规则", "本月新增", "其中严重", "以前月份未关闭", "本月已解除"],
        [[figures.branch_names.get(row["branch_code"], row["branch_code"]), _alert_title(row["rule_code"]),
          str(int(row["new_alerts"])), str(int(row["critical_alerts"])), str(int(row["earlier_open"])),
          str(int(row["resolved"]))] for row in rows] or [[NO_DATA, "", "0", "0", "0", "0"]]))
    if figures.critical:
        items.append(f"未关闭的严重预警共{len(figures.critical)}条，列示如下：")
        items.append(DraftTable(["期间", "分局", "对象", "预警规则"], [
            [period_zh(row["period"]), row["branch_name"] or row["branch_code"], _subject(row),
             _alert_title(row["rule_code"])] for row in figures.critical]))
    else:
        items.append("目前没有未关闭的严重预警。")
    return items


def _subject(row: dict) -> str:
    parts = [row.get("institution_name") or row.get("institution_code") or ""]
    if row.get("generic_name"):
        parts.append(row["generic_name"])
    if row.get("category"):
        parts.append(label(CATEGORY_ZH, row["category"]))
    if row.get("order_id"):
        parts.append(f"订单{row['order_id']}")
    text = "·".join(part for part in parts if part)
    return text or (row.get("branch_name") or row.get("branch_code") or "")


def payments_section(figures: ReportFigures, month: str) -> list:
    items: list = []
    overdue = figures.counts_of({PAYMENT_CODE})
    total_new = sum(int(v["new_alerts"]) for v in overdue.values())
    total_amount = sum((v["metric_total"] for v in overdue.values()), Decimal(0))
    items.append(
        f"货款结算：本月回款期限届满仍未结清的订单{total_new}笔，逾期未付金额合计{money(total_amount, 'above')}"
        + ("，分布如下表。" if total_new else "。"))
    if total_new:
        items.append(DraftTable(["分局", "逾期订单（笔）", "涉及医疗机构（家）", "逾期未付金额（元）"], [
            [figures.branch_names.get(code, code), str(int(v["new_alerts"])), str(int(v["institutions"])),
             money_plain(v["metric_total"], "above")]
            for code, v in sorted(overdue.items()) if v["new_alerts"]]))
    ledger = figures.prepayment
    prepay = figures.counts_of(set(PREPAY_CODES))
    prepay_alerts = sum(int(v["new_alerts"]) for v in prepay.values())
    if ledger:
        subjects = sum(int(row["subjects"]) for row in ledger)
        items.append(
            f"医保基金预付：本月有{subjects}个对账节点（医疗机构×批次×协议年度）到期，应拨付"
            f"{money(_sum(ledger, 'required_disbursement'))}、已拨付{money(_sum(ledger, 'disbursed'))}，"
            f"应归还（冲抵）{money(_sum(ledger, 'required_recovery'))}、"
            f"已归还（冲抵）{money(_sum(ledger, 'recovered'))}；"
            f"产生预付款预警{prepay_alerts}条。")
        items.append(DraftTable(
            ["分局", "对账节点", "约定采购金额（元）", "应拨付（元）", "已拨付（元）", "应归还（元）", "已归还（元）",
             "预付款预警（条）"],
            [[figures.branch_names.get(row["branch_code"], row["branch_code"]), str(int(row["subjects"])),
              money_plain(row["agreed_amount_total"]), money_plain(row["required_disbursement"]),
              money_plain(row["disbursed"]), money_plain(row["required_recovery"]), money_plain(row["recovered"]),
              str(int(prepay.get(row["branch_code"], {}).get("new_alerts", 0)))] for row in ledger]))
    else:
        items.append(f"医保基金预付：本月没有到期的预付款对账节点；预付款预警{prepay_alerts}条。")
    return items


def reasons_text(lead: dict) -> str:
    parts = []
    for reason in lead.get("reasons", []):
        generic = ""
        if reason["first_generic_name"]:
            more = int(reason["generic_names"]) - 1
            generic = f"，{reason['first_generic_name']}"
            if more:
                generic += f"等{int(reason['generic_names'])}个通用名"
        parts.append(f"{_alert_title(reason['rule_code'])}（{SEVERITY_ZH.get(reason['severity'], reason['severity'])}）"
                     f"{int(reason['alerts'])}条{generic}")
    return "；".join(parts)


def lead_completion(lead: dict) -> Decimal | None:
    return _ratio(lead["cumulative_selected_quantity"], lead["agreed_quantity"])


def leads_section(figures: ReportFigures, settings: ReportSettings, month: str, profile: dict) -> list:
    weights = "、".join(f"{SEVERITY_ZH[s]}{settings.severity_weights[s]}分" for s in SEVERITY_ORDER)
    items: list = [
        f"按照“将集采中选产品执行情况较差的医疗机构和品种作为重要线索纳入飞检对象抽取范围”的要求"
        f"（{cite_of(profile, 'INSPECTION_LEADS')}），按医疗机构{month}未关闭预警的严重程度加权计分（{weights}），"
        f"得分相同的约定采购量完成率低者在前，列出执行情况最差的医疗机构（至多{settings.inspection_leads}家）："
    ]
    if figures.leads:
        header = ["排名", "医疗机构", "分局", "得分", "预警（条）", "完成率", "线索（预警规则、严重程度、条数）"]
        items.append(DraftTable(header, [
            [str(rank), f"{lead['institution_name']}（{lead['institution_code']}）",
             lead["branch_name"] or lead["branch_code"], str(int(lead["score"])), str(int(lead["open_alerts"])),
             percent(lead_completion(lead)), reasons_text(lead)]
            for rank, lead in enumerate(figures.leads, start=1)]))
    else:
        items.append(f"本月没有涉及医疗机构的未关闭预警，{NO_DATA}。")
    items.append(f"全市约定采购量完成率相对序时进度最低的通用名（品种线索，至多{settings.lagging_generic_names}个）：")
    if figures.lagging:
        header = ["序号", "通用名", "协议（份）", "医疗机构（家）", "约定采购量", "累计中选采购量", "完成率",
                  "序时进度", "完成率/序时进度"]
        items.append(DraftTable(header, [
            [str(index), row["generic_name"], _n(row["agreements"]), _n(row["institutions"]),
             _n(row["agreed_quantity"]), _n(row["cumulative_selected_quantity"]),
             percent(_ratio(row["cumulative_selected_quantity"], row["agreed_quantity"]), "below"),
             percent(_ratio(row["progress_weighted_quantity"], row["agreed_quantity"])),
             percent(_ratio(row["cumulative_selected_quantity"], row["progress_weighted_quantity"]), "below")]
            for index, row in enumerate(figures.lagging, start=1)]))
    else:
        items.append(f"一院一档监测数据：{NO_DATA}。")
    return items


def cite_of(profile: dict, key: str) -> str:
    return str(profile.get("monthly_report", {}).get("citations", {}).get(key, ""))


def next_step(row: dict) -> str:
    code = row["rule_code"]
    step = NEXT_STEP_BY_RULE.get(code) or NEXT_STEP_BY_ACTOR.get(rule_actor(code), "市局督办")
    return (f"{row['branch_name'] or row['branch_code']}：{_subject(row)}“{_alert_title(code)}”"
            f"（{period_zh(row['period'])}）：{step}。")


def next_steps_section(figures: ReportFigures) -> list:
    referrals = [row for row in figures.critical if row["rule_code"] == REFERRAL_CODE]
    others = [row for row in figures.critical if row["rule_code"] != REFERRAL_CODE]
    items: list = []
    number = 0
    for row in [*referrals, *others]:
        number += 1
        items.append(f"{number}. {next_step(row)}")
    number += 1
    items.append(f"{number}. 督促各分局对本报告所列预警逐条核实、限期整改，下月报告跟踪整改情况；"
                 "飞检线索所列医疗机构和品种纳入飞检对象抽取范围。")
    return items


def build_report(figures: ReportFigures, run: RunContext, settings: ReportSettings, profile: dict,
                 missing: Missing) -> ReportDocument:
    month = period_zh(run.period.label)
    scope = figures.branch_names.get(run.scope.branch_code or "", "") if run.scope.branch_code else ""
    bodies = [
        overview_section(figures, settings, month),
        alerts_section(figures, month),
        payments_section(figures, month),
        leads_section(figures, settings, month, profile),
        next_steps_section(figures),
    ]
    sections = []
    for index, (heading, body) in enumerate(zip(HEADINGS, bodies)):
        note = missing.section_note(index)
        sections.append(ReportSection(heading, ([note] if note else []) + body))
    first, last = run.period.first_day, run.period.last_day
    return ReportDocument(
        title=f"{REPORT_NAME}（{month}）" + (f"·{scope}" if scope else ""),
        subtitle=(f"（{figures.office}　统计期间：{date_zh(first)}至{date_zh(last)}"
                  f"　报告日期：{date_zh(run.period.run_day)}"
                  f"　依据：{cite_of(profile, 'MONTHLY_REPORT')}　政策口径：{profile_title(profile)}）"),
        sections=sections,
        notes=missing.notes(),
        signature=figures.office,
        date_line=date_zh(run.period.run_day),
        author=figures.office,
        subject=f"{REPORT_NAME} {month}",
        keywords=f"{run.period.label};{run.scope.branch_code or CITY_WIDE}",
        category="月度工作进展报告",
    )


# ------------------------------------------------------------------ the workbook
_T, _I, _P, _M, _Q = "text", "integer", "percent", "money", "quantity"
BRANCH_HEADER = [Column("分局"), Column("监测医疗机构（家）", _I), Column("协议（份）", _I),
                 Column("有约定采购量的协议（份）", _I), Column("约定采购量", _Q), Column("累计中选产品采购量", _Q),
                 Column("约定采购量完成率", _P), Column("序时进度（按约定采购量加权）", _P),
                 Column("本月中选产品采购量", _Q), Column("本月同通用名采购量", _Q), Column("中选产品采购数量占比", _P),
                 Column("进度正常（份）", _I), Column("进度滞后（份）", _I), Column("严重滞后（份）", _I)]
ONLINE_HEADER = [Column("分局"), Column("品类"), Column("公立医疗机构（家）", _I), Column("平台采购金额（元）", _M),
                 Column("采购总额（元）", _M), Column("网采率", _P, breach="below"), Column("要求", _P)]
ALERT_HEADER = [Column("分局"), Column("预警规则"), Column("本月新增（条）", _I), Column("其中严重（条）", _I),
                Column("以前月份未关闭（条）", _I), Column("本月已解除（条）", _I), Column("涉及医疗机构（家）", _I)]
CRITICAL_HEADER = [Column("期间"), Column("分局"), Column("对象"), Column("预警规则"), Column("说明", "long_text"),
                   Column("下一步工作", "long_text")]
PAYMENT_HEADER = [Column("分局"), Column("逾期订单（笔）", _I), Column("涉及医疗机构（家）", _I),
                  Column("逾期未付金额（元）", _M, breach="above")]
PREPAY_HEADER = [Column("分局"), Column("到期对账节点", _I), Column("约定采购金额（元）", _M),
                 Column("应拨付（元）", _M),
                 Column("已拨付（元）", _M), Column("应归还（冲抵）（元）", _M), Column("已归还（冲抵）（元）", _M),
                 Column("预付款预警（条）", _I)]
LEAD_HEADER = [Column("排名", _I), Column("医疗机构代码"), Column("医疗机构"), Column("分局"), Column("加权得分", _I),
               Column("未关闭预警（条）", _I), Column("约定采购量完成率", _P), Column("线索", "long_text")]
GENERIC_HEADER = [Column("序号", _I), Column("通用名"), Column("协议（份）", _I), Column("医疗机构（家）", _I),
                  Column("约定采购量", _Q), Column("累计中选产品采购量", _Q), Column("完成率", _P, breach="below"),
                  Column("序时进度", _P), Column("完成率/序时进度", _P, breach="below")]
NOTES_HEADER = [Column("项目"), Column("口径", "long_text")]


def _branch_sheet_row(row: dict) -> list:
    return [row["branch_name"], int(row["institutions"]), int(row["agreements"]),
            int(row["agreements_with_quantity"]), decimal_of(row["agreed_quantity"]),
            decimal_of(row["cumulative_selected_quantity"]), completion_of(row), progress_of(row),
            decimal_of(row["selected_quantity"]), decimal_of(row["same_generic_quantity"]),
            _ratio(row["selected_quantity"], row["same_generic_quantity"]), on_track(row),
            int(row["agreements_behind"]), int(row["agreements_behind_high"])]


def workbook_sheets(figures: ReportFigures, settings: ReportSettings, missing: Missing) -> dict:
    branch_rows = [_branch_sheet_row(row) for row in [*figures.branches, city_row(figures.branches)]]
    online_rows = []
    for code, name in [*((row["branch_code"], row["branch_name"]) for row in figures.branches), (None, CITY_WIDE)]:
        for category in ONLINE_CATEGORIES:
            platform, total = online_of(figures, code, category)
            institutions = sum(int(row["institutions"]) for (c, cat), row in figures.online.items()
                               if cat == category and (code is None or c == code))
            online_rows.append([name, CATEGORY_ZH[category], institutions, platform, total,
                                _ratio(platform, total), settings.online_rate_thresholds.get(category)])
    order = {code: index for index, code in enumerate(RULES)}
    alert_rows = [[figures.branch_names.get(row["branch_code"], row["branch_code"]), _alert_title(row["rule_code"]),
                   int(row["new_alerts"]), int(row["critical_alerts"]), int(row["earlier_open"]),
                   int(row["resolved"]), int(row["institutions"])]
                  for row in sorted(figures.alert_counts, key=lambda r: (r["branch_code"],
                                                                         order.get(r["rule_code"], 99)))]
    critical_rows = [[period_zh(row["period"]), row["branch_name"] or row["branch_code"], _subject(row),
                      _alert_title(row["rule_code"]), row["message"], next_step(row)] for row in figures.critical]
    overdue = figures.counts_of({PAYMENT_CODE})
    payment_rows = [[figures.branch_names.get(code, code), int(v["new_alerts"]), int(v["institutions"]),
                     v["metric_total"]] for code, v in sorted(overdue.items()) if v["new_alerts"]]
    prepay = figures.counts_of(set(PREPAY_CODES))
    prepay_rows = [[figures.branch_names.get(row["branch_code"], row["branch_code"]), int(row["subjects"]),
                    decimal_of(row["agreed_amount_total"]), decimal_of(row["required_disbursement"]),
                    decimal_of(row["disbursed"]), decimal_of(row["required_recovery"]), decimal_of(row["recovered"]),
                    int(prepay.get(row["branch_code"], {}).get("new_alerts", 0))] for row in figures.prepayment]
    lead_rows = [[rank, lead["institution_code"], lead["institution_name"], lead["branch_name"] or lead["branch_code"],
                  int(lead["score"]), int(lead["open_alerts"]), lead_completion(lead), reasons_text(lead)]
                 for rank, lead in enumerate(figures.leads, start=1)]
    generic_rows = [[index, row["generic_name"], int(row["agreements"]), int(row["institutions"]),
                     decimal_of(row["agreed_quantity"]), decimal_of(row["cumulative_selected_quantity"]),
                     _ratio(row["cumulative_selected_quantity"], row["agreed_quantity"]),
                     _ratio(row["progress_weighted_quantity"], row["agreed_quantity"]),
                     _ratio(row["cumulative_selected_quantity"], row["progress_weighted_quantity"])]
                    for index, row in enumerate(figures.lagging, start=1)]
    weights = "、".join(f"{SEVERITY_ZH[s]} {settings.severity_weights[s]}" for s in SEVERITY_ORDER)
    notes = [
        ["数据来源", "本月进院排查、月度监测（一院一档）、预付对账、报量审核的结果及预警表，本报告不重新评判规则"],
        ["完成率", "累计中选产品采购量 ÷ 约定采购量（有约定采购量的协议）；分局、全市为合计数之比"],
        ["序时进度", "各协议序时进度按约定采购量加权平均"],
        ["进度正常 / 滞后 / 严重滞后",
         "按月监测“约定采购量完成进度滞后”预警：关注级为滞后，高级为严重滞后，其余为正常"],
        ["网采率", "公立医疗机构平台采购金额 ÷（平台 + 线下采购金额），按品类"],
        ["本月新增 / 以前月份未关闭 / 已解除",
         "期间在本月的未关闭预警 / 以前期间仍未关闭的预警 / 期间在本月、经重跑已解除的预警"],
        ["飞检线索排序", f"医疗机构本月未关闭预警按严重程度加权求和（{weights}），同分时完成率低者在前，再按机构代码"],
        ["品种线索", "全市累计中选产品采购量 ÷（序时进度 × 约定采购量）之和，最低者在前"],
    ]
    notes += [["数据缺失", note] for note in missing.notes()]
    return {
        "总体情况": (BRANCH_HEADER, branch_rows),
        "网采率": (ONLINE_HEADER, online_rows),
        "预警情况": (ALERT_HEADER, alert_rows),
        "严重预警": (CRITICAL_HEADER, critical_rows),
        "逾期货款": (PAYMENT_HEADER, payment_rows),
        "预付对账节点": (PREPAY_HEADER, prepay_rows),
        "飞检线索": (LEAD_HEADER, lead_rows),
        "品种线索": (GENERIC_HEADER, generic_rows),
        "口径说明": (NOTES_HEADER, notes),
    }


# ------------------------------------------------------------------ files and the run
def audience_of(run: RunContext) -> str:
    """The file's audience part: 全市, or the branch an operator restricted the run to."""
    return run.scope.branch_code or CITY_WIDE


def report_paths(run: RunContext) -> tuple[Path, Path]:
    label_ = run.period.label
    return (run_file_path(DAG_ID, REPORT_PREFIX, label_, audience_of(run), suffix=".docx"),
            run_file_path(DAG_ID, DATA_PREFIX, label_, audience_of(run)))


def email_description(figures: ReportFigures, run: RunContext, missing: Missing, paths: list[Path]) -> dict:
    """What notify/mailer.py › notify_documents mails: JSON-safe."""
    month = period_zh(run.period.label)
    total = city_row(figures.branches)
    new = sum(int(row["new_alerts"]) for row in figures.alert_counts)
    critical = sum(int(row["critical_alerts"]) for row in figures.alert_counts)
    top = "、".join(lead["institution_name"] for lead in figures.leads[:3]) or "无"
    paragraphs = [
        f"{figures.office}：",
        f"{month}集中带量采购工作月度进展报告已生成，Word 报告与 Excel 数据表见附件。要点：全市监测医疗机构"
        f"{_n(total['institutions'])}家、协议{_n(total['agreements'])}份，约定采购量完成率"
        f"{percent(completion_of(total), _completion_breach(total))}（序时进度{percent(progress_of(total))}）；"
        f"本月新增预警{new}条，其中严重{critical}条；飞检线索前列：{top}。",
        *missing.notes(),
    ]
    header = ["分局", "完成率", "序时进度", "进度滞后（份）", "严重滞后（份）"]
    rows = [[row["branch_name"], percent(completion_of(row), _completion_breach(row)), percent(progress_of(row)),
             _n(row["agreements_behind"]), _n(row["agreements_behind_high"])] for row in [*figures.branches, total]]
    scope = run.scope.branch_code or "city"
    return {
        "audience": "city",
        "key": f"{DAG_ID}|{run.period.label}|{scope}|{files_digest(paths)}",
        "series": f"{DAG_ID}|{run.period.label}|{scope}",
        "subject": f"【集采月度报告】{figures.office} · {REPORT_NAME} · {month}"
                   + ("（部分数据缺失）" if missing.dags else ""),
        "paragraphs": paragraphs,
        "sections": [["各分局约定采购量完成进度", {"header": header, "rows": rows, "numeric": [1, 2, 3, 4]}]],
        "actions": ["请审阅附件报告，按“五、下一步工作”督办落实；本报告按月报告制于每月5日前书面报送领导小组办公室。"],
        "files": [str(path) for path in paths],
    }


def judge(engine, run: RunContext, profile: dict | None = None,
          upstream: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Write month M's report (DOCX) and its workbook (XLSX); returns what the notify task
    mails (``documents``) and the figures' counts. ``upstream``: whether each of the month's
    runs succeeded (None: not known, e.g. called outside Airflow — taken as succeeded)."""
    from vbp_monitor.outputs.report_document import write_report_docx, write_reproducible_xlsx

    profile = profile or load_profile()
    settings = ReportSettings.from_profile(profile)
    missing = Missing.of(upstream)
    # M's purchase facts (the online rates): cached by M's monitoring run unless an ingest
    # cleared them since (then built again from the same orders)
    build_month(engine, run.period.first_day)
    with engine.connect() as conn:
        figures = read_figures(conn, run, settings)
    report = build_report(figures, run, settings, profile, missing)
    docx_path, xlsx_path = report_paths(run)
    stamp = run_stamp(run)
    write_report_docx(docx_path, report, run.period.run_day)
    title = BookTitle(office=figures.office, title=REPORT_NAME + "数据", period=run.period.label,
                      generated_at=stamp, profile=profile)
    write_reproducible_xlsx(xlsx_path, workbook_sheets(figures, settings, missing), title,
                            stamp.astimezone(dt.UTC).replace(tzinfo=None))
    paths = [docx_path, xlsx_path]
    result = {
        "period": run.period.label,
        "missing": list(missing.dags),
        "leads": [lead["institution_code"] for lead in figures.leads],
        "critical": len(figures.critical),
        "files": [str(path) for path in paths],
        "documents": [email_description(figures, run, missing, paths)],
    }
    log.info("%s %s: %s", DAG_ID, run.period.label, {k: v for k, v in result.items() if k != "documents"})
    return result


def folder(period_label: str) -> Path:
    return run_folder(DAG_ID, period_label)


def upstream_succeeded(logical_date) -> dict[str, bool]:
    """Whether the month's runs of the same logical date succeeded, asked of Airflow from a
    running task (the Task SDK's API; the sensors' outcome is not enough: a sensor that timed
    out is skipped, one that saw success does not say which run it was)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return {dag_id: RuntimeTaskInstance.get_dr_count(dag_id=dag_id, logical_dates=[logical_date],
                                                     states=["success"]) > 0
            for dag_id in UPSTREAM_DAGS}
