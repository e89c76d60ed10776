"""Ingest of the landing folder (data-contract.md › Inbound) on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, text

from builders import full_city, header_of, write_csv, write_landing
from builders import order_line as order
from vbp_monitor.core.periods import ingest_period
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts, metadata, purchase_facts_months, quarantine, work_calendar
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.quality.ingest import ingest_landing

D = "2025-03-03"


def run_for(day: str = D, run_id: str = "manual__1") -> RunContext:
    return RunContext.for_test("vbp_ingest", ingest_period(day), run_id=run_id)


def table_rows(engine, name: str) -> list[tuple]:
    table = metadata.tables[name]
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one()
                for name in contract.LOAD_ORDER}


def dq_alerts(engine, **filters) -> list[dict]:
    query = select(alerts).where(alerts.c.rule_code == "DATA_QUALITY")
    for name, value in filters.items():
        query = query.where(alerts.c[name] == value)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(alerts.c.alert_id)).mappings()]


def quarantined(engine, source_file: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(
            select(quarantine).where(quarantine.c.source_file == source_file).order_by(quarantine.c.row_number)
        ).mappings()]


JAN, FEB, MAR = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)


def list_months(engine, *months: dt.date) -> None:
    """List months in the full facts' cache index (as a build would, without facts)."""
    with engine.begin() as conn:
        conn.execute(insert(purchase_facts_months), [
            {"month_start": month, "built_at": dt.datetime.now(dt.UTC), "line_count": 3} for month in months])


def listed_months(engine) -> set[dt.date]:
    with engine.connect() as conn:
        return set(conn.execute(select(purchase_facts_months.c.month_start)).scalars())


# ---------------------------------------------------------------- loading
def test_every_table_loads_and_a_second_ingest_changes_nothing(engine, tmp_path):
    landing = write_landing(tmp_path / "landing", full_city())
    summary = ingest_landing(engine, run_for(), landing)

    expected = {name: len(rows) for name, rows in full_city().items()}
    assert counts(engine) == expected
    assert summary["absent"] == []
    assert summary["files"]["orders.csv"] == {**summary["files"]["orders.csv"],
                                              "read": 3, "loaded": 3, "quarantined": 0, "rejected": 0}
    assert dq_alerts(engine) == []
    assert quarantined(engine, "orders.csv") == []

    # typed and derived as the rules read them
    with engine.connect() as conn:
        o1 = conn.execute(text("SELECT * FROM orders WHERE order_id = 'O-1'")).mappings().one()
        batch = conn.execute(text("SELECT cycle_end_date FROM batches")).scalar_one()
        cancelled = dict(conn.execute(text("SELECT order_id, cancelled FROM orders")).all())
        feb8 = conn.execute(select(work_calendar).where(work_calendar.c.day == dt.date(2025, 2, 8))).mappings().one()
        cycle_months = conn.execute(text("SELECT COUNT(*) FROM cycle_month_calendar")).scalar_one()
    assert str(o1["order_date"]) == "2025-02-03"
    assert Decimal(str(o1["response_hours"])) == Decimal("5.5")
    assert Decimal(str(o1["amount"])) == Decimal("500")
    assert str(batch) == "2026-12-31"
    assert {k: bool(v) for k, v in cancelled.items()} == {"O-1": False, "O-2": False, "O-3": True}
    assert feb8["is_workday"] and feb8["source"] == "override"  # holidays.csv rebuilt the calendar
    assert cycle_months == 24

    before = {name: table_rows(engine, name) for name in contract.LOAD_ORDER}
    list_months(engine, JAN, FEB)
    ingest_landing(engine, run_for(run_id="manual__2"), landing)
    assert {name: table_rows(engine, name) for name in contract.LOAD_ORDER} == before
    assert dq_alerts(engine) == []
    # products, batches and agreements were (re)loaded: every month of the facts cache is stale
    assert listed_months(engine) == set()
    # orders alone, the same rows: the months of their lines (all in February 2025) are stale
    list_months(engine, JAN, FEB)
    ingest_landing(engine, run_for(run_id="manual__3"),
                   write_landing(tmp_path / "orders_again", {"orders": full_city()["orders"]}))
    assert {name: table_rows(engine, name) for name in contract.LOAD_ORDER} == before
    assert listed_months(engine) == {JAN}


def test_absent_files_leave_their_tables_alone(engine, tmp_path):
    landing = write_landing(tmp_path / "landing", full_city())
    ingest_landing(engine, run_for(), landing)
    (landing / "orders.csv").unlink()
    (landing / "payments.csv").unlink()
    summary = ingest_landing(engine, run_for(run_id="manual__2"), landing)
    assert {"orders", "payments"} <= set(summary["absent"])
    assert counts(engine)["orders"] == 3 and counts(engine)["payments"] == 1


