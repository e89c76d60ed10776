"""validation.validate_tables: the rule DAGs' check of what they read, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
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


def messy_rows() -> dict[str, list[dict]]:
    """Rows that break every kind of row-level expectation (and the branches' one city)."""
    def agreement_row(agreement_id, institution, start, end, generic="氨氯地平", batch="NB1", ratio="0.5"):
        return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
                "generic_name": generic, "period_start": start, "period_end": end, "agreed_quantity": "1",
                "agreed_ratio": ratio, "agreed_amount": "1"}

    def product_row(code, **changes):
        row = {"product_code": code, "generic_name": "阿托伐他汀", "manufacturer": "丙药业", "category": "drug",
               "consistency_passed": "true", "is_selected": "true", "batch_code": "NB1", "selected_price": "1.2"}
        row.update(changes)
        return row

    return {
        "branches": [{"branch_code": "C2", "branch_name": "第二个市局", "level": "city"},
                     {"branch_code": "B3", "branch_name": "镇", "level": "town"}],
        "institutions": [{"institution_code": "X1", "institution_name": "某院", "branch_code": "B9",
                          "ownership": "state"}],
        "batches": [{"batch_code": "NB0", "batch_name": "零", "level": "city", "category": "drug",
                     "start_date": "2025-01-01", "cycle_months": "0"}],
        "products": [
            product_row("P-ATV-S"),
            product_row("P-SEL-BARE", batch_code="", selected_price=""),
            product_row("P-NEG", selected_price="-1"),
            product_row("P-FOOD", category="food", is_selected="false", batch_code="", selected_price=""),
            product_row("P-NB9", batch_code="NB9"),
            product_row("P-FREE", is_selected="false", batch_code="", selected_price="0"),
        ],
        "agreements": [
            agreement_row("A-H1-ATV", "H1", "2025-01-01", "2025-12-31", generic="阿托伐他汀"),
            agreement_row("A-ODD", "H1", "2025-03-01", "2026-02-28", generic="阿托伐他汀"),
            agreement_row("A-BACK", "M1", "2025-06-01", "2025-05-01"),
            agreement_row("A-NOGEN", "H1", "2025-01-01", "2025-12-31", generic="阿司匹林"),
            agreement_row("A-RATIO", "P1", "2025-01-01", "2025-12-31", ratio="1.5"),
            agreement_row("A-GHOST", "H9", "2025-01-01", "2025-12-31", batch="NB9"),
            # outside work_calendar (2015…2032): reversed fails, forward passes
            agreement_row("A-FAR", "M1", "2040-06-01", "2040-05-01"),
            agreement_row("A-FAR-OK", "P1", "2041-01-01", "2041-12-31"),
        ],
        "orders": [
            bad_order("O-NEG", "2025-02-14", quantity="-10", amount="-5"),
            bad_order("O-GHOST", "2025-02-15", product_code="P-GONE"),
            bad_order("O-DEV", "2025-02-16", amount="6"),
            bad_order("O-MAIL", "2025-02-17", channel="mail"),
            bad_order("O-EARLY", "2025-02-18", response_time="2025-02-18 08:00:00"),
            bad_order("O-ACC", "2025-02-19", acceptance_date="2025-02-18"),
            bad_order("O-SAMEDAY", "2025-02-20", acceptance_date="2025-02-20"),
            bad_order("O-MULTI", "2025-02-21", institution_code="H9", unit_price="-0.5", amount="-5"),
            bad_order("O-EDGE", "2025-02-22", amount="5.01"),  # within the 0.01 tolerance
            bad_order("O-EDGE-X", "2025-02-22", amount="5.02"),
            bad_order("O-FAR", "2025-02-23", acceptance_date="2040-01-01"),
            bad_order("O-APRIL", "2025-04-01", quantity="-1", amount="-0.5"),  # outside the judged month
        ],
        "offline_filings": [{"order_id": "O-1", "filed_date": "2025-02-06"},  # O-1 is a platform order
                            {"order_id": "O-NONE", "filed_date": "2025-02-06"}],
        "payments": [{"payment_id": "PAY-0", "order_id": "O-1", "payment_date": "2025-03-10", "amount": "0"},
                     {"payment_id": "PAY-X", "order_id": "O-GONE", "payment_date": "2025-03-10", "amount": "1"}],
        "prepayments": [{"txn_id": "T-X", "institution_code": "H1", "batch_code": "NB1", "txn_date": "2025-01-10",
                         "txn_type": "refund", "amount": "-1"}],
        "volume_reports": [{"report_id": "R-X", "institution_code": "H1", "batch_code": "NB9",
                            "generic_name": "氨氯地平", "reported_quantity": "-1", "report_date": "2024-11-15"}],
        "annual_reports": [{"branch_code": "B2", "report_year": "2024", "submitted_at": "2025-01-10 16:20:00",
                            "file_name": "B2_2024.pdf"},
                           {"branch_code": "B1", "report_year": "2023", "submitted_at": "2024-01-10 16:20:00",
                            "file_name": "annual_reports/B1_2023.DOCX"}],
        "baseline_prices": [{"batch_code": "NB9", "generic_name": "氨氯地平", "baseline_price": "0"}],
        # ends before it starts (fails); a blank end and a one-day sanction pass
        "supplier_sanctions": [
            {"manufacturer": "乙药业", "sanction_start": "2025-06-01", "sanction_end": "2025-05-01"},
            {"manufacturer": "丙药业", "sanction_start": "2025-01-01", "sanction_end": ""},
            {"manufacturer": "丁药业", "sanction_start": "2025-03-01", "sanction_end": "2025-03-01"},
        ],
    }


