"""Monthly purchase facts: one aggregation pass over a month's order lines (DAG 2).

Every monthly-monitoring rule reads ``purchase_facts`` instead of the order lines: a month
is built by ONE ``INSERT … SELECT … GROUP BY`` over its lines (``include/sql/
facts_build_month.sql``), keyed by (segment_start, institution, product, channel, unit
price). ``segment_start`` splits the month at agreement-period boundaries, so partial-month
figures of an agreement year are exact sums of whole segments.

``purchase_facts_months`` is the cache index: a listed month is built and reused by every
later run (cumulative selected quantities sum earlier months too). Ingest must call
:func:`clear_purchase_facts` whenever orders or agreements change (and may on products or
batches), so a stale month is never read.

Parallel backfills may build the same month at once. A build is one transaction (delete the
month, insert it, list it); when two collide, PostgreSQL lets one of them fail on the
primary key and SQLite serialises the writers (busy_timeout): the loser rolls back,
re-checks the index and finds the month built.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy import delete, text
from sqlalchemy.exc import IntegrityError, OperationalError

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.formatting import as_date
from vbp_monitor.core.periods import JudgedPeriod
from vbp_monitor.core.prc_calendar import add_months, month_bounds
from vbp_monitor.model.schema import purchase_facts, purchase_facts_months

log = logging.getLogger(__name__)

BUILD_ATTEMPTS = 5
# A cold cache of at least this many months is built in one transaction (build_months_in_bulk).
BULK_MIN_MONTHS = 3
FACTS_KEY_NAME = "purchase_facts_pkey"


def month_starts(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the calendar months from ``first``'s month to ``last``'s, inclusive."""
    current, end = first.replace(day=1), last.replace(day=1)
    months = []
    while current <= end:
        months.append(current)
        current = add_months(current, 1)
    return months


@dataclass(frozen=True)
class FactsCoverage:
    """The months of facts a judged month reads: from ``first_month`` to ``month_start``."""

    month_start: dt.date
    first_month: dt.date
    built: tuple[dt.date, ...]  # months this call built (the rest were cached)

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


def built_months(conn, first_month: dt.date, last_month: dt.date) -> dict[dt.date, int]:
    """Built months in the range -> their line count."""
    rows = sqlfiles.query(conn, "facts_built_months", first_month=first_month, last_month=last_month)
    return {as_date(row["month_start"]): int(row["line_count"]) for row in rows}


def is_built(conn, month_start: dt.date) -> bool:
    return month_start in built_months(conn, month_start, month_start)


def refresh_planner_statistics(conn, table_name: str) -> None:
    """PostgreSQL plans with the statistics of the last ANALYZE: a table rewritten in bulk
    (a month of facts, a month of 一院一档) would be planned as nearly empty, with nested
    loops over a million rows. SQLite keeps no statistics unless asked: nothing to do."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {table_name}"))


def build_month(engine, month_start: dt.date, force: bool = False, analyze: bool = True) -> bool:
    """Build one month's facts unless cached; True when this call built it.

    ``analyze=False``: the caller refreshes the planner statistics once after a series."""
    month_start = month_start.replace(day=1)
    month_end = month_bounds(month_start)[1]
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        if not force:
            with engine.connect() as conn:
                if is_built(conn, month_start):
                    return False
        try:
            with engine.begin() as conn, planner_settings(conn, work_mem="64MB"):  # (the GROUP BY in memory)
                sqlfiles.execute(conn, "facts_build_month", month_start=month_start,
                                 month_end=month_end, built_at=dt.datetime.now(dt.UTC))
                if analyze:
                    refresh_planner_statistics(conn, "purchase_facts")
            log.info("purchase facts built for %s", month_start.strftime("%Y-%m"))
            return True
        except (IntegrityError, OperationalError) as exc:
            # A parallel run built (or is building) the same month: roll back, re-check.
            # (PostgreSQL serialization failures and deadlocks are OperationalErrors too.)
            if attempt == BUILD_ATTEMPTS:
                raise
            log.info("purchase facts for %s collided with another build (%s); re-checking",
                     month_start.strftime("%Y-%m"), type(exc).__name__)
            force = False
            time.sleep(0.2 * attempt)
    return False  # pragma: no cover


class _NotEmpty(Exception):
    """The facts table filled up while a bulk build waited for its lock."""


def build_months_in_bulk(engine, months: list[dt.date]) -> bool:
    """PostgreSQL, empty cache: build ``months`` in one transaction with the primary key
    dropped and rebuilt once at the end. Maintaining the six-column key row by row costs
    most of a month's build (measured: ~2.5 s of ~3 s per 100,000 facts, against ~0.5 s a
    month for one sorted index build); a cold cache (after every ingest of orders) needs
    all the agreement year's months at once. True when built; False (nothing changed) on
    SQLite, when the table is not empty, or when another run got there first.

    The ACCESS EXCLUSIVE lock of ``ALTER TABLE`` holds readers and other builders of the
    facts until the commit; the emptiness is checked again under it, so a second cold run
    waiting for the lock finds the months built instead of building them twice."""
    if engine.dialect.name != "postgresql" or len(months) < BULK_MIN_MONTHS:
        return False
    try:
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE purchase_facts, purchase_facts_months IN ACCESS EXCLUSIVE MODE"))
            if conn.execute(text("SELECT EXISTS (SELECT 1 FROM purchase_facts) "
                                 "OR EXISTS (SELECT 1 FROM purchase_facts_months)")).scalar():
                raise _NotEmpty
            key = ", ".join(column.name for column in purchase_facts.primary_key.columns)
            conn.execute(text(f"ALTER TABLE purchase_facts DROP CONSTRAINT {FACTS_KEY_NAME}"))
            built_at = dt.datetime.now(dt.UTC)
            with planner_settings(conn, work_mem="64MB"):  # (each month's GROUP BY in memory)
                for month_start in months:
                    sqlfiles.execute(conn, "facts_build_month", month_start=month_start,
                                     month_end=month_bounds(month_start)[1], built_at=built_at)
            with planner_settings(conn, maintenance_work_mem="256MB"):  # (the key's sort in memory)
                conn.execute(text(f"ALTER TABLE purchase_facts ADD CONSTRAINT {FACTS_KEY_NAME} "
                                  f"PRIMARY KEY ({key})"))
            refresh_planner_statistics(conn, "purchase_facts")
    except (_NotEmpty, IntegrityError, OperationalError) as exc:
        log.info("purchase facts not built in bulk (%s): month by month instead", type(exc).__name__)
        return False
    log.info("purchase facts built in bulk for %s … %s", months[0].strftime("%Y-%m"), months[-1].strftime("%Y-%m"))
    return True


def ensure_facts(engine, period: JudgedPeriod) -> FactsCoverage:
    """Build the missing months the judged month reads (M and earlier agreement months)."""
    with engine.connect() as conn:
        needed = months_needed(conn, period)
        cached = built_months(conn, needed[0], needed[-1])
    if not cached and build_months_in_bulk(engine, needed):
        return FactsCoverage(period.first_day, needed[0], tuple(needed))
    # One ANALYZE after the series (each costs a sample of the whole table), not one a month.
    built = tuple(month for month in needed
                  if month not in cached and build_month(engine, month, analyze=False))
    if built:
        with engine.begin() as conn:
            refresh_planner_statistics(conn, "purchase_facts")
    return FactsCoverage(period.first_day, needed[0], built)


def clear_purchase_facts(conn) -> None:
    """Drop the whole cache (ingest: orders, agreements, products or batches changed)."""
    conn.execute(delete(purchase_facts))
    conn.execute(delete(purchase_facts_months))