def test_gb18030_csv_xlsx_and_utf8_bom_load_like_utf8(engine, tmp_path):
    data = full_city()
    formats = {"branches": "utf-8-sig", "institutions": "gb18030", "products": "gb18030",
               "batches": "xlsx-typed", "orders": "xlsx-typed", "agreements": "xlsx"}
    landing = write_landing(tmp_path / "landing", data, formats=formats)
    assert (landing / "institutions.csv").read_bytes().decode("gb18030").startswith("institution_code")
    summary = ingest_landing(engine, run_for(), landing)

    assert summary["files"]["orders.xlsx"]["loaded"] == 3
    assert summary["files"]["batches.xlsx"]["loaded"] == 1
    assert summary["files"]["institutions.csv"]["loaded"] == 4
    assert dq_alerts(engine) == []
    assert counts(engine) == {name: len(rows) for name, rows in data.items()}
    with engine.connect() as conn:
        names = dict(conn.execute(text("SELECT institution_code, institution_name FROM institutions")).all())
        branch = conn.execute(text("SELECT branch_code, branch_name FROM branches WHERE level = 'city'")).one()
        o1 = conn.execute(text("SELECT order_time, quantity, unit_price, acceptance_date FROM orders "
                               "WHERE order_id = 'O-1'")).one()
        start = conn.execute(text("SELECT start_date, cycle_months FROM batches")).one()
        price = conn.execute(text("SELECT selected_price FROM products WHERE product_code = 'P-AML-S'")).scalar()
    assert names["H2"] == "南康区人民医院"
    assert tuple(branch) == ("CITY", "市医保局")  # the BOM is not part of the first column name
    assert str(o1.order_time).startswith("2025-02-03 09:30:00")
    assert Decimal(str(o1.quantity)) == 1000 and Decimal(str(o1.unit_price)) == Decimal("0.5")
    assert str(o1.acceptance_date) == "2025-02-05"
    assert str(start.start_date) == "2025-01-01" and start.cycle_months == 24
    assert Decimal(str(price)) == Decimal("0.5")


# ---------------------------------------------------------------- quarantine
def test_bad_rows_are_quarantined_with_reasons_and_one_alert_per_file(engine, tmp_path):
    data = full_city(orders=[
        order("O-NEG", quantity="-5", amount="-2.5"),
        order("O-UNKNOWN", product_code="P-NOPE"),
    ])
    landing = write_landing(tmp_path / "landing", data)
    summary = ingest_landing(engine, run_for(), landing)

    assert summary["files"]["orders.csv"]["quarantined"] == 2
    assert summary["files"]["orders.csv"]["loaded"] == 3
    with engine.connect() as conn:
        loaded = set(conn.execute(text("SELECT order_id FROM orders")).scalars())
    assert loaded == {"O-1", "O-2", "O-3"}

    rows = quarantined(engine, "orders.csv")
    assert [(r["row_number"], r["row_key"]) for r in rows] == [(4, "O-NEG"), (5, "O-UNKNOWN")]
    assert "quantity" in rows[0]["reasons"] and "须大于 0" in rows[0]["reasons"]
    assert "product_code" in rows[1]["reasons"] and "products" in rows[1]["reasons"]
    raw = json.loads(rows[0]["raw_row"])
    assert raw["quantity"] == "-5" and raw["order_id"] == "O-NEG" and list(raw) == header_of("orders")
    assert rows[0]["run_id"] == "manual__1"

    [alert] = dq_alerts(engine)
    assert alert["source_file"] == "orders.csv"
    assert alert["severity"] == "high" and alert["branch_code"] == "CITY" and alert["status"] == "open"
    assert Decimal(alert["metric_value"]) == 2 and Decimal(alert["threshold_value"]) == 0
    assert alert["period"] == D and alert["dag_id"] == "vbp_ingest"
    message = alert["message"]
    for fragment in ("orders.csv", "vbp_orders", "expect_column_values_to_be_between",
                     "expect_column_values_to_be_in_set", "O-NEG", "O-UNKNOWN", "quantity", "product_code"):
        assert fragment in message

    # the same delivery again: same quarantine, same single alert
    ingest_landing(engine, run_for(run_id="manual__2"), landing)
    assert [(r["row_number"], r["row_key"]) for r in quarantined(engine, "orders.csv")] == [
        (4, "O-NEG"), (5, "O-UNKNOWN")]
    assert len(dq_alerts(engine)) == 1


def test_corrected_redelivery_resolves_the_files_alert(engine, tmp_path):
    landing = write_landing(tmp_path / "landing", full_city(orders=[order("O-NEG", quantity="-5", amount="-2.5")]))
    ingest_landing(engine, run_for(), landing)
    assert [a["status"] for a in dq_alerts(engine, source_file="orders.csv")] == ["open"]

    write_csv(landing, "orders", full_city(orders=[order("O-NEG", quantity="5", amount="2.5")])["orders"])
    summary = ingest_landing(engine, run_for(run_id="manual__2"), landing)
    assert summary["files"]["orders.csv"]["quarantined"] == 0
    assert [a["status"] for a in dq_alerts(engine, source_file="orders.csv")] == ["resolved"]
    assert quarantined(engine, "orders.csv") == []
    assert counts(engine)["orders"] == 4


def test_missing_column_rejects_the_whole_file(engine, tmp_path):
    data = full_city()
    landing = write_landing(tmp_path / "landing", data)
    ingest_landing(engine, run_for(), landing)
    before = table_rows(engine, "orders")

    changed = [dict(row, quantity="99999") for row in data["orders"]] + [order("O-NEW")]
    header = [name for name in header_of("orders") if name != "channel"]
    write_csv(landing, "orders", changed, header=header)
    summary = ingest_landing(engine, run_for(run_id="manual__2"), landing)

    assert summary["files"]["orders.csv"]["rejected"] == 4
    assert summary["files"]["orders.csv"]["loaded"] == 0
    assert table_rows(engine, "orders") == before  # nothing of it loaded
    [alert] = dq_alerts(engine, source_file="orders.csv")
    assert "orders.csv" in alert["message"] and "channel" in alert["message"] and "拒收" in alert["message"]
    assert Decimal(alert["metric_value"]) == 4 and Decimal(alert["threshold_value"]) == 0
    assert alert["severity"] == "high"


