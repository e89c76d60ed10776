"""DAG 8 · 年度考核与结余留用测算 (annual assessment and savings retention) — domain.md DAG 8,
seed 002 附件1 and §二(八), seed 003 §五(七), seed 000 item 14.

The run with logical date D judges the calendar year Y = D.year − 1 (``periods.judged_year``,
alert period ``YYYY``), as of 31 December of Y, for the public institutions:

* C1 均完成约定采购量: every agreement with ``agreed_quantity`` > 0 active in Y is on target
  (ending in Y: completion ≥ 1 at ``period_end``; ending after Y: completion on 31 December ≥
  time progress that day);
* C2 中选药品使用比例达到约定采购比例: for each such agreement, the selected quantity share
  over the days of Y inside its agreement year ≥ ``agreed_ratio`` (no same-generic purchase:
  reached);
* C3 网采率: over Y, drugs ≥ 0.90 and high-value consumables ≥ 0.80 (profile ``[monitoring]
  online_rate_thresholds``; a category without purchases passes).

合格 when all three hold. The institutions passing C1 are ranked by their selected drug
quantity share over Y (ties: institution code); the others are listed after, unranked.
Per branch, the online rates over Y of its public institutions against the same thresholds.
The savings-retention estimate (结余留用测算) of every agreement active in Y of a 合格
institution: savings = Σ quantity × (baseline price − unit price) over its selected platform
purchases in Y inside the agreement year (no baseline price: no estimate; negative: 0), the
ceiling ``retention_cap_ratio`` (default 0.5) × savings; 不合格 institutions get 0. An
estimate for the bureau's decision: every output says so.

Codes: ``ASSESSMENT_FAILED`` (institution × Y, criteria met / 3) and
``BRANCH_ASSESSMENT_FAILED`` (branch × category × Y, rate / minimum; to the city too).
Conditions in ``include/sql/assessment_*.sql``; outputs: the city's workbook (考核结果与排名,
结余留用测算, 分局网采率) and the DOCX notice 年度考核通报, and each branch's part of the
workbook, attached to the emails of ``notify_run``.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.formatting import (
    CENT,
    as_date,
    date_zh,
    decimal_of,
    money,
    percent,
    rounded,
    share,
)
from vbp_monitor.core.labels import CATEGORY_ZH, ONLINE_CATEGORIES, label
from vbp_monitor.core.profiles import cite, load_profile, profile_title
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.outputs.run_files import run_file_path, run_folder, run_stamp

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext
    from vbp_monitor.outputs.documents import DraftDocument
    from vbp_monitor.outputs.spreadsheets import Sheets
    from vbp_monitor.quality.validation import Where

log = logging.getLogger(__name__)

DAG_ID = "vbp_annual_assessment"
FAILED, BRANCH_FAILED = "ASSESSMENT_FAILED", "BRANCH_ASSESSMENT_FAILED"
RULE_CODES = DAGS[DAG_ID].rule_codes
CRITERIA = 3
# Relative tolerance of the SQL comparisons (SQLite computes in binary floats), as the
# monthly rules do; ratio figures kept to 4 places, a measured rate below its line rounded down.
EPS = 1e-9
RATIO_PLACES = Decimal("0.0001")
PASSED_ZH, FAILED_ZH = "合格", "不合格"
NOT_ALL_COMPLETED = "未全部完成约定采购量"
NO_SHARE = "无同通用名中选药品采购，不参与排名"
CRITERION_ZH = {"c1": "约定采购量完成", "c2": "中选药品使用比例", "c3": "网采率"}
ESTIMATE_NOTE = "结余留用金额为系统测算结果，仅供市医保局研究决定结余留用时参考，不作为拨付依据。"
FILE_PREFIX = "年度考核"
NOTICE_PREFIX = "年度考核通报"
BOOK_TITLE = "年度集采考核结果"
# How many subjects a message names before it says "等 n 个".
NAMED_IN_MESSAGE = 3


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class AssessmentSettings:
    """The profile's ``[assessment]`` section and the online-rate lines of ``[monitoring]``."""

    assessment_day: str  # 'MM-DD'
    retention_cap_ratio: Decimal
    retention_citation: str
    online_rate_thresholds: dict[str, Decimal]
    profile: dict

    @classmethod
    def from_profile(cls, profile: dict) -> AssessmentSettings:
        section = profile["assessment"]
        return cls(
            assessment_day=str(section.get("assessment_day", "02-01")),
            retention_cap_ratio=decimal_of(section.get("retention_cap_ratio", Decimal("0.5"))),
            retention_citation=str(section.get("retention_citation", "")),
            online_rate_thresholds={key: decimal_of(value) for key, value
                                    in profile["monitoring"]["online_rate_thresholds"].items()},
            profile=profile,
        )

    def min_rate(self, category: str) -> Decimal | None:
        return self.online_rate_thresholds.get(category)

    def rate_params(self) -> dict[str, float | None]:
        # The minimum rates go to SQL as floats on both databases (see :eps there).
        drug, hvc = self.min_rate("drug"), self.min_rate("high_value_consumable")
        return {"drug_min_rate": None if drug is None else float(drug),
                "hvc_min_rate": None if hvc is None else float(hvc)}


