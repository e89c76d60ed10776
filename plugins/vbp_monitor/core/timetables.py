"""Timetable: the first PRC working day of each month, 06:00 Asia/Shanghai.

The run's logical date is the run time itself (an exact data interval), so D is that
working day and the monthly DAGs judge the month before it (operations.md). The scheduler
uses the statutory calendar (plus the Monday–Friday fallback); operator overrides in the
warehouse's ``holidays`` table are for the rules, not for choosing the run day.
"""
from __future__ import annotations

import datetime as dt

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable
from pendulum import DateTime, instance

from vbp_monitor.core.config import LOCAL_TZ as SHANGHAI
from vbp_monitor.core.prc_calendar import STATUTORY

RUN_TIME = dt.time(6, 0)


def _run_time_of_month(year: int, month: int) -> DateTime:
    day = STATUTORY.first_working_day_of_month(year, month)
    local = dt.datetime.combine(day, RUN_TIME, tzinfo=SHANGHAI)
    return instance(local.astimezone(dt.UTC))


def utcnow() -> dt.datetime:
    """The scheduler's "now" (a module-level function so that tests can set the clock)."""
    return dt.datetime.now(dt.UTC)


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def first_run_at_or_after(moment: dt.datetime) -> DateTime:
    local = moment.astimezone(SHANGHAI)
    year, month = local.year, local.month
    while (candidate := _run_time_of_month(year, month)) < moment:
        year, month = _month_after(year, month)
    return candidate


def last_run_at_or_before(moment: dt.datetime) -> DateTime:
    local = moment.astimezone(SHANGHAI)
    year, month = local.year, local.month
    while (candidate := _run_time_of_month(year, month)) > moment:
        year, month = _month_before(year, month)
    return candidate


class FirstWorkingDayTimetable(Timetable):
    description = "每月第一个工作日 06:00（Asia/Shanghai，中国法定工作日）"

    @property
    def summary(self) -> str:
        return "first PRC working day of the month, 06:00 Asia/Shanghai"

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        # As Airflow's cron timetables do: with catchup the run after the last one (or the
        # first at/after start_date); without it, also never earlier than the latest run time
        # not after now, so unpausing after months queues one run, not one per missed month.
        candidates = []
        if last_automated_data_interval is not None:
            candidates.append(first_run_at_or_after(last_automated_data_interval.end + dt.timedelta(seconds=1)))
        if restriction.earliest is not None:
            candidates.append(first_run_at_or_after(restriction.earliest))
        if not restriction.catchup:
            candidates.append(last_run_at_or_before(utcnow()))
        if not candidates:
            return None
        run_at = max(candidates)
        if restriction.latest is not None and run_at > restriction.latest:
            return None
        return DagRunInfo.exact(run_at)

    def serialize(self) -> dict:
        return {}

    @classmethod
    def deserialize(cls, data: dict) -> FirstWorkingDayTimetable:
        return cls()
