"""DAG 6 · 配送响应 (domain.md DAG 6, seed 002 §二(六)): the 48-hour mark, the escalation day
across holidays and make-up working days (examples.md 5), and the delay lists.
"""
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from builders import city, seed
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.periods import judged_day
from vbp_monitor.core.prc_calendar import WorkCalendar
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts, orders
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules.order_response import (
    DAG_ID,
    ResponseSettings,
    escalation_mark_days,
    judge,
    timeline,
    workbook_path,
)

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

D = dt.date
PROFILE = load_profile("default")


def order(order_id, when, response=None, institution="H1", channel="platform", cancelled="false",
          distributor="D1"):
    return {"order_id": order_id, "institution_code": institution, "product_code": "P-AML-S",
            "distributor_code": distributor, "channel": channel, "order_time": when,
            "quantity": "100", "unit_price": "0.50", "amount": "50.00",
            "response_time": response or "", "cancelled": cancelled}


DISTRIBUTORS = [
    {"distributor_code": "D1", "distributor_name": "赣南医药配送有限公司"},
    {"distributor_code": "D2", "distributor_name": "章江医药物流有限公司"},
]


def run_on(day: dt.date, run_id="test", **kwargs):
    """The run with logical date D = ``day`` (it judges day − 1)."""
    return RunContext.for_test(DAG_ID, judged_day(day), run_id=run_id, **kwargs)


def raised(engine, period=None):
    query = select(alerts).where(alerts.c.status == "open")
    if period:
        query = query.where(alerts.c.period == period)
    with engine.connect() as conn:
        return {(row["order_id"], row["rule_code"]): row for row in conn.execute(query).mappings().all()}


def test_the_48_hour_mark_is_exact(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[
            order("AT-MARK", "2025-03-10 10:00:00", response="2025-03-12 10:00:00"),
            order("ONE-SECOND-LATE", "2025-03-10 10:00:00", response="2025-03-12 10:00:01"),
            order("NO-RESPONSE", "2025-03-10 10:00:00"),
            order("MIDNIGHT", "2025-03-10 00:00:00"),                # mark 12 March 00:00: on J
            order("MARK-ON-J-PLUS-1", "2025-03-11 00:00:00"),        # mark 13 March 00:00: not J
            order("MARK-ON-J-MINUS-1", "2025-03-09 23:59:59"),
            order("CANCELLED", "2025-03-10 10:00:00", cancelled="true"),
            order("OFFLINE", "2025-03-10 10:00:00", channel="offline"),
        ]))

    result = judge(engine, run_on(D(2025, 3, 13)), PROFILE)  # J = 12 March (Wednesday)

    alerts_of_j = raised(engine)
    assert set(alerts_of_j) == {("ONE-SECOND-LATE", "ORDER_RESPONSE_OVERDUE"),
                                ("NO-RESPONSE", "ORDER_RESPONSE_OVERDUE"),
                                ("MIDNIGHT", "ORDER_RESPONSE_OVERDUE")}
    assert result.details == {"overdue": 3, "escalated": 0}
    late = alerts_of_j[("ONE-SECOND-LATE", "ORDER_RESPONSE_OVERDUE")]
    assert (late["severity"], late["period"], late["branch_code"]) == ("high", "2025-03-12", "B1")
    assert (late["institution_code"], late["product_code"]) == ("H1", "P-AML-S")
    assert Decimal(late["threshold_value"]) == 48
    assert Decimal(late["metric_value"]) == Decimal("48.0003")  # its actual delay, 48 h 1 s
    assert "48小时0分1秒" in late["message"]
    silent = alerts_of_j[("NO-RESPONSE", "ORDER_RESPONSE_OVERDUE")]
    assert Decimal(silent["metric_value"]) == 62  # 10 March 10:00 → end of 12 March
    # list day = next working day (13 March), escalation day 14 March
    assert "2025-03-13" in silent["message"] and "2025-03-14" in silent["message"]
    assert "延迟响应清单" in silent["message"] and "已 62小时未响应" in silent["message"]
    assert "2025-03-10 10:00 下单" in silent["message"] and "节点 2025-03-12 10:00" in silent["message"]
    assert silent["message"].endswith("依据：赣市医保字〔2023〕28号 二(六)。")
    assert silent["message"].endswith(f"依据：{cite(PROFILE, 'ORDER_RESPONSE_OVERDUE')}。")


