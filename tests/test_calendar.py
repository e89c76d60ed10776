import datetime as dt

from sqlalchemy import select

from builders import seed
from vbp_monitor.core import prc_calendar
from vbp_monitor.core.prc_calendar import WorkCalendar, add_months, cycle_month_bounds
from vbp_monitor.model import calendar_tables
from vbp_monitor.model.schema import work_calendar

D = dt.date


def test_seventh_working_day_after_spring_festival_2025():
    # 26 Jan (Sunday) and 8 Feb (Saturday) are make-up working days; 28 Jan–4 Feb holidays.
    assert prc_calendar.nth_working_day_after(D(2025, 1, 24), 7) == D(2025, 2, 10)


def test_labour_day_filing_deadline_example_3():
    assert prc_calendar.nth_working_day_after(D(2025, 4, 30), 7) == D(2025, 5, 14)


def test_make_up_weekend_is_working_and_holiday_is_not():
    assert prc_calendar.is_working_day(D(2025, 1, 26))
    assert not prc_calendar.is_working_day(D(2025, 1, 28))
    assert not prc_calendar.is_working_day(D(2025, 1, 25))


def test_2027_falls_back_to_weekdays_and_says_so(caplog):
    cal = WorkCalendar()
    assert cal.is_working_day(D(2027, 1, 1))  # a Friday; New Year unknown for 2027
    assert not cal.is_working_day(D(2027, 1, 2))
    assert cal.is_fallback(D(2027, 1, 1))
    assert "2027" in caplog.text and "Monday–Friday" in caplog.text
    assert "2027年法定节假日安排尚未载入" in cal.fallback_note([D(2027, 1, 4)])
    assert cal.fallback_note([D(2026, 1, 5)]) == ""


def test_override_beats_statutory_and_fallback():
    cal = WorkCalendar({D(2027, 1, 1): False, D(2025, 1, 27): False})
    assert not cal.is_working_day(D(2027, 1, 1))
    assert not cal.is_working_day(D(2025, 1, 27))
    assert cal.source(D(2027, 1, 1)) == "override"


def test_cycle_months_example_7():
    assert add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)
    assert cycle_month_bounds(D(2024, 1, 31), 1) == (D(2024, 1, 31), D(2024, 2, 28))
    assert cycle_month_bounds(D(2024, 1, 31), 3)[1] == D(2024, 4, 29)


def test_work_calendar_table_matches_python_calendar_and_overrides(engine):
    with engine.begin() as conn:
        seed(conn, {"holidays": [{"day": "2027-01-01", "is_workday": "false"}]})
        calendar_tables.rebuild_work_calendar(conn)
        rows = {r.day: r for r in conn.execute(select(work_calendar).where(
            work_calendar.c.day.between(D(2025, 1, 24), D(2025, 2, 10)))).all()}
        newyear = conn.execute(select(work_calendar).where(work_calendar.c.day == D(2027, 1, 1))).one()
    seq = rows[D(2025, 1, 24)].workday_seq
    assert rows[D(2025, 2, 10)].workday_seq == seq + 7
    assert rows[D(2025, 1, 27)].next_workday == D(2025, 2, 5)
    assert rows[D(2025, 1, 31)].next_month_end == D(2025, 2, 28)
    assert not newyear.is_workday and newyear.source == "override"
