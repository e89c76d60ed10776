"""The first-working-day timetable after a long pause: ``catchup=False`` plans only the latest
run not after now (as Airflow's cron timetables do), ``catchup=True`` plans every missed month.

"Now" is the module-level ``timetables.utcnow``, set here by monkeypatch.
"""
import datetime as dt

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from vbp_monitor.core import timetables
from vbp_monitor.core.periods import run_day
from vbp_monitor.core.timetables import FirstWorkingDayTimetable

START = pendulum.datetime(2025, 1, 1, tz="UTC")
# the run of 2 January 2025 (06:00 Shanghai), the last before a pause
LAST_RUN = DataInterval.exact(pendulum.datetime(2025, 1, 1, 22, 0, tz="UTC"))


def _shanghai(year, month, day, hour=12, minute=0):
    return pendulum.datetime(year, month, day, hour, minute, tz="Asia/Shanghai").in_timezone("UTC")


@pytest.fixture
def now(monkeypatch):
    """Set the scheduler's clock: ``now(moment)``."""
    def set_now(moment):
        monkeypatch.setattr(timetables, "utcnow", lambda: moment)
        return moment
    return set_now


def _next(last, catchup, earliest=START, latest=None):
    restriction = TimeRestriction(earliest=earliest, latest=latest, catchup=catchup)
    return FirstWorkingDayTimetable().next_dagrun_info(
        last_automated_data_interval=last, restriction=restriction)


def _planned_until(moment, catchup, last=LAST_RUN):
    """The runs the scheduler would create one after the other until ``moment`` (now)."""
    days = []
    while (info := _next(last, catchup)) is not None and info.run_after <= moment:
        days.append(run_day(info.run_after))
        last = info.data_interval
        if len(days) > 40:
            break
    return days, info


def test_without_catchup_a_long_pause_gives_only_the_latest_run(now):
    # paused after the January 2025 run, unpaused on 20 October 2025
    now(_shanghai(2025, 10, 20))
    info = _next(LAST_RUN, catchup=False)
    # 1–8 October are the National Day holidays: 9 October is October's first working day
    assert run_day(info.run_after) == dt.date(2025, 10, 9)
    assert info.data_interval.start == info.run_after
    days, following = _planned_until(_shanghai(2025, 10, 20), catchup=False)
    assert days == [dt.date(2025, 10, 9)]
    # and after it, the next month's run in the future, not a missed one
    assert run_day(following.run_after) == dt.date(2025, 11, 3)


def test_with_catchup_a_long_pause_backfills_each_month(now):
    now(_shanghai(2025, 10, 20))
    days, following = _planned_until(_shanghai(2025, 10, 20), catchup=True)
    assert days == [dt.date(2025, 2, 5), dt.date(2025, 3, 3), dt.date(2025, 4, 1), dt.date(2025, 5, 6),
                    dt.date(2025, 6, 3), dt.date(2025, 7, 1), dt.date(2025, 8, 1), dt.date(2025, 9, 1),
                    dt.date(2025, 10, 9)]
    assert run_day(following.run_after) == dt.date(2025, 11, 3)


def test_without_catchup_a_pause_over_new_year_gives_januarys_run(now):
    # last run March 2025, unpaused on 10 January 2027 (after the January 2027 run time)
    last = DataInterval.exact(_shanghai(2025, 3, 3, hour=6))
    now(_shanghai(2027, 1, 10))
    info = _next(last, catchup=False)
    assert info.run_after == timetables.last_run_at_or_before(_shanghai(2027, 1, 10))
    assert info.run_after.in_timezone("Asia/Shanghai").month == 1
    assert info.run_after.in_timezone("Asia/Shanghai").year == 2027
    assert info.run_after.in_timezone("Asia/Shanghai").hour == 6


def test_without_catchup_before_this_months_run_time_the_latest_is_last_months(now):
    # 3 November 2025 05:59 Shanghai: November's run (06:00) is not due yet
    now(_shanghai(2025, 11, 3, hour=5, minute=59))
    assert run_day(_next(LAST_RUN, catchup=False).run_after) == dt.date(2025, 10, 9)
    now(_shanghai(2025, 11, 3, hour=6))
    assert run_day(_next(LAST_RUN, catchup=False).run_after) == dt.date(2025, 11, 3)


def test_without_catchup_no_pause_gives_the_next_month(now):
    # the scheduler asks right after the October run: the next run is November's, in the future
    now(_shanghai(2025, 10, 9, hour=6, minute=5))
    last = DataInterval.exact(_shanghai(2025, 10, 9, hour=6))
    assert run_day(_next(last, catchup=False).run_after) == dt.date(2025, 11, 3)


def test_without_catchup_first_run_and_start_date_in_the_future(now):
    now(_shanghai(2025, 10, 20))
    assert run_day(_next(None, catchup=False).run_after) == dt.date(2025, 10, 9)
    # a start_date after now wins over the latest past run
    later = _shanghai(2026, 3, 1, hour=0)
    assert run_day(_next(None, catchup=False, earliest=later).run_after) == dt.date(2026, 3, 2)
    # no start date and no run: with catchup nothing is planned; without, the latest run
    assert _next(None, catchup=True, earliest=None) is None
    assert run_day(_next(None, catchup=False, earliest=None).run_after) == dt.date(2025, 10, 9)


def test_end_date_stops_both_modes(now):
    now(_shanghai(2025, 10, 20))
    latest = _shanghai(2025, 6, 30)
    assert _next(LAST_RUN, catchup=False, latest=latest) is None
    assert run_day(_next(LAST_RUN, catchup=True, latest=latest).run_after) == dt.date(2025, 2, 5)


def test_backfill_iterates_every_month_whatever_now_is(now):
    # `airflow backfill create` asks with catchup=True between two dates
    now(_shanghai(2030, 1, 1))
    restriction = TimeRestriction(earliest=_shanghai(2025, 3, 1, hour=0), latest=_shanghai(2025, 5, 31), catchup=True)
    timetable, info, days = FirstWorkingDayTimetable(), None, []
    while (info := timetable.next_dagrun_info(last_automated_data_interval=info and info.data_interval,
                                              restriction=restriction)) is not None:
        days.append(run_day(info.run_after))
    assert days == [dt.date(2025, 3, 3), dt.date(2025, 4, 1), dt.date(2025, 5, 6)]


def test_real_clock_is_used_by_default():
    before = dt.datetime.now(dt.UTC)
    assert before <= timetables.utcnow() <= dt.datetime.now(dt.UTC)
