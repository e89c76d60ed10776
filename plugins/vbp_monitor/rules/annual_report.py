"""DAG 4 · 年度报告收集 (annual report collection) — domain.md DAG 4, seed 002 §三(二), 附件2.

Each branch bureau (``branches`` rows with level ``branch``) reports on the previous year's
supervision before 15 January (deadline inclusive, profile ``annual_report_deadline``).
The run with logical date D judges the day J = D − 1 for report year D.year − 1;
"submitted by J" means ``submitted_at`` < J+1 00:00, and the latest such submission of a
branch counts.

* ``ANNUAL_REPORT_DUE``: D is a reminder date (profile ``reminder_days``) and the
  branch has not submitted by J. Metric 0 / threshold 1.
* ``ANNUAL_REPORT_MISSING``: J is the deadline and the branch has not submitted
  by J. Metric 0 / threshold 1.
* ``ANNUAL_REPORT_LATE``: the submission is dated J and J is after the deadline.
  Metric = days late (J − deadline), threshold 0.
* ``ANNUAL_REPORT_INCOMPLETE``: the submission is dated J (or earlier, on the
  season's first run, J = 1 January) and its file lacks one of the template's four section
  headings (profile ``required_headings``). Metric = headings found, threshold = headings
  required; a missing or unreadable file has none and the message says why.

Subject: the branch (period = J, so the report year is implied by the period and named in
the message). Severities and routing (ANNUAL_REPORT_* go to the city bureau as well) are
the catalog's; the clauses and dates the profile's.

Beyond the seeds: on the first reminder day each branch that has not submitted receives,
attached to its email, a DOCX draft pre-filled with its figures of the report year in the
template's four sections (see :func:`build_draft`).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import config, sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.formatting import (
    Breach,
    as_datetime,
    date_iso,
    date_zh,
    datetime_local,
    decimal_of,
    money,
    percent,
    share,
)
from vbp_monitor.core.labels import CATEGORY_ZH, ONLINE_CATEGORIES, OWNERSHIP_ZH
from vbp_monitor.core.periods import JudgedPeriod, as_of_end
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.outputs.documents import (
    DraftDocument,
    DraftSection,
    DraftTable,
    HeadingCheck,
    ReportUnreadable,
    check_headings,
    numbered_heading,
    report_path,
)
from vbp_monitor.outputs.run_files import run_folder

if TYPE_CHECKING:
    from vbp_monitor.orchestration.run_context import RunContext

log = logging.getLogger(__name__)

DAG_ID = "vbp_annual_report_collection"
DUE, MISSING, LATE, INCOMPLETE = (
    "ANNUAL_REPORT_DUE", "ANNUAL_REPORT_MISSING", "ANNUAL_REPORT_LATE", "ANNUAL_REPORT_INCOMPLETE",
)
RULE_CODES = DAGS[DAG_ID].rule_codes
EPS = 1e-9
NO_DATA = "暂无数据"
AUTHOR = "市医保局"
REPORT_NAME = "加强集采监管工作落实情况报告"
# The template's guidance lines (seed 002 附件2), by section.
GUIDANCE = (
    "（概括一年来加强集采监管工作总体情况）",
    "（对照文件要求，逐条回应落实情况）",
    "（结合工作实际，归类提出存在问题）",
    "（针对存在问题，提出改进措施）",
)
DRAFT_PREFIX = "年度报告草稿"


# ------------------------------------------------------------------ settings and dates
def _month_day(year: int, text: str) -> dt.date:
    month, day = (int(part) for part in str(text).split("-"))
    return dt.date(year, month, day)


@dataclass(frozen=True)
class AnnualReportSettings:
    deadline: str  # 'MM-DD' of the year after the report year
    reminder_days: tuple[str, ...]
    season_start: str  # 'MM-DD': D of the season's first run
    required_headings: tuple[str, ...]
    draft_top_problems: int

    @classmethod
    def from_profile(cls, profile: dict) -> AnnualReportSettings:
        section = profile["annual_report"]
        return cls(
            deadline=section["annual_report_deadline"],
            reminder_days=tuple(section["reminder_days"]),
            season_start=section["season_start"],
            required_headings=tuple(section["required_headings"]),
            draft_top_problems=int(section.get("draft_top_problems", 3)),
        )


@dataclass(frozen=True)
class Season:
    """What the run with logical date D judges: day J of report year D.year − 1."""

    report_year: int
    run_day: dt.date  # D
    judged: dt.date  # J = D − 1
    deadline: dt.date
    reminder_days: tuple[dt.date, ...]
    first_run_day: dt.date  # D of the season's first run (J = 1 January)

    @classmethod
    def of(cls, period: JudgedPeriod, settings: AnnualReportSettings) -> Season:
        run_day = period.run_day
        submit_year = run_day.year  # reports of year Y are due in year Y + 1
        return cls(
            report_year=submit_year - 1,
            run_day=run_day,
            judged=period.last_day,
            deadline=_month_day(submit_year, settings.deadline),
            reminder_days=tuple(sorted(_month_day(submit_year, d) for d in settings.reminder_days)),
            first_run_day=_month_day(submit_year, settings.season_start),
        )

    @property
    def is_reminder_day(self) -> bool:
        return self.run_day in self.reminder_days

    @property
    def is_first_reminder_day(self) -> bool:
        return bool(self.reminder_days) and self.run_day == self.reminder_days[0]

    @property
    def is_deadline(self) -> bool:
        return self.judged == self.deadline

    @property
    def after_deadline(self) -> bool:
        return self.judged > self.deadline

    @property
    def first_run_of_season(self) -> bool:
        return self.run_day == self.first_run_day

    @property
    def due_by(self) -> str:
        """The deadline as the policy words it: 次年1月15日前 (inclusive)."""
        return f"次年{self.deadline.month}月{self.deadline.day}日前"

    @property
    def days_late(self) -> int:
        return max(0, (self.judged - self.deadline).days)

    def params(self) -> dict:
        judged_start = dt.datetime.combine(self.judged, dt.time())
        return {
            "report_year": self.report_year,
            "judged_start": judged_start,
            "judged_end": as_of_end(self.judged),
            "is_reminder_day": int(self.is_reminder_day),
            "is_deadline": int(self.is_deadline),
            "after_deadline": int(self.after_deadline),
            "first_run_of_season": int(self.first_run_of_season),
        }


# ------------------------------------------------------------------ small helpers
def template_sections(headings: tuple[str, ...]) -> str:
    return "；".join(numbered_heading(i, h) for i, h in enumerate(headings))


# ------------------------------------------------------------------ validation
def validate(engine, run: RunContext) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, {"branches": None, "annual_reports": None})


# ------------------------------------------------------------------ judging
def branch_status(conn, run: RunContext, season: Season) -> list[dict]:
    """One row per in-scope branch bureau with its submission and rule flags (SQL)."""
    rows = sqlfiles.query(conn, "annual_report_status", branch_code=run.scope.branch_code,
                          **season.params())
    for row in rows:
        row["submitted_at"] = as_datetime(row["submitted_at"])  # SQLite: text
    return rows


def check_submission(file_name: str, required: tuple[str, ...], landing: Path | None = None) -> HeadingCheck:
    """The heading check of a submitted file ``annual_reports/<file_name>``."""
    landing = landing or config.landing_dir()
    try:
        path = report_path(landing, file_name)
    except ReportUnreadable as exc:
        return check_headings(None, required, problem=str(exc))
    return check_headings(path, required)


def _who(row: dict) -> str:
    return f"{row['branch_name']}（{row['branch_code']}）"


def _report(season: Season) -> str:
    return f"{season.report_year}年度{REPORT_NAME}"


def _candidate(code: str, row: dict, message: str, metric, threshold) -> dict:
    return {
        "rule_code": code, "severity": RULES[code].severity, "branch_code": row["branch_code"],
        "metric_value": Decimal(metric), "threshold_value": Decimal(threshold), "message": message,
    }


def due_candidate(row: dict, season: Season, settings: AnnualReportSettings, profile: dict,
                  with_draft: bool) -> dict:
    draft = (f"本邮件附有根据{season.report_year}年度监测数据预填的报告草稿（Word），请核实、补充后报送。"
             if with_draft else "")
    message = (
        f"【年度报告·提醒】{_who(row)}截至 {date_iso(season.judged)} 日终尚未报送{_report(season)}。"
        f"请于 {date_iso(season.deadline)}（含）前按模板（{template_sections(settings.required_headings)}）"
        f"报送市医疗保障局（市医疗保障局各分局应于{season.due_by}报送年度加强集采监管工作情况报告）。"
        f"{draft}依据：{cite(profile, DUE)}。"
    )
    return _candidate(DUE, row, message, 0, 1)


def missing_candidate(row: dict, season: Season, profile: dict) -> dict:
    message = (
        f"【年度报告·逾期未报】{_who(row)}截至报送截止日 {date_iso(season.deadline)} 日终仍未报送"
        f"{_report(season)}（应于{season.due_by}报送）。请分局立即按模板报送并说明逾期原因，"
        f"市医疗保障局督促落实。依据：{cite(profile, MISSING)}。"
    )
    return _candidate(MISSING, row, message, 0, 1)


def late_candidate(row: dict, season: Season, profile: dict) -> dict:
    days = season.days_late
    message = (
        f"【年度报告·逾期报送】{_who(row)}于 {datetime_local(row['submitted_at'])} 报送{_report(season)}"
        f"（文件 {row['file_name']}），晚于报送截止日 {date_iso(season.deadline)}（含）{days} 天"
        f"（应于{season.due_by}报送）。请分局说明逾期原因，今后按时报送。依据：{cite(profile, LATE)}。"
    )
    return _candidate(LATE, row, message, days, 0)


def incomplete_candidate(row: dict, season: Season, check: HeadingCheck, profile: dict) -> dict:
    required = check.required
    numbered = {h: numbered_heading(i, h) for i, h in enumerate(required)}
    missing = "；".join(numbered[h] for h in check.missing)
    if check.problem:
        found = f"报告文件无法读取（{check.problem}），视为缺少全部{len(required)}个章节"
    else:
        found = f"缺少模板章节：{missing}（找到 {len(check.found)}/{len(required)} 个）"
    message = (
        f"【年度报告·章节缺失】{_who(row)}于 {datetime_local(row['submitted_at'])} 报送的{_report(season)}"
        f"（文件 annual_reports/{_display_name(row['file_name'])}）{found}。"
        f"请按模板（{template_sections(required)}）补齐后重新报送。依据：{cite(profile, INCOMPLETE)}。"
    )
    return _candidate(INCOMPLETE, row, message, len(check.found), len(required))


def _display_name(file_name: str) -> str:
    name = (file_name or "").replace("\\", "/")
    prefix = "annual_reports/"
    return name[len(prefix):] if name.startswith(prefix) else name


def candidates_of(rows: list[dict], season: Season, settings: AnnualReportSettings,
                  checks: dict[str, HeadingCheck], profile: dict) -> list[dict]:
    out = []
    for row in rows:
        if row["due"]:
            out.append(due_candidate(row, season, settings, profile, with_draft=season.is_first_reminder_day))
        if row["missing"]:
            out.append(missing_candidate(row, season, profile))
        if row["late"]:
            out.append(late_candidate(row, season, profile))
        check = checks.get(row["branch_code"])
        if check is not None and not check.complete:
            out.append(incomplete_candidate(row, season, check, profile))
    return out


def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Judge day J: write the alerts and, on the first reminder day, the draft reports."""
    profile = profile or load_profile()
    settings = AnnualReportSettings.from_profile(profile)
    season = Season.of(run.period, settings)
    with engine.begin() as conn:
        rows = branch_status(conn, run, season)
        checks = {row["branch_code"]: check_submission(row["file_name"], settings.required_headings)
                  for row in rows if row["check_file"]}
        candidates = candidates_of(rows, season, settings, checks, profile)
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        drafts: dict[str, DraftDocument] = {}
        if season.is_first_reminder_day:
            due_rows = [row for row in rows if row["due"]]
            figures = draft_figures(conn, [row["branch_code"] for row in due_rows], season.report_year)
            drafts = {row["branch_code"]: build_draft(row, season, figures[row["branch_code"]], settings, profile)
                      for row in due_rows}
    result = JudgeResult(
        period=run.period.label, rule_codes=RULE_CODES, written=written,
        attachments=write_drafts(drafts, run, season),
        details={"report_year": season.report_year, "branches": len(rows),
                 "submitted": sum(row["submitted"] for row in rows), "files_checked": len(checks)},
    )
    log.info("%s %s: %s", DAG_ID, run.period.label, result.as_xcom())
    return result


