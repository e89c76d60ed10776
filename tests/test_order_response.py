"""DAG 6 · 配送响应 (domain.md DAG 6, seed 002 §二(六)): the 48-hour mark, the escalation day
across holidays and make-up working days (examples.md 5), and the delay lists.
"""
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from builders import city, seed
from fixtures_smtp import check_mime
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
    # no distributor has an address: each branch gets its list and every distributor's part to send
    assert sorted(result.attachments) == ["B1", "B2"]
    assert result.attachments["B1"][0] == b1 and result.attachments["B2"][0] == b2
    assert [path.name for path in result.attachments["B1"][1:]] == [
        "延迟响应清单_B1_D1_2025-03-12.xlsx", "延迟响应清单_B1_D2_2025-03-12.xlsx",
        "延迟响应清单_B1_D9_2025-03-12.xlsx"]
    header, rows = rows_of(openpyxl.load_workbook(b1)["延迟响应清单"])
    assert [row[0] if row[1] is None else row[header.index("订单号")] for row in rows] == [
        "配送企业：赣南医药配送有限公司（D1）　未登记联系邮箱，请分局自行联系送达　共 2 笔订单", "B1-D1-early", "B1-D1-late",
        "配送企业：章江医药物流有限公司（D2）　未登记联系邮箱，请分局自行联系送达　共 1 笔订单", "B1-D2",
        "配送企业：未登记配送企业（D9）　未登记联系邮箱，请分局自行联系送达　共 1 笔订单", "B1-UNKNOWN"]
    assert rows[1][header.index("升级判定日（再24小时期满）")].date() == D(2025, 3, 14)
    _, b2_rows = rows_of(openpyxl.load_workbook(b2)["延迟响应清单"])
    assert [r[1] for r in b2_rows] == [None, "B2-D1"]

    # a branch-scoped rerun touches only that branch's alerts and files
    judge(engine, run_on(D(2025, 3, 13), scope=Scope(branch_code="B2")), PROFILE)
    assert len(raised(engine)) == 5 and b1.exists()
    assert all(path.exists() for path in result.attachments["B1"])


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


# ---------------------------------------------------------------- the delay list to distributors
# (seed 002 §二(六): the list is sent to the distributors; operations.md › Notification)
MAILED_DISTRIBUTORS = [
    {"distributor_code": "D1", "distributor_name": "赣南医药配送有限公司", "emails": "d1@example.org;d1b@example.org"},
    {"distributor_code": "D2", "distributor_name": "章江医药物流有限公司", "emails": "d2@example.org"},
    {"distributor_code": "D3", "distributor_name": "虔州药品配送中心", "emails": ""},
]
J = "2025-03-12"  # judged by the run of 13 March
# order → (branch, distributor); every mark on J
DELAY_ORDERS = {
    "B1-D1-a": ("H1", "D1"), "B1-D1-b": ("H1", "D1"), "B1-D2": ("M1", "D2"), "B1-D3": ("H1", "D3"),
    "B1-D9": ("H1", "D9"), "B2-D1": ("H2", "D1"), "B2-D2": ("P1", "D2"),
}
BRANCH_ADDRESSES = {"B1": ["b1@example.org"], "B2": ["b2@example.org", "b2b@example.org"]}


def delay_city():
    rows = [order(order_id, f"2025-03-10 {8 + n:02d}:15:00", institution=institution, distributor=distributor)
            for n, (order_id, (institution, distributor)) in enumerate(DELAY_ORDERS.items())]
    return city(distributors=MAILED_DISTRIBUTORS, orders=rows)


def expected_parts() -> dict[tuple[str, str], set[str]]:
    """(branch, distributor with an address) → its orders."""
    branch_of = {"H1": "B1", "M1": "B1", "H2": "B2", "P1": "B2"}
    addressed = {d["distributor_code"] for d in MAILED_DISTRIBUTORS if d["emails"]}
    parts: dict[tuple[str, str], set[str]] = {}
    for order_id, (institution, distributor) in DELAY_ORDERS.items():
        if distributor in addressed:
            parts.setdefault((branch_of[institution], distributor), set()).add(order_id)
    return parts


def judge_and_notify(engine, run, profile=PROFILE):
    from vbp_monitor.notify.mailer import notify_run

    judged = judge(engine, run, profile)
    return notify_run(engine, run, attachments=judged.attachments, profile=profile)


def distributor_mails(server):
    return [mail for mail in server.messages if (mail.audience or "").startswith("distributor:")]


