"""DAG 3 · 预付对账 (prepayment reconciliation) — domain.md DAG 3, seed 001 §五(三)8,
seed 000 item 12, seed 003 §五(五), seed 004 §二(三).

Subjects: (institution, batch, agreement year) with agreements, restricted to the profile's
``applies_to_ownership``. Each is judged at the last day of cycle months ``milestones``
(3, 6, 9, 12), as of that day, by the monthly run whose judged month contains the day:

* ``PREPAY_UNDER_DISBURSED``: disbursed by the milestone day short of ``disbursement
  fraction in force at month k × agreed_amount_total`` by more than ``shortfall_tolerance``.
* ``PREPAY_RECOVERY_SHORT``: recovered short of ``recovery fraction at k × base`` (base =
  disbursed by the day, or agreed_amount_total), capped at disbursed, by more than the
  tolerance.
* ``PREPAY_OVER_RECOVERED``: recovered exceeds disbursed by more than the tolerance.

Severities and routing are the catalog's; the clauses the profile's (``cite``).

Short agreement years: milestones whose month-end is on or after ``period_end`` collapse
into one final milestone at ``period_end`` that carries the last milestone's steps and its
month number (seed 001's "最后1个月"); a 12-month year's month 12 ends at ``period_end``.

The schedule is handed to SQL as a tiny per-run parameter table (``prepay_run_schedule``, a
temporary table of the run's connection: one row per milestone with its two fractions and
the tolerance, exact decimals typed by the table on both databases).
Besides alerts the run rewrites the ledger (``prepayment_ledger``: delete-then-insert of the
judged month's milestones in scope) and the finance staff's spreadsheets: the city-wide
ledger (keyed by the city's branch code, attached to the city's email) and one per branch
(attached to the branch's email), written by ``spreadsheets.write_branch_files``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
)

from vbp_monitor.alerts.candidates import one_per_key
from vbp_monitor.alerts.store import JudgeResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS, RULES, rule_title
from vbp_monitor.core.formatting import as_date, date_iso, decimal_of, money, percent, rounded
from vbp_monitor.core.labels import OWNERSHIP_ZH, SEVERITY_ORDER, SEVERITY_ZH, label
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.calendar_tables import ensure_cycle_month_calendar
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.model.schema import alerts, prepayment_ledger
from vbp_monitor.outputs.run_files import run_folder
from vbp_monitor.quality.validation import Where

if TYPE_CHECKING:
    from vbp_monitor.orchestration.run_context import RunContext

log = logging.getLogger(__name__)

DAG_ID = "vbp_prepayment_reconciliation"
UNDER_DISBURSED, RECOVERY_SHORT, OVER_RECOVERED = (
    "PREPAY_UNDER_DISBURSED", "PREPAY_RECOVERY_SHORT", "PREPAY_OVER_RECOVERED")
RULE_CODES = DAGS[DAG_ID].rule_codes
# Money has at most 4 decimals: 1e-6 yuan separates "exactly at the tolerance" from a real
# difference even on SQLite's REAL arithmetic with amounts in the hundreds of millions.
MONEY_EPS = 1e-6
# The ledger keeps money to 4 places (the contract's precision).
LEDGER_MONEY = Decimal("0.0001")
LEDGER_MONEY_COLUMNS = ("agreed_amount_total", "disbursed", "recovered", "required_disbursement",
                        "recovery_due", "required_recovery", "disbursement_gap", "recovery_gap")
FILE_PREFIX = "预付对账台账"

# The per-run parameter table (a temporary table: private to the run's connection, so
# parallel backfills never see each other's schedule).
_params_metadata = MetaData()
schedule_table = Table(
    "prepay_run_schedule", _params_metadata,
    Column("milestone_month", Integer, nullable=False),
    Column("disbursement_fraction", Numeric(12, 6), nullable=False),
    Column("recovery_fraction", Numeric(12, 6), nullable=False),
    Column("shortfall_tolerance", Numeric(18, 4), nullable=False),
    prefixes=["TEMPORARY"],
)


# ------------------------------------------------------------------ settings
def _step_at(steps: tuple[tuple[int, Decimal], ...], month: int) -> Decimal:
    """The fraction of the last step ``(from_month, fraction)`` at or before ``month``."""
    fraction = Decimal(0)
    for from_month, value in sorted(steps):
        if from_month <= month:
            fraction = value
    return fraction


def _steps(pairs: list) -> tuple[tuple[int, Decimal], ...]:
    return tuple((int(month), decimal_of(fraction)) for month, fraction in pairs)


@dataclass(frozen=True)
class PrepaymentSettings:
    profile_name: str
    ownerships: tuple[str, ...]
    base_is_agreed: bool
    tolerance: Decimal
    milestones: tuple[int, ...]
    disbursement_schedule: tuple[tuple[int, Decimal], ...]
    recovery_schedule: tuple[tuple[int, Decimal], ...]

    @classmethod
    def from_profile(cls, profile: dict) -> PrepaymentSettings:
        section = profile["prepayment"]
        base = section["recovery_base"]
        if base not in ("disbursed", "agreed_amount_total"):
            raise ValueError(f"[prepayment] recovery_base must be disbursed or agreed_amount_total, not {base!r}")
        return cls(
            profile_name=profile["name"],
            ownerships=tuple(section["applies_to_ownership"]),
            base_is_agreed=base == "agreed_amount_total",
            tolerance=decimal_of(section["shortfall_tolerance"]),
            milestones=tuple(sorted(int(k) for k in section["milestones"])),
            disbursement_schedule=_steps(section["disbursement_schedule"]),
            recovery_schedule=_steps(section["recovery_schedule"]),
        )

    @property
    def final_milestone(self) -> int:
        return self.milestones[-1]

    def schedule_rows(self) -> list[dict]:
        return [{"milestone_month": k,
                 "disbursement_fraction": _step_at(self.disbursement_schedule, k),
                 "recovery_fraction": _step_at(self.recovery_schedule, k),
                 "shortfall_tolerance": self.tolerance}
                for k in self.milestones]

    @property
    def base_zh(self) -> str:
        return "带量采购总金额（约定采购金额合计）" if self.base_is_agreed else "截至节点已拨付金额"


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext) -> dict[str, Where | None]:
    """The rows this DAG reads, for ``validation.validate_tables``."""
    return {
        "agreements": None,
        "institutions": None,
        "batches": None,
        "prepayments": Where("txn_date <= :last_day"),
    }


def validate(engine, run: RunContext) -> dict:
    from vbp_monitor.quality.validation import validate_tables

    return validate_tables(engine, run, validation_scope(run))


# ------------------------------------------------------------------ judging
def _load_schedule(conn, settings: PrepaymentSettings) -> None:
    schedule_table.create(conn, checkfirst=True)
    conn.execute(delete(schedule_table))
    conn.execute(insert(schedule_table), settings.schedule_rows())


def milestone_rows(conn, run: RunContext, settings: PrepaymentSettings) -> list[dict]:
    """The ledger rows of the judged month's milestones in scope, typed, with flags."""
    ensure_cycle_month_calendar(conn)
    _load_schedule(conn, settings)
    rows = sqlfiles.query(
        conn, "prepay_ledger",
        month_start=run.period.first_day, month_end=run.period.last_day,
        final_milestone=settings.final_milestone,
        base_is_agreed=1 if settings.base_is_agreed else 0,
        money_eps=MONEY_EPS, ownerships=list(settings.ownerships),
        branch_code=run.scope.branch_code, batch_code=run.scope.batch_code,
    )
    # On failure the transaction's rollback removes it (PostgreSQL), or the next run's
    # _load_schedule empties it (SQLite keeps DDL outside the implicit transaction).
    schedule_table.drop(conn)
    for row in rows:
        for name in ("period_start", "period_end", "cycle_month_end", "milestone_day"):
            row[name] = as_date(row[name])
        for name in LEDGER_MONEY_COLUMNS:
            row[name] = rounded(row[name], LEDGER_MONEY)
        row["disbursement_fraction"] = decimal_of(row["disbursement_fraction"])
        row["recovery_fraction"] = decimal_of(row["recovery_fraction"])
        row["milestone_month"] = int(row["milestone_month"])
        row["is_final_short"] = row["cycle_month_end"] > row["milestone_day"]
        for flag in ("under_disbursed", "recovery_short", "over_recovered"):
            row[flag] = bool(row[flag])
    return rows


