"""DAG 2 · 按月监测, 一院一档 (monthly monitoring) — domain.md DAG 2.

seed 002 §二(三)(四), seed 001 §五(一)(三), seed 004 §二(一). A run judges one calendar
month M (``periods.judged_month``) with the records dated on or before its last day.

Flow: ``validate`` checks the rows the run reads while ``build_facts`` aggregates M's order
lines once into ``purchase_facts`` and the selected purchases of the months the cumulative
figures need into ``selected_purchase_facts``, if not cached (``rules.purchase_facts``);
``judge`` writes the institution file (``institution_file_metrics``, one row per agreement
active in M), computes the rule codes of ``catalog.DAGS[DAG_ID]`` with set-based SQL over
the facts (the payment and filing rules read only the orders whose deadline falls in M, by
index-friendly date ranges), writes them through the AlertStore, and writes each branch's
execution report (``outputs.execution_report``).

Rule families, one module each (condition in ``include/sql/monitoring_*.sql``, parameters
and citations in the profile's ``[monitoring]``, title/severity/routing in the catalog):

* ``agreements``: PROGRESS_BEHIND (metric = completion rate, threshold = the broken ratio ×
  time progress, 4 places; warning below ``progress_warning_ratio``, high below
  ``progress_high_ratio``; only when time progress ≥ ``progress_min_time_progress`` and the
  agreed quantity > 0), SELECTED_SHARE_LOW (selected quantity share in M / agreed ratio).
* ``prices``: NON_SELECTED_HIGH_PRICE / ONLY_NON_SELECTED (amount of the high-priced
  non-selected purchases in M / the generic's highest selected price in M),
  NON_EVALUATED_PURCHASE (amount of non-evaluated products bought in M / 0).
* ``online``: ONLINE_RATE_LOW / BRANCH_ONLINE_RATE_LOW (online rate by amount / the
  category's minimum).
* ``deadlines``: OFFLINE_NOT_FILED (0 / 1), OFFLINE_FILED_LATE (the working day the filing
  fell on / ``offline_filing_working_days``), PAYMENT_OVERDUE (amount unpaid by the
  deadline / 0).
* ``supply``: SELECTED_PRICE_EXCEEDED (highest unit price paid in M / the selected price,
  lines dated inside the batch's cycle), SANCTIONED_SUPPLIER_PURCHASE (public institutions'
  amount bought in M from a maker sanctioned on the order day / 0; a blank sanction end is
  ``sanction_years`` after its start).
* ``rectification``: RECTIFICATION_OVERDUE (consecutive months ending with M with an open
  alert of the agreement, price or online-rate rules / ``rectification_months``), read
  from the alerts table by a second store write after the others, in the same transaction.

Scope: a branch filter judges that branch's institutions (and its branch-level rate); a
batch filter judges only the batch-bearing rules (the two agreement rules) for that batch
and skips the others, which keep their alerts (RECTIFICATION_OVERDUE too: the next
unfiltered run of M re-reads the alerts).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import TYPE_CHECKING

from vbp_monitor.alerts.candidates import one_per_key
from vbp_monitor.alerts.store import JudgeResult, WriteResult
from vbp_monitor.core import sqlfiles
from vbp_monitor.core.catalog import DAGS
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.outputs.execution_report import write_branch_reports
from vbp_monitor.rules.monitoring.agreements import PROGRESS, SHARE, agreement_candidates
from vbp_monitor.rules.monitoring.common import DAG_ID, EPS, MonitoringSettings
from vbp_monitor.rules.monitoring.deadlines import (
    filing_candidates,
    payment_acceptance_window,
    payment_candidates,
)
from vbp_monitor.rules.monitoring.online import online_candidates
from vbp_monitor.rules.monitoring.prices import non_evaluated_candidates, price_candidates
from vbp_monitor.rules.monitoring.rectification import RECTIFICATION, rectification_candidates
from vbp_monitor.rules.monitoring.supply import price_exceeded_candidates, sanctioned_candidates
from vbp_monitor.rules.purchase_facts import FactsCoverage, ensure_facts, refresh_planner_statistics

if TYPE_CHECKING:  # pragma: no cover
    from vbp_monitor.orchestration.run_context import RunContext
    from vbp_monitor.quality.validation import Where

__all__ = [
    "BATCH_CODES", "CODES", "DAG_ID", "MonitoringSettings", "build_facts", "judge", "validate",
    "validation_scope", "write_institution_file",
]

log = logging.getLogger(__name__)

CODES = DAGS[DAG_ID].rule_codes
# RECTIFICATION_OVERDUE reads the month's other alerts: written by a second store write.
FIRST_CODES = tuple(code for code in CODES if code != RECTIFICATION)
# Rules whose subject carries a batch: the only ones a batch-filtered run judges.
BATCH_CODES = (PROGRESS, SHARE)
# The families of institution × month and order rules (no batch in their subject).
OTHER_FAMILIES = (price_candidates, online_candidates, filing_candidates,
                  non_evaluated_candidates, payment_candidates,
                  price_exceeded_candidates, sanctioned_candidates)
# Filing deadlines (7 working days by default) never reach back more than ~3 weeks, even
# across Spring Festival: orders this far before M cover any profile's filing window.
FILING_LOOKBACK_DAYS = 45


# ------------------------------------------------------------------ validation & facts
def validation_scope(run: RunContext, profile: dict | None = None) -> dict[str, Where | None]:
    """The rows this DAG reads, for ``validation.validate_tables``: M's order lines (the
    facts), off-platform lines whose filing deadline can fall in M, and accepted lines whose
    payment deadline can. Earlier months reach the rules only through cached facts,
    validated by the runs that judged them."""
    from vbp_monitor.quality.validation import Where

    settings = MonitoringSettings.from_profile(profile or load_profile())
    accept_from, accept_to = payment_acceptance_window(run.period, settings.private_payment_days)
    filing_from = run.period.first_day - dt.timedelta(days=FILING_LOOKBACK_DAYS)
    return {
        "branches": None,
        "institutions": None,
        "batches": None,
        "products": None,
        "agreements": None,
        "orders": Where(
            "(order_date >= :first_day AND order_date <= :last_day)"
            " OR (channel = 'offline' AND order_date >= :filing_from AND order_date <= :last_day)"
            " OR (acceptance_date >= :accept_from AND acceptance_date <= :accept_to)",
            filing_from=filing_from, accept_from=accept_from, accept_to=accept_to,
        ),
        "offline_filings": Where("filed_date >= :filing_from AND filed_date <= :last_day",
                                 filing_from=filing_from),
        "payments": Where("payment_date >= :accept_from AND payment_date <= :last_day",
                          accept_from=accept_from),
        "holidays": None,
        "supplier_sanctions": None,
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
    # PostgreSQL takes institution and generic name for independent and underestimates the
    # facts × agreements join a hundredfold: it would sort the facts by text keys for a
    # merge join, spilling to disk. Hashed in memory instead (planner_settings). It takes the
    # agreements for a few hundred groups too and sorts 1.4 million fact rows by agreement_id
    # (text) to aggregate them, on disk: hashed instead (enable_sort off; 115,200 groups in
    # memory; measured at 1,000,000 lines a month, median of 3: 8.9 s → 7.5 s). No JIT: its
    # compilation (0.7 s at 1,000,000 lines a month) costs more than it saves here.
    with planner_settings(conn, work_mem="64MB", enable_mergejoin="off", enable_sort="off", jit="off"):
        sqlfiles.execute(
            conn, "monitoring_institution_file",
            period=run.period.label, month_start=run.period.first_day, month_end=run.period.last_day,
            first_month=coverage.first_month, branch_code=run.scope.branch_code,
            batch_code=run.scope.batch_code,
        )
    refresh_planner_statistics(conn, "institution_file_metrics")


# ------------------------------------------------------------------ the run
def merged(first: WriteResult, second: WriteResult) -> WriteResult:
    """The figures of two store writes of one run, as one."""
    return WriteResult(raised=first.raised + second.raised, new=first.new + second.new,
                       resolved=first.resolved + second.resolved, by_rule=first.by_rule + second.by_rule)


def other_candidates(engine, run: RunContext, settings: MonitoringSettings) -> list[dict]:
    """The candidates of the families that do not read the institution file, on a
    connection of their own (read only): one list, in ``OTHER_FAMILIES`` order. They run
    beside the institution file's INSERT … SELECT, which PostgreSQL runs on one core: without
    parallel workers of their own, so that they take the other core and leave it that one
    (with workers, the institution file, and the reports waiting for it, ran at half speed)."""
    with engine.connect() as conn, conn.begin(), planner_settings(conn, max_parallel_workers_per_gather="0"):
        return list(chain.from_iterable(family(conn, run, settings) for family in OTHER_FAMILIES))


def judge(engine, run: RunContext, profile: dict | None = None, write_reports: bool = True) -> JudgeResult:
    """Judge month M: institution file, the rule codes, the branches' execution reports.

    On PostgreSQL three things run at once, each on its own connection: the rule families
    that do not read the institution file start beside its INSERT … SELECT; once it is
    committed, the reports (Python, one core; they read only the institution file and the
    facts) are written while the agreement rules run and every alert is stored. SQLite
    would hold the rules' commit behind the reports' long read: there one after the other."""
    settings = MonitoringSettings.from_profile(profile or load_profile())
    coverage = ensure_facts(engine, run.period)  # cheap when build_facts already ran
    batch_only = bool(run.scope.batch_code)
    codes = BATCH_CODES if batch_only else CODES
    beside = engine.dialect.name == "postgresql"
    with ThreadPoolExecutor(max_workers=2) as pool:
        others = pool.submit(other_candidates, engine, run, settings) if beside and not batch_only else None
        with engine.begin() as conn:
            write_institution_file(conn, run, coverage)
        reports = pool.submit(write_branch_reports, engine, run, eps=EPS) if beside and write_reports else None
        with engine.begin() as conn:
            # Two agreement years of one subject can both be active in a boundary month: one
            # alert per key, the more severe, then the later year.
            groups: list[Iterable[dict]] = [one_per_key(agreement_candidates(conn, run, settings))]
            if others is not None:
                groups.append(others.result())
            elif not batch_only:
                # Generators: each rule's query runs when the store reaches it, so one rule's
                # result rows at a time are held (besides the alert rows the store collects).
                groups += [family(conn, run, settings) for family in OTHER_FAMILIES]
            written = run.store.replace(conn, BATCH_CODES if batch_only else FIRST_CODES,
                                        chain.from_iterable(groups), scope=run.scope)
            if not batch_only:
                # after the store wrote M's other alerts, in the same transaction: it reads them
                followed = run.store.replace(conn, (RECTIFICATION,), rectification_candidates(conn, run, settings),
                                             scope=run.scope)
                written = merged(written, followed)
        if reports is not None:
            attachments = reports.result()
        else:
            attachments = write_branch_reports(engine, run, eps=EPS) if write_reports else {}
    result = JudgeResult(period=run.period.label, rule_codes=codes, written=written,
                         attachments=attachments, details={"facts": coverage.as_dict()})
    log.info("%s %s: %s", DAG_ID, run.period.label, result.as_xcom())
    return result