def year_of(run: RunContext) -> int:
    return run.period.first_day.year


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext) -> dict[str, Where | None]:
    """The rows this DAG reads, for ``validation.validate_tables``: the reference tables, the
    agreements, the baseline prices, and the order lines of Y and of the year before (the
    completion of an agreement year that began in Y − 1 counts from its start)."""
    from vbp_monitor.quality.validation import Where

    year = year_of(run)
    return {
        "branches": None,
        "institutions": None,
        "batches": None,
        "products": None,
        "agreements": Where("period_start <= :last_day AND period_end >= :first_day"),
        "orders": Where("order_date >= :history_start AND order_date <= :last_day",
                        history_start=dt.date(year - 1, 1, 1)),
        "baseline_prices": None,
    }


def validate(engine, run: RunContext) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run))


# ------------------------------------------------------------------ the figures
def _params(run: RunContext, settings: AssessmentSettings) -> dict[str, Any]:
    return {"year_start": run.period.first_day, "year_end": run.period.last_day, "eps": EPS,
            "branch_code": run.scope.branch_code, **settings.rate_params()}


def _decimals(row: dict, *names: str) -> None:
    for name in names:
        row[name] = decimal_of(row[name]) if row[name] is not None else None


def institution_results(conn, run: RunContext, settings: AssessmentSettings) -> list[dict]:
    """Every public institution with its verdict, ranking position and figures, in the order
    of the ranking (ranked first, then the others by institution code)."""
    rows = sqlfiles.query(conn, "assessment_institutions", **_params(run, settings))
    for row in rows:
        _decimals(row, "drug_platform_amount", "drug_total_amount", "hvc_platform_amount",
                  "hvc_total_amount", "share_selected_quantity", "share_generic_quantity")
        for name in ("agreements", "agreements_behind", "agreements_ratio_low", "c1_pass", "c2_pass",
                     "c3_drug_pass", "c3_hvc_pass", "criteria_met"):
            row[name] = int(row[name])
        row["rank_position"] = int(row["rank_position"]) if row["rank_position"] is not None else None
        row["c3_pass"] = row["c3_drug_pass"] * row["c3_hvc_pass"]
        row["passed"] = row["criteria_met"] == CRITERIA
    return rows


def agreement_figures(conn, run: RunContext, settings: AssessmentSettings) -> list[dict]:
    """Every agreement of a public institution active in Y, with its checks and savings."""
    rows = sqlfiles.query(conn, "assessment_agreements", **_params(run, settings))
    for row in rows:
        _decimals(row, "agreed_quantity", "agreed_ratio", "cumulative_selected_quantity", "selected_quantity",
                  "selected_value", "same_generic_quantity", "baseline_price", "savings_gross")
        for name in ("period_start", "period_end", "from_day", "as_of_date"):
            row[name] = as_date(row[name])
        for name in ("on_target", "ratio_reached"):
            row[name] = None if row[name] is None else int(row[name])
    return rows


def branch_rates(conn, run: RunContext, settings: AssessmentSettings) -> list[dict]:
    rows = sqlfiles.query(conn, "assessment_branch_rates", **_params(run, settings))
    for row in rows:
        _decimals(row, "platform_amount", "total_amount")
        row["min_rate"] = settings.min_rate(row["category"])
        row["below"] = bool(row["below"])
        row["institution_count"] = int(row["institution_count"])
    return rows


# ------------------------------------------------------------------ figures for people
def rate_of(platform: Decimal | None, total: Decimal | None) -> Decimal | None:
    return platform / total if platform is not None and total else None


def ranking_share(row: dict) -> Decimal | None:
    return rate_of(row["share_selected_quantity"], row["share_generic_quantity"])


