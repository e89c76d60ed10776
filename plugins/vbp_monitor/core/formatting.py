"""The one way to show a figure to a person (domain.md › Figures shown to people).

Every message, email, spreadsheet and document formats money, ratios, quantities, dates and
times through this module, with one rounding rule: a figure is rounded toward the side that
does not hide a breach. A measured figure that fell **below** a minimum is rounded down
(0.89996 → 89.99 %, never 90.00 %); one that went **above** a maximum is rounded up
(unpaid 0.004 yuan → 0.01 元, never 0.00 元); every other figure (thresholds, context)
is rounded half up. The warehouse keeps exact values; only what people read is rounded.

Values read back from either database are made exact first: SQLite gives REAL floats,
PostgreSQL Decimals.
"""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal, overload

from vbp_monitor.core.config import LOCAL_TZ

Breach = Literal["below", "above"] | None

CENT = Decimal("0.01")
QUANTITY_PLACES = Decimal("0.0001")
# metric_value / threshold_value precision in the alerts table (NUMERIC(18, 6))
STORED_PLACES = Decimal("0.000001")
NONE_SHOWN = "—"

# Spreadsheet number formats (one per kind of figure).
XLSX_MONEY = "#,##0.00"
XLSX_PERCENT = "0.00%"
XLSX_QUANTITY = "#,##0"
XLSX_DECIMAL = "#,##0.####"
XLSX_DATE = "yyyy-mm-dd"
XLSX_DATETIME = "yyyy-mm-dd hh:mm:ss"


def _rounding(breach: Breach) -> str:
    if breach == "below":
        return ROUND_FLOOR
    if breach == "above":
        return ROUND_CEILING
    return ROUND_HALF_UP


