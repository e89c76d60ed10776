"""DAG 2 · 按月监测, 一院一档 (monthly monitoring) — domain.md DAG 2.

seed 002 §二(三)(四), seed 001 §五(一)(三), seed 004 §二(一). A run judges one calendar
month M (``periods.judged_month``) with the records dated on or before its last day.

Flow: ``build_facts`` aggregates M's order lines once into ``purchase_facts`` (and builds
the earlier months the cumulative figures need, if not cached: ``purchase_facts``);
``judge`` writes the institution file (``institution_file_metrics``, one row per agreement
active in M), computes the ten rule codes with set-based SQL over the facts (the
payment and filing rules read only the orders whose deadline falls in M, by index-friendly
date ranges), writes them through the AlertStore, and writes each branch's execution
report (``execution_report``).

Figures and thresholds (profile ``[monitoring]``):

* ``PROGRESS_BEHIND`` (agreement): metric = completion rate, threshold = the broken ratio ×
  time progress (4 decimals), warning below ``progress_warning_ratio``, high below
  ``progress_high_ratio``; only when time progress ≥ ``progress_min_time_progress`` and the
  agreed quantity > 0.
* ``SELECTED_SHARE_LOW`` (agreement): metric = selected quantity share in M, threshold =
  agreed ratio.
* ``NON_SELECTED_HIGH_PRICE`` / ``ONLY_NON_SELECTED`` (institution × generic): metric = the
  amount of the high-priced non-selected purchases in M, threshold = the highest selected
  price of the generic among products selected in M (the price limit they broke).
* ``ONLINE_RATE_LOW`` / ``BRANCH_ONLINE_RATE_LOW`` (public institution / branch ×
  category): metric = online purchase rate by amount, threshold = the category's minimum.
* ``OFFLINE_NOT_FILED`` (order): metric 0 / threshold 1 (presence rule).
  ``OFFLINE_FILED_LATE`` (order): metric = the working day (after the order day) the
  filing fell on, threshold = ``offline_filing_working_days``.
* ``NON_EVALUATED_PURCHASE`` (institution × generic): metric = amount bought in M of the
  generic's products that did not pass consistency evaluation, threshold 0.
* ``PAYMENT_OVERDUE`` (order): metric = amount unpaid by the deadline, threshold 0.

Scope: a branch filter judges that branch's institutions (and its branch-level rate); a
batch filter judges only the batch-bearing rules (the two agreement rules) for that batch
and skips the others, which keep their alerts.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import RULES, SEVERITY_ORDER
from vbp_monitor.core.periods import JudgedPeriod
from vbp_monitor.core.prc_calendar import FALLBACK_NOTE, month_bounds
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.purchase_facts import FactsCoverage, as_date, ensure_facts, refresh_planner_statistics
from vbp_monitor.orchestration.run_context import RunContext

log = logging.getLogger(__name__)

DAG_ID = "vbp_monthly_monitoring"
AGREEMENT_CODES = ("PROGRESS_BEHIND", "SELECTED_SHARE_LOW")
PRICE_CODES = ("NON_SELECTED_HIGH_PRICE", "ONLY_NON_SELECTED")
ONLINE_CODES = ("ONLINE_RATE_LOW", "BRANCH_ONLINE_RATE_LOW")
FILING_CODES = ("OFFLINE_NOT_FILED", "OFFLINE_FILED_LATE")
CODES = AGREEMENT_CODES + PRICE_CODES + ONLINE_CODES + FILING_CODES + (
    "NON_EVALUATED_PURCHASE", "PAYMENT_OVERDUE",
)
# Rules whose subject carries a batch: the only ones a batch-filtered run judges.
BATCH_CODES = AGREEMENT_CODES
EPS = 1e-9
RATIO = Decimal("0.0001")
AMOUNT = Decimal("0.0001")

CATEGORY_ZH = {"drug": "药品", "high_value_consumable": "高值医用耗材", "consumable": "医用耗材"}
OWNERSHIP_ZH = {"public": "公立", "military": "军队", "private": "民营"}


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class MonitoringSettings:
    """The profile's ``[monitoring]`` section, typed."""

    warning_ratio: Decimal
    high_ratio: Decimal
    min_time_progress: Decimal
    online_rate_thresholds: dict[str, Decimal]
    filing_working_days: int
    min_evaluated_manufacturers: int
    private_payment_days: int

    @classmethod
    def from_profile(cls, profile: dict) -> "MonitoringSettings":
        section = profile["monitoring"]
        rule = section.get("public_payment_rule", "end_of_next_month")
        if rule != "end_of_next_month":
            raise ValueError(f"profile [monitoring] public_payment_rule {rule!r} is not supported")
        return cls(
            warning_ratio=Decimal(str(section["progress_warning_ratio"])),
            high_ratio=Decimal(str(section["progress_high_ratio"])),
            min_time_progress=Decimal(str(section["progress_min_time_progress"])),
            online_rate_thresholds={key: Decimal(str(value))
                                    for key, value in section["online_rate_thresholds"].items()},
            filing_working_days=int(section["offline_filing_working_days"]),
            min_evaluated_manufacturers=int(section["min_evaluated_manufacturers"]),
            private_payment_days=int(section["private_payment_days"]),
        )