def failed_criteria(row: dict) -> list[str]:
    return [CRITERION_ZH[key] for key in ("c1", "c2", "c3") if not row[f"{key}_pass"]]


def verdict_text(row: dict) -> str:
    return PASSED_ZH if row["passed"] else FAILED_ZH


def ranking_note(row: dict) -> str:
    if row["rank_position"] is not None:
        return ""
    return NOT_ALL_COMPLETED if not row["c1_pass"] else NO_SHARE


@dataclass(frozen=True)
class Retention:
    """One agreement's savings-retention estimate (结余留用测算)."""

    savings: Decimal | None  # None: no baseline price, no estimate
    ceiling: Decimal | None
    note: str


def retention_of(agreement: dict, institution: dict | None, settings: AssessmentSettings) -> Retention:
    """The estimate of one agreement: savings (negative → 0) and the ceiling; 不合格 → 0."""
    gross = agreement["savings_gross"]
    savings = None if gross is None else rounded(max(gross, Decimal(0)), CENT)
    if institution is None or not institution["passed"]:
        failed = "、".join(failed_criteria(institution)) if institution else ""
        reason = f"年度考核不合格（{failed}未达标），不予结余留用" if failed else "年度考核不合格，不予结余留用"
        return Retention(savings, Decimal(0), reason)
    if savings is None:
        return Retention(None, None, "该批次该通用名无基期价格（baseline_prices），无法测算")
    ceiling = (settings.retention_cap_ratio * savings).quantize(CENT, rounding=ROUND_HALF_UP)
    note = "节约金额为负，按0计" if gross is not None and gross < 0 else ""
    return Retention(savings, ceiling, note)


# ------------------------------------------------------------------ alerts
def _named(items: list[str]) -> str:
    shown = "、".join(items[:NAMED_IN_MESSAGE])
    return shown + (f"等 {len(items)} 个" if len(items) > NAMED_IN_MESSAGE else "")


def failure_details(row: dict, settings: AssessmentSettings) -> str:
    """The failed criteria of an institution with their figures, for the notice's table."""
    parts = []
    if not row["c1_pass"]:
        parts.append(f"约定采购量（{row['agreements_behind']}/{row['agreements']} 份协议未完成）")
    if not row["c2_pass"]:
        parts.append(f"中选药品使用比例（{row['agreements_ratio_low']} 份协议未达约定比例）")
    for category, key in (("drug", "drug"), ("high_value_consumable", "hvc")):
        if not row[f"c3_{key}_pass"]:
            parts.append(f"{label(CATEGORY_ZH, category)}网采率 "
                         f"{share(row[f'{key}_platform_amount'], row[f'{key}_total_amount'], breach='below')}"
                         f"（要求≥{percent(settings.min_rate(category))}）")
    return "；".join(parts)


def _rate_phrase(category: str, platform: Decimal, total: Decimal, minimum: Decimal | None) -> str:
    return (f"{label(CATEGORY_ZH, category)}网采率 {share(platform, total, breach='below')}"
            f"（平台 {money(platform)} / 总额 {money(total)}），低于 {percent(minimum)}")


def failed_message(row: dict, agreements: list[dict], year: int, settings: AssessmentSettings) -> str:
    """Why an institution is 不合格: each failed criterion with its figures, and the clause."""
    reasons = []
    if not row["c1_pass"]:
        behind = [a["generic_name"] for a in agreements if a["on_target"] == 0]
        reasons.append(f"约定采购量：{row['agreements']} 份协议中 {row['agreements_behind']} 份未完成"
                       f"（{_named(behind)}；协议年度在{year}年内结束的按期末完成率 ≥ 100%，"
                       f"跨年的按12月31日完成率 ≥ 序时进度）")
    if not row["c2_pass"]:
        low = [a["generic_name"] for a in agreements if a["ratio_reached"] == 0]
        reasons.append(f"中选药品使用比例：{row['agreements_ratio_low']} 份协议的中选产品采购数量占比"
                       f"低于约定采购比例（{_named(low)}）")
    if not row["c3_pass"]:
        rates = []
        if not row["c3_drug_pass"]:
            rates.append(_rate_phrase("drug", row["drug_platform_amount"], row["drug_total_amount"],
                                      settings.min_rate("drug")))
        if not row["c3_hvc_pass"]:
            rates.append(_rate_phrase("high_value_consumable", row["hvc_platform_amount"],
                                      row["hvc_total_amount"], settings.min_rate("high_value_consumable")))
        reasons.append("网采率：" + "；".join(rates))
    ranking = ("；未全部完成约定采购量，不参与排名" if not row["c1_pass"] else "")
    return (f"【年度考核·{RULES[FAILED].title}】{row['institution_name']}（{row['institution_code']}）："
            f"{year}年度考核三项标准满足 {row['criteria_met']} 项，结果为不合格。未达标项——"
            + "；".join(reasons) + f"{ranking}；结余留用测算为 0。"
            f"请督促该医疗机构分析原因、限期整改。依据：{cite(settings.profile, FAILED)}。")