# ------------------------------------------------------------------ exact values
@overload
def decimal_of(value: None) -> None: ...
@overload
def decimal_of(value: Decimal | float | int | str) -> Decimal: ...
def decimal_of(value: Any) -> Decimal | None:
    """One exact type for figures: SQLite's floats go through their shortest repr."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value)) if not isinstance(value, int) else Decimal(value)


@overload
def rounded(value: None, places: Decimal, breach: Breach = None) -> None: ...
@overload
def rounded(value: Decimal | float | int | str, places: Decimal, breach: Breach = None) -> Decimal: ...
def rounded(value: Any, places: Decimal, breach: Breach = None) -> Decimal | None:
    """``value`` to ``places`` by the one rounding rule."""
    number = decimal_of(value)
    if number is None:
        return None
    return number.quantize(places, rounding=_rounding(breach))


@overload
def stored(value: None) -> None: ...
@overload
def stored(value: Decimal | float | int | str) -> Decimal: ...
def stored(value: Any) -> Decimal | None:
    """A metric or threshold as the alerts table keeps it (6 places, exact)."""
    return rounded(value, STORED_PLACES)


@overload
def as_date(value: None) -> None: ...
@overload
def as_date(value: dt.date | str) -> dt.date: ...
def as_date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


@overload
def as_datetime(value: None) -> None: ...
@overload
def as_datetime(value: dt.datetime | str) -> dt.datetime: ...
def as_datetime(value: Any) -> dt.datetime | None:
    """A naive local timestamp (the platform's Asia/Shanghai wall time)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Audit timestamps: SQLite gives naive datetimes, stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


# ------------------------------------------------------------------ figures as text
def money(value, breach: Breach = None) -> str:
    """Yuan, two decimals, thousands separators: 1,234.50元."""
    number = rounded(value, CENT, breach)
    return NONE_SHOWN if number is None else f"{number:,.2f}元"


def money_plain(value, breach: Breach = None) -> str:
    """As ``money`` without the unit, for table cells whose header names it."""
    number = rounded(value, CENT, breach)
    return NONE_SHOWN if number is None else f"{number:,.2f}"


def percent(value, breach: Breach = None) -> str:
    """A ratio as a percentage with two decimals: 0.19726 → 19.73% (19.72% when it fell below)."""
    number = decimal_of(value)
    if number is None:
        return NONE_SHOWN
    return f"{(number * 100).quantize(CENT, rounding=_rounding(breach))}%"


def share(part, whole, breach: Breach = None, none: str = NONE_SHOWN) -> str:
    """``part / whole`` as a percentage; ``none`` when the whole is 0 or unknown."""
    part, whole = decimal_of(part), decimal_of(whole)
    if part is None or not whole:
        return none
    return percent(part / whole, breach)


def quantity(value, breach: Breach = None) -> str:
    """A quantity: an integer when whole (12,000), else at most 4 decimals (2.5)."""
    number = rounded(value, QUANTITY_PLACES, breach)
    if number is None:
        return NONE_SHOWN
    if number == number.to_integral_value():
        return f"{int(number):,}"
    return f"{number.normalize():,f}"


def number(value) -> str:
    """A plain figure without unit (days, counts, hours as a number)."""
    return quantity(value)


def hours(value) -> str:
    """A duration in hours for people: 48小时0分1秒, 62小时."""
    number_of_hours = decimal_of(value)
    if number_of_hours is None:
        return NONE_SHOWN
    whole, rest = divmod(int((number_of_hours * 3600).to_integral_value()), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{whole}小时"
    if minutes or seconds:
        text += f"{minutes}分"
    if seconds:
        text += f"{seconds}秒"
    return text


# The units of an alert's figures (catalog.toml ``unit``): how a metric or threshold reads.
MONEY_UNIT = "元"
UNIT_PRICE_UNIT = "元/单位"  # a price per unit of quantity
PERCENT_UNIT = "%"  # a ratio, shown as a percentage
HOURS_UNIT = "小时"
FLAG_UNIT = "是/否"  # a 0/1 flag: 是 / 否
QUANTITY_UNIT = "单位"  # a quantity, in the platform's units of the product
# counted units: the figure, then the unit (3个工作日, 12行)
COUNT_UNITS = ("天", "个工作日", "个月", QUANTITY_UNIT, "行", "个章节", "家", "个", "项", "条")
UNITS = (MONEY_UNIT, UNIT_PRICE_UNIT, PERCENT_UNIT, HOURS_UNIT, FLAG_UNIT, *COUNT_UNITS)


def with_unit(value, unit: str, breach: Breach = None) -> str:
    """A figure with its unit (``UNITS``): 1,234.50元, 12.30元/单位, 89.99%, 48小时30分, 是/否,
    3个工作日, 12,000单位; no unit: the bare quantity. None → "" (nothing to show).

    ``breach`` as everywhere: a measured figure that fell below / went above its line.
    """
    if value is None:
        return ""
    if unit == MONEY_UNIT:
        return money(value, breach)
    if unit == UNIT_PRICE_UNIT:
        return money(value, breach) + "/单位"
    if unit == PERCENT_UNIT:
        return percent(value, breach)
    if unit == HOURS_UNIT:
        return hours(value)
    if unit == FLAG_UNIT:
        return "是" if decimal_of(value) else "否"
    if unit and unit not in COUNT_UNITS:
        raise ValueError(f"unknown unit {unit!r}: one of {UNITS}")
    return quantity(value, breach) + unit


def date_zh(value) -> str:
    """2025年3月1日."""
    day = as_date(value)
    return f"{day.year}年{day.month}月{day.day}日" if day else NONE_SHOWN


def date_iso(value) -> str:
    day = as_date(value)
    return day.isoformat() if day else ""


def datetime_local(value) -> str:
    """A local (Asia/Shanghai) time: 2025-01-26 10:00 (seconds only when there are any)."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(LOCAL_TZ).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def month_zh(day: dt.date) -> str:
    return f"{day.year}年{day.month}月"


def period_zh(label: str) -> str:
    """An alert period for people: '2025-02' → 2025年2月; '2025-03-02' → 2025年3月2日; '2025' → 2025年."""
    try:
        parts = [int(part) for part in label.split("-")]
    except ValueError:
        return label
    if len(parts) == 1:
        return f"{parts[0]}年"
    if len(parts) == 2:
        return f"{parts[0]}年{parts[1]}月"
    if len(parts) == 3:
        return f"{parts[0]}年{parts[1]}月{parts[2]}日"
    return label


def now_local() -> dt.datetime:
    return dt.datetime.now(LOCAL_TZ)