# ------------------------------------------------------------------ small helpers
def dec(value) -> Decimal | None:
    """One exact type for figures: SQLite gives floats (REAL), PostgreSQL Decimals."""
    if value is None:
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def ratio4(value: Decimal) -> Decimal:
    """A threshold ratio to 4 places (examples.md 2: 0.8 × 144/365 → 0.3156)."""
    return value.quantize(RATIO, rounding=ROUND_HALF_UP)


def measured4(value: Decimal) -> Decimal:
    """A measured ratio of a "below the threshold" rule to 4 places, rounded down, so the
    figure shown never reaches the threshold it fell short of (0.59999 → 0.5999, not 0.6)."""
    return value.quantize(RATIO, rounding=ROUND_FLOOR)


def fmt_number(value) -> str:
    """A quantity for a person: thousands separators, no trailing zeros, at most 4 decimals."""
    value = dec(value)
    if value is None:
        return "—"
    value = value.quantize(AMOUNT, rounding=ROUND_HALF_UP)
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def fmt_money(value) -> str:
    value = dec(value)
    if value is None:
        return "—"
    value = value.quantize(AMOUNT, rounding=ROUND_HALF_UP)
    if value == value.quantize(Decimal("0.01")):
        return f"{value:,.2f}元"
    return f"{value:,.4f}元"


def fmt_percent(value, measured: bool = False) -> str:
    """A ratio as a percentage; ``measured`` rounds down (see measured4)."""
    value = dec(value)
    if value is None:
        return "—"
    rounding = ROUND_FLOOR if measured else ROUND_HALF_UP
    return f"{(value * 100).quantize(Decimal('0.01'), rounding=rounding)}%"


def fmt_date(value) -> str:
    day = as_date(value)
    return f"{day.year}年{day.month}月{day.day}日" if day else "—"


def _institution(row: dict) -> str:
    return f"{row['institution_name']}（{row['institution_code']}）"


def _clause(code: str) -> str:
    return f"依据：{RULES[code].clause}。"


def payment_acceptance_window(period: JudgedPeriod, private_days: int) -> tuple[dt.date, dt.date]:
    """Acceptance days whose payment deadline can fall in M (public: the month before M;
    military/private: M shifted back by ``private_days``)."""
    previous_first, previous_last = month_bounds(period.first_day - dt.timedelta(days=1))
    shifted_first = period.first_day - dt.timedelta(days=private_days)
    shifted_last = period.last_day - dt.timedelta(days=private_days)
    return min(previous_first, shifted_first), max(previous_last, shifted_last)