def test_missing_column_on_first_delivery_loads_nothing(engine, tmp_path):
    data = full_city()
    landing = write_landing(tmp_path / "landing", data)
    write_csv(landing, "payments", data["payments"], header=["payment_id", "order_id", "payment_date"])
    ingest_landing(engine, run_for(), landing)
    assert counts(engine)["payments"] == 0
    [alert] = dq_alerts(engine, source_file="payments.csv")
    assert "amount" in alert["message"] and Decimal(alert["metric_value"]) == 1


def test_branches_need_exactly_one_city_row(engine, tmp_path):
    data = full_city()
    data["branches"].append({"branch_code": "CITY2", "branch_name": "另一个市局", "level": "city", "emails": ""})
    landing = write_landing(tmp_path / "landing", data)
    summary = ingest_landing(engine, run_for(), landing)
    assert summary["files"]["branches.csv"]["rejected"] == 4
    assert counts(engine)["branches"] == 0
    [alert] = dq_alerts(engine, source_file="branches.csv")
    assert "city" in alert["message"] and "expect_column_sum_to_be_between" in alert["message"]
    # without branches, institutions cannot reference them: quarantined, not loaded
    assert summary["files"]["institutions.csv"]["quarantined"] == 4


def test_row_level_expectations_and_their_boundaries(engine, tmp_path):
    data = full_city(
        orders=[
            order("O-AMT-OK", quantity="3", unit_price="0.3333", amount="1.00"),      # 0.0001 off: fine
            order("O-AMT-EDGE", quantity="1", unit_price="10", amount="10.01"),      # exactly 0.01 off: fine
            order("O-AMT-BAD", quantity="1", unit_price="10", amount="10.02"),
            order("O-RESP-BAD", response_time="2025-02-20 08:59:59"),
            order("O-RESP-OK", response_time="2025-02-20 09:00:00"),
            order("O-ACC-BAD", acceptance_date="2025-02-19"),
            order("O-ACC-OK", acceptance_date="2025-02-20"),
            order("O-DATE-BAD", order_time="2025-02-30 09:00:00"),
            order("O-CHANNEL-BAD", channel="online"),
            order("O-BOOL-BAD", cancelled="maybe"),
            order("O-BOOL-OK", cancelled="是"),
            order("O-NUM-BAD", quantity="10件", amount="5"),
            order("O-DUP"), order("O-DUP"),
            order("O-REQ-BAD", institution_code=""),
            order("O-PRICE-ZERO", unit_price="0", amount="0"),
        ],
        products=[
            {"product_code": "P-SEL-NOPRICE", "generic_name": "阿托伐他汀", "manufacturer": "丙药业",
             "category": "drug", "consistency_passed": "1", "is_selected": "1", "batch_code": "NB1",
             "selected_price": ""},
            {"product_code": "P-BAD-CAT", "generic_name": "阿托伐他汀", "manufacturer": "丙药业", "category": "food",
             "consistency_passed": "0", "is_selected": "0"},
        ],
        agreements=[
            {"agreement_id": "A-NOT-SELECTED", "institution_code": "H1", "batch_code": "NB1",
             "generic_name": "阿托伐他汀", "period_start": "2025-01-01", "period_end": "2025-12-31",
             "agreed_quantity": "1", "agreed_ratio": "0.5", "agreed_amount": "1"},
            {"agreement_id": "A-RATIO", "institution_code": "M1", "batch_code": "NB1", "generic_name": "氨氯地平",
             "period_start": "2025-01-01", "period_end": "2025-12-31", "agreed_quantity": "1",
             "agreed_ratio": "1.2", "agreed_amount": "1"},
            {"agreement_id": "A-BACKWARDS", "institution_code": "P1", "batch_code": "NB1", "generic_name": "氨氯地平",
             "period_start": "2025-12-31", "period_end": "2025-01-01", "agreed_quantity": "1",
             "agreed_ratio": "0.5", "agreed_amount": "1"},
        ],
        offline_filings=[{"order_id": "O-1", "filed_date": "2025-02-05"}],  # O-1 is a platform order
        annual_reports=[{"branch_code": "B2", "report_year": "2024", "submitted_at": "2025-01-12 10:00:00",
                         "file_name": "B2_2024.pdf"}],
        prepayments=[{"txn_id": "T-BAD", "institution_code": "H1", "batch_code": "NB1", "txn_date": "2025-01-10",
                      "txn_type": "refund", "amount": "0"}],
    )
    landing = write_landing(tmp_path / "landing", data)
    ingest_landing(engine, run_for(), landing)

    def reasons(file_name):
        return {row["row_key"]: row["reasons"] for row in quarantined(engine, file_name)}

    orders = reasons("orders.csv")
    assert set(orders) == {"O-AMT-BAD", "O-RESP-BAD", "O-ACC-BAD", "O-DATE-BAD", "O-CHANNEL-BAD", "O-BOOL-BAD",
                           "O-NUM-BAD", "O-DUP", "O-REQ-BAD"}
    # derived and helper columns read as what they are, never by their internal names
    assert "金额与数量×单价之差" in orders["O-AMT-BAD"] and "amount_deviation" not in orders["O-AMT-BAD"]
    assert not any("__num" in reason or "__bool" in reason for reason in orders.values())
    assert "response_time" in orders["O-RESP-BAD"]
    assert "acceptance_date" in orders["O-ACC-BAD"]
    assert "expect_column_values_to_match_strftime_format" in orders["O-DATE-BAD"]
    assert "platform、offline" in orders["O-CHANNEL-BAD"]
    assert "cancelled" in orders["O-BOOL-BAD"]
    assert "expect_column_values_to_match_regex" in orders["O-NUM-BAD"]
    assert "expect_column_values_to_be_unique" in orders["O-DUP"]
    assert "institution_code" in orders["O-REQ-BAD"] and "必填" in orders["O-REQ-BAD"]
    assert len(quarantined(engine, "orders.csv")) == 10  # both O-DUP rows
    with engine.connect() as conn:
        loaded = set(conn.execute(text("SELECT order_id FROM orders")).scalars())
    assert {"O-AMT-OK", "O-AMT-EDGE", "O-RESP-OK", "O-ACC-OK", "O-BOOL-OK", "O-PRICE-ZERO"} <= loaded

    products = reasons("products.csv")
    assert set(products) == {"P-SEL-NOPRICE", "P-BAD-CAT"}
    assert "selected_price" in products["P-SEL-NOPRICE"]
    assert "category" in products["P-BAD-CAT"]

    agreements = reasons("agreements.csv")
    assert set(agreements) == {"A-NOT-SELECTED", "A-RATIO", "A-BACKWARDS"}
    assert "中选产品的通用名" in agreements["A-NOT-SELECTED"]
    assert "0 到 1" in agreements["A-RATIO"]
    assert "period_end" in agreements["A-BACKWARDS"]

    assert "offline" in reasons("offline_filings.csv")["O-1"]
    assert ".docx" in reasons("annual_reports.csv")["B2|2024"]
    prepay = reasons("prepayments.csv")["T-BAD"]
    assert "txn_type" in prepay and "amount" in prepay

    files = {a["source_file"] for a in dq_alerts(engine)}
    assert files == {"orders.csv", "products.csv", "agreements.csv", "offline_filings.csv",
                     "annual_reports.csv", "prepayments.csv"}


