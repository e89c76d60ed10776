"""DAG 2 · agreement rules and the institution file (一院一档): PROGRESS_BEHIND,
SELECTED_SHARE_LOW, metrics of every active agreement (domain.md DAG 2, examples.md 2)."""
import datetime as dt
from decimal import ROUND_FLOOR, Decimal

import pytest

from builders import agreement, by_subject, city, metrics, num, open_alerts, order, product, run_for, seed
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.monitoring import judge

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")


def example_2_orders():
    """examples.md 2: 12,000 selected platform purchases since 2025-04-10, spread over months."""
    return [
        order("IN-APR-FIRST", "H1", 2000, "2025-04-10 00:00:00"),   # first day of the year
        order("IN-MAY", "H1", 3000, "2025-05-20"),
        order("IN-JUN", "H1", 3000, "2025-06-30 23:59:59"),
        order("IN-JUL", "H1", 2000, "2025-07-01 00:00:00"),
        order("IN-AUG", "H1", 1500, "2025-08-01 00:00:00"),
        order("IN-AUG-LAST", "H1", 500, "2025-08-31 23:59:59"),      # last instant of August
        order("OUT-BEFORE-YEAR", "H1", 5000, "2025-04-09 23:59:59"),  # the previous year
        order("OUT-SEPTEMBER", "H1", 5000, "2025-09-01 00:00:00"),    # the day after M
        order("OUT-CANCELLED", "H1", 5000, "2025-08-15", cancelled="true"),
        order("OUT-OFFLINE", "H1", 800, "2025-08-15", channel="offline"),  # selected product off-platform
        order("OUT-NON-SELECTED", "H1", 200, "2025-08-16", product="P-AML-N", price="0.45"),
    ]


def seed_example_2(engine) -> None:
    """Example 2's city: H1's agreement year 2025-04-10 … 2026-04-09 for 50,000, its orders."""
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1", "2025-04-10", "2026-04-09", 50000, ratio="0.5")],
            orders=example_2_orders()))


def test_example_2_progress_behind_with_a_mid_month_agreement_year(engine):
    seed_example_2(engine)

    judge(engine, run_for("2025-08"), PROFILE)

    (alert,) = open_alerts(engine, "PROGRESS_BEHIND")
    assert alert["severity"] == "warning"
    assert num(alert["metric_value"]) == Decimal("0.2400")
    assert num(alert["threshold_value"]) == Decimal("0.3156")
    assert (alert["period"], alert["branch_code"], alert["institution_code"], alert["batch_code"],
            alert["generic_name"], alert["milestone_month"]) == ("2025-08", "B1", "H1", "NB1", "氨氯地平", None)
    message = alert["message"]
    # completion 24.00% below 80.00% of time progress 39.45% (= 31.56%); one rounding rule
    for text in ("144/365", "39.45%", "50,000", "12,000", "完成率 24.00%", "序时进度的 80.00%（31.56%）",
                 "依据：赣市医保字〔2023〕28号 二(三)。", "2025-04-10", "督促"):
        assert text in message, text

    row = metrics(engine, "2025-08")["A1"]
    assert row["as_of_date"] == dt.date(2025, 8, 31)
    assert num(row["cumulative_selected_quantity"]) == Decimal("12000")
    assert num(row["completion_rate"]) == Decimal("0.2400")
    assert num(row["time_progress"]) == Decimal("0.3945")
    # August alone: selected 2,000 platform; same generic adds the off-platform 800 and the
    # non-selected 200 (cancelled and September lines never count)
    assert num(row["selected_quantity"]) == Decimal("2000")
    assert num(row["selected_amount"]) == Decimal("1000")
    assert num(row["same_generic_quantity"]) == Decimal("3000")
    assert num(row["same_generic_amount"]) == Decimal("1490")
    assert num(row["non_selected_quantity"]) == Decimal("1000")
    assert num(row["non_selected_amount"]) == Decimal("490")
    assert num(row["selected_quantity_share"]) == Decimal("0.6667")
    assert num(row["selected_amount_share"]) == Decimal("0.6711")
    assert (row["institution_code"], row["branch_code"], row["batch_code"]) == ("H1", "B1", "NB1")


