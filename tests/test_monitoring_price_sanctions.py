"""DAG 2 continued · SELECTED_PRICE_EXCEEDED (seed 002 §二(五), seed 000 item 4) and
SANCTIONED_SUPPLIER_PURCHASE (seed 004 §二(二)), institution × product × M, with the
boundaries of examples.md 8 and 9, on both databases."""
from decimal import Decimal

import pytest

import builders as b
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.monitoring import judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
PRICE = "SELECTED_PRICE_EXCEEDED"
SANCTIONED = "SANCTIONED_SUPPLIER_PURCHASE"


def alerts_of(engine, code) -> dict:
    return {(row["institution_code"], row["product_code"]): row for row in b.open_alerts(engine, code)}


def figures(rows: dict) -> dict:
    return {key: (row["severity"], row["period"], b.num(row["metric_value"]), b.num(row["threshold_value"]))
            for key, row in rows.items()}


# ------------------------------------------------------------------ SELECTED_PRICE_EXCEEDED
def test_examples_8_above_the_selected_price_while_the_cycle_runs(engine):
    batches = [
        b.batch("CUR", "2025-01-01", 24),    # covers March 2025
        b.batch("ENDED", "2023-03-01", 24),  # cycle ended 2025-02-28
        b.batch("LAND", "2025-03-10", 24),   # lands on 10 March
    ]
    products = [
        b.product("P-A", "阿托伐他汀钙片", "甲制药", selected=True, price="0.20", batch="CUR"),
        b.product("P-B", "瑞舒伐他汀钙片", "乙制药", selected=True, price="0.20", batch="ENDED"),
        b.product("P-L", "缬沙坦胶囊", "丙制药", selected=True, price="0.20", batch="LAND"),
    ]
    orders = [
        # examples.md 8: 1,000 at 0.20 and 500 at 0.23 (two lines; one off the platform)
        b.order("H1-A1", "H1", 1000, "2025-03-05", product="P-A", price="0.20"),
        b.order("H1-A2", "H1", 300, "2025-03-12", product="P-A", price="0.23"),
        b.order("H1-A3", "H1", 200, "2025-03-31 23:59:00", product="P-A", price="0.23", channel="offline"),
        # exactly at the selected price; a cancelled line above it; April is not March
        b.order("H2-A", "H2", 100, "2025-03-05", product="P-A", price="0.20"),
        b.order("H2-X", "H2", 100, "2025-03-06", product="P-A", price="0.30", cancelled="true"),
        b.order("H2-APR", "H2", 100, "2025-04-01 00:00:00", product="P-A", price="0.30"),
        # the cycle ended in February: P-B is non-selected in March
        b.order("H1-B", "H1", 500, "2025-03-05", product="P-B", price="0.23"),
        # before the landing day at the old price: not judged; from the landing day on: judged
        b.order("H1-L", "H1", 100, "2025-03-09", product="P-L", price="0.50"),
        b.order("M1-L", "M1", 100, "2025-03-10", product="P-L", price="0.21"),
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(batches=batches, products=products, orders=orders))

    judge(engine, b.run_for("2025-03"), PROFILE)

    rows = alerts_of(engine, PRICE)
    assert figures(rows) == {
        ("H1", "P-A"): ("high", "2025-03", Decimal("0.23"), Decimal("0.2")),
        ("M1", "P-L"): ("high", "2025-03", Decimal("0.21"), Decimal("0.2")),
    }
    message = rows[("H1", "P-A")]["message"]
    assert message.startswith("【按月监测·中选产品采购价格高于中选价】第一人民医院（H1）：2025年3月")
    assert "2 笔订单行" in message and "数量 500" in message and "金额 115.00元" in message
    assert "中选价 0.20元" in message and "最高采购单价 0.23元" in message
    assert "高于中选价的金额合计 15.00元" in message  # examples.md 8: 500 × 0.03
    assert "赣市医保字〔2023〕28号 二(五)" in message and "集采常态化制度化责任清单 第4项" in message
    assert rows[("M1", "P-L")]["branch_code"] == "B1"


