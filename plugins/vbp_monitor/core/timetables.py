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

from vbp_monitor.core.prc_calendar import STATUTORY

from vbp_monitor.core.config import LOCAL_TZ as SHANGHAI
RUN_TIME = dt.time(6, 0)


def _run_time_of_month(year: int, month: int) -> DateTime:
    day = STATUTORY.first_working_day_of_month(year, month)
    local = dt.datetime.combine(day, RUN_TIME, tzinfo=SHANGHAI)
    return instance(local.astimezone(dt.timezone.utc))


def first_run_at_or_after(moment: dt.datetime) -> DateTime:
    local = moment.astimezone(SHANGHAI)
    year, month = local.year, local.month
    while True:
        candidate = _run_time_of_month(year, month)
        if candidate >= moment:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class FirstWorkingDayTimetable(Timetable):
    description = "每月第一个工作日 06:00（Asia/Shanghai，中国法定工作日）"

    @property
    def summary(self) -> str:
        return "first PRC working day of the month, 06:00 Asia/Shanghai"

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        if last_automated_data_interval is not None:
            earliest = last_automated_data_interval.end + dt.timedelta(seconds=1)
        else:
            earliest = restriction.earliest
            if earliest is None:
                return None
            if not restriction.catchup:
                now = dt.datetime.now(dt.timezone.utc)
                # without catchup the first run is the latest one not after now
                local = now.astimezone(SHANGHAI)
                this_month = _run_time_of_month(local.year, local.month)
                if this_month > now:
                    prev = (local.replace(day=1) - dt.timedelta(days=1))
                    this_month = _run_time_of_month(prev.year, prev.month)
                earliest = max(earliest, this_month)
        run_at = first_run_at_or_after(earliest)
        if restriction.latest is not None and run_at > restriction.latest:
            return None
        return DagRunInfo.exact(run_at)

    def serialize(self) -> dict:
        return {}

    @classmethod
    def deserialize(cls, data: dict) -> "FirstWorkingDayTimetable":
        return cls()
