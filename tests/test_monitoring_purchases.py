"""DAG 2 · what was bought: NON_SELECTED_HIGH_PRICE, ONLY_NON_SELECTED and
NON_EVALUATED_PURCHASE (domain.md DAG 2; seed 002 §二(三), seed 001 §五(一)4, seed 004)."""
from decimal import Decimal

import pytest

import builders as b
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.monitoring import judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
JULY = "2025-07-15"


def price_alerts(engine) -> dict:
    rows = b.open_alerts(engine, "NON_SELECTED_HIGH_PRICE") + b.open_alerts(engine, "ONLY_NON_SELECTED")
    return {(row["institution_code"], row["generic_name"]): row for row in rows}


def test_high_priced_non_selected_purchases_and_who_only_buys_them(engine):
    institutions = [b.institution("H3", "B1"), b.institution("H4", "B2")]
    orders = [
        # H1 reported volume (agreement active in July, batch cycle covers July)
        b.order("H1-N", "H1", 100, JULY, product="P-AML-N", price="0.60"),
        # H2: no agreement, no selected purchase: only the high-priced one (off-platform too)
        b.order("H2-N", "H2", 100, JULY, product="P-AML-N", price="0.60", channel="offline"),
        b.order("H2-N2", "H2", 50, JULY, product="P-AML-N", price="0.80"),
        # M1: no agreement but bought the selected product on the platform
        b.order("M1-S", "M1", 10, JULY),
        b.order("M1-N", "M1", 100, JULY, product="P-AML-N", price="0.60"),
        # P1: bought the selected product only off-platform: still "only non-selected"
        b.order("P1-S", "P1", 10, JULY, channel="offline"),
        b.order("P1-N", "P1", 100, JULY, product="P-AML-N", price="0.60"),
        # H3: at the highest selected price exactly: nothing
        b.order("H3-N", "H3", 100, JULY, product="P-AML-N", price="0.50"),
        # H4: just above it, but on 1 August (after M) and cancelled in July
        b.order("H4-AUG", "H4", 100, "2025-08-01 00:00:00", product="P-AML-N", price="0.60"),
        b.order("H4-CANCELLED", "H4", 100, JULY, product="P-AML-N", price="0.60", cancelled="true"),
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(institutions=institutions, orders=orders,
                        agreements=[b.agreement("A-H1", "H1", "2025-01-01", "2025-12-31")]))

    judge(engine, b.run_for("2025-07"), PROFILE)

    got = {key: (row["rule_code"], row["severity"], b.num(row["metric_value"]), b.num(row["threshold_value"]))
           for key, row in price_alerts(engine).items()}
    assert got == {
        ("H1", "氨氯地平"): ("NON_SELECTED_HIGH_PRICE", "warning", Decimal("60"), Decimal("0.5")),
        ("H2", "氨氯地平"): ("ONLY_NON_SELECTED", "critical", Decimal("100"), Decimal("0.5")),
        ("M1", "氨氯地平"): ("NON_SELECTED_HIGH_PRICE", "warning", Decimal("60"), Decimal("0.5")),
        ("P1", "氨氯地平"): ("ONLY_NON_SELECTED", "critical", Decimal("60"), Decimal("0.5")),
    }
    rows = price_alerts(engine)
    assert rows[("H2", "氨氯地平")]["branch_code"] == "B2" and rows[("H2", "氨氯地平")]["period"] == "2025-07"
    only = rows[("H2", "氨氯地平")]["message"]
    assert "约谈医疗机构负责人" in only and "0.50元" in only and "100.00元" in only and "0.80元" in only
    assert "赣市医保字〔2023〕28号 二(三)" in only
    assert "优先采购使用中选产品" in rows[("H1", "氨氯地平")]["message"]