def test_agreements_of_an_institution_and_batch_share_their_periods(engine, tmp_path):
    def agreement(agreement_id, generic, start, end, institution="H1"):
        return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": "NB1",
                "generic_name": generic, "period_start": start, "period_end": end, "agreed_quantity": "10",
                "agreed_ratio": "0.5", "agreed_amount": "5"}

    data = full_city(
        products=[{"product_code": "P-ATV-S", "generic_name": "阿托伐他汀", "manufacturer": "丙药业",
                   "category": "drug", "consistency_passed": "true", "is_selected": "true", "batch_code": "NB1",
                   "selected_price": "1.2"},
                  {"product_code": "P-MET-S", "generic_name": "二甲双胍", "manufacturer": "丁药业", "category": "drug",
                   "consistency_passed": "true", "is_selected": "true", "batch_code": "NB1", "selected_price": "0.1"}],
    )
    data["agreements"] = [
        agreement("A-1", "氨氯地平", "2025-01-01", "2025-12-31"),
        agreement("A-2", "阿托伐他汀", "2025-01-01", "2025-12-31"),
        agreement("A-ODD", "二甲双胍", "2025-03-01", "2026-02-28"),          # overlaps, differs: the odd one out
        agreement("A-RENEWAL", "氨氯地平", "2026-01-01", "2026-12-31"),      # the next year: fine
        agreement("A-H2", "氨氯地平", "2025-03-01", "2026-02-28", "H2"),     # another institution: fine
    ]
    landing = write_landing(tmp_path / "landing", data)
    ingest_landing(engine, run_for(), landing)
    rows = quarantined(engine, "agreements.csv")
    assert [r["row_key"] for r in rows] == ["A-ODD"]
    assert "共用协议年度" in rows[0]["reasons"]

    # a later delivery of one more agreement that disagrees with the stored year
    write_csv(landing, "agreements", [agreement("A-LATE", "二甲双胍", "2025-02-01", "2026-01-31")])
    ingest_landing(engine, run_for(run_id="manual__2"), landing)
    assert [r["row_key"] for r in quarantined(engine, "agreements.csv")] == ["A-LATE"]
    with engine.connect() as conn:
        stored = set(conn.execute(text("SELECT agreement_id FROM agreements")).scalars())
    assert stored == {"A-1", "A-2", "A-RENEWAL", "A-H2"}


