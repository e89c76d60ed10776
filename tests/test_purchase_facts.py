"""Purchase facts (DAG 2): one GROUP BY pass per month, split at agreement-period
boundaries, cached in purchase_facts_months and safe to build in parallel."""
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from sqlalchemy import func, select

from builders import agreement, city, num, order, run_for, seed
from vbp_monitor.model.schema import purchase_facts as facts_table
from vbp_monitor.model.schema import purchase_facts_months
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


def built(engine) -> dict:
    with engine.connect() as conn:
        return {r.month_start: r.line_count for r in conn.execute(select(purchase_facts_months))}


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
    assert built(engine) == dict.fromkeys(months, 1)
    # a second run (or the judge after build_facts) reuses them all
    assert purchase_facts.ensure_facts(engine, run_for("2025-06").period).built == ()
    # the next month builds only itself
    assert purchase_facts.ensure_facts(engine, run_for("2025-07").period).built == (dt.date(2025, 7, 1),)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(purchase_facts_months)).scalar() == 5


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
        purchase_facts.clear_purchase_facts(conn)
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


def test_a_cold_cache_built_in_bulk_equals_month_by_month_and_keeps_its_key(engine):
    """PostgreSQL builds an empty cache's months in one transaction with the key rebuilt
    once (SQLite month by month): the same facts and index, the key enforced afterwards,
    concurrent cold runs included."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    orders = [order(f"O{m}-{i}", inst, 10 + i, f"2025-{m:02d}-{5 + i:02d}", price=price)
              for m in range(1, 8) for i, (inst, price) in enumerate(
                  [("H1", "0.50"), ("H2", "0.50"), ("H1", "0.55"), ("M1", "0.50")])]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "2025-02-14", "2026-02-13")], orders=orders))
    months = [dt.date(2025, m, 1) for m in range(2, 8)]
    for month in months:
        purchase_facts.build_month(engine, month)
    by_month, by_month_index = facts(engine), built(engine)
    with engine.begin() as conn:
        purchase_facts.clear_purchase_facts(conn)

    in_bulk = engine.dialect.name == "postgresql"
    assert purchase_facts.build_months_in_bulk(engine, months) is in_bulk
    if not in_bulk:
        purchase_facts.ensure_facts(engine, run_for("2025-07").period)
    assert facts(engine) == by_month and built(engine) == by_month_index
    # not empty any more: no second bulk build; ensure_facts finds every month cached
    assert purchase_facts.build_months_in_bulk(engine, months) is False
    assert purchase_facts.ensure_facts(engine, run_for("2025-07").period).built == ()
    # the primary key is back
    first = facts(engine)[0]
    duplicate = dict(zip([c.name for c in facts_table.c], first, strict=True))
    try:
        with engine.begin() as conn:
            conn.execute(insert(facts_table), [duplicate])
        raise AssertionError("a duplicate fact was accepted")
    except IntegrityError:
        pass

    # three cold runs at once: on PostgreSQL one builds in bulk and the others, waiting for
    # its lock, find the months built (month by month, two runs may build a month twice)
    with engine.begin() as conn:
        purchase_facts.clear_purchase_facts(conn)
    with ThreadPoolExecutor(max_workers=3) as pool:
        coverages = list(pool.map(lambda _: purchase_facts.ensure_facts(engine, run_for("2025-07").period),
                                  range(3)))
    assert facts(engine) == by_month and built(engine) == by_month_index
    built_by_runs = sorted(month for coverage in coverages for month in coverage.built)
    assert built_by_runs == months if in_bulk else set(built_by_runs) == set(months)