def pandas_outcome(conn, table: str, where=None):
    """The reference: the rows re-texted into a frame and validated by GX exactly as ingest
    validates a landing file (``expectations.validate_frame``)."""
    import pandas as pd

    from vbp_monitor.model.schema import metadata
    from vbp_monitor.quality.expectations import EXTRA_FIELDS, ROW_NUMBER, validate_frame
    from vbp_monitor.quality.sql_suite import contract_text

    definition, spec = metadata.tables[table], contract.FILES[table]
    query = select(*[definition.c[name] for name in spec.columns]).order_by(*definition.primary_key.columns)
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame({name: pd.Series([contract_text(kind, row[name]) for row in rows], dtype=str)
                          for name, kind in spec.columns.items()})
    frame[EXTRA_FIELDS] = 0
    frame[ROW_NUMBER] = range(1, len(frame) + 1)
    return validate_frame(conn, table, frame)


def test_the_sql_suites_give_the_verdicts_of_the_gx_suites(city_engine):
    """Every suite run in SQL over the warehouse table reports what GX reports on the same
    rows re-texted: rows read, failing rows, each failed expectation's count, examples and
    observed value, the example keys."""
    from vbp_monitor.quality.sql_suite import run_table_suite
    from vbp_monitor.quality.validation import Where

    with city_engine.begin() as conn:
        seed(conn, messy_rows())
    run = monthly_run()
    failing = {}
    with city_engine.connect() as conn:
        for table in contract.LOAD_ORDER:
            where = Where(FEBRUARY).clause(run) if table == "orders" else None
            sql, gx = run_table_suite(conn, table, where), pandas_outcome(conn, table, where)

            def figures(outcome):
                return [(f.expectation_type, f.column, f.scope, f.count, f.examples, f.observed)
                        for f in outcome.failures]

            assert (sql.row_count, sql.failing_rows) == (gx.row_count, len(gx.failed_rows)), table
            assert figures(sql) == figures(gx), table
            assert sql.example_keys() == gx.example_keys(), table
            assert sql.failure_summary() == gx.failure_summary(), table
            failing[table] = sql.failing_rows
    # the planted rows did fail: the comparison is not between two empty verdicts
    assert failing == {"holidays": 0, "branches": 1, "institutions": 1, "batches": 1, "products": 5,
                       "agreements": 6, "orders": 8, "offline_filings": 2, "payments": 2, "prepayments": 1,
                       "volume_reports": 1, "annual_reports": 1, "distributors": 0,
                       "supplier_sanctions": 1, "baseline_prices": 1}