def test_extra_fields_and_blank_lines(engine, tmp_path):
    data = full_city()
    landing = write_landing(tmp_path / "landing", data)
    lines = (landing / "payments.csv").read_text(encoding="utf-8").splitlines()
    lines.insert(1, "")
    lines.append("PAY-2,O-1,2025-03-11,10,unexpected")
    lines.append("PAY-3,O-1,2025-03-12,10,")  # a trailing separator is not data
    (landing / "payments.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ingest_landing(engine, run_for(), landing)
    assert summary["files"]["payments.csv"] == {**summary["files"]["payments.csv"],
                                                "read": 3, "loaded": 2, "quarantined": 1}
    [row] = quarantined(engine, "payments.csv")
    assert row["row_key"] == "PAY-2" and row["row_number"] == 2 and "字段数" in row["reasons"]


def test_annual_reports_check_only_the_file_suffix(engine, tmp_path):
    data = full_city(annual_reports=[
        {"branch_code": "B2", "report_year": "2024", "submitted_at": "2025-01-12 10:00:00", "file_name": "b2.MD"},
    ])
    landing = write_landing(tmp_path / "landing", data)
    ingest_landing(engine, run_for(), landing)  # B1_2024.docx is not in the folder: not our business
    assert counts(engine)["annual_reports"] == 2
    assert dq_alerts(engine) == []


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"])
def test_an_empty_file_is_rejected(engine, tmp_path, content):
    landing = write_landing(tmp_path / "landing", {k: v for k, v in full_city().items() if k != "payments"})
    (landing / "payments.csv").write_bytes(content)
    summary = ingest_landing(engine, run_for(), landing)
    assert summary["files"]["payments.csv"]["rejected"] == 0
    [alert] = dq_alerts(engine, source_file="payments.csv")
    assert "表头" in alert["message"]


@pytest.mark.parametrize("hostile", ["360722/../../../../escaped", "B3\r\nBcc: x@example.org", "../B3", "B 3"])
def test_a_branch_code_that_could_leave_the_output_folder_or_a_header_is_quarantined(engine, tmp_path, hostile):
    # branch codes become file names and mail routing: only letters, digits, _ and -
    data = full_city()
    data["branches"].append({"branch_code": hostile, "branch_name": "恶意分局", "level": "branch", "emails": "x@example.org"})
    data["institutions"].append({"institution_code": "H-EVIL", "institution_name": "某医院", "branch_code": hostile,
                                 "ownership": "public", "grade": ""})
    summary = ingest_landing(engine, run_for(), write_landing(tmp_path / "landing", data))

    assert summary["files"]["branches.csv"]["quarantined"] == 1
    assert summary["files"]["branches.csv"]["loaded"] == len(data["branches"]) - 1
    [row] = quarantined(engine, "branches.csv")
    assert json.loads(row["raw_row"])["branch_code"] == hostile and "branch_code" in row["reasons"]
    with engine.connect() as conn:
        assert hostile not in set(conn.execute(text("SELECT branch_code FROM branches")).scalars())
    # its institution cannot reference it: quarantined too
    assert [r["row_key"] for r in quarantined(engine, "institutions.csv")] == ["H-EVIL"]


# ---------------------------------------------------------------- large files
def orders_outcome(engine, landing, run_id: str) -> tuple:
    """What a user sees of an ingest of orders.csv: its summary, quarantine, alert and rows."""
    summary = ingest_landing(engine, run_for(run_id=run_id), landing)["files"]["orders.csv"]
    rows = [(r["row_number"], r["row_key"], r["raw_row"], r["reasons"]) for r in quarantined(engine, "orders.csv")]
    return ({k: v for k, v in summary.items() if k != "seconds"}, rows,
            [(a["message"], a["metric_value"], a["status"]) for a in dq_alerts(engine, source_file="orders.csv")],
            table_rows(engine, "orders"))


def test_a_file_larger_than_a_chunk_loads_like_one_chunk(engine, tmp_path, monkeypatch):
    from vbp_monitor.quality import ingest

    data = full_city(orders=[
        order("O-A"),                                             # row 4 (chunk 1); again in row 9 (chunk 3)
        order("O-B", quantity="-5", amount="-2.5"),               # row 5: a bad row in chunk 2
        order("O-1"),                                             # row 6: O-1 is row 1 (chunk 1)
        order("O-C", order_time="2025-02-30 09:00:00"),           # row 7: not a time
        order("O-D", cancelled="是", order_time="2025-2-20 9:00:00"),  # row 8: strptime reads it
        order("O-A"),                                             # row 9 (chunk 3)
    ])
    landing = write_landing(tmp_path / "landing", data)

    whole = orders_outcome(engine, landing, "manual__1")  # 9 rows: one chunk
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 4)
    monkeypatch.setattr(ingest, "KEY_BATCH_ROWS", 2)
    chunked = orders_outcome(engine, landing, "manual__2")  # rows 1-4, 5-8, 9
    assert chunked == whole

    summary, rows, [(message, metric, status)], loaded = chunked
    assert summary == {**summary, "read": 9, "loaded": 3, "quarantined": 6, "rejected": 0}
    assert [(number, key) for number, key, _, _ in rows] == [
        (1, "O-1"), (4, "O-A"), (5, "O-B"), (6, "O-1"), (7, "O-C"), (9, "O-A")]
    reasons = {number: text for number, _, _, text in rows}
    for number in (1, 4, 6, 9):
        assert "expect_column_values_to_be_unique" in reasons[number]
    assert "须大于 0" in reasons[5] and "expect_column_values_to_match_strftime_format" in reasons[7]
    assert "expect_column_values_to_be_unique（主键 order_id（订单号）在文件内不得重复） 4 行" in message
    assert "示例主键：O-1、O-A、O-B、O-1、O-C。" in message
    assert Decimal(metric) == 6 and status == "open"
    assert [row[0] for row in loaded] == ["O-2", "O-3", "O-D"]
    assert str(loaded[2][5]).startswith("2025-02-20 09:00:00")