def branch_message(row: dict, year: int, settings: AssessmentSettings) -> str:
    return (f"【年度考核·{RULES[BRANCH_FAILED].title}】{row['branch_name']}（{row['branch_code']}）辖区 "
            f"{row['institution_count']} 家公立医疗机构{year}年度"
            f"{_rate_phrase(row['category'], row['platform_amount'], row['total_amount'], row['min_rate'])}"
            f"的考核要求。请分局督导辖区公立医疗机构通过省级平台“全品种、全数量”采购，规范线下议价采购及备案。"
            f"依据：{cite(settings.profile, BRANCH_FAILED)}。")


def candidates_of(institutions: list[dict], agreements: list[dict], rates: list[dict], year: int,
                  settings: AssessmentSettings) -> list[dict]:
    by_institution: dict[str, list[dict]] = {}
    for agreement in agreements:
        by_institution.setdefault(agreement["institution_code"], []).append(agreement)
    out = []
    for row in institutions:
        if row["passed"]:
            continue
        out.append({
            "rule_code": FAILED, "severity": RULES[FAILED].severity, "branch_code": row["branch_code"],
            "institution_code": row["institution_code"],
            "metric_value": Decimal(row["criteria_met"]), "threshold_value": Decimal(CRITERIA),
            "message": failed_message(row, by_institution.get(row["institution_code"], []), year, settings),
        })
    for row in rates:
        if not row["below"]:
            continue
        out.append({
            "rule_code": BRANCH_FAILED, "severity": RULES[BRANCH_FAILED].severity,
            "branch_code": row["branch_code"], "category": row["category"],
            "metric_value": rounded(row["platform_amount"] / row["total_amount"], RATIO_PLACES, breach="below"),
            "threshold_value": row["min_rate"],
            "message": branch_message(row, year, settings),
        })
    return out


