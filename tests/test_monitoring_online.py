"""DAG 2 · online purchase rates: ONLINE_RATE_LOW and BRANCH_ONLINE_RATE_LOW
(domain.md DAG 2, seed 002 §二(四) and 附件1: drugs ≥ 90 %, high-value consumables ≥ 80 %)."""
from decimal import Decimal

import pytest

from builders import city, institution, num, open_alerts, order, product, run_for, seed
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.monitoring import judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
JULY = "2025-07-15"


def bought(order_id, institution_code, amount, channel="platform", item="P-AML-N", when=JULY, **kw):
    """A purchase of ``amount`` yuan (unit price 1)."""
    return order(order_id, institution_code, amount, when, product=item, channel=channel, price="1", **kw)


def test_institution_and_branch_rates_by_category_for_public_institutions_only(engine):
    institutions = [institution("H3", "B1"), institution("H4", "B2")]
    products = [product("STENT", "冠脉支架", category="high_value_consumable"),
                product("GLOVE", "手套", category="consumable")]
    orders = [
        # B1 drugs: H1 899.99 / 1,000 (below 90 %); H3 100 / 100 → B1 999.99 / 1,100 = 0.909
        bought("H1-P", "H1", "899.99"), bought("H1-O", "H1", "100.01", "offline"),
        bought("H3-P", "H3", "100"),
        # military and private institutions are not judged and not summed into their branch
        bought("M1-O", "M1", "5000", "offline"), bought("P1-O", "P1", "5000", "offline"),
        # B2 drugs: H2 900 / 1,000 = 0.90 exactly (nothing); H4 800 / 1,000 → B2 0.85
        bought("H2-P", "H2", "900"), bought("H2-O", "H2", "100", "offline"),
        bought("H4-P", "H4", "800"), bought("H4-O", "H4", "200", "offline"),
        # not purchases of July: cancelled, and the day after the month
        bought("H2-CANCELLED", "H2", "9000", "offline", cancelled="true"),
        bought("H2-AUG", "H2", "9000", "offline", when="2025-08-01 00:00:00"),
        # B2 high-value consumables: H2 80 / 100 exactly; H4 79.99 / 100 → B2 159.99 / 200
        bought("H2-S-P", "H2", "80", item="STENT"), bought("H2-S-O", "H2", "20", "offline", item="STENT"),
        bought("H4-S-P", "H4", "79.99", item="STENT"), bought("H4-S-O", "H4", "20.01", "offline", item="STENT"),
        # plain consumables have no online-rate rule
        bought("H3-G-O", "H3", "500", "offline", item="GLOVE"),
        # a category with no amount in M (free goods) is not judged
        order("H3-S-FREE", "H3", 5, JULY, product="STENT", channel="offline", price="0"),
    ]
    with engine.begin() as conn:
        seed(conn, city(institutions=institutions, products=products, orders=orders))

    judge(engine, run_for("2025-07"), PROFILE)

    institution_rates = {(r["institution_code"], r["category"]): (r["severity"], num(r["metric_value"]),
                                                                 num(r["threshold_value"]), r["branch_code"])
                         for r in open_alerts(engine, "ONLINE_RATE_LOW")}
    assert institution_rates == {
        ("H1", "drug"): ("high", Decimal("0.8999"), Decimal("0.9"), "B1"),
        ("H4", "drug"): ("high", Decimal("0.8"), Decimal("0.9"), "B2"),
        ("H4", "high_value_consumable"): ("high", Decimal("0.7999"), Decimal("0.8"), "B2"),
    }
    branch_rates = {(r["branch_code"], r["category"]): (r["severity"], num(r["metric_value"]),
                                                        num(r["threshold_value"]), r["institution_code"])
                    for r in open_alerts(engine, "BRANCH_ONLINE_RATE_LOW")}
    assert branch_rates == {
        ("B2", "drug"): ("high", Decimal("0.85"), Decimal("0.9"), None),
        ("B2", "high_value_consumable"): ("high", Decimal("0.7999"), Decimal("0.8"), None),
    }
    (branch_drug,) = [r for r in open_alerts(engine, "BRANCH_ONLINE_RATE_LOW") if r["category"] == "drug"]
    message = branch_drug["message"]
    for text in ("南康分局", "2 家公立医疗机构", "2,000.00元", "1,700.00元", "85.00%", "90.00%", "附件1"):
        assert text in message, text
    (h1,) = [r for r in open_alerts(engine, "ONLINE_RATE_LOW") if r["institution_code"] == "H1"]
    assert "89.99%" in h1["message"] and "100.01元" in h1["message"] and "备案" in h1["message"]


def test_thresholds_come_from_the_profile(engine):
    orders = [bought("H1-P", "H1", "95"), bought("H1-O", "H1", "5", "offline")]
    with engine.begin() as conn:
        seed(conn, city(orders=orders))
    stricter = {**PROFILE, "monitoring": {**PROFILE["monitoring"],
                                          "online_rate_thresholds": {"drug": 0.96}}}

    judge(engine, run_for("2025-07"), stricter)

    (alert,) = open_alerts(engine, "ONLINE_RATE_LOW")
    assert num(alert["threshold_value"]) == Decimal("0.96") and num(alert["metric_value"]) == Decimal("0.95")
