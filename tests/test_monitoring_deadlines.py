"""DAG 2 · order-level deadlines: OFFLINE_NOT_FILED / OFFLINE_FILED_LATE (7 working days,
examples.md 3) and PAYMENT_OVERDUE (end of next month / 30 days, examples.md 4)."""
import datetime as dt
from decimal import Decimal

import pytest

from builders import by_subject, city, num, open_alerts, order, run_for, seed
from vbp_monitor.core.prc_calendar import nth_working_day_after
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.rules.monitoring import judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")


def offline(order_id, when, institution="H1", **kw):
    return order(order_id, institution, 10, when, channel="offline", **kw)


def filing(order_id, day):
    return {"order_id": order_id, "filed_date": day}


def filing_alerts(engine) -> dict:
    rows = open_alerts(engine, "OFFLINE_NOT_FILED") + open_alerts(engine, "OFFLINE_FILED_LATE")
    return {row["order_id"]: (row["rule_code"], row["severity"], num(row["metric_value"]),
                              num(row["threshold_value"])) for row in rows}


def test_example_3_filing_deadline_across_labour_day(engine):
    assert nth_working_day_after(dt.date(2025, 4, 30), 7) == dt.date(2025, 5, 14)
    # Saturday 10 May → 20 May; Friday 23 May → 4 June (Dragon Boat Festival 31 May – 2 June)
    assert nth_working_day_after(dt.date(2025, 5, 10), 7) == dt.date(2025, 5, 20)
    assert nth_working_day_after(dt.date(2025, 5, 23), 7) == dt.date(2025, 6, 4)
    orders = [
        offline("ON-TIME", "2025-04-30 09:00:00"),
        offline("LATE", "2025-04-30 23:59:59", institution="H2"),
        offline("LATE-ON-SATURDAY", "2025-04-30"),
        offline("NONE", "2025-04-30", institution="P1"),
        offline("FILED-IN-JUNE", "2025-04-30"),
        offline("SATURDAY-ORDER", "2025-05-10"),
        offline("DEADLINE-IN-JUNE", "2025-05-23"),
        offline("CANCELLED", "2025-04-30", cancelled="true"),
        order("PLATFORM", "H1", 10, "2025-04-30"),            # platform orders are not filed
    ]
    filings = [
        filing("ON-TIME", "2025-05-14"), filing("LATE", "2025-05-15"),
        filing("LATE-ON-SATURDAY", "2025-05-17"), filing("FILED-IN-JUNE", "2025-06-02"),
    ]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, offline_filings=filings))

    judge(engine, run_for("2025-04"), PROFILE)
    assert filing_alerts(engine) == {}  # deadlines in May: judged by the May run only

    judge(engine, run_for("2025-05"), PROFILE)
    assert filing_alerts(engine) == {
        "LATE": ("OFFLINE_FILED_LATE", "warning", Decimal("8"), Decimal("7")),
        # filed on a Saturday: counts as the next working day (Monday 19 May = 10th)
        "LATE-ON-SATURDAY": ("OFFLINE_FILED_LATE", "warning", Decimal("10"), Decimal("7")),
        "NONE": ("OFFLINE_NOT_FILED", "high", Decimal("0"), Decimal("1")),
        # filed after the judged month: no filing by the end of M
        "FILED-IN-JUNE": ("OFFLINE_NOT_FILED", "high", Decimal("0"), Decimal("1")),
        "SATURDAY-ORDER": ("OFFLINE_NOT_FILED", "high", Decimal("0"), Decimal("1")),
    }
    alerts = by_subject(open_alerts(engine, "OFFLINE_FILED_LATE") + open_alerts(engine, "OFFLINE_NOT_FILED"),
                        "order_id")
    assert alerts["NONE"]["branch_code"] == "B2" and alerts["NONE"]["institution_code"] == "P1"
    assert alerts["NONE"]["period"] == "2025-05" and alerts["NONE"]["product_code"] == "P-AML-S"
    late = alerts["LATE"]["message"]
    assert "2025年5月14日" in late and "2025年5月15日" in late and "7个工作日" in late
    assert "赣市医保字〔2023〕28号 二(四)" in late
    assert "补办备案" in alerts["NONE"]["message"]


def test_a_fallback_calendar_year_is_named_in_the_message(engine):
    # 2027 has no statutory calendar yet: Monday–Friday, and the alert says so
    with engine.begin() as conn:
        seed(conn, city(orders=[offline("FALLBACK", "2027-03-01")]))

    judge(engine, run_for("2027-03"), PROFILE)

    (alert,) = open_alerts(engine, "OFFLINE_NOT_FILED")
    assert "2027年法定节假日安排尚未载入" in alert["message"]


def accepted(order_id, institution, acceptance, amount="100", **kw):
    return order(order_id, institution, amount, "2025-01-10", price="1", acceptance=acceptance, **kw)


def payment(payment_id, order_id, day, amount):
    return {"payment_id": payment_id, "order_id": order_id, "payment_date": day, "amount": str(amount)}


