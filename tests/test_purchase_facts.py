"""Purchase facts (DAG 2): the judged month in full and the agreement years' selected
purchases, one GROUP BY pass each, split at agreement-period boundaries, cached in their
*_months indexes and safe to build in parallel."""
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from builders import agreement, city, num, order, run_for, seed
from vbp_monitor.model.schema import (
    clear_facts_cache,
    orders,
    purchase_facts_months,
    selected_purchase_facts,
    selected_purchase_facts_months,
)
from vbp_monitor.model.schema import purchase_facts as facts_table
from vbp_monitor.rules import purchase_facts


def facts(engine) -> list[tuple]:
    """The facts table as comparable tuples (exact 4-place Decimals on both databases)."""
    columns = facts_table.c
    query = select(facts_table).order_by(columns.month_start, columns.segment_start,
                                         columns.institution_code, columns.product_code,
                                         columns.channel, columns.unit_price)
    with engine.connect() as conn:
        return [(r.month_start, r.segment_start, r.institution_code, r.product_code, r.channel,
                 num(r.unit_price), num(r.quantity), num(r.amount), r.line_count)
                for r in conn.execute(query)]


def built(engine, index=purchase_facts_months) -> dict:
    with engine.connect() as conn:
        return {r.month_start: r.line_count for r in conn.execute(select(index))}


def selected_facts(engine) -> list[tuple]:
    columns = selected_purchase_facts.c
    query = select(selected_purchase_facts).order_by(columns.month_start, columns.segment_start,
                                                     columns.institution_code, columns.product_code)
    with engine.connect() as conn:
        return [(r.month_start, r.segment_start, r.institution_code, r.product_code, num(r.quantity), r.line_count)
                for r in conn.execute(query)]


def test_a_month_is_split_at_agreement_boundaries_and_excludes_what_is_not_a_purchase(engine):
    orders = [
        order("A", "H1", 10, "2025-04-01 00:00:00"),
        order("B", "H1", 20, "2025-04-09 23:59:59"),
        order("C", "H1", 30, "2025-04-10 00:00:00"),       # H2's year starts: new segment
        order("D", "H1", 40, "2025-04-20"),                # H1's old year ended 19 April
        order("E", "H1", 5, "2025-04-20", price="0.60"),   # another price: its own fact
        order("F", "H1", 7, "2025-04-20", channel="offline"),
        order("G", "H1", 50, "2025-04-30 23:59:59"),
        order("CANCELLED", "H1", 1000, "2025-04-15", cancelled="true"),
        order("NEXT-MONTH", "H1", 1000, "2025-05-01 00:00:00"),
        order("PREVIOUS", "H1", 1000, "2025-03-31 23:59:59"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[
            agreement("H2-NEW", "H2", "2025-04-10", "2026-04-09"),
            agreement("H1-OLD", "H1", "2024-04-20", "2025-04-19"),
            agreement("H1-FULL", "H1", "2025-01-01", "2025-04-30"),  # ends on the month's last day
        ], orders=orders))

    assert purchase_facts.build_month(engine, dt.date(2025, 4, 1)) is True

    april = [row for row in facts(engine) if row[0] == dt.date(2025, 4, 1)]
    d = dt.date
    assert [(r[1], r[4], r[5], r[6], r[7], r[8]) for r in april] == [
        (d(2025, 4, 1), "platform", Decimal("0.5"), Decimal("30"), Decimal("15"), 2),
        (d(2025, 4, 10), "platform", Decimal("0.5"), Decimal("30"), Decimal("15"), 1),
        (d(2025, 4, 20), "offline", Decimal("0.5"), Decimal("7"), Decimal("3.5"), 1),
        (d(2025, 4, 20), "platform", Decimal("0.5"), Decimal("90"), Decimal("45"), 2),
        (d(2025, 4, 20), "platform", Decimal("0.6"), Decimal("5"), Decimal("3"), 1),
    ]
    assert built(engine) == {d(2025, 4, 1): 7}