def test_a_rerun_gives_the_same_alerts_and_a_branch_run_only_its_own(engine):
    products = [b.product("P-A", "阿托伐他汀钙片", "甲制药", selected=True, price="0.20", batch="NB1")]
    orders = [b.order("H1-A", "H1", 10, "2025-03-05", product="P-A", price="0.25"),
              b.order("H2-A", "H2", 10, "2025-03-05", product="P-A", price="0.26")]
    with engine.begin() as conn:
        b.seed(conn, b.city(products=products, orders=orders))
    judge(engine, b.run_for("2025-03"), PROFILE)
    first = b.business(b.all_alerts(engine))
    judge(engine, b.run_for("2025-03", run_id="rerun"), PROFILE)
    assert b.business(b.all_alerts(engine)) == first
    assert set(alerts_of(engine, PRICE)) == {("H1", "P-A"), ("H2", "P-A")}

    from vbp_monitor.alerts.store import Scope

    judge(engine, b.run_for("2025-03", run_id="b1", scope=Scope(branch_code="B1")), PROFILE)
    assert set(alerts_of(engine, PRICE)) == {("H1", "P-A"), ("H2", "P-A")}


# ------------------------------------------------------------------ SANCTIONED_SUPPLIER_PURCHASE
SANCTION_PRODUCTS = [
    b.product("P-Y", "阿托伐他汀钙片", "乙制药"),
    b.product("P-Z", "阿托伐他汀钙片", "丁制药"),
    b.product("P-W", "阿托伐他汀钙片", "戊制药"),
]


def sanction(maker, start, end="", reason="未按约定供应中选产品"):
    return {"manufacturer": maker, "sanction_start": start, "sanction_end": end, "reason": reason}


def test_examples_9_the_blank_end_is_two_years_after_the_start(engine):
    orders = [
        b.order("H1-LAST", "H1", 100, "2026-05-31 23:30:00", product="P-Y", price="1.00"),   # last day
        b.order("H1-EARLY", "H1", 50, "2026-05-03", product="P-Y", price="1.00", channel="offline"),
        b.order("H2-NEXT", "H2", 100, "2026-06-01 00:10:00", product="P-Y", price="1.00"),  # the day after
        b.order("P1-LAST", "P1", 100, "2026-05-31", product="P-Y", price="1.00"),           # private
        b.order("M1-LAST", "M1", 100, "2026-05-31", product="P-Y", price="1.00"),           # military
        b.order("H2-CANCELLED", "H2", 100, "2026-05-20", product="P-Y", price="1.00", cancelled="true"),
        b.order("H2-OTHER", "H2", 100, "2026-05-20", product="P-Z", price="1.00"),          # another maker
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(products=SANCTION_PRODUCTS, orders=orders,
                            supplier_sanctions=[sanction("乙制药", "2024-06-01")]))

    judge(engine, b.run_for("2026-05"), PROFILE)
    judge(engine, b.run_for("2026-06"), PROFILE)

    rows = alerts_of(engine, SANCTIONED)
    assert figures(rows) == {("H1", "P-Y"): ("high", "2026-05", Decimal("150"), Decimal("0"))}
    message = rows[("H1", "P-Y")]["message"]
    assert message.startswith("【按月监测·采购失信企业产品】第一人民医院（H1）：2026年5月采购")
    assert "乙制药" in message and "2024年6月1日至2026年5月31日（未按约定供应中选产品）" in message
    assert "2 笔订单行" in message and "2026年5月3日至2026年5月31日" in message and "金额 150.00元" in message
    assert "韶医保〔2019〕96号 二(二)" in message and "2年内" in message