# ------------------------------------------------------------------ the draft: figures
@dataclass
class BranchFigures:
    """One branch's figures of the report year (zeros/None when the warehouse has none)."""

    institutions: dict
    agreements: dict
    completion: dict | None
    online_rates: dict[str, dict]
    alerts: dict[str, dict]  # rule_code -> {alerts, critical_alerts, institutions, metric_total}
    prepayment: dict | None

    def count(self, code: str) -> int:
        return int(self.alerts.get(code, {}).get("alerts", 0) or 0)

    def institutions_of(self, code: str) -> int:
        return int(self.alerts.get(code, {}).get("institutions", 0) or 0)


def draft_rule_codes() -> list[str]:
    """The rules whose alerts the draft counts: every rule DAG's but this one's (its own
    reminders) — never DATA_QUALITY, which belongs to no DAG."""
    return [code for dag_id, dag in DAGS.items() if dag_id != DAG_ID for code in dag.rule_codes]


def draft_figures(conn, branch_codes: list[str], year: int) -> dict[str, BranchFigures]:
    """Every figure of the drafts of ``branch_codes``, each query filtered by branch."""
    if not branch_codes:
        return {}
    year_start, year_end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    common = {"branch_codes": branch_codes, "year_start": year_start, "year_end": year_end}

    def by_branch(rows):
        return {row["branch_code"]: row for row in rows}

    institutions = by_branch(sqlfiles.query(conn, "annual_draft_institutions", **common))
    agreements = by_branch(sqlfiles.query(conn, "annual_draft_agreements", **common))
    completion = by_branch(sqlfiles.query(
        conn, "annual_draft_completion", eps=EPS, first_month=f"{year}-01", last_month=f"{year}-12",
        **common))
    prepayment = by_branch(sqlfiles.query(conn, "annual_draft_prepayment", **common))
    online: dict[str, dict] = {}
    for row in sqlfiles.query(conn, "annual_draft_online_rates", categories=list(ONLINE_CATEGORIES), **common):
        online.setdefault(row["branch_code"], {})[row["category"]] = row
    counts: dict[str, dict] = {}
    for row in sqlfiles.query(conn, "annual_draft_alert_counts", rule_codes=draft_rule_codes(),
                              period_from=f"{year}-01", period_to=f"{year + 1}", **common):
        counts.setdefault(row["branch_code"], {})[row["rule_code"]] = row
    return {
        code: BranchFigures(
            institutions=institutions.get(code, {}),
            agreements=agreements.get(code, {}),
            completion=completion.get(code),
            online_rates=online.get(code, {}),
            alerts=counts.get(code, {}),
            prepayment=prepayment.get(code),
        )
        for code in branch_codes
    }