def test_facts_are_built_once_and_reused_with_earlier_agreement_months_on_demand(engine):
    orders = [order(f"O{m}", "H1", 100, f"2025-{m:02d}-15") for m in range(1, 8)]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "2025-03-10", "2026-03-09")], orders=orders))

    coverage = purchase_facts.ensure_facts(engine, run_for("2025-06").period)

    months = [dt.date(2025, m, 1) for m in range(3, 7)]
    assert coverage.first_month == dt.date(2025, 3, 1)
    assert list(coverage.built) == months
    # the judged month in full; its agreement year's months (March's from the 10th) as selected purchases
    assert built(engine) == {dt.date(2025, 6, 1): 1}
    assert built(engine, selected_purchase_facts_months) == dict.fromkeys(months, 1)
    # a second run (or the judge after build_facts) reuses them all
    assert purchase_facts.ensure_facts(engine, run_for("2025-06").period).built == ()
    # the next month builds only itself, in both grains
    assert purchase_facts.ensure_facts(engine, run_for("2025-07").period).built == (dt.date(2025, 7, 1),)
    assert set(built(engine)) == {dt.date(2025, 6, 1), dt.date(2025, 7, 1)}
    assert len(built(engine, selected_purchase_facts_months)) == 5


def test_selected_facts_keep_the_platform_purchases_of_selected_products_by_segment(engine):
    """What the cumulative figures sum: no offline line, no non-selected product, no
    cancelled line; split where an agreement year starts, whatever the price."""
    orders = [
        order("A", "H1", 10, "2025-04-01"),
        order("B", "H1", 20, "2025-04-12", price="0.60"),   # H1's year starts on the 10th
        order("C", "H1", 30, "2025-04-20"),
        order("OFF", "H1", 7, "2025-04-20", channel="offline"),
        order("CANCELLED", "H1", 1000, "2025-04-15", cancelled="true"),
        order("MAY", "H1", 5, "2025-05-02"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("H1-NEW", "H1", "2025-04-10", "2026-04-09")], orders=orders))

    assert purchase_facts.build_selected_months(engine, dt.date(2025, 4, 1), dt.date(2025, 5, 1)) is True

    d = dt.date
    rows = selected_facts(engine)
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [
        (d(2025, 4, 1), d(2025, 4, 1), Decimal("10"), 1),
        (d(2025, 4, 1), d(2025, 4, 10), Decimal("50"), 2),
        (d(2025, 5, 1), d(2025, 5, 1), Decimal("5"), 1),
    ]
    assert built(engine, selected_purchase_facts_months) == {d(2025, 4, 1): 3, d(2025, 5, 1): 1}
    # cached: nothing built again
    assert purchase_facts.build_selected_months(engine, dt.date(2025, 4, 1), dt.date(2025, 5, 1)) is False


def _selected_month_case(engine) -> list:
    """April 2025 with every kind of line the selected facts leave out or split on."""
    orders = [
        order("A", "H1", 10, "2025-04-01"),
        order("B", "H1", 20, "2025-04-12", price="0.60"),
        order("C", "H1", 30, "2025-04-20"),
        order("D", "H2", 4, "2025-04-21", price="0.55"),
        order("OFF", "H1", 7, "2025-04-20", channel="offline"),
        order("CANCELLED", "H1", 1000, "2025-04-15", cancelled="true"),
        order("MAY", "H1", 5, "2025-05-02"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("H1-NEW", "H1", "2025-04-10", "2026-04-09")], orders=orders))
    return orders


def test_a_months_selected_facts_from_its_full_facts_equal_those_from_its_lines(engine):
    """The judged month's selected facts are summed from its full facts (no second pass
    over its lines): the same rows and line counts as the pass over the lines gives."""
    _selected_month_case(engine)
    april = dt.date(2025, 4, 1)
    purchase_facts.build_selected_months(engine, april, april)
    from_lines = (selected_facts(engine), built(engine, selected_purchase_facts_months))
    with engine.begin() as conn:
        clear_facts_cache(conn)

    assert purchase_facts.build_month(engine, april) is True
    assert purchase_facts.build_selected_from_full(engine, april) is True

    assert (selected_facts(engine), built(engine, selected_purchase_facts_months)) == from_lines
    assert [r[4] for r in from_lines[0]] == [Decimal("10"), Decimal("50"), Decimal("4")]  # H1, H1 and H2 from the 10th
    assert purchase_facts.build_selected_from_full(engine, april) is False  # cached