def test_an_explicit_end_leap_days_overlaps_and_the_profile_years(engine):
    sanctions = [
        sanction("乙制药", "2025-03-10", "2025-07-15"),       # explicit end inside July
        sanction("丁制药", "2024-02-29"),                     # blank: ends 2026-02-27
        sanction("戊制药", "2025-01-01", "2025-12-31"),       # two overlapping rows: counted once
        sanction("戊制药", "2025-06-01", "2025-09-30", reason=""),
    ]
    orders = [
        b.order("Y-END", "H1", 10, "2025-07-15", product="P-Y", price="2.00"),
        b.order("Y-AFTER", "H2", 10, "2025-07-16", product="P-Y", price="2.00"),
        b.order("Z-LAST", "H1", 10, "2026-02-27", product="P-Z", price="3.00"),
        b.order("Z-AFTER", "H2", 10, "2026-02-28", product="P-Z", price="3.00"),
        b.order("W-BOTH", "H1", 10, "2025-07-20", product="P-W", price="4.00"),
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(products=SANCTION_PRODUCTS, orders=orders, supplier_sanctions=sanctions))

    judge(engine, b.run_for("2025-07"), PROFILE)
    judge(engine, b.run_for("2026-02"), PROFILE)
    assert figures(alerts_of(engine, SANCTIONED)) == {
        ("H1", "P-Y"): ("high", "2025-07", Decimal("20"), Decimal("0")),
        ("H1", "P-W"): ("high", "2025-07", Decimal("40"), Decimal("0")),
        ("H1", "P-Z"): ("high", "2026-02", Decimal("30"), Decimal("0")),
    }
    assert "2024年2月29日至2026年2月27日" in alerts_of(engine, SANCTIONED)[("H1", "P-Z")]["message"]

    # three years in the profile: 丁制药's blank end moves to 2027-02-27, H2's order is inside
    longer = {**PROFILE, "monitoring": {**PROFILE["monitoring"], "sanction_years": 3}}
    judge(engine, b.run_for("2026-02", run_id="longer"), longer)
    assert {key for key, row in alerts_of(engine, SANCTIONED).items() if row["period"] == "2026-02"} == {
        ("H1", "P-Z"), ("H2", "P-Z")}


@pytest.mark.parametrize(("start", "raised"), [
    ("2024-05-01", False),  # ends 2026-04-30
    ("2024-05-02", True),   # ends 2026-05-01
    ("2024-05-31", True),   # ends 2026-05-30, the order is on 2026-05-30
    ("2024-06-02", True),   # ends after May
    ("2026-05-30", True),   # starts on the order day
    ("2026-05-31", False),  # starts after it
])
def test_the_order_day_against_a_blank_end(engine, start, raised):
    order_day = "2026-05-01" if start in ("2024-05-01", "2024-05-02") else "2026-05-30"
    with engine.begin() as conn:
        b.seed(conn, b.city(products=SANCTION_PRODUCTS, supplier_sanctions=[sanction("乙制药", start)],
                            orders=[b.order("H1-Y", "H1", 1, order_day, product="P-Y", price="1.00")]))
    judge(engine, b.run_for("2026-05"), PROFILE)
    assert bool(alerts_of(engine, SANCTIONED)) is raised


def test_the_monthly_validation_reads_the_sanction_list(engine):
    """The run validates the sanction rows it reads: an end before the start is a data-quality
    failure (suite vbp_supplier_sanctions, sanction_length_days), a blank end is not."""
    from vbp_monitor.rules.monitoring import validate

    with engine.begin() as conn:
        b.seed(conn, b.city(supplier_sanctions=[sanction("乙制药", "2025-06-01", "2025-05-01"),
                                                sanction("丁制药", "2025-06-01")]))
    report = validate(engine, b.run_for("2025-06"), PROFILE)["supplier_sanctions"]
    assert (report["rows"], report["failed_rows"]) == (2, 1)
    assert [(f["column"], f["examples"]) for f in report["failed_expectations"]] == [
        ("sanction_length_days", ["乙制药|2025-06-01"])]
    [alert] = b.open_alerts(engine, "DATA_QUALITY")
    assert alert["source_file"] == "supplier_sanctions" and "vbp_supplier_sanctions" in alert["message"]