def write_ledger(conn, run: RunContext, settings: PrepaymentSettings, rows: list[dict]) -> None:
    """Delete-then-insert the judged month's ledger rows in scope."""
    conditions = [prepayment_ledger.c.period == run.period.label]
    if run.scope.branch_code:
        conditions.append(prepayment_ledger.c.branch_code == run.scope.branch_code)
    if run.scope.batch_code:
        conditions.append(prepayment_ledger.c.batch_code == run.scope.batch_code)
    conn.execute(delete(prepayment_ledger).where(and_(*conditions)))
    if not rows:
        return
    # A corrected period_end can move a final milestone to another month: the row for the
    # same subject and milestone judged before is stale.
    key = ("institution_code", "batch_code", "period_start", "milestone_month")
    conn.execute(
        delete(prepayment_ledger).where(and_(*[prepayment_ledger.c[name] == bindparam(f"k_{name}")
                                               for name in key])),
        [{f"k_{name}": row[name] for name in key} for row in rows],
    )
    stored = [name for name in prepayment_ledger.c.keys() if name not in ("period", "profile")]
    conn.execute(insert(prepayment_ledger), [
        {**{name: row[name] for name in stored}, "period": run.period.label, "profile": settings.profile_name}
        for row in rows
    ])


def _subject_label(row: dict) -> str:
    return (f"{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）")


