"""Registers vbp-monitor's timetable with Airflow (custom timetables must come from a plugin)."""
from airflow.plugins_manager import AirflowPlugin

from vbp_monitor.core.timetables import FirstWorkingDayTimetable


class VbpMonitorPlugin(AirflowPlugin):
    name = "vbp_monitor"
    timetables = [FirstWorkingDayTimetable]