def filing_order_window(conn, period: JudgedPeriod, working_days: int) -> tuple[dt.date, dt.date] | None:
    (row,) = sqlfiles.query(conn, "monitoring_filing_window", month_start=period.first_day,
                            month_end=period.last_day, working_days=working_days)
    if row["order_from"] is None:
        return None
    return as_date(row["order_from"]), as_date(row["order_to"])


# ------------------------------------------------------------------ validation & facts
def validation_scope(run: RunContext, profile: dict | None = None) -> dict[str, str | None]:
    """The rows this DAG reads, for ``validation.validate_tables`` (dates are ours, ISO):
    M's order lines (the facts), off-platform lines whose filing deadline can fall in M, and
    accepted lines whose payment deadline can. Earlier months reach the rules only through
    cached facts, validated by the runs that judged them."""
    settings = MonitoringSettings.from_profile(profile or load_profile())
    first, last = run.period.first_day.isoformat(), run.period.last_day.isoformat()
    accept_from, accept_to = payment_acceptance_window(run.period, settings.private_payment_days)
    # 7 working days never span more than ~3 weeks, even across Spring Festival
    filing_from = (run.period.first_day - dt.timedelta(days=45)).isoformat()
    return {
        "branches": None,
        "institutions": None,
        "batches": None,
        "products": None,
        "agreements": None,
        "orders": (
            f"(order_date >= '{first}' AND order_date <= '{last}')"
            f" OR (channel = 'offline' AND order_date >= '{filing_from}' AND order_date <= '{last}')"
            f" OR (acceptance_date >= '{accept_from.isoformat()}'"
            f" AND acceptance_date <= '{accept_to.isoformat()}')"
        ),
        "offline_filings": f"filed_date >= '{filing_from}' AND filed_date <= '{last}'",
        "payments": f"payment_date >= '{accept_from.isoformat()}' AND payment_date <= '{last}'",
        "holidays": None,
    }


def validate(engine, run: RunContext, profile: dict | None = None) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run, profile))


def build_facts(engine, run: RunContext) -> dict:
    """Build the purchase facts M (and the earlier agreement months) needs, if not cached."""
    coverage = ensure_facts(engine, run.period)
    log.info("purchase facts for %s: %s", run.period.label, coverage.as_dict())
    return coverage.as_dict()


# ------------------------------------------------------------------ institution file
def write_institution_file(conn, run: RunContext, coverage: FactsCoverage) -> None:
    """Delete the period's rows in scope and rebuild them with one INSERT … SELECT."""
    sqlfiles.execute(
        conn, "monitoring_institution_file",
        period=run.period.label, month_start=run.period.first_day, month_end=run.period.last_day,
        first_month=coverage.first_month, branch_code=run.scope.branch_code,
        batch_code=run.scope.batch_code,
    )
    refresh_planner_statistics(conn, "institution_file_metrics")


# ------------------------------------------------------------------ agreement rules
def _agreement_subject(row: dict) -> str:
    return (f"{_institution(row)}「{row['batch_name']}」（{row['batch_code']}）{row['generic_name']}"
            f"（协议年度 {as_date(row['period_start']).isoformat()} 至 {as_date(row['period_end']).isoformat()}）")