# ------------------------------------------------------------------ the draft: text

def _int(row: dict | None, key: str) -> int:
    return int((row or {}).get(key) or 0)


def overview_paragraphs(name: str, year: int, figures: BranchFigures, profile: dict) -> list[str]:
    inst, agr = figures.institutions, figures.agreements
    if _int(inst, "institutions"):
        owners = "、".join(f"{OWNERSHIP_ZH[key]}{_int(inst, key + '_institutions')}家" for key in OWNERSHIP_ZH)
        first = (f"{year}年，{name}辖区纳入集采监管的医疗机构共{_int(inst, 'institutions')}家（{owners}），"
                 f"其中{_int(inst, 'institutions_with_agreements')}家签订了集采约定采购量协议，"
                 f"涉及{_int(agr, 'batches')}个集采批次、{_int(agr, 'generic_names')}个通用名、"
                 f"{_int(agr, 'agreements')}份协议（约定采购金额合计{money(agr.get('agreed_amount') or 0)}）。")
    else:
        first = f"{year}年，{name}辖区纳入集采监管的医疗机构：{NO_DATA}。"
    comp = figures.completion
    if comp:
        as_of = date_zh(comp["as_of_date"]) if comp["as_of_date"] else comp["period"]
        # counted, never summed: the generic names' quantities are in different units
        second = (f"约定采购量完成情况（一院一档，截至{as_of}）："
                  f"有约定采购量的协议{_int(comp, 'agreements_with_quantity')}份，"
                  f"其中已完成约定采购量{_int(comp, 'agreements_completed')}份，"
                  f"达到序时进度{_int(comp, 'agreements_on_track')}份，"
                  f"低于序时进度{_int(comp, 'agreements_behind_time')}份。")
    else:
        second = f"约定采购量完成情况（一院一档）：{NO_DATA}。"
    thresholds = profile["monitoring"]["online_rate_thresholds"]
    parts = []
    for category in ONLINE_CATEGORIES:
        row, limit = figures.online_rates.get(category), thresholds.get(category)
        required = f"（要求≥{percent(limit)}）" if limit is not None else ""
        platform, total = (decimal_of(row["platform_amount"]), decimal_of(row["total_amount"])) if row else (0, 0)
        if total:
            # a rate below the line is rounded down (never shown as the line)
            breach: Breach = "below" if limit is not None and platform < limit * total else None
            parts.append(f"{CATEGORY_ZH[category]}网采率{share(platform, total, breach)}{required}，"
                         f"平台采购{money(platform)}/采购总额{money(total)}")
        else:
            parts.append(f"{CATEGORY_ZH[category]}网采率{NO_DATA}{required}")
    third = f"{year}年辖区公立医疗机构" + "；".join(parts) + "。"
    return [first, second, third]