def rows_of(sheet) -> tuple[list, list[tuple]]:
    header_row = int(sheet.freeze_panes[1:]) - 1
    return ([cell.value for cell in sheet[header_row]],
            list(sheet.iter_rows(min_row=header_row + 1, values_only=True)))


def test_each_distributor_receives_only_its_own_orders_with_its_branch_in_copy(engine, smtp_server):
    import io

    openpyxl = pytest.importorskip("openpyxl")
    with engine.begin() as conn:
        seed(conn, delay_city())

    sent = judge_and_notify(engine, run_on(D(2025, 3, 13)))

    parts = expected_parts()
    assert sorted(sent["audiences"]) == sorted(
        ["branch:B1", "branch:B2", "city", *(f"distributor:{b}:{d}" for b, d in parts)])
    mails = {mail.audience: mail for mail in distributor_mails(smtp_server)}
    assert len(mails) == len(distributor_mails(smtp_server)) == len(parts) == 4
    for (branch_code, code), own in parts.items():
        mail = mails[f"distributor:{branch_code}:{code}"]
        emails = next(d["emails"] for d in MAILED_DISTRIBUTORS if d["distributor_code"] == code).split(";")
        assert mail.message["To"] == ", ".join(emails)
        assert mail.message["Cc"] == ", ".join(BRANCH_ADDRESSES[branch_code])  # the branch in copy
        assert sorted(mail.rcpt_tos) == sorted(emails + BRANCH_ADDRESSES[branch_code])
        html, text = mail.html(), mail.text()
        others = set(DELAY_ORDERS) - own
        for body in (html, text):
            assert all(order_id in body for order_id in own)
            assert not [order_id for order_id in others if order_id in body]
        # the rule, the clause, what it must do
        assert "48小时" in text and "24小时内响应" in text and "配送到位" in text
        assert cite(PROFILE, "ORDER_RESPONSE_OVERDUE") in text and "延迟响应清单" in mail.subject
        assert "2025-03-10" in text and "未响应" in text  # its orders with times and hours
        # questions go to its branch bureau (in copy), not to the city bureau's data team
        assert "数据组" not in text and "如对订单数据有疑问，请联系" in text.split("-" * 40)[-1]
        (name, content), = mail.attachments().items()  # its own delay list, nothing else
        assert name == f"延迟响应清单_{branch_code}_{code}_{J}.xlsx"
        book = openpyxl.load_workbook(io.BytesIO(content))
        header, rows = rows_of(book["延迟响应清单"])
        listed = {row[header.index("订单号")] for row in rows if row[1] is not None}
        assert listed == own
        assert not [value for row in rows for value in row if isinstance(value, str)
                    and any(order_id in value for order_id in others)]
        check_mime(mail)

    # the branch names the distributors it must contact itself, with their counts
    (b1,) = [mail for mail in smtp_server.to("b1@example.org") if mail.audience == "branch:B1"]
    html = b1.html()
    assert "需贵局自行联系的配送企业" in html
    contact_itself = html.split("需贵局自行联系的配送企业")[1].split("</table>")[0]
    assert "虔州药品配送中心" in contact_itself and "D3" in contact_itself and "D9" in contact_itself
    assert "赣南医药配送有限公司" not in contact_itself
    assert "已由系统直接发送延迟响应清单的配送企业" in html
    assert "请将延迟响应清单及时发送虔州药品配送中心" in b1.text()
    assert {f"延迟响应清单_B1_{J}.xlsx", f"延迟响应清单_B1_D3_{J}.xlsx", f"延迟响应清单_B1_D9_{J}.xlsx"} <= set(
        b1.attachments())
    (b2,) = [mail for mail in smtp_server.to("b2@example.org") if mail.audience == "branch:B2"]
    assert "需贵局自行联系" not in b2.html() and "已由系统直接发送" in b2.text()

    # every alert reached every audience: notified; a second run sends nothing
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.notified_at)).scalars().all().count(None) == 0
    count = len(smtp_server.messages)
    assert judge_and_notify(engine, run_on(D(2025, 3, 13), run_id="again"))["emails"] == 0
    assert len(smtp_server.messages) == count