def milestone_label(row: dict) -> str:
    day, month = date_iso(row["milestone_day"]), row["milestone_month"]
    if row["is_final_short"]:
        return f"最后1个月节点（协议年度末 {day}，协议年度不足{month}个月，按第{month}个月进度要求）"
    return f"执行第{month}个月末（{day}）"


def message_of(code: str, row: dict, settings: PrepaymentSettings, profile: dict) -> str:
    """The alert's text: the figures (rounded so a breach is never hidden), the unit, the clause."""
    head = (f"【预付对账】{_subject_label(row)}协议年度 {date_iso(row['period_start'])} 至 "
            f"{date_iso(row['period_end'])}，约定采购金额合计 {money(row['agreed_amount_total'])}。"
            f"截至{milestone_label(row)}：")
    clause = f"依据：{cite(profile, code)}。"
    tolerance = money(settings.tolerance)
    if code == UNDER_DISBURSED:
        return (
            f"{head}医保基金预付款已拨付 {money(row['disbursed'], 'below')}，应不低于约定采购金额合计的 "
            f"{percent(row['disbursement_fraction'])} 即 {money(row['required_disbursement'])}，"
            f"少拨付 {money(row['disbursement_gap'], 'above')}（超过容差 {tolerance}）。"
            f"请医保经办机构尽快足额拨付预付款，市医保局督办。{clause}"
        )
    if code == RECOVERY_SHORT:
        base = row["agreed_amount_total"] if settings.base_is_agreed else row["disbursed"]
        cap = ""
        if row["required_recovery"] < row["recovery_due"]:
            cap = f"，因不超过已拨付 {money(row['disbursed'])} 按已拨付计"
        return (
            f"{head}已归还（冲抵）预付款 {money(row['recovered'], 'below')}，应累计归还"
            f"{settings.base_zh} {money(base)} 的 {percent(row['recovery_fraction'])} 即 "
            f"{money(row['required_recovery'])}{cap}，尚差 {money(row['recovery_gap'], 'above')}"
            f"（超过容差 {tolerance}；已拨付 {money(row['disbursed'])}）。"
            f"请督促医疗机构及时清算中选产品使用情况，按进度归还（冲抵）医保基金预付款。{clause}"
        )
    excess = row["recovered"] - row["disbursed"]
    return (
        f"{head}已归还（冲抵）预付款 {money(row['recovered'], 'above')}，超过已拨付 "
        f"{money(row['disbursed'])} 达 {money(excess, 'above')}（超过容差 {tolerance}），预付款台账可能有误"
        f"（漏记拨付、重复记归还或归属批次/年度错误）。请医保经办机构核对该医疗机构预付款拨付与归还台账，"
        f"市医保局介入核查。{clause}"
    )


