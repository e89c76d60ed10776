"""Monthly purchase facts in two grains: one aggregation pass each (DAG 2).

Every monthly-monitoring rule reads the facts instead of the order lines:

* ``purchase_facts``: the judged month in full, keyed by (segment_start, institution,
  product, channel, unit price) — ``include/sql/facts_build_month.sql``; the price rules
  need the price, the online rules the channel.
* ``selected_purchase_facts``: of every month of the agreement years active in M, only
  what the cumulative figures sum — platform purchases of selected products by segment,
  institution and product (``facts_build_selected.sql``: a quarter of the rows; the
  missing earlier months of a run in ONE pass over their lines; the judged month's summed
  from its full facts, ``facts_build_selected_from_month.sql``).

``segment_start`` splits a month at agreement-period boundaries, so partial-month figures
of an agreement year are exact sums of whole segments.

``purchase_facts_months`` and ``selected_purchase_facts_months`` are the cache indexes: a
listed month is built and reused by every later run. A facts row belongs to the calendar
month of its lines' order_date, so an ingest of orders clears only the months it changed
(``model.schema.clear_facts_cache``): of the loaded lines' order_date and of the order_date
an updated line had before; one of products, batches or agreements clears every month. A
stale month is never read.

Parallel backfills may build the same month at once. A build is one transaction that lists
its months in the index first, then deletes and inserts their facts: when two collide,
PostgreSQL makes the second wait on the index's key and fail, SQLite serialises the writers
(busy_timeout); the loser rolls back, re-checks the index and finds the month built.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Table, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.formatting import as_date
from vbp_monitor.core.periods import JudgedPeriod
from vbp_monitor.core.prc_calendar import add_months, month_bounds
from vbp_monitor.model.schema import purchase_facts_months, selected_purchase_facts_months

log = logging.getLogger(__name__)

BUILD_ATTEMPTS = 5
# The one GROUP BY of a build holds its groups in memory (a month in full: ~560,000 groups
# at 1,000,000 lines) or spills little (13 months of selected purchases: ~2.1 million).
BUILD_WORK_MEM = "256MB"
# On PostgreSQL M in full and the selected months are built side by side. Measured at
# 1,000,000 lines a month, cold: 14.6 s side by side, 17.8 s one after the other; cutting the
# selected months into more builds at once gained nothing (two index scans at once each ran
# at half speed).
FACTS_BUILD_WORKERS = 2


def month_starts(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the calendar months from ``first``'s month to ``last``'s, inclusive."""
    current, end = first.replace(day=1), last.replace(day=1)
    months = []
    while current <= end:
        months.append(current)
        current = add_months(current, 1)
    return months


def contiguous_runs(months: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted month starts as (first, last) runs of consecutive months."""
    runs: list[tuple[dt.date, dt.date]] = []
    for month in sorted(months):
        if runs and add_months(runs[-1][1], 1) == month:
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs


@dataclass(frozen=True)
class FactsCoverage:
    """The facts a judged month reads: M in full, and the selected purchases of every month
    from ``first_month`` to ``month_start``."""

    month_start: dt.date
    first_month: dt.date
    built: tuple[dt.date, ...]  # months whose facts (of either grain) this call built

    def as_dict(self) -> dict:
        return {"month": self.month_start.isoformat(), "first_month": self.first_month.isoformat(),
                "built": [m.isoformat() for m in self.built]}


def months_needed(conn, period: JudgedPeriod) -> list[dt.date]:
    """M and every earlier month back to the earliest period_start active in M."""
    (row,) = sqlfiles.query(conn, "facts_months_needed",
                            month_start=period.first_day, month_end=period.last_day)
    earliest = as_date(row["earliest_period_start"])
    first = min(earliest, period.first_day) if earliest else period.first_day
    return month_starts(first, period.first_day)


def built_months(conn, first_month: dt.date, last_month: dt.date,
                 index: Table = purchase_facts_months) -> dict[dt.date, int]:
    """Built months in the range (of ``index``: the full or the selected facts) -> their line count."""
    rows = conn.execute(select(index.c.month_start, index.c.line_count)
                        .where(index.c.month_start >= first_month, index.c.month_start <= last_month))
    return {as_date(row.month_start): int(row.line_count) for row in rows}


def is_built(conn, month_start: dt.date) -> bool:
    return month_start in built_months(conn, month_start, month_start)


def refresh_planner_statistics(conn, table_name: str) -> None:
    """PostgreSQL plans with the statistics of the last ANALYZE: a table rewritten in bulk
    (a month of facts, a month of 一院一档) would be planned as nearly empty, with nested
    loops over a million rows. SQLite keeps no statistics unless asked: nothing to do."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {table_name}"))


def _build(engine, what: str, missing: Callable[[], bool], write: Callable) -> bool:
    """Run ``write(conn)`` in one transaction unless ``missing()`` says the months are built;
    on a collision with a parallel build, roll back and re-check. True when this call built."""
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        if not missing():
            return False
        try:
            with engine.begin() as conn, planner_settings(conn, work_mem=BUILD_WORK_MEM):
                write(conn)
            log.info("%s built", what)
            return True
        except (IntegrityError, OperationalError) as exc:
            # A parallel run built (or is building) the same month: roll back, re-check.
            # (PostgreSQL serialization failures and deadlocks are OperationalErrors too.)
            if attempt == BUILD_ATTEMPTS:
                raise
            log.info("%s collided with another build (%s); re-checking", what, type(exc).__name__)
            time.sleep(0.2 * attempt)
    return False  # pragma: no cover