def test_smtp_down_then_up_sends_each_distributor_once_and_force_resend_again(engine, smtp_server):
    from vbp_monitor.notify.mailer import NotificationError, notify_run

    with engine.begin() as conn:
        seed(conn, delay_city())
    run = run_on(D(2025, 3, 13))
    judged = judge(engine, run, PROFILE)
    smtp_server.stop()
    with pytest.raises(NotificationError):
        notify_run(engine, run, attachments=judged.attachments, profile=PROFILE)
    smtp_server.start()
    assert notify_run(engine, run, attachments=judged.attachments, profile=PROFILE)["emails"] == 3 + 4
    assert notify_run(engine, run, attachments=judged.attachments, profile=PROFILE)["emails"] == 0
    audiences = [mail.audience for mail in distributor_mails(smtp_server)]
    assert sorted(audiences) == sorted(f"distributor:{b}:{d}" for b, d in expected_parts())

    resent = notify_run(engine, run_on(D(2025, 3, 13), force_resend=True), attachments=judged.attachments,
                        profile=PROFILE)
    assert resent["emails"] == 7
    assert len(distributor_mails(smtp_server)) == 8
    assert "重发" in distributor_mails(smtp_server)[-1].subject


def test_a_branch_scoped_run_mails_only_that_branchs_distributors(engine, smtp_server):
    with engine.begin() as conn:
        seed(conn, delay_city())
    sent = judge_and_notify(engine, run_on(D(2025, 3, 13), scope=Scope(branch_code="B2")))
    assert sorted(sent["audiences"]) == ["branch:B2", "city", "distributor:B2:D1", "distributor:B2:D2"]
    assert smtp_server.to("b1@example.org") == []


def test_without_send_to_distributors_the_branch_contacts_every_distributor(engine, smtp_server):
    profile = {**PROFILE, "order_response": {**PROFILE["order_response"], "send_to_distributors": False}}
    with engine.begin() as conn:
        seed(conn, delay_city())
    sent = judge_and_notify(engine, run_on(D(2025, 3, 13)), profile)
    assert sorted(sent["audiences"]) == ["branch:B1", "branch:B2", "city"]
    assert distributor_mails(smtp_server) == []
    (b2,) = smtp_server.to("b2@example.org")
    contact_itself = b2.html().split("需贵局自行联系的配送企业")[1].split("</table>")[0]
    assert "赣南医药配送有限公司" in contact_itself and "章江医药物流有限公司" in contact_itself
    assert {f"延迟响应清单_B2_D1_{J}.xlsx", f"延迟响应清单_B2_D2_{J}.xlsx"} <= set(b2.attachments())


def test_the_delay_list_is_a_document_the_branch_can_send(engine):
    openpyxl = pytest.importorskip("openpyxl")
    from vbp_monitor.core.formatting import XLSX_DATE, XLSX_DATETIME, XLSX_MONEY, XLSX_QUANTITY

    with engine.begin() as conn:
        seed(conn, delay_city())
    judge(engine, run_on(D(2025, 3, 13)), PROFILE)

    book = openpyxl.load_workbook(workbook_path(J, "B1"))
    assert book.sheetnames == ["延迟响应清单"]
    sheet = book["延迟响应清单"]
    # the title block: the issuing branch, the list and its date, the 48-hour rule and the 24-hour deadline
    title = [sheet.cell(row=n, column=1).value for n in range(1, 5)]
    assert title[0] == "章贡分局" and title[1] == "延迟响应清单（2025年3月12日）"
    assert "生成时间" in title[2]
    assert "超过48小时未响应" in title[3] and "收到本清单后24小时内响应" in title[3]
    assert cite(PROFILE, "ORDER_RESPONSE_OVERDUE") in title[3]
    header, rows = rows_of(sheet)
    assert sheet.freeze_panes == "A6"
    # one section per distributor: a merged heading row naming it and its contact, then its orders
    headings = [row[0] for row in rows if row[1] is None]
    assert headings == [
        "配送企业：赣南医药配送有限公司（D1）　联系邮箱：d1@example.org；d1b@example.org（本清单已由系统直接发送，抄送分局）　共 2 笔订单",
        "配送企业：章江医药物流有限公司（D2）　联系邮箱：d2@example.org（本清单已由系统直接发送，抄送分局）　共 1 笔订单",
        "配送企业：虔州药品配送中心（D3）　未登记联系邮箱，请分局自行联系送达　共 1 笔订单",
        "配送企业：未登记配送企业（D9）　未登记联系邮箱，请分局自行联系送达　共 1 笔订单",
    ]
    merged = {str(cells) for cells in sheet.merged_cells.ranges}
    assert f"A6:{openpyxl.utils.get_column_letter(len(header))}6" in merged
    assert [row[header.index("订单号")] for row in rows if row[1] is not None] == [
        "B1-D1-a", "B1-D1-b", "B1-D2", "B1-D3", "B1-D9"]
    # typed cells: date-times, numbers with their formats
    first = 7  # the first order's row (under the first heading)
    cell = {name: sheet.cell(row=first, column=header.index(name) + 1) for name in header}
    assert cell["订单号"].value == "B1-D1-a"
    assert cell["下单时间"].value == dt.datetime(2025, 3, 10, 8, 15)
    assert cell["下单时间"].number_format == XLSX_DATETIME
    assert cell["48小时节点"].value == dt.datetime(2025, 3, 12, 8, 15)
    assert cell["响应时间"].value == "未响应"
    assert (cell["数量"].value, cell["数量"].number_format) == (100, XLSX_QUANTITY)
    assert (cell["金额（元）"].value, cell["金额（元）"].number_format) == (50, XLSX_MONEY)
    hours_cell = cell["未响应小时数（截至清单日终）或实际响应用时"]
    assert hours_cell.value == 63.75 and hours_cell.data_type == "n"  # 10 March 08:15 → 13 March 00:00
    assert cell["分局发送清单截止日"].number_format == XLSX_DATE
    assert cell["分局发送清单截止日"].value.date() == D(2025, 3, 13)
    assert cell["升级判定日（再24小时期满）"].value.date() == D(2025, 3, 14)
    assert (cell["序号"].value, sheet.cell(row=first + 1, column=1).value) == (1, 2)
    # prints: A4 landscape, one page wide
    assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.paperSize == 9
    assert sheet.page_setup.fitToWidth == 1 and sheet.sheet_properties.pageSetUpPr.fitToPage
    # a distributor's own part: its orders only, addressed to it in the title block
    from vbp_monitor.rules.order_response import distributor_workbook_path

    part = openpyxl.load_workbook(distributor_workbook_path(J, "B1", "D1"))["延迟响应清单"]
    assert part.cell(row=4, column=1).value.startswith("致：赣南医药配送有限公司（D1）")
    _, part_rows = rows_of(part)
    assert [row[1] for row in part_rows] == [None, "B1-D1-a", "B1-D1-b"]


