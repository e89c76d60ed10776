"""Which period a run judges (examples.md 1) and the first-working-day timetable."""
import datetime as dt

import pendulum
from airflow.timetables.base import TimeRestriction

from vbp_monitor.core.periods import judged_day, judged_month, run_day
from vbp_monitor.core.timetables import FirstWorkingDayTimetable

UTC = dt.UTC


def test_examples_1():
    assert judged_month("2025-03-03").label == "2025-02"
    assert judged_day(dt.date(2025, 2, 7)).label == "2025-02-06"
    scheduled = dt.datetime(2025, 3, 31, 22, 0, tzinfo=UTC)  # 06:00 on 1 April in Shanghai
    assert run_day(scheduled) == dt.date(2025, 4, 1)
    period = judged_month(scheduled)
    assert (period.label, period.first_day, period.last_day) == ("2025-03", dt.date(2025, 3, 1), dt.date(2025, 3, 31))


def test_january_run_judges_december_of_previous_year():
    assert judged_month(dt.date(2026, 1, 5)).label == "2025-12"


FIRST_OF_2025 = pendulum.datetime(2025, 1, 1, tz="UTC")


def _runs(n, start=FIRST_OF_2025):
    timetable = FirstWorkingDayTimetable()
    restriction = TimeRestriction(earliest=start, latest=None, catchup=True)
    info, out = None, []
    for _ in range(n):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval if info else None, restriction=restriction)
        out.append(info)
    return out


def test_runs_fall_on_first_working_day_at_six_shanghai():
    days = [run_day(info.run_after) for info in _runs(6)]
    # 1 Jan New Year; Spring Festival to 4 Feb; 1–5 May Labour Day
    assert days == [dt.date(2025, 1, 2), dt.date(2025, 2, 5), dt.date(2025, 3, 3),
                    dt.date(2025, 4, 1), dt.date(2025, 5, 6), dt.date(2025, 6, 3)]
    first = _runs(1)[0]
    assert first.run_after.astimezone(dt.timezone(dt.timedelta(hours=8))).hour == 6
    # the logical date is the run time itself, so D is the working day
    assert first.data_interval.start == first.run_after


def test_timetable_serialises_for_the_scheduler():
    from airflow.serialization.serialized_objects import decode_timetable, encode_timetable

    encoded = encode_timetable(FirstWorkingDayTimetable())
    assert encoded["__type"] == "vbp_monitor.core.timetables.FirstWorkingDayTimetable"
    restored = decode_timetable(encoded)
    assert isinstance(restored, FirstWorkingDayTimetable)
    # the scheduler's copy plans the same runs as the DAG file's
    restriction = TimeRestriction(earliest=FIRST_OF_2025, latest=None, catchup=True)
    planned = restored.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert planned == _runs(1)[0]
    assert planned.run_after == dt.datetime(2025, 1, 1, 22, 0, tzinfo=UTC)  # 2 January 06:00 in Shanghai