def test_examples_5_spring_festival_escalation(engine):
    # 26 January 2025 is a make-up working Sunday; 28 January – 4 February are holidays.
    with engine.begin() as conn:
        seed(conn, city(orders=[order("EX5", "2025-01-26 10:00:00")]))

    seen = []
    for offset in range(15):
        day = D(2025, 1, 27) + dt.timedelta(days=offset)
        judge(engine, run_on(day), PROFILE)
        seen += [(day, rule) for (order_id, rule) in raised(engine, judged_day(day).label)]

    assert seen == [(D(2025, 1, 29), "ORDER_RESPONSE_OVERDUE"), (D(2025, 2, 7), "ORDER_RESPONSE_ESCALATED")]
    escalated = raised(engine, "2025-02-06")[("EX5", "ORDER_RESPONSE_ESCALATED")]
    assert escalated["severity"] == "critical" and escalated["branch_code"] == "B1"
    assert Decimal(escalated["threshold_value"]) == 72
    assert Decimal(escalated["metric_value"]) == 278  # 26 Jan 10:00 → 7 Feb 00:00
    assert "2025-02-05" in escalated["message"] and "市医疗保障局" in escalated["message"]
    assert "约谈" in escalated["message"] and "下单后已 278小时" in escalated["message"]
    assert "限 48+24 小时" in escalated["message"]
    assert escalated["message"].endswith(f"依据：{cite(PROFILE, 'ORDER_RESPONSE_ESCALATED')}。")


def test_escalation_days_around_holidays_and_make_up_weekends():
    cal, settings = WorkCalendar(), ResponseSettings(48, 24)
    # mark on the day before the Spring Festival holiday (Monday 27 January)
    line = timeline(cal, dt.datetime(2025, 1, 25, 9, 0), settings)
    assert (line.mark_day, line.list_day, line.escalation_day) == (D(2025, 1, 27), D(2025, 2, 5), D(2025, 2, 6))
    # mark on a Friday before a make-up working Saturday (8 February): list day is that Saturday
    line = timeline(cal, dt.datetime(2025, 2, 5, 10, 0), settings)
    assert (line.list_day, line.escalation_day) == (D(2025, 2, 8), D(2025, 2, 9))
    # mark on the make-up Saturday itself: next working day is Monday 10 February
    line = timeline(cal, dt.datetime(2025, 2, 6, 10, 0), settings)
    assert (line.mark_day, line.list_day, line.escalation_day) == (D(2025, 2, 8), D(2025, 2, 10), D(2025, 2, 11))
    # every mark day from 27 January to 4 February escalates on 6 February
    assert escalation_mark_days(cal, D(2025, 2, 6), settings) == [
        D(2025, 1, 27) + dt.timedelta(days=i) for i in range(9)]
    # the day after a non-working list day escalates nothing
    assert escalation_mark_days(cal, D(2025, 2, 1), settings) == []


