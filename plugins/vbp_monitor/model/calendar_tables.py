"""The PRC calendar materialised in the warehouse, so that rule SQL joins dates.

``work_calendar`` (one row per day: working-day flag, sequence, next working day, month
ends) is built from ``core.prc_calendar`` plus the operators' ``holidays`` overrides;
``cycle_month_calendar`` holds cycle months 1..24 of every agreement start.
"""
from __future__ import annotations

import datetime as dt

from vbp_monitor.core.prc_calendar import WorkCalendar, cycle_month_bounds, month_bounds

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

    from vbp_monitor.core.db import upsert
    from vbp_monitor.model.schema import agreements, cycle_month_calendar

    known = set(conn.execute(select(cycle_month_calendar.c.period_start).distinct()).scalars())
    starts = set(conn.execute(select(agreements.c.period_start).distinct()).scalars())
    rows = []
    for period_start in sorted(starts - known):
        for k in range(1, months + 1):
            first, last = cycle_month_bounds(period_start, k)
            rows.append({"period_start": period_start, "cycle_month": k,
                         "month_start": first, "month_end": last})
    # parallel backfills may add the same start at once: first writer wins
    upsert(conn, cycle_month_calendar, rows, update_columns=[])