def _count_phrase(figures: BranchFigures, code: str, with_institutions: bool = True) -> str:
    text = f"{RULES[code].title}{figures.count(code)}条"
    if with_institutions and figures.count(code):
        text += f"（涉及医疗机构{figures.institutions_of(code)}家）"
    return text


def _citations(profile: dict, codes) -> str:
    """The clauses of ``codes``, each once. A clause that depends on the institution's
    ownership (the payment deadline) is cited per ownership, each naming whom it applies
    to (公立医疗机构：…；军队、民营医疗机构：…): the year's alerts cover them all."""
    clauses: dict[str, list[str]] = {}
    for code in codes:
        by_ownership: dict[str, list[str]] = {}
        for ownership, name in OWNERSHIP_ZH.items():
            by_ownership.setdefault(cite(profile, code, ownership), []).append(name)
        for clause, owners in by_ownership.items():
            clauses.setdefault(clause, [])
            if len(by_ownership) > 1:
                clauses[clause].extend(owners)
    return "；".join(f"{'、'.join(owners)}医疗机构：{clause}" if owners else clause
                    for clause, owners in clauses.items())


def _codes(dag_id: str, *excluded: str) -> list[str]:
    return [code for code in DAGS[dag_id].rule_codes if code not in excluded]


def work_paragraphs(year: int, figures: BranchFigures, profile: dict) -> list:
    entry = _codes("vbp_entry_sweep")
    monitoring = _codes("vbp_monthly_monitoring", "PAYMENT_OVERDUE")
    prepay = _codes("vbp_prepayment_reconciliation")
    volume = _codes("vbp_volume_review")
    response = _codes("vbp_order_response")
    entry_month = profile["entry_sweep"]["entry_sweep_month"]

    out: list = [
        f"1. 中选产品进院排查（{_citations(profile, entry)}）：落地执行第{entry_month}个月排查发现"
        + "、".join(_count_phrase(figures, code) for code in entry)
        + "。督促整改情况：……（请补充）",
        f"2. 按月监测（一院一档，{_citations(profile, ['PROGRESS_BEHIND'])}）：全年按月监测预警共"
        f"{sum(figures.count(code) for code in monitoring)}条，分项如下表。督导整改情况：……（请补充）",
        DraftTable(["监测指标", "预警数", "其中严重", "涉及医疗机构数"], [
            [RULES[code].title, str(figures.count(code)),
             str(int(figures.alerts.get(code, {}).get("critical_alerts", 0) or 0)),
             str(figures.institutions_of(code))]
            for code in monitoring
        ]),
    ]
    overdue = figures.alerts.get("PAYMENT_OVERDUE", {})
    out.append(
        f"3. 货款结算（{_citations(profile, ['PAYMENT_OVERDUE'])}）：全年货款逾期未结清预警"
        f"{figures.count('PAYMENT_OVERDUE')}条，逾期未付金额合计{money(overdue.get('metric_total') or 0)}，"
        f"涉及医疗机构{figures.institutions_of('PAYMENT_OVERDUE')}家。"
    )
    ledger = figures.prepayment
    alerts_text = "、".join(_count_phrase(figures, code, with_institutions=False) for code in prepay)
    prepay_clause = _citations(profile, prepay)
    if ledger:
        out.append(
            f"4. 医保基金预付（{prepay_clause}）：截至{year}年最近对账节点"
            f"（{date_zh(ledger['last_milestone_day'])}），辖区{_int(ledger, 'subjects')}个对账主体"
            f"（医疗机构×批次×协议年度）约定采购金额合计{money(ledger['agreed_amount_total'])}，"
            f"应拨付{money(ledger['required_disbursement'])}、已拨付{money(ledger['disbursed'])}，"
            f"应归还（冲抵）{money(ledger['required_recovery'])}、已归还（冲抵）{money(ledger['recovered'])}；"
            f"全年预付款预警：{alerts_text}。"
        )
    else:
        out.append(f"4. 医保基金预付（{prepay_clause}）：预付对账台账{NO_DATA}；全年预付款预警：{alerts_text}。")
    out.append(f"5. 集采报量审核（{_citations(profile, volume)}）："
               + "、".join(_count_phrase(figures, code) for code in volume) + "。")
    out.append(f"6. 配送响应（{_citations(profile, response)}）："
               + "、".join(_count_phrase(figures, code) for code in response) + "。")
    out.append("7. 其他工作（部门协同、宣传引导、院内集采预警机制试点等）：……（请补充）")
    return out


