"""Which period a run judges (operations.md › Runs and periods).

Airflow 3 cron schedules have no data interval: everything is computed from the logical
date converted to Asia/Shanghai (D), never from the wall clock.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from vbp_monitor.core.config import LOCAL_TZ as SHANGHAI
from vbp_monitor.core.prc_calendar import month_bounds


def run_day(logical_date: dt.datetime | dt.date | str) -> dt.date:
    """D: the run's logical date in Asia/Shanghai."""
    if isinstance(logical_date, str):
        logical_date = dt.datetime.fromisoformat(logical_date.replace("Z", "+00:00"))
    if isinstance(logical_date, dt.datetime):
        if logical_date.tzinfo is None:
            logical_date = logical_date.replace(tzinfo=dt.UTC)
        local = logical_date.astimezone(SHANGHAI)
        return dt.date(local.year, local.month, local.day)
    return dt.date(logical_date.year, logical_date.month, logical_date.day)


@dataclass(frozen=True)
class JudgedPeriod:
    """A judged period: a calendar month (monthly DAGs), one day (daily DAGs) or a calendar
    year (the annual assessment)."""

    label: str  # 'YYYY-MM', 'YYYY-MM-DD' or 'YYYY': the alerts' ``period``
    first_day: dt.date
    last_day: dt.date  # the as-of day
    run_day: dt.date  # D

    @property
    def is_month(self) -> bool:
        return len(self.label) == 7

    @property
    def month_label_zh(self) -> str:
        return f"{self.first_day.year}年{self.first_day.month}月"


def judged_month(logical_date) -> JudgedPeriod:
    """Monthly DAGs: the calendar month before D's month."""
    day = run_day(logical_date)
    first, last = month_bounds(day.replace(day=1) - dt.timedelta(days=1))
    return JudgedPeriod(first.strftime("%Y-%m"), first, last, day)


def judged_day(logical_date) -> JudgedPeriod:
    """Daily DAGs: the day before D."""
    day = run_day(logical_date)
    judged = day - dt.timedelta(days=1)
    return JudgedPeriod(judged.isoformat(), judged, judged, day)


def ingest_period(logical_date) -> JudgedPeriod:
    day = run_day(logical_date)
    return JudgedPeriod(day.isoformat(), day, day, day)


def judged_year(logical_date) -> JudgedPeriod:
    """The annual assessment: the calendar year Y = D.year − 1 (label 'YYYY')."""
    day = run_day(logical_date)
    year = day.year - 1
    return JudgedPeriod(str(year), dt.date(year, 1, 1), dt.date(year, 12, 31), day)


# The catalog's ``period_kind`` of a DAG → the period its run with logical date D judges.
PERIOD_OF = {"month": judged_month, "day": judged_day, "ingest": ingest_period, "year": judged_year}


def yearly_cron(month_day: str, run_time: str = "06:00") -> str:
    """A cron (Asia/Shanghai) for once a year on ``month_day`` ('MM-DD') at ``run_time``."""
    month, day = (int(part) for part in str(month_day).split("-"))
    hour, minute = (int(part) for part in run_time.split(":"))
    dt.date(2024, month, day)  # a leap year: rejects impossible days such as 02-30
    return f"{minute} {hour} {day} {month} *"


def as_of_end(day: dt.date) -> dt.datetime:
    """The first instant after ``day``: timestamps strictly before it are "by the end of day"."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