def test_response_on_the_escalation_day_stops_escalation(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[
            order("ANSWERED-ON-E", "2025-01-26 10:00:00", response="2025-02-06 23:59:59"),
            order("ANSWERED-AT-MIDNIGHT", "2025-01-26 11:00:00", response="2025-02-07 00:00:00"),
            order("ANSWERED-DAY-AFTER", "2025-01-26 12:00:00", response="2025-02-07 09:00:00"),
            order("SILENT-MARK-BEFORE-HOLIDAY", "2025-01-25 09:00:00"),
            order("ANSWERED-IN-TIME", "2025-01-26 13:00:00", response="2025-01-27 08:00:00"),
            order("CANCELLED", "2025-01-26 10:00:00", cancelled="true"),
            order("OFFLINE", "2025-01-26 10:00:00", channel="offline"),
        ]))
    judge(engine, run_on(D(2025, 1, 29)), PROFILE)  # J = 28 January: the overdue marks
    assert set(raised(engine, "2025-01-28")) == {
        ("ANSWERED-ON-E", "ORDER_RESPONSE_OVERDUE"), ("ANSWERED-AT-MIDNIGHT", "ORDER_RESPONSE_OVERDUE"),
        ("ANSWERED-DAY-AFTER", "ORDER_RESPONSE_OVERDUE")}

    judge(engine, run_on(D(2025, 2, 7)), PROFILE)  # J = 6 February: the escalation day

    assert set(raised(engine, "2025-02-06")) == {
        ("ANSWERED-AT-MIDNIGHT", "ORDER_RESPONSE_ESCALATED"),
        ("ANSWERED-DAY-AFTER", "ORDER_RESPONSE_ESCALATED"),
        ("SILENT-MARK-BEFORE-HOLIDAY", "ORDER_RESPONSE_ESCALATED"),
    }


def test_rerun_is_idempotent_and_a_corrected_response_resolves(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[order("A", "2025-03-10 10:00:00"), order("B", "2025-03-10 11:00:00")]))
    judge(engine, run_on(D(2025, 3, 13), run_id="first"), PROFILE)
    with engine.connect() as conn:
        before = {r.alert_key: (r.rule_code, r.message, r.metric_value, r.status) for r in conn.execute(select(alerts))}
    judge(engine, run_on(D(2025, 3, 13), run_id="again"), PROFILE)
    with engine.connect() as conn:
        after = {r.alert_key: (r.rule_code, r.message, r.metric_value, r.status) for r in conn.execute(select(alerts))}
    assert after == before and len(before) == 2

    # the platform re-delivers order A with the response it had within 48 hours
    corrected = contract.derive("orders", {"order_time": dt.datetime(2025, 3, 10, 10),
                                           "response_time": dt.datetime(2025, 3, 11, 9)})
    with engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_id == "A").values(
            response_time=corrected["response_time"], response_hours=corrected["response_hours"]))
    result = judge(engine, run_on(D(2025, 3, 13), run_id="corrected"), PROFILE)

    assert result.written.resolved == 1
    with engine.connect() as conn:
        statuses = {r.order_id: r.status for r in conn.execute(select(alerts))}
    assert statuses == {"A": "resolved", "B": "open"}


def test_delay_list_per_branch_grouped_by_distributor(engine):
    openpyxl = pytest.importorskip("openpyxl")
    with engine.begin() as conn:
        seed(conn, city(distributors=DISTRIBUTORS, orders=[
            order("B1-D2", "2025-03-10 08:00:00", distributor="D2"),
            order("B1-D1-late", "2025-03-10 09:00:00", distributor="D1"),
            order("B1-D1-early", "2025-03-10 07:00:00", distributor="D1"),
            order("B1-UNKNOWN", "2025-03-10 07:30:00", distributor="D9"),
            order("B2-D1", "2025-03-10 10:00:00", institution="H2", distributor="D1"),
        ]))

    result = judge(engine, run_on(D(2025, 3, 13)), PROFILE)

    b1, b2 = workbook_path("2025-03-12", "B1"), workbook_path("2025-03-12", "B2")
    assert b1.name == "延迟响应清单_B1_2025-03-12.xlsx" and b1.parent.parent.name == "vbp_order_response"
    assert result.attachments == {"B1": [b1], "B2": [b2]}
    header, *rows = [list(r) for r in openpyxl.load_workbook(b1)["延迟响应清单"].iter_rows(values_only=True)]
    col = {name: header.index(name)
           for name in ("配送企业代码", "配送企业名称", "订单号", "升级判定日（再24小时期满）")}
    assert [(r[col["配送企业代码"]], r[col["订单号"]]) for r in rows] == [
        ("D1", "B1-D1-early"), ("D1", "B1-D1-late"), ("D2", "B1-D2"), ("D9", "B1-UNKNOWN")]
    assert rows[0][col["配送企业名称"]] == "赣南医药配送有限公司"
    assert str(rows[0][col["升级判定日（再24小时期满）"]])[:10] == "2025-03-14"
    b2_orders = [r[2] for r in openpyxl.load_workbook(b2)["延迟响应清单"].iter_rows(min_row=2, values_only=True)]
    assert b2_orders == ["B2-D1"]

    # a branch-scoped rerun touches only that branch's alerts
    judge(engine, run_on(D(2025, 3, 13), scope=Scope(branch_code="B2")), PROFILE)
    assert len(raised(engine)) == 5