def progress_candidate(row: dict, settings: MonitoringSettings, period: JudgedPeriod) -> dict:
    severity = row["progress_severity"]
    ratio = settings.high_ratio if severity == "high" else settings.warning_ratio
    elapsed, total = int(row["elapsed_days"]), int(row["total_days"])
    agreed, cumulative = dec(row["agreed_quantity"]), dec(row["cumulative_selected_quantity"])
    progress = Decimal(elapsed) / Decimal(total)
    completion = cumulative / agreed
    threshold = ratio4(ratio * progress)
    as_of = fmt_date(row["as_of_date"])
    if severity == "high":
        action = ("完成率不足序时进度的一半，请分局约谈医疗机构、重点督导，督促其按协议量加快采购中选产品，"
                  "并将其列为基金监管飞检重要线索。")
    else:
        action = "请督促医疗机构按约定采购量加快采购中选产品，确保协议期内完成约定采购量。"
    message = (
        f"【按月监测·{RULES['PROGRESS_BEHIND'].title}】{_agreement_subject(row)}："
        f"截至{as_of}，序时进度 {elapsed}/{total} 天 = {fmt_percent(progress)}；约定采购量 {fmt_number(agreed)}，"
        f"自协议期起平台采购中选产品 {fmt_number(cumulative)}，完成率 {fmt_percent(completion, measured=True)}"
        f"（{measured4(completion)}），低于 {ratio:g} × 序时进度 = {threshold}。{action}{_clause('PROGRESS_BEHIND')}"
    )
    return {
        "rule_code": "PROGRESS_BEHIND", "severity": severity, "branch_code": row["branch_code"],
        "institution_code": row["institution_code"], "batch_code": row["batch_code"],
        "generic_name": row["generic_name"], "metric_value": measured4(completion),
        "threshold_value": threshold, "message": message,
        "_period_start": as_date(row["period_start"]),
    }


def share_candidate(row: dict, period: JudgedPeriod) -> dict:
    selected, same = dec(row["selected_quantity"]), dec(row["same_generic_quantity"])
    agreed_ratio = dec(row["agreed_ratio"])
    share = selected / same
    from_day = max(period.first_day, as_date(row["period_start"]))
    message = (
        f"【按月监测·{RULES['SELECTED_SHARE_LOW'].title}】{_agreement_subject(row)}："
        f"{fmt_date(from_day)}至{fmt_date(row['as_of_date'])}采购同通用名产品 {fmt_number(same)}，"
        f"其中平台采购中选产品 {fmt_number(selected)}，中选产品采购数量占比 {fmt_percent(share, measured=True)}"
        f"（{measured4(share)}），低于约定采购比例 {fmt_percent(agreed_ratio)}。"
        f"请督促医疗机构优先采购使用中选产品，达到约定采购比例。{_clause('SELECTED_SHARE_LOW')}"
    )
    return {
        "rule_code": "SELECTED_SHARE_LOW", "severity": "warning", "branch_code": row["branch_code"],
        "institution_code": row["institution_code"], "batch_code": row["batch_code"],
        "generic_name": row["generic_name"], "metric_value": measured4(share),
        "threshold_value": agreed_ratio, "message": message,
        "_period_start": as_date(row["period_start"]),
    }


def agreement_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    rows = sqlfiles.query(
        conn, "monitoring_agreement_alerts", period=run.period.label,
        min_progress=float(settings.min_time_progress), warning_ratio=float(settings.warning_ratio),
        high_ratio=float(settings.high_ratio), eps=EPS, branch_code=run.scope.branch_code,
        batch_code=run.scope.batch_code,
    )
    for row in rows:
        if row["progress_severity"]:
            yield progress_candidate(row, settings, run.period)
        if row["share_low"]:
            yield share_candidate(row, run.period)