# ------------------------------------------------------------------ the run
def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Judge year Y: the alerts, the city's workbook and notice, each branch's workbook."""
    profile = profile or load_profile()
    settings = AssessmentSettings.from_profile(profile)
    year = year_of(run)
    with engine.begin() as conn:
        institutions = institution_results(conn, run, settings)
        agreements = agreement_figures(conn, run, settings)
        rates = branch_rates(conn, run, settings)
        written = run.store.replace(conn, RULE_CODES,
                                    candidates_of(institutions, agreements, rates, year, settings),
                                    scope=run.scope)
        branches = branch_directory(conn)
        city = city_branch_code(conn)
    results = Results(institutions, agreements, rates, settings, branches, city, year, run.period.run_day)
    attachments = write_outputs(results, run)
    passed = sum(row["passed"] for row in institutions)
    # The city's workbook and notice go with the city's alert email; a year whose alerts the
    # city is not mailed (no branch failed its online rate) mails them as a document, once per
    # content (notify_documents), so the city always receives its notice.
    documents = ([] if run.scope.branch_code or city_is_alerted(engine, run)
                 else [notice_description(results, run, attachments.get(city, []))])
    result = JudgeResult(period=run.period.label, rule_codes=RULE_CODES, written=written,
                         attachments=attachments,
                         details={"year": year, "institutions": len(institutions), "passed": passed,
                                  "failed": len(institutions) - passed, "agreements": len(agreements),
                                  "documents": documents})
    log.info("%s %s: %s", DAG_ID, run.period.label, result.as_xcom())
    return result


@dataclass
class Results:
    """Everything the outputs show, judged once."""

    institutions: list[dict]
    agreements: list[dict]
    rates: list[dict]
    settings: AssessmentSettings
    branches: dict[str, dict]
    city: str
    year: int
    run_day: dt.date

    def branch_name(self, code: str) -> str:
        return self.branches.get(code, {}).get("name") or code

    @property
    def office(self) -> str:
        return self.branch_name(self.city)

    by_code: dict[str, dict] = field(init=False)
    retentions: list[tuple[dict, Retention]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_code = {row["institution_code"]: row for row in self.institutions}
        self.retentions = [(a, retention_of(a, self.institution(a["institution_code"]), self.settings))
                           for a in self.agreements]

    def institution(self, code: str) -> dict | None:
        return self.by_code.get(code)


# ------------------------------------------------------------------ the workbook
def _columns():
    from vbp_monitor.outputs.spreadsheets import Column

    ranking = [
        Column("排名", "integer"), Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"),
        Column("考核结果"), Column("未达标项"), Column("满足标准项数", "integer"),
        Column("约定采购协议数", "integer"), Column("未完成约定采购量协议数", "integer"),
        Column("中选使用比例未达约定协议数", "integer"),
        Column("中选药品使用量占比", "percent"), Column("药品网采率", "percent", breach="below"),
        Column("高值医用耗材网采率", "percent", breach="below"), Column("排名说明"),
    ]
    retention = [
        Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"), Column("考核结果"),
        Column("批次代码"), Column("批次名称"), Column("通用名"), Column("协议年度起", "date"),
        Column("协议年度止", "date"), Column("年内测算期起", "date"), Column("年内测算期止", "date"),
        Column("中选产品平台采购数量", "quantity"), Column("基期价格（元）", "money"),
        Column("中选产品平台采购金额（元）", "money"), Column("节约金额（测算，元）", "money"),
        Column("留用比例上限", "percent"), Column("可留用金额上限（测算，元）", "money"),
        Column("说明", "long_text"),
    ]
    rates = [
        Column("分局"), Column("品类"), Column("有采购的公立医疗机构数", "integer"),
        Column("平台采购金额（元）", "money"), Column("采购总金额（元）", "money"),
        Column("网采率", "percent", breach="below"), Column("考核要求（不低于）", "percent"), Column("结果"),
    ]
    notes = [Column("项目"), Column("口径", "long_text")]
    return ranking, retention, rates, notes


def _or_none_bought(rate: Decimal | None) -> Decimal | str:
    return "无采购" if rate is None else rate


def _ranking_row(row: dict, results: Results) -> list:
    return [
        row["rank_position"] if row["rank_position"] is not None else "—",
        results.branch_name(row["branch_code"]), row["institution_code"], row["institution_name"],
        verdict_text(row), "、".join(failed_criteria(row)) or "—", row["criteria_met"], row["agreements"],
        row["agreements_behind"], row["agreements_ratio_low"],
        ranking_share(row) if ranking_share(row) is not None else "—",
        _or_none_bought(rate_of(row["drug_platform_amount"], row["drug_total_amount"])),
        _or_none_bought(rate_of(row["hvc_platform_amount"], row["hvc_total_amount"])),
        ranking_note(row),
    ]


def _retention_row(agreement: dict, retention: Retention, results: Results) -> list:
    institution = results.institution(agreement["institution_code"])
    passed = bool(institution and institution["passed"])
    return [
        results.branch_name(agreement["branch_code"]), agreement["institution_code"],
        agreement["institution_name"], PASSED_ZH if passed else FAILED_ZH,
        agreement["batch_code"], agreement["batch_name"], agreement["generic_name"],
        agreement["period_start"], agreement["period_end"], agreement["from_day"], agreement["as_of_date"],
        agreement["selected_quantity"],
        agreement["baseline_price"] if agreement["baseline_price"] is not None else "无基期价格",
        agreement["selected_value"],
        retention.savings if retention.savings is not None else "未测算",
        results.settings.retention_cap_ratio if passed else Decimal(0),
        retention.ceiling if retention.ceiling is not None else "未测算",
        retention.note,
    ]


def _rate_row(row: dict, results: Results) -> list:
    return [
        results.branch_name(row["branch_code"]), label(CATEGORY_ZH, row["category"]), row["institution_count"],
        row["platform_amount"], row["total_amount"], rate_of(row["platform_amount"], row["total_amount"]),
        row["min_rate"] if row["min_rate"] is not None else "—",
        "不达标" if row["below"] else "达标",
    ]


def notes_rows(results: Results) -> list[list]:
    settings, year = results.settings, results.year
    thresholds = "，".join(f"{label(CATEGORY_ZH, c)} ≥ {percent(settings.min_rate(c))}"
                          for c in ONLINE_CATEGORIES if settings.min_rate(c) is not None)
    return [
        ["考核对象", f"公立医疗机构（{year}年12月31日），考核{year}年1月1日至12月31日"],
        ["标准一：约定采购量完成", f"{year}年内有效、约定采购量 > 0 的每份协议：协议年度在{year}年内结束的，"
                          "期末完成率 ≥ 100%；跨年的，12月31日完成率 ≥ 当日序时进度"],
        ["标准二：中选药品使用比例", f"上述每份协议在{year}年内（协议年度以内）的中选产品采购数量占比 ≥ 约定采购比例；"
                           "无同通用名采购的视为达到"],
        ["标准三：网采率", f"{year}年网采率（按金额）：{thresholds}；无采购的品类视为达标"],
        ["考核结果", "三项均达标为合格，否则为不合格（列出未达标项）"],
        ["排名", f"完成约定采购量（标准一达标）的机构，按{year}年中选药品使用量占同通用名药品使用量之比（"
                "有中选产品的药品通用名，含线下采购）由高到低排名，相同时按机构代码；"
                f"其余机构列于其后，不排名（{NOT_ALL_COMPLETED}）"],
        ["分局网采率", "分局辖区公立医疗机构合计的平台采购金额 ÷ 采购总金额，考核要求同标准三"],
        ["结余留用测算", f"合格机构每份{year}年内有效协议：节约金额 = Σ 中选产品平台采购数量 × "
                   f"（基期价格 − 采购单价），限{year}年内且在协议年度以内；为负按0计；无基期价格的不测算；"
                   "可留用金额上限 = "
                   f"{percent(settings.retention_cap_ratio)} × 节约金额；不合格机构为0。"
                   f"依据：{settings.retention_citation}"],
        ["说明", ESTIMATE_NOTE],
        ["考核依据", f"{cite(settings.profile, FAILED)}；政策口径：{profile_title(settings.profile)}"],
    ]


def workbook(results: Results, branch_code: str | None = None) -> Sheets:
    """The assessment's sheets: the whole city, or one branch's part."""
    ranking_header, retention_header, rates_header, notes_header = _columns()

    def mine(row: dict) -> bool:
        return branch_code is None or row["branch_code"] == branch_code

    return {
        "考核结果与排名": (ranking_header, [_ranking_row(r, results) for r in results.institutions if mine(r)]),
        "结余留用测算": (retention_header, [_retention_row(a, ret, results)
                                      for a, ret in results.retentions if mine(a)]),
        "分局网采率": (rates_header, [_rate_row(r, results) for r in results.rates if mine(r)]),
        "考核口径": (notes_header, notes_rows(results)),
    }


def workbook_path(year: int, audience: str) -> Path:
    return run_file_path(DAG_ID, FILE_PREFIX, str(year), audience)


def notice_path(year: int, city: str) -> Path:
    return run_file_path(DAG_ID, NOTICE_PREFIX, str(year), city, suffix=".docx")


def city_is_alerted(engine, run: RunContext) -> bool:
    """Whether an open alert of this year is routed to the city (its email then carries the
    city's workbook and notice)."""
    from sqlalchemy import select

    from vbp_monitor.core.catalog import routed_to_city
    from vbp_monitor.model.schema import alerts

    with engine.connect() as conn:
        rows = conn.execute(select(alerts.c.rule_code, alerts.c.severity).where(
            alerts.c.dag_id == DAG_ID, alerts.c.period == run.period.label, alerts.c.status == "open")).all()
    return any(routed_to_city(code, severity) for code, severity in rows)


def notice_description(results: Results, run: RunContext, paths: list[Path]) -> dict:
    """The city's email of the notice and its workbook, for notify/mailer.py › notify_documents."""
    from vbp_monitor.outputs.run_files import files_digest

    failed = sum(1 for row in results.institutions if not row["passed"])
    return {
        "audience": "city",
        "key": f"{DAG_ID}|{run.period.label}|city|{files_digest(paths)}",
        "series": f"{DAG_ID}|{run.period.label}|city",
        "subject": f"【集采年度考核】{results.office} · {NOTICE_PREFIX} · {results.year}年度",
        "paragraphs": [
            f"{results.office}：",
            f"{results.year}年度集中带量采购考核结果已生成：参加考核的公立医疗机构{len(results.institutions)}家，"
            f"合格{len(results.institutions) - failed}家，不合格{failed}家；各分局网采率均达到考核要求。"
            f"年度考核通报（Word）与考核结果、结余留用测算（Excel）见附件。",
        ],
        "sections": [],
        "actions": ["请审阅附件通报，按程序印发；结余留用测算为估算，供决策参考。"],
        "files": [str(path) for path in paths],
    }


def write_outputs(results: Results, run: RunContext) -> dict[str, list[Path]]:
    """The city's workbook and notice, each branch's workbook; ``{audience: [paths]}``."""
    from vbp_monitor.outputs.documents import write_draft_docx
    from vbp_monitor.outputs.report_document import stamp_xlsx
    from vbp_monitor.outputs.spreadsheets import BookTitle, write_branch_files

    label_ = str(results.year)
    branch_codes = sorted({row["branch_code"] for row in results.institutions}
                          | {row["branch_code"] for row in results.rates})
    whole_city = run.scope.branch_code is None

    def books():
        if whole_city:
            yield results.city, workbook(results)
        for code in branch_codes:
            if code != results.city:
                yield code, workbook(results, code)

    stamp = run_stamp(run)  # one time for every file: a rerun writes the same bytes
    titles = {results.city: BookTitle(office=results.office, title=BOOK_TITLE, period=label_,
                                      profile=results.settings.profile, generated_at=stamp)}
    for code in branch_codes:
        titles[code] = BookTitle(office=results.office, title=f"{BOOK_TITLE}（{results.branch_name(code)}）",
                                 period=label_, profile=results.settings.profile, generated_at=stamp)
    attachments = write_branch_files(run_folder(DAG_ID, label_), FILE_PREFIX, label_, books(),
                                     scope_branch=run.scope.branch_code, title=titles)
    for paths in attachments.values():
        for path in paths:
            stamp_xlsx(path, stamp.astimezone(dt.UTC).replace(tzinfo=None))
    if whole_city:
        notice = write_draft_docx(notice_path(results.year, results.city), build_notice(results), results.run_day)
        attachments.setdefault(results.city, []).append(notice)
    return attachments


# ------------------------------------------------------------------ the notice (DOCX)
def _rate_cell(platform: Decimal, total: Decimal) -> str:
    return share(platform, total, breach="below", none="无采购")


def build_notice(results: Results) -> DraftDocument:
    """年度考核通报: scope and criteria, results and ranking, failures, branch rates, estimates."""
    from vbp_monitor.outputs.documents import DraftDocument, DraftSection, DraftTable, numbered_heading

    year, settings = results.year, results.settings
    institutions = results.institutions
    passed = [r for r in institutions if r["passed"]]
    failed = [r for r in institutions if not r["passed"]]
    ranked = [r for r in institutions if r["rank_position"] is not None]
    unranked = [r for r in institutions if r["rank_position"] is None]
    thresholds = "、".join(f"{label(CATEGORY_ZH, c)}不低于{percent(settings.min_rate(c))}"
                          for c in ONLINE_CATEGORIES if settings.min_rate(c) is not None)

    scope = [
        f"根据{cite(settings.profile, FAILED)}，对全市 {len(institutions)} 家公立医疗机构{year}年度"
        f"集中带量采购中选结果执行情况进行了考核。考核标准三项：一是均完成约定采购量；二是中选药品使用比例达到"
        f"约定采购比例；三是网采率{thresholds}。三项均达标为合格。",
    ]
    outcome = [
        f"考核合格 {len(passed)} 家，不合格 {len(failed)} 家。完成约定采购量的 {len(ranked)} 家机构按中选药品使用量"
        f"占同通用名药品使用量之比排名如下（相同时按机构代码）：",
        DraftTable(["排名", "医疗机构", "分局", "中选药品使用量占比", "考核结果"],
                   [[str(r["rank_position"]), r["institution_name"], results.branch_name(r["branch_code"]),
                     share(r["share_selected_quantity"], r["share_generic_quantity"]), verdict_text(r)]
                    for r in ranked] or [["—", "无", "", "", ""]]),
    ]
    if unranked:
        outcome.append(f"以下 {len(unranked)} 家机构不参与排名：" + "；".join(
            f"{r['institution_name']}（{ranking_note(r)}）" for r in unranked) + "。")
    failures: list = [f"{len(failed)} 家机构考核不合格，请各分局督促其分析原因、限期整改：" if failed
                      else "本年度无考核不合格机构。"]
    if failed:
        failures.append(DraftTable(
            ["医疗机构", "分局", "满足标准项数", "未达标项"],
            [[r["institution_name"], results.branch_name(r["branch_code"]), f"{r['criteria_met']} / {CRITERIA}",
              failure_details(r, settings)] for r in failed]))
    below = [r for r in results.rates if r["below"]]
    by_branch: dict[str, dict[str, dict]] = {}
    for r in results.rates:
        by_branch.setdefault(r["branch_code"], {})[r["category"]] = r
    categories = [c for c in ONLINE_CATEGORIES if settings.min_rate(c) is not None]

    def rate_cell(row: dict | None) -> str:
        if row is None:
            return "无采购"
        return _rate_cell(row["platform_amount"], row["total_amount"]) + ("（不达标）" if row["below"] else "")

    rates: list = [
        DraftTable(["分局", *[f"{label(CATEGORY_ZH, c)}网采率（要求≥{percent(settings.min_rate(c))}）"
                              for c in categories]],
                   [[results.branch_name(code), *[rate_cell(rows.get(c)) for c in categories]]
                    for code, rows in by_branch.items()] or [["无采购", *[""] * len(categories)]]),
        ("网采率不达标的分局：" + "、".join(
            f"{results.branch_name(r['branch_code'])}（{label(CATEGORY_ZH, r['category'])}）" for r in below)
         + "，请加强对辖区公立医疗机构的督导。") if below else "各分局网采率均达到考核要求。",
    ]
    per_institution: dict[str, list[Retention]] = {}
    without_baseline: dict[str, set[str]] = {}  # generic → institutions
    for agreement, retention in results.retentions:
        institution = results.institution(agreement["institution_code"])
        if not (institution and institution["passed"]):
            continue
        if retention.savings is None:
            without_baseline.setdefault(agreement["generic_name"], set()).add(agreement["institution_name"])
        else:
            per_institution.setdefault(agreement["institution_code"], []).append(retention)
    retention_rows = []
    total_savings = total_ceiling = Decimal(0)
    for row in passed:  # in the order of the ranking
        estimated = per_institution.get(row["institution_code"])
        if estimated:
            savings = sum((r.savings for r in estimated if r.savings is not None), Decimal(0))
            ceiling = sum((r.ceiling for r in estimated if r.ceiling is not None), Decimal(0))
            total_savings, total_ceiling = total_savings + savings, total_ceiling + ceiling
            retention_rows.append([row["institution_name"], results.branch_name(row["branch_code"]),
                                   money(savings), money(ceiling)])
    if retention_rows:
        retention_rows.append(["合计", f"{len(retention_rows)} 家", money(total_savings), money(total_ceiling)])
    estimates: list = [
        f"按{settings.retention_citation}，对完成约定采购量且考核合格的机构，以基期价格测算集中带量采购节约的医保资金，"
        f"可留用金额上限按节约金额的 {percent(settings.retention_cap_ratio)} 计；不合格机构不予结余留用。"
        f"经测算，{len(per_institution)} 家合格机构节约金额合计 {money(total_savings)}，"
        f"可留用金额上限合计 {money(total_ceiling)}。" + ESTIMATE_NOTE,
        DraftTable(["医疗机构", "分局", "节约金额（测算）", "可留用金额上限（测算）"],
                   retention_rows or [["无", "", "", ""]]),
    ]
    if without_baseline:
        estimates.append("以下通用名无基期价格，相关协议未测算：" + "；".join(
            f"{generic}（{len(names)} 家机构）" for generic, names in sorted(without_baseline.items())) + "。")
    estimates.append("明细见年度考核结果表格（结余留用测算）。")
    sections = [
        DraftSection(numbered_heading(0, "考核范围与标准"), "", scope),
        DraftSection(numbered_heading(1, "考核结果与排名"), "", outcome),
        DraftSection(numbered_heading(2, "不合格机构"), "", failures),
        DraftSection(numbered_heading(3, "分局网采率"), "", rates),
        DraftSection(numbered_heading(4, "结余留用测算"), "", estimates),
    ]
    return DraftDocument(
        title=f"关于{year}年度集中带量采购考核结果的通报",
        note=f"（{results.office}　{date_zh(results.run_day)}　政策口径：{profile_title(settings.profile)}）",
        sections=sections, signature=results.office or "市医疗保障局", date_line=date_zh(results.run_day),
        author=results.office or "市医保局", subject=f"{year}年度集采考核通报", keywords=f"{year};年度考核",
        category="年度考核通报",
    )
