"""Values read back from either database, made exact for messages and spreadsheets."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

FOUR_DECIMALS = Decimal("0.0001")


def exact_decimal(value, quantum: Decimal = FOUR_DECIMALS) -> Decimal | None:
    """SQLite gives REAL floats (or ints), PostgreSQL Decimals: one exact type."""
    if value is None:
        return None
    if isinstance(value, float):
        value = Decimal(repr(value))
    return Decimal(value).quantize(quantum)


def as_date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def fmt_quantity(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return format(value.normalize(), ",f")