def test_fallback_calendar_is_noted_in_the_message(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[order("Y2027", "2027-03-01 10:00:00")]))
    judge(engine, run_on(D(2027, 3, 4)), PROFILE)
    (row,) = raised(engine).values()
    assert "2027年法定节假日安排尚未载入" in row["message"]
    assert row["message"].endswith(f"依据：{cite(PROFILE, 'ORDER_RESPONSE_OVERDUE')}。")


def test_operator_holiday_override_moves_the_escalation_day(engine):
    # The operators declare Thursday 13 March 2025 a day off: the list day becomes Friday 14
    # March and the escalation day Saturday 15 March (not 14 March).
    with engine.begin() as conn:
        seed(conn, city(holidays=[{"day": "2025-03-13", "is_workday": "false"}],
                        orders=[order("A", "2025-03-10 10:00:00")]))
    judge(engine, run_on(D(2025, 3, 15)), PROFILE)  # J = 14 March
    assert raised(engine, "2025-03-14") == {}
    judge(engine, run_on(D(2025, 3, 16)), PROFILE)  # J = 15 March
    assert set(raised(engine, "2025-03-15")) == {("A", "ORDER_RESPONSE_ESCALATED")}


def test_branch_email_carries_its_delay_list_and_escalations_reach_the_city(engine, smtp_server):
    from vbp_monitor.notify.mailer import notify_run

    with engine.begin() as conn:
        seed(conn, city(distributors=DISTRIBUTORS, orders=[
            order("EX5", "2025-01-26 10:00:00"),
            order("B2-ORDER", "2025-02-04 10:00:00", institution="H2"),  # mark 6 Feb: B2's delay list
        ]))
    run = run_on(D(2025, 2, 7))
    judged = judge(engine, run, PROFILE)
    sent = notify_run(engine, run, attachments=judged.attachments)

    assert sent["emails"] == 3  # B1 (escalation), B2 (delay list), the city (critical)
    (b1_mail,) = smtp_server.to("b1@example.org")
    assert "延迟响应清单_B1_2025-02-06.xlsx" in b1_mail.attachments()
    (b2_mail,) = smtp_server.to("b2@example.org")
    assert "延迟响应清单_B2_2025-02-06.xlsx" in b2_mail.attachments()
    assert "EX5" not in b2_mail.html()
    (city_mail,) = smtp_server.to("city@example.org")
    assert "EX5" in city_mail.html()

    # a rerun for the same D sends nothing again
    judge(engine, run_on(D(2025, 2, 7), run_id="again"), PROFILE)
    assert notify_run(engine, run_on(D(2025, 2, 7), run_id="again"))["emails"] == 0
    assert len(smtp_server.to("b1@example.org")) == 1


def test_validate_reads_the_platform_orders_of_both_windows(engine):
    from vbp_monitor.rules.order_response import validate

    # J = 6 February 2025: marks on J are orders of 4 February; marks escalating on J
    # (27 January – 4 February) are orders of 25 January – 2 February.
    with engine.begin() as conn:
        seed(conn, city(orders=[
            order("OVERDUE-WINDOW", "2025-02-04 10:00:00"), order("ESCALATION-WINDOW", "2025-01-25 09:00:00"),
            order("OFFLINE", "2025-02-04 10:00:00", channel="offline"),
            order("BEFORE", "2025-01-24 23:00:00"), order("AFTER", "2025-02-05 00:00:00"),
        ]))
    report = validate(engine, run_on(D(2025, 2, 7)), PROFILE)
    assert report["orders"]["rows"] == 2 and report["orders"]["failed_rows"] == 0