@pytest.mark.skipif(not (__import__("shutil").which("soffice") and __import__("shutil").which("pdfinfo")),
                    reason="LibreOffice and poppler are not installed")
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_one_row_delay_list_prints_on_one_page(engine, tmp_path):
    import subprocess

    with engine.begin() as conn:
        seed(conn, city(distributors=MAILED_DISTRIBUTORS, orders=[order("ONLY", "2025-03-10 08:15:00")]))
    judge(engine, run_on(D(2025, 3, 13)), PROFILE)
    path = workbook_path(J, "B1")
    profile_dir = f"file://{tmp_path}/lo-profile"
    subprocess.run(["soffice", f"-env:UserInstallation={profile_dir}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(path)], check=True, capture_output=True, timeout=240)
    info = subprocess.run(["pdfinfo", str(tmp_path / path.with_suffix(".pdf").name)], check=True,
                          capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert int(fields["Pages"]) == 1
    width, height = (float(x) for x in fields["Page size"].split("pts")[0].split(" x "))
    assert round(width) == 842 and round(height) == 595  # A4 landscape


def test_without_the_judges_files_a_distributor_still_gets_a_workbook_of_its_orders(engine, smtp_server):
    import io

    openpyxl = pytest.importorskip("openpyxl")
    from vbp_monitor.core.formatting import XLSX_DATETIME, XLSX_MONEY
    from vbp_monitor.notify.mailer import notify_run

    with engine.begin() as conn:
        seed(conn, delay_city())
    run = run_on(D(2025, 3, 13))
    judge(engine, run, PROFILE)
    notify_run(engine, run, profile=PROFILE)  # (a notify that was not handed the judge's files)

    (mail,) = [m for m in distributor_mails(smtp_server) if m.audience == "distributor:B2:D1"]
    (name, content), = mail.attachments().items()
    assert name == f"延迟响应清单_B2_D1_{J}.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(content))["延迟响应清单"]
    assert sheet.cell(row=1, column=1).value == "南康分局"
    assert sheet.cell(row=4, column=1).value == "致：赣南医药配送有限公司（D1）"
    header, rows = rows_of(sheet)
    assert [row[header.index("订单号")] for row in rows] == ["B2-D1"]
    first = int(sheet.freeze_panes[1:])
    assert sheet.cell(row=first, column=header.index("下单时间") + 1).number_format == XLSX_DATETIME
    assert sheet.cell(row=first, column=header.index("金额（元）") + 1).number_format == XLSX_MONEY
    assert "alert_key" not in header
