"""validation.validate_tables: the rule DAGs' check of what they read, on SQLite and PostgreSQL."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, text

from builders import full_city, seed
from vbp_monitor.core.periods import judged_month
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.quality.validation import DataQualityError, validate_tables

FEBRUARY = "order_date >= :first_day AND order_date <= :last_day"


def monthly_run(run_id: str = "scheduled__1") -> RunContext:
    return RunContext.for_test("vbp_monthly_monitoring", judged_month("2025-03-03"), run_id=run_id)


def dq_alerts(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(
            select(alerts).where(alerts.c.rule_code == "DATA_QUALITY").order_by(alerts.c.alert_id)).mappings()]


def bad_order(order_id: str, day: str, **changes) -> dict:
    row = {"order_id": order_id, "institution_code": "H1", "product_code": "P-AML-S", "channel": "platform",
           "order_time": f"{day} 09:00:00", "quantity": "10", "unit_price": "0.5", "amount": "5",
           "cancelled": "false"}
    row.update(changes)
    return row


@pytest.fixture
def city_engine(engine):
    with engine.begin() as conn:
        seed(conn, full_city())
    return engine


def test_good_warehouse_data_passes_every_suite(city_engine):
    tables = dict.fromkeys(contract.LOAD_ORDER)
    tables["orders"] = FEBRUARY
    report = validate_tables(city_engine, monthly_run(), tables)
    assert set(report) == set(contract.LOAD_ORDER)
    assert {name: r["failed_rows"] for name, r in report.items()} == dict.fromkeys(contract.LOAD_ORDER, 0)
    assert report["orders"]["rows"] == 3 and report["orders"]["suite"] == "vbp_orders"
    assert dq_alerts(city_engine) == []


def test_a_broken_row_raises_one_alert_per_table_and_a_fix_resolves_it(city_engine):
    with city_engine.begin() as conn:
        seed(conn, {"orders": [
            bad_order("O-NEG", "2025-02-14", quantity="-10", amount="-5"),
            bad_order("O-GHOST", "2025-02-15", product_code="P-GONE"),
            bad_order("O-APRIL", "2025-04-01", quantity="-1", amount="-0.5"),  # outside the judged month
        ]})
    report = validate_tables(city_engine, monthly_run(), {"orders": FEBRUARY, "products": None})
    assert report["orders"]["failed_rows"] == 2
    assert report["products"]["failed_rows"] == 0

    [alert] = dq_alerts(city_engine)
    assert alert["source_file"] == "orders" and alert["status"] == "open"
    assert alert["dag_id"] == "vbp_monthly_monitoring" and alert["period"] == "2025-02"
    assert alert["severity"] == "high" and alert["branch_code"] == "CITY"
    assert Decimal(alert["metric_value"]) == 2 and Decimal(alert["threshold_value"]) == 0
    for fragment in ("vbp_orders", "O-NEG", "O-GHOST", "quantity", "product_code"):
        assert fragment in alert["message"]
    assert "O-APRIL" not in alert["message"]

    # rerun: still one alert
    validate_tables(city_engine, monthly_run("scheduled__2"), {"orders": FEBRUARY})
    assert len(dq_alerts(city_engine)) == 1

    with city_engine.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE order_id IN ('O-NEG', 'O-GHOST')"))
    validate_tables(city_engine, monthly_run("scheduled__3"), {"orders": FEBRUARY})
    assert [a["status"] for a in dq_alerts(city_engine)] == ["resolved"]


def test_a_table_read_in_chunks_gives_the_same_verdict_and_message(city_engine, monkeypatch):
    """Large tables are validated CHUNK_ROWS at a time: counts, row numbers and examples
    run on across the chunks, and the message is the one a single read gives."""
    from vbp_monitor.quality import validation

    with city_engine.begin() as conn:
        seed(conn, {"orders": [
            bad_order("O-NEG", "2025-02-14", quantity="-10", amount="-5"),
            bad_order("O-GHOST", "2025-02-15", product_code="P-GONE"),
        ]})
    whole = validate_tables(city_engine, monthly_run("whole"), {"orders": FEBRUARY})["orders"]
    [alert_whole] = dq_alerts(city_engine)
    monkeypatch.setattr(validation, "CHUNK_ROWS", 2)
    chunked = validate_tables(city_engine, monthly_run("chunked"), {"orders": FEBRUARY})["orders"]
    [alert_chunked] = dq_alerts(city_engine)
    assert chunked["rows"] == whole["rows"] == 5
    assert chunked["failed_rows"] == whole["failed_rows"] == 2
    assert chunked["failed_expectations"] == whole["failed_expectations"]
    assert alert_chunked["message"] == alert_whole["message"]
    assert "共读取 5 行" in alert_chunked["message"]


def test_cross_table_rules_hold_on_the_warehouse(city_engine):
    with city_engine.begin() as conn:
        seed(conn, {
            "products": [{"product_code": "P-ATV-S", "generic_name": "阿托伐他汀", "manufacturer": "丙药业",
                          "category": "drug", "consistency_passed": "true", "is_selected": "true",
                          "batch_code": "NB1", "selected_price": "1.2"}],
            "agreements": [
                {"agreement_id": "A-H1-ATV", "institution_code": "H1", "batch_code": "NB1",
                 "generic_name": "阿托伐他汀", "period_start": "2025-01-01", "period_end": "2025-12-31",
                 "agreed_quantity": "1", "agreed_ratio": "0.5", "agreed_amount": "1"},
                # H1's other agreements of NB1 run the calendar year 2025: this one is the odd one out
                {"agreement_id": "A-ODD", "institution_code": "H1", "batch_code": "NB1",
                 "generic_name": "阿托伐他汀", "period_start": "2025-03-01", "period_end": "2026-02-28",
                 "agreed_quantity": "1", "agreed_ratio": "0.5", "agreed_amount": "1"},
            ],
            "offline_filings": [{"order_id": "O-1", "filed_date": "2025-02-06"}],  # O-1 is a platform order
        })
    report = validate_tables(city_engine, monthly_run(), {"agreements": None, "offline_filings": None})
    assert report["agreements"]["failed_rows"] == 1
    assert report["agreements"]["failed_expectations"][0]["examples"] == ["A-ODD"]
    assert report["offline_filings"]["failed_rows"] == 1
    assert {a["source_file"] for a in dq_alerts(city_engine)} == {"agreements", "offline_filings"}


# a table missing a column; a broken table-level expectation
@pytest.mark.parametrize("statement, table, match, found", [
    ("ALTER TABLE payments DROP COLUMN amount", "payments", "amount", "amount"),
    ("UPDATE branches SET level = 'city' WHERE branch_code = 'B1'", "branches", "vbp_branches", "city"),
])
def test_a_broken_table_stops_the_task(city_engine, statement, table, match, found):
    with city_engine.begin() as conn:
        conn.execute(text(statement))
    with pytest.raises(DataQualityError, match=match):
        validate_tables(city_engine, monthly_run(), {table: None})
    [alert] = dq_alerts(city_engine)
    assert alert["source_file"] == table and found in alert["message"]


def test_unknown_table_is_a_programming_error(city_engine):
    with pytest.raises(ValueError):
        validate_tables(city_engine, monthly_run(), {"purchase_facts": None})