def top_problems(figures: BranchFigures, limit: int) -> list[str]:
    """Rule codes with alerts, most alerts first (ties: the more severe, then catalog order)."""
    order = list(RULES)
    ranked = sorted(
        (code for code in figures.alerts if figures.count(code) > 0 and code in RULES),
        key=lambda code: (-figures.count(code),
                          -int(figures.alerts[code].get("critical_alerts") or 0),
                          order.index(code)),
    )
    return ranked[:max(0, limit)]


def problem_paragraphs(figures: BranchFigures, problems: list[str]) -> list[str]:
    if not problems:
        return ["1. 本年度监测暂无预警数据。……（请结合工作实际归类提出存在问题）"]
    out = []
    for index, code in enumerate(problems, start=1):
        row = figures.alerts[code]
        critical = int(row.get("critical_alerts") or 0)
        severe = f"（其中严重{critical}条）" if critical else ""
        where = f"，涉及医疗机构{figures.institutions_of(code)}家" if figures.institutions_of(code) else ""
        out.append(f"{index}. {RULES[code].title}：全年预警{figures.count(code)}条{severe}{where}。"
                   f"原因分析：……（请补充）")
    out.append(f"{len(problems) + 1}. ……（请结合工作实际补充）")
    return out


def plan_paragraphs(problems: list[str]) -> list[str]:
    out = [f"{index}. 针对“{RULES[code].title}”：……（请填写改进措施）"
           for index, code in enumerate(problems, start=1)]
    out.append(f"{len(out) + 1}. ……（请填写改进措施）")
    return out


