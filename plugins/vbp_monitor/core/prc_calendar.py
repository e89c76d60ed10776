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