# ------------------------------------------------------------------ price rules
def price_candidates(conn, run: RunContext) -> Iterator[dict]:
    rows = sqlfiles.query(conn, "monitoring_non_selected_price", month_start=run.period.first_day,
                          month_end=run.period.last_day, eps=EPS, branch_code=run.scope.branch_code)
    for row in rows:
        code = row["rule_code"]
        cap, amount = dec(row["highest_selected_price"]), dec(row["amount"])
        figures = (
            f"{run.period.month_label_zh}采购{row['generic_name']}非中选产品 {row['product_count']} 个品规，"
            f"单价高于该通用名中选产品最高中选价 {fmt_money(cap)}（最高采购单价 {fmt_money(row['highest_unit_price'])}），"
            f"数量 {fmt_number(row['quantity'])}，金额 {fmt_money(amount)}"
        )
        if code == "ONLY_NON_SELECTED":
            message = (
                f"【按月监测·{RULES[code].title}】{_institution(row)}：{figures}；该机构本月无该通用名"
                f"在执行期内的约定采购量（未报量），也未在平台采购该通用名中选产品。"
                f"请约谈医疗机构负责人，督促整改；拒不整改的，将有关线索移交同级行风主管部门和纪检监察部门。"
                f"{_clause(code)}"
            )
            severity = "critical"
        else:
            message = (
                f"【按月监测·{RULES[code].title}】{_institution(row)}：{figures}。"
                f"请督促医疗机构整改，优先采购使用中选产品，避免采购高价非中选产品。{_clause(code)}"
            )
            severity = "warning"
        yield {
            "rule_code": code, "severity": severity, "branch_code": row["branch_code"],
            "institution_code": row["institution_code"], "generic_name": row["generic_name"],
            "metric_value": amount, "threshold_value": cap, "message": message,
        }


# ------------------------------------------------------------------ online purchase rates
def online_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    thresholds = settings.online_rate_thresholds
    drug, hvc = thresholds.get("drug"), thresholds.get("high_value_consumable")
    if drug is None and hvc is None:
        return
    rows = sqlfiles.query(
        conn, "monitoring_online_rates", month_start=run.period.first_day,
        drug_min_rate=float(drug) if drug is not None else None,
        hvc_min_rate=float(hvc) if hvc is not None else None,
        eps=EPS, branch_code=run.scope.branch_code,
    )
    for row in rows:
        platform, total = dec(row["platform_amount"]), dec(row["total_amount"])
        rate = platform / total
        minimum = thresholds[row["category"]]
        category = CATEGORY_ZH.get(row["category"], row["category"])
        figures = (f"{run.period.month_label_zh}{category}采购总金额 {fmt_money(total)}，其中平台采购 {fmt_money(platform)}、"
                   f"线下采购 {fmt_money(total - platform)}，网采率 {fmt_percent(rate, measured=True)}（{measured4(rate)}），"
                   f"低于 {fmt_percent(minimum)} 的要求")
        if row["level"] == "branch":
            code = "BRANCH_ONLINE_RATE_LOW"
            message = (
                f"【按月监测·{RULES[code].title}】{row['branch_name']}（{row['branch_code']}）辖区"
                f" {row['institution_count']} 家公立医疗机构：{figures}。请分局加强对辖区公立医疗机构的督导，"
                f"落实通过省级平台“全品种、全数量”采购，规范线下议价采购及备案。{_clause(code)}"
            )
            institution = None
        else:
            code = "ONLINE_RATE_LOW"
            message = (
                f"【按月监测·{RULES[code].title}】{_institution(row)}：{figures}。"
                f"请督促医疗机构通过省级平台“全品种、全数量”采购；确需线下议价采购的，须在7个工作日内备案。"
                f"{_clause(code)}"
            )
            institution = row["institution_code"]
        yield {
            "rule_code": code, "severity": "high", "branch_code": row["branch_code"],
            "institution_code": institution, "category": row["category"],
            "metric_value": measured4(rate), "threshold_value": minimum, "message": message,
        }


