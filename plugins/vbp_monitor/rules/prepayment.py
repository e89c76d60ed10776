"""DAG 3 · 预付对账 (prepayment reconciliation) — domain.md DAG 3, seed 001 §五(三)8,
seed 000 item 12, seed 003 §五(五), seed 004 §二(三).

Subjects: (institution, batch, agreement year) with agreements, restricted to the profile's
``applies_to_ownership``. Each is judged at the last day of cycle months ``milestones``
(3, 6, 9, 12), as of that day, by the monthly run whose judged month contains the day:

* ``PREPAY_UNDER_DISBURSED`` (high, routed to the city too): disbursed by the milestone day
  short of ``disbursement fraction in force at month k × agreed_amount_total`` by more than
  ``shortfall_tolerance`` (1 yuan).
* ``PREPAY_RECOVERY_SHORT`` (high): recovered short of ``recovery fraction at k × base``
  (base = disbursed by the day, or agreed_amount_total), capped at disbursed, by more than
  the tolerance.
* ``PREPAY_OVER_RECOVERED`` (critical): recovered exceeds disbursed by more than the tolerance.

Short agreement years: milestones whose month-end is on or after ``period_end`` collapse
into one final milestone at ``period_end`` that carries the last milestone's steps and its
month number (seed 001's "最后1个月"); a 12-month year's month 12 ends at ``period_end``.

The schedule is handed to SQL as a tiny per-run parameter table (``prepay_run_schedule``, a
temporary table of the run's connection: one row per milestone with its two fractions).
Besides alerts the run rewrites the ledger (``prepayment_ledger``: delete-then-insert of the
judged month's milestones in scope) and the finance staff's spreadsheets: the city-wide
ledger (attached to the city's email) and one per branch (attached to the branch's email).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import (
    Column, Integer, MetaData, Numeric, Table, and_, bindparam, delete, insert, select,
)

from vbp_monitor.core import config
from vbp_monitor.core import sqlfiles
from vbp_monitor.alerts.store import alert_key
from vbp_monitor.core.catalog import RULES, SEVERITY_ORDER, rule_title
from vbp_monitor.core.prc_calendar import ensure_cycle_month_calendar
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.model.schema import alerts, prepayment_ledger

log = logging.getLogger(__name__)

DAG_ID = "vbp_prepayment_reconciliation"
UNDER_DISBURSED = "PREPAY_UNDER_DISBURSED"
RECOVERY_SHORT = "PREPAY_RECOVERY_SHORT"
OVER_RECOVERED = "PREPAY_OVER_RECOVERED"
RULE_CODES = (UNDER_DISBURSED, RECOVERY_SHORT, OVER_RECOVERED)
SEVERITY = {UNDER_DISBURSED: "high", RECOVERY_SHORT: "high", OVER_RECOVERED: "critical"}
# Money has at most 4 decimals: 1e-6 yuan separates "exactly at the tolerance" from a real
# difference even on SQLite's REAL arithmetic with amounts in the hundreds of millions.
MONEY_EPS = 1e-6
MONEY = Decimal("0.0001")
OUTPUT_SUBDIR = "vbp_prepayment_reconciliation"
OWNERSHIP_ZH = {"public": "公立", "military": "军队", "private": "民营"}

# The per-run parameter table (a temporary table: private to the run's connection, so
# parallel backfills never see each other's schedule).
_params_metadata = MetaData()
schedule_table = Table(
    "prepay_run_schedule", _params_metadata,
    Column("milestone_month", Integer, nullable=False),
    Column("disbursement_fraction", Numeric(12, 6), nullable=False),
    Column("recovery_fraction", Numeric(12, 6), nullable=False),
    prefixes=["TEMPORARY"],
)


# ------------------------------------------------------------------ settings
def _step_at(steps: list, month: int) -> Decimal:
    """The fraction of the last step ``[from_month, fraction]`` at or before ``month``."""
    fraction = Decimal(0)
    for from_month, value in sorted(steps, key=lambda step: int(step[0])):
        if int(from_month) <= month:
            fraction = Decimal(str(value))
    return fraction


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
    def from_profile(cls, profile: dict) -> "PrepaymentSettings":
        section = profile["prepayment"]
        base = section.get("recovery_base", "disbursed")
        if base not in ("disbursed", "agreed_amount_total"):
            raise ValueError(f"[prepayment] recovery_base must be disbursed or agreed_amount_total, not {base!r}")
        return cls(
            profile_name=profile.get("name", "default"),
            ownerships=tuple(section.get("applies_to_ownership", ["public", "military", "private"])),
            base_is_agreed=base == "agreed_amount_total",
            tolerance=Decimal(str(section.get("shortfall_tolerance", 1))),
            milestones=tuple(sorted(int(k) for k in section.get("milestones", [3, 6, 9, 12]))),
            disbursement_schedule=tuple((int(m), Decimal(str(f))) for m, f in section["disbursement_schedule"]),
            recovery_schedule=tuple((int(m), Decimal(str(f))) for m, f in section["recovery_schedule"]),
        )

    @property
    def final_milestone(self) -> int:
        return self.milestones[-1]

    def schedule_rows(self) -> list[dict]:
        return [{"milestone_month": k,
                 "disbursement_fraction": _step_at(list(self.disbursement_schedule), k),
                 "recovery_fraction": _step_at(list(self.recovery_schedule), k)}
                for k in self.milestones]

    @property
    def base_zh(self) -> str:
        return "带量采购总金额（约定采购金额合计）" if self.base_is_agreed else "截至节点已拨付金额"


# ------------------------------------------------------------------ small helpers
def _money(value) -> Decimal:
    if value is None:
        return Decimal(0).quantize(MONEY)
    if isinstance(value, float):
        value = Decimal(repr(value))
    return Decimal(value).quantize(MONEY)


def _fraction(value) -> Decimal:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return Decimal(value).quantize(Decimal("0.000001")).normalize()


def _date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def fmt_yuan(value: Decimal) -> str:
    return f"{value:,.2f}元"


def fmt_percent(value: Decimal) -> str:
    return f"{(value * 100).normalize():f}%"


# ------------------------------------------------------------------ validation
def validation_scope(run: RunContext) -> dict[str, str | None]:
    """The rows this DAG reads, for ``validation.validate_tables``."""
    return {
        "agreements": None,
        "institutions": None,
        "batches": None,
        "prepayments": f"txn_date <= '{run.period.last_day.isoformat()}'",
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
        tolerance=float(settings.tolerance), money_eps=MONEY_EPS,
        ownerships=list(settings.ownerships),
        branch_code=run.scope.branch_code, batch_code=run.scope.batch_code,
    )
    # On failure the transaction's rollback removes it (PostgreSQL), or the next run's
    # _load_schedule empties it (SQLite keeps DDL outside the implicit transaction).
    schedule_table.drop(conn)
    for row in rows:
        for name in ("period_start", "period_end", "cycle_month_end", "milestone_day"):
            row[name] = _date(row[name])
        for name in ("agreed_amount_total", "disbursed", "recovered", "required_disbursement",
                     "recovery_due", "required_recovery", "disbursement_gap", "recovery_gap"):
            row[name] = _money(row[name])
        row["disbursement_fraction"] = _fraction(row["disbursement_fraction"])
        row["recovery_fraction"] = _fraction(row["recovery_fraction"])
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
    conn.execute(insert(prepayment_ledger), [{
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "period_start": row["period_start"],
        "milestone_month": row["milestone_month"],
        "period": run.period.label,
        "branch_code": row["branch_code"],
        "period_end": row["period_end"],
        "milestone_day": row["milestone_day"],
        "profile": settings.profile_name,
        "agreed_amount_total": row["agreed_amount_total"],
        "disbursed": row["disbursed"],
        "recovered": row["recovered"],
        "required_disbursement": row["required_disbursement"],
        "required_recovery": row["required_recovery"],
        "disbursement_gap": row["disbursement_gap"],
        "recovery_gap": row["recovery_gap"],
    } for row in rows])


def _subject_label(row: dict) -> str:
    return (f"{row['institution_name']}（{row['institution_code']}）"
            f"「{row['batch_name']}」（{row['batch_code']}）")


def milestone_label(row: dict) -> str:
    if row["is_final_short"]:
        return (f"最后1个月节点（协议年度末 {row['milestone_day'].isoformat()}，"
                f"协议年度不足{row['milestone_month']}个月，按第{row['milestone_month']}个月进度要求）")
    return f"执行第{row['milestone_month']}个月末（{row['milestone_day'].isoformat()}）"


def message_of(code: str, row: dict, settings: PrepaymentSettings) -> str:
    head = (f"【预付对账】{_subject_label(row)}协议年度 {row['period_start'].isoformat()} 至 "
            f"{row['period_end'].isoformat()}，约定采购金额合计 {fmt_yuan(row['agreed_amount_total'])}。"
            f"截至{milestone_label(row)}：")
    clause = f"依据：{RULES[code].clause}（政策口径 {settings.profile_name}）。"
    tolerance = fmt_yuan(settings.tolerance)
    if code == UNDER_DISBURSED:
        return (
            f"{head}医保基金预付款已拨付 {fmt_yuan(row['disbursed'])}，应不低于约定采购金额合计的 "
            f"{fmt_percent(row['disbursement_fraction'])} 即 {fmt_yuan(row['required_disbursement'])}，"
            f"少拨付 {fmt_yuan(row['disbursement_gap'])}（超过容差 {tolerance}）。"
            f"请医保经办机构尽快足额拨付预付款，市医保局督办。{clause}"
        )
    if code == RECOVERY_SHORT:
        base = row["agreed_amount_total"] if settings.base_is_agreed else row["disbursed"]
        cap = ""
        if row["required_recovery"] < row["recovery_due"]:
            cap = f"，因不超过已拨付 {fmt_yuan(row['disbursed'])} 按已拨付计"
        return (
            f"{head}已归还（冲抵）预付款 {fmt_yuan(row['recovered'])}，应累计归还{settings.base_zh} "
            f"{fmt_yuan(base)} 的 {fmt_percent(row['recovery_fraction'])} 即 "
            f"{fmt_yuan(row['required_recovery'])}{cap}，尚差 {fmt_yuan(row['recovery_gap'])}"
            f"（超过容差 {tolerance}；已拨付 {fmt_yuan(row['disbursed'])}）。"
            f"请督促医疗机构及时清算中选产品使用情况，按进度归还（冲抵）医保基金预付款。{clause}"
        )
    excess = row["recovered"] - row["disbursed"]
    return (
        f"{head}已归还（冲抵）预付款 {fmt_yuan(row['recovered'])}，超过已拨付 "
        f"{fmt_yuan(row['disbursed'])} 达 {fmt_yuan(excess)}（超过容差 {tolerance}），预付款台账可能有误"
        f"（漏记拨付、重复记归还或归属批次/年度错误）。请医保经办机构核对该医疗机构预付款拨付与归还台账，"
        f"市医保局介入核查。{clause}"
    )


def candidates_of(row: dict, settings: PrepaymentSettings) -> list[dict]:
    subject = {
        "branch_code": row["branch_code"],
        "institution_code": row["institution_code"],
        "batch_code": row["batch_code"],
        "milestone_month": row["milestone_month"],
    }
    out = []
    if row["under_disbursed"]:
        out.append({**subject, "rule_code": UNDER_DISBURSED, "severity": SEVERITY[UNDER_DISBURSED],
                    "metric_value": row["disbursed"], "threshold_value": row["required_disbursement"],
                    "message": message_of(UNDER_DISBURSED, row, settings)})
    if row["recovery_short"]:
        out.append({**subject, "rule_code": RECOVERY_SHORT, "severity": SEVERITY[RECOVERY_SHORT],
                    "metric_value": row["recovered"], "threshold_value": row["required_recovery"],
                    "message": message_of(RECOVERY_SHORT, row, settings)})
    if row["over_recovered"]:
        out.append({**subject, "rule_code": OVER_RECOVERED, "severity": SEVERITY[OVER_RECOVERED],
                    "metric_value": row["recovered"], "threshold_value": row["disbursed"],
                    "message": message_of(OVER_RECOVERED, row, settings)})
    return out


def unique_subjects(candidates: list[dict], run: RunContext) -> list[dict]:
    """One candidate per alert key: overlapping agreement years of one institution and batch
    (a data error ingest should have quarantined) could share a milestone month; the more
    severe, larger shortfall wins so the upsert never touches a row twice."""
    best: dict[str, dict] = {}
    for candidate in sorted(candidates, key=lambda c: (SEVERITY_ORDER[c["severity"]],
                                                       -(c["threshold_value"] - c["metric_value"]).copy_abs())):
        key = alert_key({**candidate, "period": run.period.label})
        if key in best:
            log.warning("%s: two agreement years share milestone %s of %s/%s; kept the larger gap",
                        candidate["rule_code"], candidate["milestone_month"],
                        candidate["institution_code"], candidate["batch_code"])
            continue
        best[key] = candidate
    return list(best.values())


def judge(engine, run: RunContext, profile: dict | None = None) -> dict:
    """Reconcile the milestones of the judged month: ledger rows, alerts, spreadsheets."""
    profile = profile or load_profile()
    settings = PrepaymentSettings.from_profile(profile)
    with engine.begin() as conn:
        rows = milestone_rows(conn, run, settings)
        write_ledger(conn, run, settings, rows)
        candidates = unique_subjects([c for row in rows for c in candidates_of(row, settings)], run)
        written = run.store.replace(conn, RULE_CODES, candidates, scope=run.scope)
        sheet_rows = ledger_sheet_rows(conn, run)
        branches = branch_directory(conn)
        city_code = city_branch_code(conn)
    attachments = write_workbooks(sheet_rows, run, settings, branches, city_code)
    result = {
        "period": run.period.label,
        "profile": settings.profile_name,
        "milestones": len(rows),
        "raised": written.raised,
        "new": written.new,
        "resolved": written.resolved,
        "by_rule": dict(Counter(c["rule_code"] for c in candidates)),
        "attachments": {branch: [str(path) for path in paths] for branch, paths in attachments.items()},
    }
    log.info("%s %s: %s", DAG_ID, run.period.label, result)
    return result


# ------------------------------------------------------------------ spreadsheets
SHEET_HEADER = [
    "分局", "医疗机构代码", "医疗机构名称", "所有制", "批次代码", "批次名称", "协议年度起", "协议年度止",
    "节点（执行第k个月）", "节点日", "约定采购金额合计（元）", "已拨付（元）", "应拨付（元）",
    "拨付差额（应−实，元）", "已归还（冲抵）（元）", "应归还（元）", "归还差额（应−实，元）",
    "预警", "政策口径",
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
        row["rule_codes"] = sorted(codes, key=lambda code: (SEVERITY_ORDER[SEVERITY[code]], code))
    rows.sort(key=lambda r: (r["branch_code"], r["institution_code"], r["batch_code"],
                             r["period_start"], r["milestone_month"]))
    return rows


def _sheet_row(row: dict, branches: dict) -> list:
    branch = branches.get(row["branch_code"], {}).get("name", row["branch_code"])
    verdict = "；".join(rule_title(code) for code in row["rule_codes"]) or "无"
    return [
        branch, row["institution_code"], row["institution_name"] or "",
        OWNERSHIP_ZH.get(row["ownership"], row["ownership"] or ""), row["batch_code"],
        row["batch_name"] or "", row["period_start"], row["period_end"],
        f"第{row['milestone_month']}个月" + ("（协议年度末）" if row["milestone_day"] == row["period_end"] else ""),
        row["milestone_day"],
        _money(row["agreed_amount_total"]), _money(row["disbursed"]),
        _money(row["required_disbursement"]), _money(row["disbursement_gap"]),
        _money(row["recovered"]), _money(row["required_recovery"]), _money(row["recovery_gap"]),
        verdict, row["profile"],
    ]


def city_workbook_path(period_label: str) -> Path:
    return config.output_dir() / OUTPUT_SUBDIR / period_label / f"预付对账台账_{period_label}.xlsx"


def branch_workbook_path(period_label: str, branch_code: str) -> Path:
    return config.output_dir() / OUTPUT_SUBDIR / period_label / f"预付对账台账_{branch_code}_{period_label}.xlsx"


def _criteria(settings: PrepaymentSettings) -> tuple[list[str], list[list]]:
    disbursement = "；".join(f"第{m}个月起 {fmt_percent(f)}" for m, f in settings.disbursement_schedule)
    recovery = "；".join(f"第{m}个月 {fmt_percent(f)}" for m, f in settings.recovery_schedule)
    tolerance = fmt_yuan(settings.tolerance)
    header = ["规则代码", "名称", "判定口径", "预警级别"]
    rows = [
        [UNDER_DISBURSED, rule_title(UNDER_DISBURSED),
         f"截至节点日已拨付 < 应拨付 − {tolerance}；应拨付 = 约定采购金额合计 × 拨付比例（{disbursement}）", "高（同时报市局）"],
        [RECOVERY_SHORT, rule_title(RECOVERY_SHORT),
         f"截至节点日已归还 < 应归还 − {tolerance}；应归还 = {settings.base_zh} × 累计归还比例（{recovery}），"
         f"不超过已拨付", "高"],
        [OVER_RECOVERED, rule_title(OVER_RECOVERED), f"截至节点日已归还 > 已拨付 + {tolerance}", "严重"],
        ["", "口径说明",
         f"政策口径 {settings.profile_name}；适用 {'、'.join(OWNERSHIP_ZH.get(o, o) for o in settings.ownerships)}"
         f"医疗机构；节点为协议年度执行第{'、'.join(str(k) for k in settings.milestones)}个月末，协议年度不足"
         f"{settings.final_milestone}个月的，最后节点为协议年度末；预付款交易按日期归入所在协议年度（早于首个年度的归首个年度，"
         f"年度间隔或末年度之后的归前一年度）", ""],
    ]
    return header, rows


def write_workbooks(rows: list[dict], run: RunContext, settings: PrepaymentSettings,
                    branches: dict, city_code: str) -> dict[str, list[Path]]:
    """The city-wide ledger (keyed by the city's code) and one per branch."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx

    criteria = _criteria(settings)
    written: dict[str, list[Path]] = {}
    if rows:
        city_path = city_workbook_path(run.period.label)
        city_path.parent.mkdir(parents=True, exist_ok=True)
        write_xlsx(city_path, {
            "预付对账台账": (SHEET_HEADER, [_sheet_row(row, branches) for row in rows]),
            "对账口径": criteria,
        })
        written[city_code] = [city_path]
    by_branch: dict[str, list[dict]] = {}
    for row in rows:
        by_branch.setdefault(row["branch_code"], []).append(row)
    for branch_code, branch_rows in sorted(by_branch.items()):
        path = branch_workbook_path(run.period.label, branch_code)
        write_xlsx(path, {
            "预付对账台账": (SHEET_HEADER, [_sheet_row(row, branches) for row in branch_rows]),
            "对账口径": criteria,
        })
        written.setdefault(branch_code, []).append(path)
    _remove_stale(run, {path for paths in written.values() for path in paths})
    return written


def _remove_stale(run: RunContext, kept: set[Path]) -> None:
    """The workbooks show the whole month's ledger: any other file of the month is stale."""
    folder = config.output_dir() / OUTPUT_SUBDIR / run.period.label
    if not folder.is_dir():
        return
    for path in folder.glob("预付对账台账_*.xlsx"):
        if path not in kept:
            path.unlink()