def test_example_4_payment_deadlines_by_ownership(engine):
    orders = [
        accepted("PUB-PAID", "H1", "2025-01-20"),
        accepted("PUB-LATE", "H2", "2025-01-20"),
        accepted("PUB-LAST-DAY", "H1", "2025-01-31"),
        accepted("PUB-MARCH", "H1", "2025-02-01"),           # deadline 31 March
        accepted("PRIV-PAID", "P1", "2025-01-20"),
        accepted("MIL-LATE", "M1", "2025-01-20"),
        accepted("PRIV-MARCH", "P1", "2025-01-30"),           # deadline 1 March
        accepted("CANCELLED", "H2", "2025-01-20", cancelled="true"),
        accepted("OFFLINE", "H2", "2025-01-20", channel="offline"),
        order("NOT-ACCEPTED", "H2", 100, "2025-01-10", price="1"),
    ]
    payments = [
        payment("1", "PUB-PAID", "2025-02-10", 60), payment("2", "PUB-PAID", "2025-02-28", 40),
        payment("3", "PUB-LATE", "2025-02-10", 60), payment("4", "PUB-LATE", "2025-03-01", 40),
        payment("5", "PRIV-PAID", "2025-02-19", 100),
        payment("6", "MIL-LATE", "2025-02-20", 100),
    ]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, payments=payments))

    judge(engine, run_for("2025-01"), PROFILE)
    assert open_alerts(engine, "PAYMENT_OVERDUE") == []

    judge(engine, run_for("2025-02"), PROFILE)
    got = {row["order_id"]: (row["severity"], num(row["metric_value"]), num(row["threshold_value"]),
                             row["branch_code"])
           for row in open_alerts(engine, "PAYMENT_OVERDUE")}
    assert got == {
        "PUB-LATE": ("high", Decimal("40"), Decimal("0"), "B2"),      # 40 paid on 1 March
        "PUB-LAST-DAY": ("high", Decimal("100"), Decimal("0"), "B1"),
        "MIL-LATE": ("high", Decimal("100"), Decimal("0"), "B1"),     # deadline 19 February
    }
    messages = {row["order_id"]: row["message"] for row in open_alerts(engine, "PAYMENT_OVERDUE")}
    assert "2025年2月28日" in messages["PUB-LATE"] and "次月底" in messages["PUB-LATE"]
    assert "2025年2月19日" in messages["MIL-LATE"] and "30天" in messages["MIL-LATE"]
    assert "60.00元" in messages["PUB-LATE"] and "40.00元" in messages["PUB-LATE"]
    # the clause of the deadline that applied, by ownership: never the other one
    public_clause = "依据：集采常态化制度化责任清单 第11项；陕西省医用耗材集中带量采购和使用工作实施方案 五(五)。"
    private_clause = "依据：宁政办规发〔2019〕11号 五(三)9。"
    assert messages["PUB-LATE"].endswith(public_clause) and "五(三)9" not in messages["PUB-LATE"]
    assert "30天" not in messages["PUB-LATE"]
    assert messages["MIL-LATE"].endswith(private_clause) and "责任清单" not in messages["MIL-LATE"]
    assert "军队医疗机构" in messages["MIL-LATE"] and "次月底" not in messages["MIL-LATE"]

    judge(engine, run_for("2025-03"), PROFILE)
    march = {row["order_id"] for row in open_alerts(engine, "PAYMENT_OVERDUE") if row["period"] == "2025-03"}
    assert march == {"PUB-MARCH", "PRIV-MARCH"}


PUBLIC_CLAUSE = PROFILE["monitoring"]["citations"]["PAYMENT_OVERDUE"]["public"]
THIRTY_DAY_CLAUSE = PROFILE["monitoring"]["citations"]["PAYMENT_OVERDUE"]["private"]


@pytest.mark.parametrize("institution, deadline, cited, not_cited, rule_text", [
    ("H1", "2025年2月28日", PUBLIC_CLAUSE, THIRTY_DAY_CLAUSE, "公立医疗机构应在交货验收合格后次月底前结清货款"),
    ("M1", "2025年2月19日", THIRTY_DAY_CLAUSE, PUBLIC_CLAUSE, "军队医疗机构应在交货验收合格后30天内结清货款"),
    ("P1", "2025年2月19日", THIRTY_DAY_CLAUSE, PUBLIC_CLAUSE, "民营医疗机构应在交货验收合格后30天内结清货款"),
])
def test_payment_overdue_cites_only_the_clause_of_the_institutions_ownership(
        engine, institution, deadline, cited, not_cited, rule_text):
    assert PUBLIC_CLAUSE != THIRTY_DAY_CLAUSE
    with engine.begin() as conn:
        seed(conn, city(orders=[accepted("UNPAID", institution, "2025-01-20")]))

    judge(engine, run_for("2025-02"), PROFILE)

    (alert,) = open_alerts(engine, "PAYMENT_OVERDUE")
    message = alert["message"]
    assert alert["institution_code"] == institution
    assert message.endswith(f"依据：{cited}。") and not_cited not in message
    assert rule_text in message and f"即{deadline}前" in message
    assert ("30天" in message) == (institution != "H1")


def test_payment_days_in_the_message_come_from_the_profile(engine):
    profile = {**PROFILE, "monitoring": {**PROFILE["monitoring"], "private_payment_days": 20}}
    with engine.begin() as conn:
        seed(conn, city(orders=[accepted("UNPAID", "P1", "2025-01-20")]))

    judge(engine, run_for("2025-02"), profile)

    (alert,) = open_alerts(engine, "PAYMENT_OVERDUE")
    assert "20天内结清货款" in alert["message"] and "30天" not in alert["message"]
    assert "2025年2月9日" in alert["message"]  # 20 January + 20 days