def build_draft(row: dict, season: Season, figures: BranchFigures, settings: AnnualReportSettings,
                profile: dict) -> DraftDocument:
    """The template's four sections (seed 002 附件2) pre-filled with one branch's figures."""
    year, name = season.report_year, row["branch_name"]
    problems = top_problems(figures, settings.draft_top_problems)
    bodies = [
        overview_paragraphs(name, year, figures, profile),
        work_paragraphs(year, figures, profile),
        problem_paragraphs(figures, problems),
        plan_paragraphs(problems),
    ]
    sections = [
        DraftSection(numbered_heading(index, heading), GUIDANCE[index] if index < len(GUIDANCE) else "", body)
        for index, (heading, body) in enumerate(zip(settings.required_headings, bodies))
    ]
    return DraftDocument(
        title=f"{REPORT_NAME}（{year}年度）",
        note=(f"（草稿：{name}。由市医保局集采监管系统根据{year}年度监测数据于{date_zh(season.run_day)}"
              f"预填，请核实、补充后于{date_zh(season.deadline)}前报送）"),
        sections=sections,
        # the template's 单位落款（盖章） and date line: the branch signs and dates it when it submits
        signature=f"{name}（盖章）",
        date_line=f"{season.deadline.year}年　　月　　日",
        author=AUTHOR,
        subject=f"{name} {year}年度加强集采监管工作落实情况报告（草稿）",
        keywords=f"{row['branch_code']};{year}",
    )