def test_keys_repeated_within_their_chunks_are_judged_without_a_pass_over_the_file(engine, tmp_path, monkeypatch):
    """Several chunks, each repeating only keys of its own: judged chunk by chunk on their own
    repeats (no pass over the keys first), like the whole file in one chunk."""
    from vbp_monitor.quality import ingest

    data = full_city(orders=[
        order("O-D"),                                             # row 4 (chunk 1: rows 1-4)
        order("O-E"), order("O-E", quantity="2", amount="1"),     # rows 5, 6 (chunk 2: rows 5-8)
        order("O-F"), order("O-G"),
        order("O-H", order_time="2025-02-30 09:00:00"),           # row 9 (chunk 3): bad time, repeated
        order("O-H"),
    ])
    landing = write_landing(tmp_path / "landing", data)

    whole = orders_outcome(engine, landing, "manual__1")
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 4)

    def no_pass(*args):
        raise AssertionError("no key is in two chunks: no pass over the keys")

    monkeypatch.setattr(ingest, "duplicate_keys", no_pass)
    chunked = orders_outcome(engine, landing, "manual__2")
    assert chunked == whole
    summary, rows, _, loaded = chunked
    assert [(number, key) for number, key, _, _ in rows] == [(5, "O-E"), (6, "O-E"), (9, "O-H"), (10, "O-H")]
    assert "expect_column_values_to_match_strftime_format" in rows[2][3] and "unique" in rows[2][3]
    assert [row[0] for row in loaded] == ["O-1", "O-2", "O-3", "O-D", "O-F", "O-G"]


def test_a_file_of_several_chunks_failing_a_file_level_expectation_is_rejected(engine, tmp_path, monkeypatch):
    from vbp_monitor.quality import ingest

    data = full_city(orders=[order(f"O-{n}") for n in range(10, 20)])
    landing = write_landing(tmp_path / "landing", data)
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 4)
    failing = ingest.suites.Failure("expect_column_to_exist", "order_id", "表头须有列 order_id", "file", 0,
                                    observed=None)
    real = ingest.validate_chunk
    calls = []

    def validate(conn, table, frame, duplicates):
        found = real(conn, table, frame, duplicates)
        if table == "orders":
            calls.append(len(frame))
            if len(calls) == 2:
                found.failures.append(failing)
        return found

    monkeypatch.setattr(ingest, "validate_chunk", validate)
    summary = ingest_landing(engine, run_for(), landing)["files"]["orders.csv"]
    assert calls == [4, 4]
    assert summary["rejected"] == 13 and summary["loaded"] == 0
    assert counts(engine)["orders"] == 0  # the first chunk's rows were rolled back
    [alert] = dq_alerts(engine, source_file="orders.csv")
    assert "整份文件被拒收（共 13 行数据" in alert["message"] and "expect_column_to_exist" in alert["message"]


def test_presolved_strftime_check_is_strptime():
    import pandas as pd

    from vbp_monitor.quality import ingest

    texts = ["2025-01-01 00:00:00", "0000-01-01 00:00:00", "2025-2-3 4:05:06", "2025-02-29 00:00:00",
             "2024-02-29 00:00:00", "2025-01-01 23:59:60", "1500-06-01 00:00:00", "２０２５-01-01 00:00:00",
             "2025-01-01  00:00:00", "9999-12-31 23:59:59", "2025-01-01", "2025-13-01 00:00:00", None,
             "2025-01-01 23:59:61", "2025-01-01 24:00:00", "2025-01-01 23:60:00", "2025-04-31 00:00:00",
             "0001-01-01 00:00:00", "1677-09-21 00:12:43", "2262-04-12 00:00:00", "2025-04-31", "0000-01-01"]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        expected = sorted({t for t in texts if t is not None and ingest._strptime_fails(t, fmt)})
        series = pd.Series(texts, dtype=str)
        assert ingest.unparseable(series, fmt) == expected
        # with the validation's helper column (pandas' parse of every text)
        assert ingest.unparseable(series, fmt, pd.to_datetime(series, format=fmt, errors="coerce")) == expected


def _hostile_orders() -> list[dict]:
    """Orders breaking each kind of expectation, with missing values where a check skips them."""
    return [
        order("O-OK", response_time="2025-02-20 10:30:00", acceptance_date="2025-02-21", cancelled=" 是 "),
        order("O-AMT-EDGE", quantity="1", unit_price="10", amount="10.01"),
        order("O-AMT-BAD", quantity="1", unit_price="10", amount="10.02"),
        order("O-RESP-BAD", response_time="2025-02-20 08:59:59"),
        order("O-ACC-BAD", acceptance_date="2025-02-19"),
        order("O-DATE-BAD", order_time="2025-02-30 09:00:00"),
        order("O-DATE-SHORT", order_time="2025-2-20 9:00:00"),
        order("O-CHANNEL-BAD", channel="online"), order("O-CHANNEL-EMPTY", channel=" "),
        order("O-BOOL-BAD", cancelled="maybe"), order("O-NUM-BAD", quantity="10件", amount="5"),
        order("O-NUM-SIGN", quantity="+.5", amount="0.25"), order("O-ZERO", quantity="0", amount="0"),
        order("O-DUP"), order("O-DUP"), order("O-REF-BAD", institution_code="H-NOWHERE"),
        order("O-PRODUCT-BAD", product_code="P-NOWHERE"), order("O-REQ-BAD", product_code=""),
        order("O-EXTRA", cancelled="false,x"),
    ]


