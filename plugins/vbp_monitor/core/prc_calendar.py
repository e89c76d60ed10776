"""The one PRC working-day calendar every rule, schedule and message uses.

Statutory calendar from ``chinesecalendar`` (2004–2026), overridden by the ``holidays``
table that operators fill when the State Council publishes a new year. A day outside every
known year falls back to Monday–Friday; callers learn it through ``is_fallback`` so the
alerts it affects can say so.
"""
from __future__ import annotations

import calendar as _stdlib_calendar
import datetime as dt
import logging
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

FALLBACK_NOTE = "（注：{years}年法定节假日安排尚未载入，工作日暂按周一至周五计算）"


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar-month arithmetic; a day missing in the target month becomes its last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = _stdlib_calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day.day, last))


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    first = day.replace(day=1)
    last = first.replace(day=_stdlib_calendar.monthrange(first.year, first.month)[1])
    return first, last


def cycle_month_bounds(period_start: dt.date, k: int) -> tuple[dt.date, dt.date]:
    """Cycle month k (1-based) of an agreement year: domain.md › cycle month k."""
    start = add_months(period_start, k - 1)
    end = add_months(period_start, k) - dt.timedelta(days=1)
    return start, end


class WorkCalendar:
    """PRC working days: statutory calendar, then operator overrides, else Mon–Fri."""

    def __init__(self, overrides: Mapping[dt.date, bool] | None = None):
        self.overrides = dict(overrides or {})
        self.fallback_years: set[int] = set()

    # -- single days -------------------------------------------------------------
    def source(self, day: dt.date) -> str:
        if day in self.overrides:
            return "override"
        return "statutory" if self.is_statutory_year(day.year) else "fallback"

    @staticmethod
    def is_statutory_year(year: int) -> bool:
        import chinese_calendar

        try:
            chinese_calendar.is_workday(dt.date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_fallback(self, day: dt.date) -> bool:
        return self.source(day) == "fallback"

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        import chinese_calendar

        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self.fallback_years:
                self.fallback_years.add(day.year)
                log.warning(
                    "No statutory calendar for %s: working days fall back to Monday–Friday "
                    "until holidays.csv provides the year.", day.year,
                )
            return day.weekday() < 5

    # -- spans -------------------------------------------------------------------
    def nth_working_day_after(self, day: dt.date, n: int) -> dt.date:
        """The n-th working day after ``day`` (``day`` itself not counted)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        current, found = day, 0
        while found < n:
            current += dt.timedelta(days=1)
            if self.is_working_day(current):
                found += 1
        return current

    def first_working_day_of_month(self, year: int, month: int) -> dt.date:
        day = dt.date(year, month, 1)
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def fallback_note(self, days: Iterable[dt.date]) -> str:
        """A sentence for an alert message when any of ``days`` used the fallback."""
        years = sorted({d.year for d in days if d is not None and self.is_fallback(d)})
        if not years:
            return ""
        return FALLBACK_NOTE.format(years="、".join(str(y) for y in years))


STATUTORY = WorkCalendar()


def is_working_day(day: dt.date) -> bool:
    return STATUTORY.is_working_day(day)


def nth_working_day_after(day: dt.date, n: int) -> dt.date:
    return STATUTORY.nth_working_day_after(day, n)


# ------------------------------------------------------------------ warehouse tables
CALENDAR_FIRST_DAY = dt.date(2015, 1, 1)
CALENDAR_LAST_DAY = dt.date(2032, 12, 31)


def load_calendar(conn) -> WorkCalendar:
    """The calendar with the warehouse's ``holidays`` overrides."""
    from sqlalchemy import select

    from vbp_monitor.model.schema import holidays

    rows = conn.execute(select(holidays.c.day, holidays.c.is_workday)).all()
    return WorkCalendar({row.day: bool(row.is_workday) for row in rows})


def rebuild_work_calendar(conn) -> int:
    """Materialise the calendar into ``work_calendar`` (one row per day)."""
    from sqlalchemy import delete, insert

    from vbp_monitor.model.schema import work_calendar

    cal = load_calendar(conn)
    # The table spans years beyond the statutory data on purpose; its ``source`` column
    # records the fallback, so materialising it should not warn once per future year.
    cal.fallback_years.update(range(CALENDAR_FIRST_DAY.year, CALENDAR_LAST_DAY.year + 2))
    days = []
    day = CALENDAR_FIRST_DAY
    while day <= CALENDAR_LAST_DAY + dt.timedelta(days=40):
        days.append(day)
        day += dt.timedelta(days=1)
    flags = [cal.is_working_day(d) for d in days]
    # next working day strictly after each day, filled from the end
    next_workday: list[dt.date | None] = [None] * len(days)
    upcoming = None
    for i in range(len(days) - 1, -1, -1):
        next_workday[i] = upcoming
        if flags[i]:
            upcoming = days[i]
    rows, seq = [], 0
    for i, d in enumerate(days):
        if d > CALENDAR_LAST_DAY:
            break
        seq += flags[i]
        month_start, month_end = month_bounds(d)
        rows.append({
            "day": d,
            "day_ordinal": d.toordinal(),
            "is_workday": flags[i],
            "workday_seq": seq,
            "next_workday": next_workday[i],
            "month_start": month_start,
            "month_end": month_end,
            "next_month_end": month_bounds(month_end + dt.timedelta(days=1))[1],
            "source": cal.source(d),
        })
    conn.execute(delete(work_calendar))
    conn.execute(insert(work_calendar), rows)
    return len(rows)


def ensure_work_calendar(conn) -> None:
    from sqlalchemy import func, select

    from vbp_monitor.model.schema import work_calendar

    if not conn.execute(select(func.count()).select_from(work_calendar)).scalar():
        rebuild_work_calendar(conn)


def ensure_cycle_month_calendar(conn, months: int = 24) -> None:
    """Cycle months 1..``months`` for every agreement period_start (a small table)."""
    from sqlalchemy import select

    from vbp_monitor.model.schema import agreements, cycle_month_calendar

    known = set(conn.execute(select(cycle_month_calendar.c.period_start).distinct()).scalars())
    starts = set(conn.execute(select(agreements.c.period_start).distinct()).scalars())
    rows = []
    for period_start in sorted(starts - known):
        for k in range(1, months + 1):
            first, last = cycle_month_bounds(period_start, k)
            rows.append({"period_start": period_start, "cycle_month": k,
                         "month_start": first, "month_end": last})
    if rows:
        # parallel backfills may add the same start at once: first writer wins
        stmt = _insert_ignoring_duplicates(conn, cycle_month_calendar)
        conn.execute(stmt, rows)


def _insert_ignoring_duplicates(conn, table):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing()