# Which rule a ledger row breaks, and its metric / threshold.
_BREACHES = (
    (UNDER_DISBURSED, "under_disbursed", "disbursed", "required_disbursement"),
    (RECOVERY_SHORT, "recovery_short", "recovered", "required_recovery"),
    (OVER_RECOVERED, "over_recovered", "recovered", "disbursed"),
)


def candidates_of(row: dict, settings: PrepaymentSettings, profile: dict) -> list[dict]:
    subject = {name: row[name] for name in ("branch_code", "institution_code", "batch_code", "milestone_month")}
    return [
        {**subject, "rule_code": code, "severity": RULES[code].severity,
         "metric_value": row[metric], "threshold_value": row[threshold],
         "message": message_of(code, row, settings, profile)}
        for code, flag, metric, threshold in _BREACHES if row[flag]
    ]


def _more_severe_then_larger_gap(candidate: dict) -> tuple:
    """Overlapping agreement years of one institution and batch (a data error ingest should
    have quarantined) can share a milestone month: the more severe, larger gap is kept."""
    gap = (candidate["threshold_value"] - candidate["metric_value"]).copy_abs()
    return (-SEVERITY_ORDER[candidate["severity"]], gap)


def judge(engine, run: RunContext, profile: dict | None = None) -> JudgeResult:
    """Reconcile the milestones of the judged month: ledger rows, alerts, spreadsheets."""
    profile = profile or load_profile()
    settings = PrepaymentSettings.from_profile(profile)
    with engine.begin() as conn:
        rows = milestone_rows(conn, run, settings)
        write_ledger(conn, run, settings, rows)
        candidates = one_per_key([c for row in rows for c in candidates_of(row, settings, profile)],
                                 rank=_more_severe_then_larger_gap)
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        sheet_rows = ledger_sheet_rows(conn, run)
        branches = branch_directory(conn)
        city_code = city_branch_code(conn)
    result = JudgeResult(
        period=run.period.label, rule_codes=RULE_CODES, written=written,
        attachments=write_workbooks(sheet_rows, run, settings, branches, city_code),
        details={"profile": settings.profile_name, "milestones": len(rows)},
    )
    log.info("%s %s: %s", DAG_ID, run.period.label, result.as_xcom())
    return result


# ------------------------------------------------------------------ spreadsheets
LEDGER_TITLE = "医保基金预付款对账台账"


def _ledger_header() -> list:
    # typed: money as #,##0.00 with exact cents, dates as date cells (outputs.spreadsheets)
    from vbp_monitor.outputs.spreadsheets import Column

    money_columns = ["约定采购金额合计（元）", "已拨付（元）", "应拨付（元）", "拨付差额（应−实，元）",
                     "已归还（冲抵）（元）", "应归还（元）", "归还差额（应−实，元）"]
    return [
        *(Column(name) for name in ("分局", "医疗机构代码", "医疗机构名称", "所有制", "批次代码", "批次名称")),
        Column("协议年度起", "date"), Column("协议年度止", "date"), Column("节点（执行第k个月）"),
        Column("节点日", "date"), *(Column(name, "money") for name in money_columns), Column("预警"),
    ]


def ledger_sheet_rows(conn, run: RunContext) -> list[dict]:
    """The judged month's whole ledger (every branch and batch) with its open alerts."""
    from vbp_monitor.model.schema import batches, institutions

    query = (
        select(prepayment_ledger, institutions.c.institution_name, institutions.c.ownership,
               batches.c.batch_name)
        .select_from(prepayment_ledger
                     .outerjoin(institutions, institutions.c.institution_code == prepayment_ledger.c.institution_code)
                     .outerjoin(batches, batches.c.batch_code == prepayment_ledger.c.batch_code))
        .where(prepayment_ledger.c.period == run.period.label)
    )
    rows = [dict(row) for row in conn.execute(query).mappings()]
    raised: dict[tuple, list[str]] = {}
    for alert in conn.execute(
        select(alerts.c.institution_code, alerts.c.batch_code, alerts.c.milestone_month, alerts.c.rule_code)
        .where(alerts.c.dag_id == DAG_ID, alerts.c.period == run.period.label, alerts.c.status == "open")
    ).mappings():
        key = (alert["institution_code"], alert["batch_code"], alert["milestone_month"])
        raised.setdefault(key, []).append(alert["rule_code"])
    for row in rows:
        codes = raised.get((row["institution_code"], row["batch_code"], row["milestone_month"]), [])
        row["rule_codes"] = sorted(codes, key=lambda code: (SEVERITY_ORDER[RULES[code].severity], code))
    rows.sort(key=lambda r: (r["branch_code"], r["institution_code"], r["batch_code"],
                             r["period_start"], r["milestone_month"]))
    return rows