def test_selected_facts_are_not_derived_from_full_facts_an_ingest_cleared(engine):
    """Full facts cleared before the derivation: nothing listed, and the judged month's
    coverage then takes the selected facts from the lines."""
    _selected_month_case(engine)
    april = dt.date(2025, 4, 1)
    try:
        purchase_facts.build_selected_from_full(engine, april)
    except purchase_facts.FullFactsGone:
        pass
    else:
        raise AssertionError("derived selected facts from full facts that are not built")
    assert selected_facts(engine) == [] and built(engine, selected_purchase_facts_months) == {}

    coverage = purchase_facts.ensure_facts(engine, run_for("2025-04").period)
    assert april in coverage.built
    assert [r[4] for r in selected_facts(engine)] == [Decimal("10"), Decimal("50"), Decimal("4")]


def test_a_month_without_active_agreements_needs_only_itself(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[order("O1", "H1", 1, "2025-06-15")]))

    coverage = purchase_facts.ensure_facts(engine, run_for("2025-06").period)

    assert coverage.built == (dt.date(2025, 6, 1),) and coverage.first_month == dt.date(2025, 6, 1)


def test_parallel_builds_give_the_same_table_as_sequential_ones(engine):
    orders = [order(f"O{m}-{i}", inst, 10 + i, f"2025-{m:02d}-{5 + i:02d}", price=price)
              for m in range(1, 7) for i, (inst, price) in enumerate(
                  [("H1", "0.50"), ("H2", "0.50"), ("H1", "0.55"), ("M1", "0.50")])]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "2025-02-14", "2026-02-13")], orders=orders))
    months = [dt.date(2025, m, 1) for m in range(1, 7)]

    for month in months:
        purchase_facts.build_month(engine, month)
    sequential, sequential_index = facts(engine), set(built(engine))

    with engine.begin() as conn:
        clear_facts_cache(conn)
    assert facts(engine) == [] and built(engine) == {}

    # every month requested by three concurrent "backfill runs" at once
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda m: purchase_facts.build_month(engine, m), months * 3))

    assert facts(engine) == sequential
    assert set(built(engine)) == sequential_index == set(months)
    assert sum(results) >= len(months)  # each month built at least once, none lost


def test_a_forced_rebuild_after_a_correction_replaces_the_month(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[order("O1", "H1", 10, "2025-06-15")]))
    purchase_facts.build_month(engine, dt.date(2025, 6, 1))
    before = facts(engine)

    assert purchase_facts.build_month(engine, dt.date(2025, 6, 1)) is False  # cached
    assert purchase_facts.build_month(engine, dt.date(2025, 6, 1), force=True) is True
    assert facts(engine) == before
    assert built(engine) == {dt.date(2025, 6, 1): 1}


def test_concurrent_cold_runs_build_each_month_once_and_agree(engine):
    """Three runs of one month at once on an empty cache: the same facts of both grains as
    one run alone, every month listed once, nothing lost or doubled."""
    orders = [order(f"O{m}-{i}", inst, 10 + i, f"2025-{m:02d}-{5 + i:02d}", price=price)
              for m in range(1, 8) for i, (inst, price) in enumerate(
                  [("H1", "0.50"), ("H2", "0.50"), ("H1", "0.55"), ("M1", "0.50")])]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "2025-02-14", "2026-02-13")], orders=orders))
    months = [dt.date(2025, m, 1) for m in range(2, 8)]
    purchase_facts.ensure_facts(engine, run_for("2025-07").period)
    alone = (facts(engine), selected_facts(engine), built(engine), built(engine, selected_purchase_facts_months))
    assert set(alone[3]) == set(months) and len(alone[1]) > 0

    with engine.begin() as conn:
        clear_facts_cache(conn)
    with ThreadPoolExecutor(max_workers=3) as pool:
        coverages = list(pool.map(lambda _: purchase_facts.ensure_facts(engine, run_for("2025-07").period),
                                  range(3)))

    assert (facts(engine), selected_facts(engine), built(engine),
            built(engine, selected_purchase_facts_months)) == alone
    assert set().union(*(coverage.built for coverage in coverages)) == set(months)