# ------------------------------------------------------------------ off-platform filing
def filing_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    window = filing_order_window(conn, run.period, settings.filing_working_days)
    if window is None:
        return
    rows = sqlfiles.query(
        conn, "monitoring_offline_filing", month_start=run.period.first_day,
        month_end=run.period.last_day, order_from=window[0], order_to=window[1],
        working_days=settings.filing_working_days, branch_code=run.scope.branch_code,
    )
    n = settings.filing_working_days
    for row in rows:
        code = row["rule_code"]
        order_day, deadline = as_date(row["order_date"]), as_date(row["filing_deadline"])
        product = f"{row['generic_name'] or row['product_code']}（{row['product_code']}）"
        figures = (f"线下议价采购订单 {row['order_id']}（{fmt_date(order_day)}，{product}，"
                   f"数量 {fmt_number(row['quantity'])}，金额 {fmt_money(row['amount'])}），"
                   f"应在{n}个工作日内即{fmt_date(deadline)}前备案")
        note = ""
        if row["uses_fallback"]:
            years = sorted({d.year for d in (order_day, deadline)})
            note = FALLBACK_NOTE.format(years="、".join(str(y) for y in years))
        if code == "OFFLINE_NOT_FILED":
            message = (
                f"【按月监测·{RULES[code].title}】{_institution(row)}：{figures}，截至{fmt_date(run.period.last_day)}"
                f"仍未备案。请督促医疗机构立即通过省医保信息平台招采子系统向市医疗保障局基金管理中心补办备案，"
                f"并说明未在平台采购的原因。{note}{_clause(code)}"
            )
            metric, threshold, severity = Decimal(0), Decimal(1), "high"
        else:
            filed = as_date(row["filed_date"])
            metric = Decimal(int(row["filed_working_days"]))
            message = (
                f"【按月监测·{RULES[code].title}】{_institution(row)}：{figures}，实际于{fmt_date(filed)}"
                f"备案（第 {metric} 个工作日），逾期备案。请提醒医疗机构今后在{n}个工作日内及时、规范、如实备案。"
                f"{note}{_clause(code)}"
            )
            threshold, severity = Decimal(n), "warning"
        yield {
            "rule_code": code, "severity": severity, "branch_code": row["branch_code"],
            "institution_code": row["institution_code"], "product_code": row["product_code"],
            "order_id": row["order_id"], "metric_value": metric, "threshold_value": threshold,
            "message": message,
        }


# ------------------------------------------------------------------ consistency evaluation
def non_evaluated_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    rows = sqlfiles.query(conn, "monitoring_non_evaluated", month_start=run.period.first_day,
                          min_makers=settings.min_evaluated_manufacturers, eps=EPS,
                          branch_code=run.scope.branch_code)
    code = "NON_EVALUATED_PURCHASE"
    for row in rows:
        amount = dec(row["amount"])
        message = (
            f"【按月监测·{RULES[code].title}】{_institution(row)}：{row['generic_name']}已有 "
            f"{row['evaluated_makers']} 家生产企业的产品通过仿制药质量和疗效一致性评价（不少于 "
            f"{settings.min_evaluated_manufacturers} 家），但{run.period.month_label_zh}仍采购未通过一致性评价的产品 "
            f"{row['product_count']} 个品规，数量 {fmt_number(row['quantity'])}，金额 {fmt_money(amount)}。"
            f"同品种通过一致性评价的生产企业达到3家以上的，原则上不再采购未通过一致性评价的品种："
            f"请核实并督促医疗机构改为采购通过一致性评价的产品。{_clause(code)}"
        )
        yield {
            "rule_code": code, "severity": "warning", "branch_code": row["branch_code"],
            "institution_code": row["institution_code"], "generic_name": row["generic_name"],
            "metric_value": amount, "threshold_value": Decimal(0), "message": message,
        }