def _sheet_row(row: dict, branches: dict) -> list:
    branch = branches.get(row["branch_code"], {}).get("name", row["branch_code"])
    verdict = "；".join(rule_title(code) for code in row["rule_codes"]) or "无"
    return [
        branch, row["institution_code"], row["institution_name"] or "",
        label(OWNERSHIP_ZH, row["ownership"]), row["batch_code"],
        row["batch_name"] or "", row["period_start"], row["period_end"],
        f"第{row['milestone_month']}个月" + ("（协议年度末）" if row["milestone_day"] == row["period_end"] else ""),
        row["milestone_day"],
        *(row[name] for name in ("agreed_amount_total", "disbursed", "required_disbursement",
                                 "disbursement_gap", "recovered", "required_recovery", "recovery_gap")),
        verdict,
    ]


def workbook_folder(period_label: str) -> Path:
    return run_folder(DAG_ID, period_label)


def _criteria(settings: PrepaymentSettings) -> tuple[list[str], list[list]]:
    disbursement = "；".join(f"第{m}个月起 {percent(f)}" for m, f in settings.disbursement_schedule)
    recovery = "；".join(f"第{m}个月 {percent(f)}" for m, f in settings.recovery_schedule)
    tolerance = money(settings.tolerance)
    conditions = {
        UNDER_DISBURSED: f"截至节点日已拨付 < 应拨付 − {tolerance}；"
                         f"应拨付 = 约定采购金额合计 × 拨付比例（{disbursement}）",
        RECOVERY_SHORT: f"截至节点日已归还 < 应归还 − {tolerance}；应归还 = {settings.base_zh} × 累计归还比例"
                        f"（{recovery}），不超过已拨付",
        OVER_RECOVERED: f"截至节点日已归还 > 已拨付 + {tolerance}",
    }
    header = ["预警名称", "判定口径", "预警级别"]
    rows = [[rule_title(code), condition,
             SEVERITY_ZH[RULES[code].severity] + ("（同时报市局）" if RULES[code].to_city else "")]
            for code, condition in conditions.items()]
    rows.append([
        "口径说明",
        f"适用 {'、'.join(label(OWNERSHIP_ZH, o) for o in settings.ownerships)}"
        f"医疗机构；节点为协议年度执行第{'、'.join(str(k) for k in settings.milestones)}个月末，协议年度不足"
        f"{settings.final_milestone}个月的，最后节点为协议年度末；预付款交易按日期归入所在协议年度（早于首个年度的归首个年度，"
        f"年度间隔或末年度之后的归前一年度）", ""])
    return header, rows


def write_workbooks(rows: list[dict], run: RunContext, settings: PrepaymentSettings,
                    branches: dict, city_code: str) -> dict[str, list[Path]]:
    """The city-wide ledger (keyed by the city's code) and one per branch.

    Every workbook shows the whole month's ledger whatever the run's scope, so every file of
    the month this run does not write is stale (no ``scope_branch``).
    """
    from vbp_monitor.core.profiles import load_profile
    from vbp_monitor.outputs.spreadsheets import BookTitle, write_branch_files

    criteria = _criteria(settings)
    header = _ledger_header()
    # the title block names the issuing office, the month and the policy profile (in Chinese)
    title = BookTitle(office=branches.get(city_code, {}).get("name", ""), title=LEDGER_TITLE,
                      period=run.period.label, profile=load_profile(settings.profile_name))
    by_audience: dict[str, list[dict]] = {city_code: rows} if rows else {}
    for row in rows:
        by_audience.setdefault(row["branch_code"], []).append(row)
    return write_branch_files(workbook_folder(run.period.label), FILE_PREFIX, run.period.label, {
        audience: {"预付对账台账": (header, [_sheet_row(row, branches) for row in audience_rows]),
                   "对账口径": criteria}
        for audience, audience_rows in by_audience.items()
    }, title=title)