def test_expectations_pandas_proves_change_no_outcome(engine, tmp_path, monkeypatch):
    """What GX is spared (``proven``) changes nothing: the same rows quarantined with the same
    reasons, the same alert and rows loaded as when GX judges every expectation."""
    from vbp_monitor.quality import expectations

    lines = [",".join(row.values()) for row in _hostile_orders()]
    landing = write_landing(tmp_path / "landing", full_city(orders=[order("O-SEED")]))
    (landing / "orders.csv").write_text(",".join(order("x")) + "\n" + "\n".join(lines) + "\n", encoding="utf-8")

    def outcome(run_id):
        summary = ingest_landing(engine, run_for(run_id=run_id), landing)["files"]
        return ({name: {k: v for k, v in s.items() if k != "seconds"} for name, s in summary.items()},
                [(r["row_number"], r["row_key"], r["raw_row"], r["reasons"]) for r in quarantined(engine, "orders.csv")],
                [(a["message"], a["metric_value"], a["status"]) for a in dq_alerts(engine)],
                {name: table_rows(engine, name) for name in contract.LOAD_ORDER})

    spared = outcome("manual__1")
    monkeypatch.setattr(expectations, "proven", lambda expectation, frame, present=None: False)
    judged = outcome("manual__2")
    assert spared == judged
    keys = {key for _, key, _, _ in spared[1]}
    assert {"O-AMT-BAD", "O-RESP-BAD", "O-ACC-BAD", "O-DATE-BAD", "O-CHANNEL-BAD", "O-CHANNEL-EMPTY", "O-BOOL-BAD",
            "O-NUM-BAD", "O-ZERO", "O-DUP", "O-REF-BAD", "O-PRODUCT-BAD", "O-REQ-BAD", "O-EXTRA"} == keys
    assert {"O-OK", "O-AMT-EDGE", "O-DATE-SHORT", "O-NUM-SIGN"} <= {row[0] for row in spared[3]["orders"]}


def test_many_good_rows_load_through_copy_like_row_by_row(engine, tmp_path, monkeypatch):
    """A file of more rows than COPY_MIN_ROWS (PostgreSQL: COPY of the typed columns) loads the
    very values the paged INSERT loads, with the bad rows quarantined alike."""
    from vbp_monitor.core import db
    from vbp_monitor.quality import ingest

    rows = [order(f"O-{n:05d}", quantity=f"{n % 7 + 1}", unit_price=["0.5", "0.50", "12.3456", "+.5"][n % 4],
                  amount=str((n % 7 + 1) * Decimal(["0.5", "0.50", "12.3456", "0.5"][n % 4])),
                  response_time="" if n % 3 else f"2025-02-20 {9 + n % 10:02d}:{n % 60:02d}:07",
                  acceptance_date="" if n % 5 else "2025-2-21", distributor_code="" if n % 2 else "D1",
                  cancelled=["false", "是", "1", "no"][n % 4], order_time=f"2025-02-20 09:00:{n % 60:02d}")
            for n in range(1300)]
    rows[7] = order("O-BAD", quantity="1e3")
    # COPY text: a time strptime reads that is not zero-padded, one beyond 2099 (quarantined by
    # typing, after validation), texts COPY must escape
    rows[8] = order("O-SHORT", order_time="2025-2-20 9:00:07", response_time="2025-02-20 10:00:00")
    rows[9] = order("O-LATE", response_time="2100-01-01 00:00:00")
    rows[10] = order("O-ESCAPE", distributor_code="D\\1\tX\rY\nZ")
    landing = write_landing(tmp_path / "landing", full_city(orders=rows))

    def outcome(run_id):
        ingest_landing(engine, run_for(run_id=run_id), landing)
        loaded = table_rows(engine, "orders")
        with engine.begin() as conn:
            conn.execute(metadata.tables["orders"].delete())
        return loaded, [(r["row_number"], r["reasons"]) for r in quarantined(engine, "orders.csv")]

    by_copy = outcome("manual__1")
    # in chunks: a chunk's COPY runs while the next chunk is read and validated
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 400)
    monkeypatch.setattr(db, "COPY_MIN_ROWS", 100)
    assert outcome("manual__2") == by_copy
    monkeypatch.setattr(db, "COPY_MIN_ROWS", 10**9)
    assert outcome("manual__3") == by_copy
    assert len([row for row in by_copy[0] if row[0].startswith("O-0")]) == 1296 and len(by_copy[1]) == 2
    loaded = {row[0]: row for row in by_copy[0]}
    assert str(loaded["O-SHORT"][5]).startswith("2025-02-20 09:00:07") and loaded["O-ESCAPE"][3] == "D\\1\tX\rY\nZ"


# ---------------------------------------------------------------- the monthly facts cache
def facts_cache(engine) -> dict[str, dict[dt.date, list[tuple]]]:
    """The rows of both facts caches and their indexes (with built_at: when a month was built)
    by table and month."""
    from vbp_monitor.model.schema import FACTS_CACHE

    cache: dict[str, dict[dt.date, list[tuple]]] = {}
    with engine.connect() as conn:
        for table in FACTS_CACHE:
            by_month: dict[dt.date, list[tuple]] = {}
            for row in conn.execute(select(table)):
                by_month.setdefault(row.month_start, []).append(tuple(row))
            cache[table.name] = {month: sorted(rows, key=repr) for month, rows in by_month.items()}
    return cache


def figures(engine) -> dict[str, dict[dt.date, list[tuple]]]:
    """``facts_cache`` without the indexes' built_at: what the rules read."""
    return {name: {month: [tuple(v for v in row if not isinstance(v, dt.datetime)) for row in rows]
                   for month, rows in by_month.items()}
            for name, by_month in facts_cache(engine).items()}


def quantities(engine, table_name: str) -> dict[dt.date, Decimal]:
    """A facts table's quantity by month (what a user sees of a month's purchases)."""
    from builders import num

    table = metadata.tables[table_name]
    with engine.connect() as conn:
        return {month: num(total) for month, total in conn.execute(
            select(table.c.month_start, func.sum(table.c.quantity)).group_by(table.c.month_start))}