def test_institution_file_of_the_month_the_agreement_year_starts_counts_from_period_start(engine):
    seed_example_2(engine)

    judge(engine, run_for("2025-04"), PROFILE)

    row = metrics(engine, "2025-04")["A1"]
    # 10–30 April only: the 9 April order belongs to the year before
    assert num(row["selected_quantity"]) == Decimal("2000")
    assert num(row["same_generic_quantity"]) == Decimal("2000")
    assert num(row["cumulative_selected_quantity"]) == Decimal("2000")
    assert num(row["time_progress"]) == num(Decimal(21) / Decimal(365))
    # time progress 21/365 < 0.25: no PROGRESS_BEHIND however little was bought
    assert open_alerts(engine, "PROGRESS_BEHIND") == []


def test_month_the_agreement_year_ends_counts_up_to_period_end(engine):
    orders = [
        order("IN", "H1", 100, "2025-04-09 23:59:59"),
        order("NEXT-YEAR", "H1", 300, "2025-04-10 00:00:00"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[
            agreement("OLD", "H1", "2024-04-10", "2025-04-09", 1000),
            agreement("NEW", "H1", "2025-04-10", "2026-04-09", 1000),
        ], orders=orders))

    judge(engine, run_for("2025-04"), PROFILE)

    rows = metrics(engine, "2025-04")
    assert rows["OLD"]["as_of_date"] == dt.date(2025, 4, 9)
    assert num(rows["OLD"]["selected_quantity"]) == Decimal("100")
    assert num(rows["OLD"]["time_progress"]) == Decimal("1")
    assert num(rows["NEW"]["selected_quantity"]) == Decimal("300")
    assert num(rows["NEW"]["cumulative_selected_quantity"]) == Decimal("300")
    # the ended year is 10 % complete at 100 % time: high; one alert for the subject
    (alert,) = open_alerts(engine, "PROGRESS_BEHIND")
    assert alert["severity"] == "high" and num(alert["metric_value"]) == Decimal("0.1")


# A 62-day agreement year, 1 July – 31 August 2025, judged for July: time progress 31/62 = 0.5.
HALF = dict(start="2025-07-01", end="2025-08-31", quantity=1000)


@pytest.mark.parametrize("bought, expected", [
    ("400", None),             # completion 0.40 = 0.8 × 0.5: at the threshold, nothing
    ("399.9999", "warning"),   # just below
    ("250", "warning"),        # 0.25 = 0.5 × 0.5: at the high threshold, still warning
    ("249.9999", "high"),
    ("0", "high"),
])
def test_progress_thresholds_are_exact(engine, bought, expected):
    orders = [order("O1", "H1", bought, "2025-07-15")] if Decimal(bought) else []
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", **HALF)], orders=orders))

    judge(engine, run_for("2025-07"), PROFILE)

    alerts = open_alerts(engine, "PROGRESS_BEHIND")
    if expected is None:
        assert alerts == []
    else:
        (alert,) = alerts
        assert alert["severity"] == expected
        ratio = Decimal("0.5") if expected == "high" else Decimal("0.8")
        assert num(alert["threshold_value"]) == ratio * Decimal("0.5")
        # measured figures are floored: a rate just below the line never reads as the line
        assert num(alert["metric_value"]) == (Decimal(bought) / 1000).quantize(Decimal("0.0001"), rounding=ROUND_FLOOR)


def test_progress_exactly_at_a_quarter_counts(engine):
    # July = 31 days; 1 July – 1 November 2025 = 124 days: time progress 0.25 exactly
    with engine.begin() as conn:
        seed(conn, city(agreements=[
            agreement("QUARTER", "H1", "2025-07-01", "2025-11-01", 1000),       # 124 days: 0.25
            agreement("BELOW", "H2", "2025-07-01", "2025-11-02", 1000),         # 125 days: 0.248
        ]))

    judge(engine, run_for("2025-07"), PROFILE)

    assert {a["institution_code"] for a in open_alerts(engine, "PROGRESS_BEHIND")} == {"H1"}