def test_the_alert_gives_the_counts_of_the_sql_pass(city_engine):
    with city_engine.begin() as conn:
        seed(conn, {"orders": [
            *[bad_order(f"O-NEG-{n:03d}", "2025-02-14", quantity="-10", amount="-5") for n in range(300)],
            bad_order("O-GHOST", "2025-02-15", product_code="P-GONE"),
            bad_order("O-BOTH", "2025-02-15", product_code="P-GONE", quantity="-1", amount="-0.5"),
        ]})
    report = validate_tables(city_engine, monthly_run(), {"orders": FEBRUARY})["orders"]
    assert (report["rows"], report["failed_rows"]) == (3 + 302, 302)
    assert [(f["column"], f["count"], f["examples"]) for f in report["failed_expectations"]] == [
        ("product_code", 2, ["O-BOTH", "O-GHOST"]),
        ("quantity__num", 301, ["O-BOTH", "O-NEG-000", "O-NEG-001", "O-NEG-002", "O-NEG-003"]),
    ]
    [alert] = dq_alerts(city_engine)
    assert Decimal(alert["metric_value"]) == 302
    assert alert["message"].startswith(
        "数据质量问题：仓库表 orders（范围：order_date（下单日期） >= 2025-02-01 且 order_date（下单日期） <= 2025-02-28）"
        "共读取 305 行，302 行未通过期望套件 vbp_orders 的校验（月度监测 2025年2月）。未通过的期望："
        "expect_column_values_to_be_in_set（product_code（产品代码）须为 products 中已有的产品） 2 行；"
        "expect_column_values_to_be_between（quantity（数量）须大于 0） 301 行。"
        "示例主键：O-BOTH、O-GHOST、O-NEG-000、O-NEG-001、O-NEG-002。这些行仍在仓库中，相关预警可能不准确。")


def test_a_value_not_of_its_columns_type_fails_the_format_expectation(city_engine):
    """What a typed column can still hold: text in a numeric column or a malformed date on
    SQLite (type affinity), NaN in a NUMERIC on PostgreSQL."""
    with city_engine.begin() as conn:
        if city_engine.dialect.name == "sqlite":
            conn.execute(text("UPDATE payments SET amount = 'abc', payment_date = '10/03/2025'"))
            expected = [("expect_column_values_to_match_strftime_format", "payment_date"),
                        ("expect_column_values_to_match_regex", "amount")]
        else:
            conn.execute(text("UPDATE payments SET amount = 'NaN'"))
            expected = [("expect_column_values_to_match_regex", "amount")]
    report = validate_tables(city_engine, monthly_run(), {"payments": None})["payments"]
    assert report["failed_rows"] == 1
    assert [(f["expectation"], f["column"]) for f in report["failed_expectations"]] == expected
    assert report["failed_expectations"][0]["examples"] == ["PAY-1"]


def test_uniqueness_beyond_the_primary_key_is_counted_over_the_validated_rows(city_engine):
    from vbp_monitor.quality.sql_suite import run_table_suite
    from vbp_monitor.quality.validation import Where

    suite = {"name": "uniqueness", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "institution_code"}},
        {"type": "expect_compound_columns_to_be_unique",
         "kwargs": {"column_list": ["institution_code", "product_code"]}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "order_id"}},  # the key
    ]}
    with city_engine.begin() as conn:
        seed(conn, {"orders": [bad_order("O-4", "2025-02-20", product_code="P-AML-N"),
                               bad_order("O-5", "2025-02-25")]})
    with city_engine.connect() as conn:
        whole = run_table_suite(conn, "orders", None, suite)
        early = run_table_suite(conn, "orders", Where("order_date >= :first_day AND order_date <= :until",
                                                      until=dt.date(2025, 2, 20)).clause(monthly_run()), suite)
    assert [(f.column, f.count, f.examples) for f in whole.failures] == [
        ("institution_code", 3, ["O-1", "O-4", "O-5"]), ("institution_code+product_code", 2, ["O-1", "O-5"])]
    assert [(f.column, f.count, f.examples) for f in early.failures] == [("institution_code", 2, ["O-1", "O-4"])]


def test_an_expectation_without_sql_is_an_error_not_a_pass(city_engine):
    from vbp_monitor.quality.expectations import SuiteError
    from vbp_monitor.quality.sql_suite import run_table_suite

    suite = {"name": "mean", "expectations": [
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "amount", "max_value": 1}}]}
    with city_engine.connect() as conn, pytest.raises(SuiteError, match="expect_column_mean_to_be_between"):
        run_table_suite(conn, "orders", None, suite)


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