def test_selected_in_month_follows_the_batch_cycle(engine):
    batches = [
        b.batch("OLD", "2023-01-01", 24),   # cycle ended 2024-12-31: its products are non-selected in 2025
        b.batch("NEW", "2025-03-01", 12),   # covers July 2025
        b.batch("LATER", "2025-08-01", 12),  # starts after July: not selected in July
    ]
    products = [
        b.product("P-MET-OLD", "二甲双胍", "甲", selected=True, price="0.20", batch="OLD"),
        b.product("P-MET-X", "二甲双胍", "乙"),
        b.product("P-ATO-NEW1", "阿托伐他汀", "甲", selected=True, price="1.00", batch="NEW"),
        b.product("P-ATO-NEW2", "阿托伐他汀", "乙", selected=True, price="1.20", batch="NEW"),
        b.product("P-ATO-OLD", "阿托伐他汀", "丙", selected=True, price="0.90", batch="OLD"),
        b.product("P-ATO-LATER", "阿托伐他汀", "丁", selected=True, price="0.95", batch="LATER"),
    ]
    orders = [
        # 二甲双胍 has nothing selected in July: no price cap, no alert
        b.order("MET", "H1", 100, JULY, product="P-MET-X", price="5.00"),
        # 阿托伐他汀: cap = 1.20 (highest among products selected in July)
        b.order("ATO-AT-CAP", "H1", 10, JULY, product="P-ATO-OLD", price="1.20"),
        b.order("ATO-OLD-ABOVE", "H2", 10, JULY, product="P-ATO-OLD", price="1.2001"),
        b.order("ATO-LATER-ABOVE", "H2", 10, JULY, product="P-ATO-LATER", price="1.30"),
        # a selected-in-July product above the cap is not a non-selected purchase
        b.order("ATO-NEW-ABOVE", "M1", 10, JULY, product="P-ATO-NEW1", price="1.50"),
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(batches=batches, products=products, orders=orders,
                        agreements=[b.agreement("OLD-H2", "H2", "2025-01-01", "2025-12-31",
                                              batch="OLD", generic="阿托伐他汀")]))

    judge(engine, b.run_for("2025-07"), PROFILE)

    got = {key: (row["rule_code"], b.num(row["metric_value"]), b.num(row["threshold_value"]))
           for key, row in price_alerts(engine).items()}
    # H2's agreement is in a batch whose cycle ended: it did not report volume for July
    assert got == {("H2", "阿托伐他汀"): ("ONLY_NON_SELECTED", Decimal("25.0010"), Decimal("1.2"))}


def test_an_active_agreement_keeps_the_subject_at_warning(engine):
    orders = [b.order("N", "H2", 100, JULY, product="P-AML-N", price="0.60")]
    with engine.begin() as conn:
        b.seed(conn, b.city(orders=orders, agreements=[b.agreement("A-H2", "H2", "2025-07-31", "2026-07-30")]))

    judge(engine, b.run_for("2025-07"), PROFILE)

    ((key, row),) = price_alerts(engine).items()
    assert row["rule_code"] == "NON_SELECTED_HIGH_PRICE"


def evaluated(generic, makers, category="drug"):
    return [b.product(f"{generic}-{maker}", generic, maker, category=category) for maker in makers]


def test_non_evaluated_purchase_needs_three_evaluated_makers_and_drugs_only(engine):
    products = (
        evaluated("二甲双胍", ["甲", "乙", "丙"])
        + [b.product("二甲双胍-X", "二甲双胍", "丁", passed=False)]
        # two makers with three passed products: not enough
        + evaluated("阿莫西林", ["甲", "乙"]) + [b.product("阿莫西林-乙2", "阿莫西林", "乙")]
        + [b.product("阿莫西林-X", "阿莫西林", "丁", passed=False)]
        # consumables are not judged
        + evaluated("支架", ["甲", "乙", "丙"], category="high_value_consumable")
        + [b.product("支架-X", "支架", "丁", category="high_value_consumable", passed=False)]
    )
    orders = [
        b.order("MET-X", "H1", 100, JULY, product="二甲双胍-X", price="0.30"),
        b.order("MET-X-OFF", "H1", 100, JULY, product="二甲双胍-X", price="0.30", channel="offline"),
        b.order("MET-OK", "H2", 100, JULY, product="二甲双胍-甲", price="0.30"),
        b.order("MET-X-AUG", "H2", 100, "2025-08-01 00:00:00", product="二甲双胍-X", price="0.30"),
        b.order("AMO-X", "H1", 100, JULY, product="阿莫西林-X", price="0.30"),
        b.order("STENT-X", "H1", 1, JULY, product="支架-X", price="700"),
        b.order("MET-X-P1", "P1", 10, JULY, product="二甲双胍-X", price="0.30"),
    ]
    with engine.begin() as conn:
        b.seed(conn, b.city(products=products, orders=orders))

    judge(engine, b.run_for("2025-07"), PROFILE)

    got = {key: (row["severity"], b.num(row["metric_value"]), b.num(row["threshold_value"]))
           for key, row in b.by_subject(b.open_alerts(engine, "NON_EVALUATED_PURCHASE"),
                                      "institution_code", "generic_name").items()}
    assert got == {
        ("H1", "二甲双胍"): ("warning", Decimal("60"), Decimal("0")),
        ("P1", "二甲双胍"): ("warning", Decimal("3"), Decimal("0")),
    }
    message = b.open_alerts(engine, "NON_EVALUATED_PURCHASE")[0]["message"]
    assert "一致性评价" in message and "宁政办规发〔2019〕11号" in message