def test_zero_agreed_quantity_has_no_completion_and_no_progress_alert(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A0", "H1", **{**HALF, "quantity": 0})]))

    judge(engine, run_for("2025-07"), PROFILE)

    row = metrics(engine, "2025-07")["A0"]
    assert row["completion_rate"] is None
    assert open_alerts(engine, "PROGRESS_BEHIND") == []


def test_agreement_rules_cover_military_and_private_institutions(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[
            agreement("A-M1", "M1", **HALF), agreement("A-P1", "P1", **HALF),
        ]))

    judge(engine, run_for("2025-07"), PROFILE)

    got = by_subject(open_alerts(engine, "PROGRESS_BEHIND"), "institution_code")
    assert set(got) == {"M1", "P1"}
    assert got["M1"]["branch_code"] == "B1" and got["P1"]["branch_code"] == "B2"


@pytest.mark.parametrize("selected, other, alerted", [
    ("600", "400", False),        # share 0.6 = agreed ratio: nothing
    ("599.99", "400.01", True),   # just below
])
def test_selected_share_low_at_and_below_the_agreed_ratio(engine, selected, other, alerted):
    orders = [
        order("SEL", "H1", selected, "2025-07-10"),
        order("NON", "H1", other, "2025-07-11", product="P-AML-N", price="0.40"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", **{**HALF, "quantity": 100})], orders=orders))

    judge(engine, run_for("2025-07"), PROFILE)

    alerts = open_alerts(engine, "SELECTED_SHARE_LOW")
    assert bool(alerts) == alerted
    if alerted:
        (alert,) = alerts
        assert alert["severity"] == "warning"
        assert num(alert["threshold_value"]) == Decimal("0.6")
        assert num(alert["metric_value"]) == Decimal("0.5999")  # 0.59999 rounded down: never shown at the threshold
        # shown rounded down too: 59.99 %, below the agreed 60.00 %
        assert "约定采购比例" in alert["message"] and "占比 59.99%" in alert["message"]
        assert "约定采购比例 60.00%" in alert["message"]


def test_off_platform_selected_purchases_are_same_generic_but_not_selected(engine):
    orders = [
        order("SEL", "H1", 500, "2025-07-10"),
        order("OFF", "H1", 500, "2025-07-10", channel="offline"),
    ]
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", **{**HALF, "quantity": 100})], orders=orders))

    judge(engine, run_for("2025-07"), PROFILE)

    row = metrics(engine, "2025-07")["A1"]
    assert num(row["selected_quantity"]) == 500 and num(row["same_generic_quantity"]) == 1000
    (alert,) = open_alerts(engine, "SELECTED_SHARE_LOW")
    assert num(alert["metric_value"]) == Decimal("0.5")


def test_no_same_generic_purchase_means_no_share_alert(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", **HALF)]))

    judge(engine, run_for("2025-07"), PROFILE)

    assert open_alerts(engine, "SELECTED_SHARE_LOW") == []
    row = metrics(engine, "2025-07")["A1"]
    assert row["selected_quantity_share"] is None and num(row["same_generic_quantity"]) == 0


def test_selected_purchases_count_only_products_of_the_agreements_batch(engine):
    other_batch = {"batch_code": "NB2", "batch_name": "第二批", "level": "national", "category": "drug",
                   "start_date": "2025-01-01", "cycle_months": 24}
    orders = [
        order("NB1", "H1", 100, "2025-07-10"),
        order("NB2", "H1", 900, "2025-07-10", product="P-AML-S2"),
    ]
    with engine.begin() as conn:
        seed(conn, city(batches=[other_batch],
                        products=[product("P-AML-S2", selected=True, price="0.45", batch="NB2")],
                        agreements=[agreement("A1", "H1", **HALF)], orders=orders))

    judge(engine, run_for("2025-07"), PROFILE)

    row = metrics(engine, "2025-07")["A1"]
    assert num(row["selected_quantity"]) == 100 and num(row["same_generic_quantity"]) == 1000