def build_months(engine, *months: dt.date) -> None:
    """What monthly monitoring builds: each month's full facts, the selected facts of them all."""
    from vbp_monitor.rules import purchase_facts

    for month in months:
        purchase_facts.build_month(engine, month)
    purchase_facts.build_selected_months(engine, months[0], months[-1])


def from_scratch(engine, *months: dt.date) -> dict:
    """The figures of ``months`` built again from an empty cache (the cache is rebuilt)."""
    from vbp_monitor.model.schema import clear_facts_cache

    with engine.begin() as conn:
        clear_facts_cache(conn)
    build_months(engine, *months)
    return figures(engine)


def only(folder, name: str, rows: list[dict]):
    """A landing folder with one contract file."""
    return write_landing(folder, {name: rows})


@pytest.fixture
def three_months_cached(engine, tmp_path):
    """The small city with order lines in January, February and March 2025, ingested, and
    monthly monitoring's facts of the three months built (both grains)."""
    landing = write_landing(tmp_path / "landing", full_city(orders=[
        order("O-JAN", order_time="2025-01-15 09:00:00", quantity="40", amount="20"),
        order("O-JAN2", order_time="2025-01-20 09:00:00", quantity="7", amount="3.5"),
        order("O-MAR", order_time="2025-03-05 09:00:00", quantity="9", amount="4.5"),
    ]))
    ingest_landing(engine, run_for(), landing)
    build_months(engine, JAN, FEB, MAR)
    cache = facts_cache(engine)
    assert all(set(by_month) == {JAN, FEB, MAR} for by_month in cache.values())
    assert quantities(engine, "purchase_facts") == {JAN: 47, FEB: 1200, MAR: 9}  # O-3 is cancelled
    assert quantities(engine, "selected_purchase_facts") == {JAN: 47, FEB: 1000, MAR: 9}  # O-2: offline
    return cache


def test_an_orders_delivery_clears_only_the_months_of_its_lines(engine, tmp_path, three_months_cached):
    """A February delivery (a new line, a corrected one) leaves January's and March's facts
    and index rows as they were; a rebuild gives February's new figures, the ones of a build
    from scratch."""
    from builders import run_for as monitoring_run
    from vbp_monitor.rules import purchase_facts

    cached = three_months_cached
    corrected = dict(full_city()["orders"][0], quantity="2000", amount="1000")  # O-1, 3 February
    summary = ingest_landing(engine, run_for(run_id="manual__2"),
                             only(tmp_path / "february", "orders", [corrected, order("O-FEB", quantity="30", amount="15")]))
    assert summary["files"]["orders.csv"]["loaded"] == 2

    assert facts_cache(engine) == {name: {JAN: by_month[JAN], MAR: by_month[MAR]} for name, by_month in cached.items()}

    # monthly monitoring of February builds February again (its full facts and selected purchases)
    coverage = purchase_facts.ensure_facts(engine, monitoring_run("2025-02").period)
    assert coverage.built == (FEB,)
    assert quantities(engine, "purchase_facts") == {JAN: 47, FEB: 2230, MAR: 9}
    assert quantities(engine, "selected_purchase_facts") == {JAN: 47, FEB: 2030, MAR: 9}
    rebuilt = facts_cache(engine)
    assert {name: {JAN: by_month[JAN], MAR: by_month[MAR]} for name, by_month in rebuilt.items()} == {
        name: {JAN: by_month[JAN], MAR: by_month[MAR]} for name, by_month in cached.items()}
    assert figures(engine) == from_scratch(engine, JAN, FEB, MAR)


@pytest.mark.parametrize("chunked", [False, True], ids=["one-chunk", "copy-per-row"])
def test_a_line_moved_to_another_month_clears_both_months(engine, tmp_path, three_months_cached, monkeypatch,
                                                          chunked):
    """A re-delivery moves O-JAN (same order_id, new order_time) from January to February:
    January's facts are stale too (the line's old month). ``copy-per-row``: one line a chunk,
    each through COPY on PostgreSQL (in the COPY thread; the moved line's by the staging table)."""
    from builders import run_for as monitoring_run
    from vbp_monitor.core import db
    from vbp_monitor.quality import ingest
    from vbp_monitor.rules import purchase_facts

    if chunked:
        monkeypatch.setattr(ingest, "CHUNK_ROWS", 1)
        monkeypatch.setattr(db, "COPY_MIN_ROWS", 1)
    moved = order("O-JAN", order_time="2025-02-25 09:00:00", quantity="40", amount="20")
    ingest_landing(engine, run_for(run_id="manual__2"),
                   only(tmp_path / "moved", "orders", [order("O-FEB", quantity="30", amount="15"), moved]))

    assert facts_cache(engine) == {name: {MAR: by_month[MAR]} for name, by_month in three_months_cached.items()}

    purchase_facts.ensure_facts(engine, monitoring_run("2025-02").period)
    purchase_facts.build_month(engine, JAN)
    assert quantities(engine, "purchase_facts") == {JAN: 7, FEB: 1270, MAR: 9}
    assert quantities(engine, "selected_purchase_facts") == {JAN: 7, FEB: 1070, MAR: 9}
    assert figures(engine) == from_scratch(engine, JAN, FEB, MAR)


def test_a_products_delivery_clears_every_month(engine, tmp_path, three_months_cached):
    """Products (like batches and agreements) change every month's selection and segments."""
    ingest_landing(engine, run_for(run_id="manual__2"), only(tmp_path / "products", "products",
                                                             full_city()["products"]))
    assert facts_cache(engine) == {name: {} for name in three_months_cached}