def build_month(engine, month_start: dt.date, force: bool = False) -> bool:
    """Build one month's full facts unless cached; True when this call built it."""
    month_start = month_start.replace(day=1)

    def missing() -> bool:
        nonlocal force
        if force:
            force = False  # (a retry after a collision re-checks the index)
            return True
        with engine.connect() as conn:
            return not is_built(conn, month_start)

    def write(conn) -> None:
        sqlfiles.execute(conn, "facts_build_month", month_start=month_start,
                         month_end=month_bounds(month_start)[1], built_at=dt.datetime.now(dt.UTC))
        refresh_planner_statistics(conn, "purchase_facts")

    return _build(engine, f"purchase facts of {month_start:%Y-%m}", missing, write)


def build_selected_months(engine, first_month: dt.date, last_month: dt.date) -> bool:
    """Build the selected facts of the consecutive months ``first_month`` .. ``last_month``
    in one pass, unless one of them is cached already (then the caller asks again for the
    months still missing); True when this call built them."""
    first_day, last_day = first_month.replace(day=1), month_bounds(last_month)[1]

    def missing() -> bool:
        with engine.connect() as conn:
            return not built_months(conn, first_day, last_day, selected_purchase_facts_months)

    def write(conn) -> None:
        sqlfiles.execute(conn, "facts_build_selected", first_day=first_day, last_day=last_day,
                         built_at=dt.datetime.now(dt.UTC))
        refresh_planner_statistics(conn, "selected_purchase_facts")

    return _build(engine, f"selected purchase facts of {first_day:%Y-%m} … {last_day:%Y-%m}", missing, write)


class FullFactsGone(RuntimeError):
    """The month's full facts were cleared (an ingest) before its selected facts were
    derived from them: derive nothing, build from the order lines instead."""


def build_selected_from_full(engine, month_start: dt.date) -> bool:
    """Build one month's selected facts from its full facts (``purchase_facts``, cached)
    unless cached already; True when this call built them. Raises :class:`FullFactsGone`
    (rolled back) when the full facts are no longer listed."""
    month_start = month_start.replace(day=1)

    def missing() -> bool:
        with engine.connect() as conn:
            return not built_months(conn, month_start, month_start, selected_purchase_facts_months)

    def write(conn) -> None:
        sqlfiles.execute(conn, "facts_build_selected_from_month", month_start=month_start,
                         built_at=dt.datetime.now(dt.UTC))
        # (after the index's lock: an ingest that cleared the month has committed by now)
        if not is_built(conn, month_start):
            raise FullFactsGone(f"purchase facts of {month_start:%Y-%m} were cleared")
        refresh_planner_statistics(conn, "selected_purchase_facts")

    return _build(engine, f"selected purchase facts of {month_start:%Y-%m} (from its full facts)", missing, write)


def _build_selected_runs(engine, months: list[dt.date], pool: ThreadPoolExecutor | None = None) -> set[dt.date]:
    """Build the selected facts of ``months`` not cached, one pass over the lines per run of
    consecutive months (the runs side by side in ``pool`` when given); the months this call built."""
    built: set[dt.date] = set()
    if not months:
        return built
    for _attempt in range(BUILD_ATTEMPTS):
        with engine.connect() as conn:
            cached = built_months(conn, months[0], months[-1], selected_purchase_facts_months)
        runs = contiguous_runs([month for month in months if month not in cached])
        if not runs:
            break
        # (a run that found one of its months built by a parallel run is asked again)
        each = pool.map if pool is not None else map
        for (first, last), done in zip(runs, each(lambda run: build_selected_months(engine, *run), runs)):
            if done:
                built.update(month_starts(first, last))
    return built


def ensure_facts(engine, period: JudgedPeriod) -> FactsCoverage:
    """Build what the judged month reads and is not cached: M in full, and the selected
    purchases of M and the earlier months of its agreement years.

    The earlier months' selected facts come from one pass over their order lines; M's from
    M's full facts once they are built (a second pass over M's lines would cost more). On
    PostgreSQL the full build of M and the earlier months' pass run side by side on their
    own connections (an ``INSERT … SELECT`` gets no parallel workers of its own); SQLite
    serialises its writers, so one after the other."""
    with engine.connect() as conn:
        needed = months_needed(conn, period)
    workers = FACTS_BUILD_WORKERS if engine.dialect.name == "postgresql" else 1
    month = period.first_day
    with ThreadPoolExecutor(max_workers=workers) as pool:
        full = pool.submit(build_month, engine, month)
        built = _build_selected_runs(engine, [m for m in needed if m != month], pool)
        if full.result():
            built.add(month)
    try:
        if build_selected_from_full(engine, month):
            built.add(month)
    except FullFactsGone:
        log.info("purchase facts of %s were cleared meanwhile: its selected facts come from its lines",
                 f"{month:%Y-%m}")
        built |= _build_selected_runs(engine, [month])
    return FactsCoverage(month, needed[0], tuple(sorted(built)))