# ------------------------------------------------------------------ the draft: files
def draft_folder(report_year: int) -> Path:
    return run_folder(DAG_ID, str(report_year))


def draft_path(report_year: int, branch_code: str) -> Path:
    """``年度报告草稿_<branch>_<year>.docx``, named like every per-branch file."""
    from vbp_monitor.outputs.spreadsheets import branch_file_path

    return branch_file_path(draft_folder(report_year), DRAFT_PREFIX, branch_code, str(report_year), suffix=".docx")


def write_drafts(drafts: dict[str, DraftDocument], run: RunContext, season: Season) -> dict[str, list[Path]]:
    """Write the drafts; on the first reminder day, remove the drafts a rerun no longer makes
    (a submission loaded since), within the run's branch scope."""
    from vbp_monitor.outputs.documents import write_draft_docx
    from vbp_monitor.outputs.spreadsheets import remove_stale_branch_files, safe_name_part

    year = season.report_year
    written = {code: [write_draft_docx(draft_path(year, code), draft, season.run_day)]
               for code, draft in sorted(drafts.items())}
    if season.is_first_reminder_day:
        remove_stale_branch_files(draft_folder(year), DRAFT_PREFIX, str(year),
                                  kept={safe_name_part(code) for code in written},
                                  scope_branch=run.scope.branch_code, suffix=".docx")
    return written