# ------------------------------------------------------------------ payments
def payment_candidates(conn, run: RunContext, settings: MonitoringSettings) -> Iterator[dict]:
    accept_from, accept_to = payment_acceptance_window(run.period, settings.private_payment_days)
    rows = sqlfiles.query(
        conn, "monitoring_payment_overdue", month_start=run.period.first_day,
        month_end=run.period.last_day, accept_from=accept_from, accept_to=accept_to,
        private_days=settings.private_payment_days, eps=EPS, branch_code=run.scope.branch_code,
    )
    code = "PAYMENT_OVERDUE"
    for row in rows:
        unpaid = dec(row["unpaid_amount"])
        if row["ownership"] == "public":
            rule = "公立医疗机构应在交货验收合格后次月底前结清货款"
        else:
            rule = (f"{OWNERSHIP_ZH.get(row['ownership'], row['ownership'])}医疗机构应在交货验收合格后"
                    f"{settings.private_payment_days}天内结清货款")
        product = f"{row['generic_name'] or row['product_code']}（{row['product_code']}）"
        message = (
            f"【按月监测·{RULES[code].title}】{_institution(row)}：平台订单 {row['order_id']}（{product}，"
            f"金额 {fmt_money(row['amount'])}）于{fmt_date(row['acceptance_date'])}验收，{rule}，"
            f"即{fmt_date(row['payment_deadline'])}前；截至该日已付 {fmt_money(row['paid_amount'])}，"
            f"未结清 {fmt_money(unpaid)}。请督促医疗机构立即结清货款，按合同约定及时回款。{_clause(code)}"
        )
        yield {
            "rule_code": code, "severity": "high", "branch_code": row["branch_code"],
            "institution_code": row["institution_code"], "product_code": row["product_code"],
            "order_id": row["order_id"], "metric_value": unpaid, "threshold_value": Decimal(0),
            "message": message,
        }


# ------------------------------------------------------------------ the run
def _one_per_subject(candidates: Iterable[dict]) -> list[dict]:
    """Two agreement years of one subject can both be active in a boundary month: keep the
    most severe, then the later year (one alert per key)."""
    from vbp_monitor.alerts.store import alert_key

    chosen: dict[str, dict] = {}
    for candidate in candidates:
        key = alert_key(candidate)
        rank = (-SEVERITY_ORDER[candidate["severity"]], candidate.get("_period_start") or dt.date.min)
        if key not in chosen or rank > chosen[key][0]:
            chosen[key] = (rank, candidate)
    return [{k: v for k, v in candidate.items() if not k.startswith("_")}
            for _, candidate in chosen.values()]


def _tally(candidates: Iterable[dict], counter: Counter) -> Iterator[dict]:
    for candidate in candidates:
        counter[candidate["rule_code"]] += 1
        yield candidate


def judge(engine, run: RunContext, profile: dict | None = None, write_reports: bool = True) -> dict:
    """Judge month M: institution file, the ten rule codes, the branches' execution reports."""
    profile = profile or load_profile()
    settings = MonitoringSettings.from_profile(profile)
    coverage = ensure_facts(engine, run.period)  # cheap when build_facts already ran
    batch_only = bool(run.scope.batch_code)
    codes = BATCH_CODES if batch_only else CODES
    raised_by_rule: Counter = Counter()
    with engine.begin() as conn:
        write_institution_file(conn, run, coverage)
        # Generators: each rule's query runs when the store reaches it, so one rule's result
        # rows at a time are held (besides the alert rows the store collects).
        groups = [_one_per_subject(agreement_candidates(conn, run, settings))]
        if not batch_only:
            groups += [
                price_candidates(conn, run),
                online_candidates(conn, run, settings),
                filing_candidates(conn, run, settings),
                non_evaluated_candidates(conn, run, settings),
                payment_candidates(conn, run, settings),
            ]
        candidates = _tally(chain.from_iterable(groups), raised_by_rule)
        written = run.store.replace(conn, codes, candidates, scope=run.scope)
    attachments = {}
    if write_reports:
        from vbp_monitor.outputs.execution_report import write_branch_reports

        attachments = write_branch_reports(engine, run)
    result = {
        "period": run.period.label,
        "facts": coverage.as_dict(),
        "rule_codes": list(codes),
        "raised": written.raised,
        "new": written.new,
        "resolved": written.resolved,
        "by_rule": dict(sorted(raised_by_rule.items())),
        "attachments": {branch: [str(path) for path in paths] for branch, paths in attachments.items()},
    }
    log.info("%s %s: %s", DAG_ID, run.period.label, result)
    return result
