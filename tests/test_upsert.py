"""core.db.upsert: many rows through COPY and a staging table on PostgreSQL, the same rows
as INSERT … ON CONFLICT in pages (the path of few rows, and SQLite's)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from vbp_monitor.core import db
from vbp_monitor.model.schema import alerts, orders


def order_rows(count: int, shift: int = 0) -> list[dict]:
    rows = []
    for n in range(count):
        ordered = dt.datetime(2025, 2, 1, 9, 0, 0) + dt.timedelta(minutes=n + shift)
        rows.append({
            "order_id": f"O-{n:05d}", "institution_code": ["H1", "H\t2", "H\\3", "H\n4", "医院\r5"][n % 5],
            "product_code": "P1", "distributor_code": None if n % 3 else "D1", "channel": "platform",
            "order_time": ordered, "quantity": Decimal(n % 7 + 1), "unit_price": Decimal("0.5") if n % 2 else
            Decimal("0.50"), "amount": Decimal(n % 7 + 1) * Decimal("0.5"),
            "response_time": None if n % 4 else ordered + dt.timedelta(seconds=n, microseconds=n % 2),
            "acceptance_date": None if n % 5 else ordered.date(), "cancelled": n % 11 == 0,
            "order_date": ordered.date(), "response_hours": None if n % 4 else Decimal(n) / Decimal(3600),
        })
    return rows


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(orders).order_by(orders.c.order_id))]


def test_many_rows_upsert_like_few(engine, monkeypatch):
    first, second = order_rows(2500), order_rows(3000, shift=7)
    with engine.begin() as conn:
        assert db.upsert(conn, orders, first) == 2500
        assert db.upsert(conn, orders, second) == 3000  # 2500 updated, 500 new
    by_copy = stored(engine)
    with engine.begin() as conn:
        conn.execute(orders.delete())
    monkeypatch.setattr(db, "COPY_MIN_ROWS", 10**9)
    with engine.begin() as conn:
        db.upsert(conn, orders, first)
        db.upsert(conn, orders, second)
    assert stored(engine) == by_copy
    assert len(by_copy) == 3000 and by_copy[1][1] == "H\t2" and by_copy[3][1] == "H\n4"


def test_insert_if_absent_and_values_copy_cannot_carry(engine):
    rows = order_rows(1500)
    with engine.begin() as conn:
        db.upsert(conn, orders, rows)
        changed = [dict(row, channel="offline") for row in rows]
        db.upsert(conn, orders, changed, update_columns=[])  # DO NOTHING: the stored rows stay
    assert {row[4] for row in stored(engine)} == {"platform"}

    now = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)  # aware: bound as before, not copied
    alert_rows = [{"alert_key": f"k{n}", "rule_code": "DATA_QUALITY", "severity": "high", "period": "2025-03",
                   "branch_code": "CITY", "message": "m", "dag_id": "d", "run_id": "r", "status": "open",
                   "first_raised_at": now, "last_raised_at": now} for n in range(1200)]
    with engine.begin() as conn:
        assert db.upsert(conn, alerts, alert_rows, key_columns=["alert_key"]) == 1200
        first = conn.execute(select(alerts.c.first_raised_at).where(alerts.c.alert_key == "k7")).scalar_one()
    assert first.replace(tzinfo=first.tzinfo or dt.UTC) == now


def test_keys_repeated_in_one_call_like_few(engine, monkeypatch):
    """A key the rows repeat (and rows as columns): the COPY straight into the table fails
    and rolls back to its savepoint, the staging path then does what the paged path does."""
    rows = order_rows(1500)
    rows[1200] = dict(rows[1200], order_id=rows[3]["order_id"], channel="offline")
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    with engine.begin() as conn:
        assert db.upsert(conn, orders, columns, update_columns=[]) == 1500
    by_copy = stored(engine)
    with engine.begin() as conn:
        conn.execute(orders.delete())
    monkeypatch.setattr(db, "COPY_MIN_ROWS", 10**9)
    with engine.begin() as conn:
        db.upsert(conn, orders, rows, update_columns=[])
    assert stored(engine) == by_copy
    assert len(by_copy) == 1499 and {row[4] for row in by_copy} == {"platform"}


def dated(rows: list[dict], first: int = 0) -> list[dict]:
    """The rows with an order_date a day apart every 100 rows (row n: 1 January 2025 + n // 100 days)."""
    return [dict(row, order_date=dt.date(2025, 1, 1) + dt.timedelta(days=(first + n) // 100))
            for n, row in enumerate(rows)]


def test_old_values_are_the_stored_values_of_the_keys_written_again(engine, monkeypatch):
    """``old_values``: new keys add nothing; a key already stored adds what its row had before
    the write (PostgreSQL: the COPY straight into the table, then the staging path; SQLite
    and few rows: the pages of VALUES)."""
    first = dated(order_rows(1500))
    # keys O-01000 … O-02499: 500 stored (days 10–14), 1000 new; every row moves to March
    second = [dict(row, order_date=dt.date(2025, 3, 1), channel="offline") for row in order_rows(2500)[1000:]]

    def written(rows_by_write: list[list[dict]]) -> list[dict[str, set]]:
        with engine.begin() as conn:
            conn.execute(orders.delete())
        found = []
        with engine.begin() as conn:
            for rows in rows_by_write:
                old: dict[str, set] = {"order_date": set(), "channel": set()}
                db.upsert(conn, orders, rows, old_values=old)
                found.append(old)
        return found

    stored_days = {dt.date(2025, 1, 11 + n) for n in range(5)}
    expected = [{"order_date": set(), "channel": set()}, {"order_date": stored_days, "channel": {"platform"}}]
    assert written([first, second]) == expected
    assert {row[12] for row in stored(engine)} == {dt.date(2025, 3, 1)} | {
        dt.date(2025, 1, 1) + dt.timedelta(days=n) for n in range(10)}
    # a few rows (pages of VALUES on both databases), one of them stored
    assert written([first[:3], [dict(first[2], order_date=dt.date(2025, 4, 1)), second[-1]]]) == [
        {"order_date": set(), "channel": set()}, {"order_date": {dt.date(2025, 1, 1)}, "channel": {"platform"}}]
    monkeypatch.setattr(db, "COPY_MIN_ROWS", 10**9)
    monkeypatch.setattr(db, "UPSERT_CHUNK_ROWS", 400)  # keys of several pages
    assert written([first, second]) == expected


def test_old_values_of_a_compound_key(engine):
    """Keys of two columns (a tuple IN on the VALUES path)."""
    from vbp_monitor.model.schema import cycle_month_calendar

    start = dt.date(2025, 1, 1)
    rows = [{"period_start": start, "cycle_month": k, "month_start": dt.date(2025, k, 1),
             "month_end": dt.date(2025, k, 28)} for k in range(1, 4)]
    moved = [dict(rows[1], month_start=dt.date(2026, 2, 1)),
             {"period_start": dt.date(2025, 2, 1), "cycle_month": 2, "month_start": dt.date(2025, 3, 1),
              "month_end": dt.date(2025, 3, 31)}]
    with engine.begin() as conn:
        assert db.upsert(conn, cycle_month_calendar, rows, old_values=(old := {"month_start": set()})) == 3
        assert old == {"month_start": set()}
        db.upsert(conn, cycle_month_calendar, moved, old_values=old)
    assert old == {"month_start": {dt.date(2025, 2, 1)}}