def test_clearing_some_months_waits_for_a_build_in_flight_and_holds_back_a_later_one(engine):
    """PostgreSQL (SQLite serialises its writers): an ingest clearing February's facts locks
    the cache indexes. A February build in flight commits first and its facts, of the old
    lines, are deleted; a build that starts while the ingest is open waits for it and reads
    the new lines."""
    from vbp_monitor.core import sqlfiles
    from vbp_monitor.core.prc_calendar import month_bounds

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a build and an ingest never overlap")
    jan, feb = dt.date(2025, 1, 1), dt.date(2025, 2, 1)
    with engine.begin() as conn:
        seed(conn, city(orders=[order("J1", "H1", 5, "2025-01-15"), order("F1", "H1", 10, "2025-02-15")]))
    purchase_facts.build_month(engine, jan)

    def correct(conn, quantity: int) -> None:  # what the ingest of a corrected F1 writes
        conn.execute(orders.update().where(orders.c.order_id == "F1")
                     .values(quantity=quantity, amount=Decimal(quantity) / 2))

    def blocked_or_done(future) -> None:
        """Until ``future`` is done or a session of the database waits on a lock (10 s at most)."""
        for _ in range(200):
            with engine.connect() as conn:
                if future.done() or conn.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'")).scalar_one():
                    return
            time.sleep(0.05)

    def clear_february(quantity: int) -> None:
        with engine.begin() as conn:
            correct(conn, quantity)
            clear_facts_cache(conn, [feb])

    # a build in flight: February listed and its facts written, not committed
    with engine.connect() as build, ThreadPoolExecutor(max_workers=1) as pool:
        transaction = build.begin()
        sqlfiles.execute(build, "facts_build_month", month_start=feb, month_end=month_bounds(feb)[1],
                         built_at=dt.datetime.now(dt.UTC))
        ingest = pool.submit(clear_february, 20)
        blocked_or_done(ingest)
        transaction.commit()
        ingest.result()
    assert built(engine) == {jan: 1} and {row[0] for row in facts(engine)} == {jan}

    # an ingest in flight: February corrected and cleared, not committed
    with engine.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
        transaction = conn.begin()
        correct(conn, 30)
        clear_facts_cache(conn, [feb])
        building = pool.submit(purchase_facts.build_month, engine, feb)
        blocked_or_done(building)
        transaction.commit()
        assert building.result() is True
    assert [row[6] for row in facts(engine) if row[0] == feb] == [Decimal("30")]


def test_clearing_some_months_leaves_the_others(engine):
    """clear_facts_cache(months): those months' facts and index rows of both grains (a day of
    the month names it); nothing for no month; every month when they cover every month built."""
    orders = [order(f"O{m}", "H1", 10 * m, f"2025-{m:02d}-15") for m in range(1, 4)]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "2025-01-01", "2025-12-31")], orders=orders))
    months = [dt.date(2025, m, 1) for m in range(1, 4)]
    for month in months:
        purchase_facts.build_month(engine, month)
    purchase_facts.build_selected_months(engine, months[0], months[-1])
    everything = facts(engine), selected_facts(engine), built(engine), built(engine, selected_purchase_facts_months)

    with engine.begin() as conn:
        clear_facts_cache(conn, [])
    assert (facts(engine), selected_facts(engine), built(engine),
            built(engine, selected_purchase_facts_months)) == everything
    with engine.begin() as conn:
        clear_facts_cache(conn, {dt.date(2025, 2, 14), dt.date(2025, 7, 1)})
    kept = [months[0], months[2]]
    assert [row[0] for row in facts(engine)] == [row[0] for row in selected_facts(engine)] == kept
    assert built(engine) == built(engine, selected_purchase_facts_months) == {months[0]: 1, months[2]: 1}
    with engine.begin() as conn:
        clear_facts_cache(conn, months)
    assert (facts(engine), selected_facts(engine), built(engine),
            built(engine, selected_purchase_facts_months)) == ([], [], {}, {})
