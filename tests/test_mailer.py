"""Notification (operations.md › Notification) against a real SMTP server on loopback."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import re
from email.header import decode_header, make_header
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update

from builders import seed
from fixtures_smtp import DATA_TEAM_EMAIL, alert, check_mime, log_text, raise_alerts
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.periods import judged_month
from vbp_monitor.model.schema import alert_deliveries, alerts, branches
from vbp_monitor.notify.mailer import NotificationError, notify_run, notify_task_failure
from vbp_monitor.orchestration.run_context import RunContext

DAG = "vbp_monthly_monitoring"
FEBRUARY = judged_month(dt.date(2025, 3, 3))  # judges 2025-02
JANUARY = judged_month(dt.date(2025, 2, 5))  # judges 2025-01
B1, B2, B2B, CITY = "b1@example.org", "b2@example.org", "b2b@example.org", "city@example.org"

B1_INSTITUTIONS = ("第一人民医院", "部队医院")
B2_INSTITUTIONS = ("南康区人民医院", "仁爱民营医院")


def _run(period=FEBRUARY, **kwargs) -> RunContext:
    return RunContext.for_test(DAG, period, run_id=f"manual__{period.label}", **kwargs)


def _february_alerts() -> list[dict]:
    return [
        alert("PROGRESS_BEHIND", "H1", "B1", "warning", batch_code="NB1", generic_name="氨氯地平",
              metric_value="0.24", threshold_value="0.3156", message="第一人民医院氨氯地平完成率24%，低于序时进度"),
        alert("PAYMENT_OVERDUE", "M1", "B1", "critical", order_id="O-M1-1", metric_value="45",
              threshold_value="30", message="部队医院订单O-M1-1货款逾期45天未结清"),
        alert("NON_EVALUATED_PURCHASE", "H1", "B1", "info", product_code="P-AML-N", generic_name="氨氯地平",
              message="第一人民医院采购未通过一致性评价药品"),
        alert("PROGRESS_BEHIND", "H2", "B2", "warning", batch_code="NB1", generic_name="氨氯地平",
              metric_value="0.10", threshold_value="0.3156", message="南康区人民医院氨氯地平完成率10%"),
        alert("PAYMENT_OVERDUE", "P1", "B2", "high", order_id="O-P1-1", metric_value="35",
              threshold_value="30", message="仁爱民营医院订单O-P1-1货款逾期35天"),
        alert("BRANCH_ONLINE_RATE_LOW", None, "B2", "high", category="drug", metric_value="0.85",
              threshold_value="0.9", message="南康分局辖区药品网采率85%，低于90%"),
        alert("DATA_QUALITY", None, "CITY", "high", source_file="orders.csv", metric_value="3",
              message="orders.csv 有3行金额与数量×单价不符，已隔离"),
    ]


def _xlsx(mail):
    from openpyxl import load_workbook

    (name, content), = [(n, c) for n, c in mail.attachments().items() if n.endswith(".xlsx")]
    return load_workbook(io.BytesIO(content))


def _header_row(sheet) -> int:
    """The header's row: under the title block, the row above the frozen panes."""
    return int(sheet.freeze_panes[1:]) - 1


def _table(sheet) -> tuple[list, list[tuple]]:
    """(header, rows) of a sheet written under a title block."""
    row = _header_row(sheet)
    header = [cell.value for cell in sheet[row]]
    return header, list(sheet.iter_rows(min_row=row + 1, values_only=True))


def _one(server, address):
    mails = server.to(address)
    assert len(mails) == 1, [m.subject for m in mails]
    return mails[0]


def _unnotified(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(alerts).where(
            alerts.c.status == "open", alerts.c.notified_at.is_(None))).scalar_one()


def _deliveries(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(alert_deliveries).order_by(
            alert_deliveries.c.alert_id, alert_deliveries.c.audience)).all()


def test_one_email_per_audience_each_branch_only_its_own_institutions(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())

    result = notify_run(mail_city, run)

    assert result == {"emails": 4, "alerts": 7,
                      "audiences": ["branch:B1", "branch:B2", "city", "data_team"]}
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, B2B: 1, CITY: 1, DATA_TEAM_EMAIL: 1}

    b1 = _one(smtp_server, B1)
    assert b1.subject == "【集采监管预警】章贡分局 · 月度监测 · 2025年2月 · 新增3条"
    b1_html = b1.html()
    assert all(name in b1_html for name in B1_INSTITUTIONS)
    assert not any(name in b1_html for name in B2_INSTITUTIONS)
    b1_book = _xlsx(b1)
    header, rows = _table(b1_book.active)
    codes = {row[header.index("医疗机构代码")] for row in rows}
    assert codes == {"H1", "M1"}
    # internal identifiers only in the last sheet, named as such
    assert "alert_key" not in header and "规则代码" not in header
    assert b1_book.sheetnames == ["预警明细", "技术信息（供数据组）"]
    technical_header, technical_rows = _table(b1_book["技术信息（供数据组）"])
    assert "alert_key" in technical_header and len(technical_rows) == 3

    b2 = _one(smtp_server, B2)
    assert b2.message["To"] == f"{B2}, {B2B}"  # one email to both addresses of the branch
    b2_html = b2.html()
    assert all(name in b2_html for name in B2_INSTITUTIONS)
    assert not any(name in b2_html for name in B1_INSTITUTIONS)
    assert "南康分局辖区药品网采率85%" in b2_html  # branch-level rule: the branch concerned too
    for mail in (b1, b2):
        assert "orders.csv" not in mail.html() and "DATA_QUALITY" not in mail.html()

    city = _one(smtp_server, CITY)
    assert city.subject.startswith("【集采监管预警】市医保局 · 月度监测 · 2025年2月 · 汇总新增6条")
    city_html = city.html()
    # routed in detail: the critical alert and the branch-level rule; not the ordinary ones
    assert "部队医院订单O-M1-1货款逾期45天未结清" in city_html
    assert "南康分局辖区药品网采率85%" in city_html
    assert "南康区人民医院氨氯地平完成率10%" not in city_html
    assert "orders.csv" not in city_html
    summary = _xlsx(city)["汇总"]
    counts = {(row[0], row[1]): row[-1] for row in _table(summary)[1]}
    assert counts[("B1 章贡分局", "约定采购量完成进度滞后（PROGRESS_BEHIND）")] == 1
    assert counts[("B2 南康分局", "货款逾期未结清（PAYMENT_OVERDUE）")] == 1
    assert counts[("合计", None)] == 6
    assert "约定采购量完成进度滞后" in city_html  # summary rows carry Chinese rule titles

    data_team = _one(smtp_server, DATA_TEAM_EMAIL)
    assert "数据质量" in data_team.subject
    assert "orders.csv" in data_team.html()
    assert not any(name in data_team.html() for name in B1_INSTITUTIONS + B2_INSTITUTIONS)

    assert _unnotified(mail_city) == 0
    audiences = [row.audience for row in _deliveries(mail_city)]
    assert sorted(set(audiences)) == ["branch:B1", "branch:B2", "city", "data_team"]
    assert len(audiences) == 3 * 2 + 3 * 2 + 1  # branch and city for each, data team for DQ


def test_html_is_chinese_and_sorted_by_severity(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)

    html = _one(smtp_server, B1).html()
    assert 'lang="zh-CN"' in html and "严重程度" in html and "预警规则" in html and "医疗机构" in html
    assert re.findall(r'data-severity="(\w+)"', html) == ["critical", "warning", "info"]
    assert html.index("严重") < html.index("关注") < html.index("提醒")
    assert "货款逾期未结清（PAYMENT_OVERDUE）" in html
    assert "M1 部队医院" in html and "NB1 第一批国家集采" in html
    b2_severities = re.findall(r'data-severity="(\w+)"', _one(smtp_server, B2).html())
    assert b2_severities == ["high", "high", "warning"]


def test_rerun_sends_nothing_and_force_resend_sends_again(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)
    first = _deliveries(mail_city)

    # the same run again (Airflow rerun of the same logical date): the judge re-raises the same
    # alerts, the notify sends nothing
    raise_alerts(mail_city, run, _february_alerts())
    assert notify_run(mail_city, run) == {"emails": 0, "alerts": 0, "audiences": []}
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, B2B: 1, CITY: 1, DATA_TEAM_EMAIL: 1}

    resend = notify_run(mail_city, _run(force_resend=True))
    assert resend["emails"] == 4 and resend["alerts"] == 7
    assert smtp_server.per_recipient() == {B1: 2, B2: 2, B2B: 2, CITY: 2, DATA_TEAM_EMAIL: 2}
    assert "重发3条" in smtp_server.to(B1)[-1].subject
    again = _deliveries(mail_city)
    assert [(r.alert_id, r.audience) for r in again] == [(r.alert_id, r.audience) for r in first]
    assert all(new.sent_at >= old.sent_at and new.message_id != old.message_id
               for new, old in zip(again, first))


def test_a_branch_with_nothing_new_receives_nothing(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)
    smtp_server.clear()

    # a rerun after corrected data raises one more alert, in B2 only
    extra = alert("OFFLINE_NOT_FILED", "P1", "B2", "high", order_id="O-P1-9", message="仁爱民营医院线下采购未备案")
    raise_alerts(mail_city, run, [extra])
    assert notify_run(mail_city, run)["audiences"] == ["branch:B2", "city"]
    assert smtp_server.per_recipient() == {B2: 1, B2B: 1, CITY: 1}
    b2 = _one(smtp_server, B2)
    assert "新增1条" in b2.subject and "O-P1-9" in b2.html() and "O-P1-1" not in b2.html()


def test_smtp_down_keeps_alerts_pending_and_the_next_attempt_sends_each_once(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    smtp_server.stop()

    with pytest.raises(NotificationError):
        notify_run(mail_city, run)
    assert _unnotified(mail_city) == 7
    assert _deliveries(mail_city) == []

    smtp_server.start()
    assert notify_run(mail_city, run)["emails"] == 4
    assert notify_run(mail_city, run)["emails"] == 0  # and a further retry sends nothing
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, B2B: 1, CITY: 1, DATA_TEAM_EMAIL: 1}
    assert _unnotified(mail_city) == 0


def test_partial_failure_then_retry_does_not_send_branch_emails_twice(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    smtp_server.refuse(CITY)

    with pytest.raises(NotificationError, match="city"):
        notify_run(mail_city, run)
    # branches and data team were accepted; the city's email was refused
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, B2B: 1, DATA_TEAM_EMAIL: 1}
    assert _unnotified(mail_city) == 6  # every non-DQ alert still waits for the city
    assert {row.audience for row in _deliveries(mail_city)} == {"branch:B1", "branch:B2", "data_team"}

    smtp_server.accept_all()
    assert notify_run(mail_city, run) == {"emails": 1, "alerts": 6, "audiences": ["city"]}
    assert smtp_server.per_recipient() == {B1: 1, B2: 1, B2B: 1, CITY: 1, DATA_TEAM_EMAIL: 1}
    assert "汇总新增6条" in _one(smtp_server, CITY).subject
    assert _unnotified(mail_city) == 0


def test_a_run_mails_only_its_own_period_and_the_earlier_runs_retry_mails_its_own(
        mail_city, smtp_server, tmp_path, mail_log):
    # January's notify failed (server down): its alert stays un-notified
    january = _run(JANUARY)
    raise_alerts(mail_city, january, [alert("PROGRESS_BEHIND", "H1", "B1", message="一月：第一人民医院进度滞后")])
    smtp_server.stop()
    with pytest.raises(NotificationError):
        notify_run(mail_city, january)
    smtp_server.start()
    january_file, february_file = tmp_path / "执行报表_B1_2025-01.xlsx", tmp_path / "执行报表_B1_2025-02.xlsx"
    january_file.write_bytes(b"PK january")
    february_file.write_bytes(b"PK february")

    # February's run mails February only, under February, with February's file
    february = _run()
    raise_alerts(mail_city, february, [alert("PROGRESS_BEHIND", "H1", "B1", message="二月：第一人民医院进度滞后")])
    notify_run(mail_city, february, attachments={"B1": [february_file]})
    b1 = _one(smtp_server, B1)
    assert "2025年2月 · 新增1条" in b1.subject
    assert "二月：第一人民医院进度滞后" in b1.html() and "一月" not in b1.html()
    assert set(b1.attachments()) == {"执行报表_B1_2025-02.xlsx",
                                     "预警明细_月度监测_B1_2025-02.xlsx"}
    assert _unnotified(mail_city) == 1  # January's, for January's own retry
    assert "alerts of other periods are still un-notified (2025-01: 1)" in log_text(mail_log)

    # January's retry mails January's alert, under January, with January's file
    smtp_server.clear()
    assert notify_run(mail_city, january, attachments={"B1": [january_file]})["alerts"] == 1
    b1 = _one(smtp_server, B1)
    assert "2025年1月 · 新增1条" in b1.subject and "一月：第一人民医院进度滞后" in b1.html()
    assert "执行报表_B1_2025-01.xlsx" in b1.attachments()
    assert _unnotified(mail_city) == 0


def test_operator_scope_limits_what_is_sent(mail_city, smtp_server):
    run = _run(scope=Scope(branch_code="B1"))
    raise_alerts(mail_city, _run(), _february_alerts())
    assert notify_run(mail_city, run)["audiences"] == ["branch:B1", "city"]
    assert smtp_server.per_recipient() == {B1: 1, CITY: 1}
    assert "汇总新增3条" in _one(smtp_server, CITY).subject


def test_branch_without_address_is_covered_by_the_city(mail_city, smtp_server):
    with mail_city.begin() as conn:
        conn.execute(update(branches).where(branches.c.branch_code == "B2").values(emails=None))
    run = _run()
    raise_alerts(mail_city, run, [alert("PROGRESS_BEHIND", "H2", "B2", message="南康区人民医院进度滞后")])
    assert notify_run(mail_city, run)["audiences"] == ["city"]
    # nobody else sees it in detail, so the city does
    assert "南康区人民医院进度滞后" in _one(smtp_server, CITY).html()
    assert _unnotified(mail_city) == 0


def test_extra_attachments_go_to_their_audience_only(mail_city, smtp_server, tmp_path):
    report = tmp_path / "执行情况报告_B1.docx"
    report.write_bytes(b"PK\x03\x04 fake docx")
    city_report = tmp_path / "city_summary.xlsx"
    city_report.write_bytes(b"PK\x03\x04 fake xlsx")
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run, attachments={"B1": [report], "CITY": [str(city_report)],
                                            "B2": [tmp_path / "missing.docx"]})

    b1_files = _one(smtp_server, B1).attachments()
    assert b1_files["执行情况报告_B1.docx"] == b"PK\x03\x04 fake docx"
    assert len(b1_files) == 2
    assert "city_summary.xlsx" in _one(smtp_server, CITY).attachments()
    assert len(_one(smtp_server, B2).attachments()) == 1  # a missing file is skipped, not fatal


def test_xlsx_attachment_stores_formula_like_names_as_text(mail_city, smtp_server):
    evil = '=HYPERLINK("http://evil.example/x","点击查看")'
    with mail_city.begin() as conn:
        seed(conn, {"institutions": [{"institution_code": "X1", "institution_name": evil,
                                      "branch_code": "B1", "ownership": "public"}]})
    run = _run()
    raise_alerts(mail_city, run, [alert("PROGRESS_BEHIND", "X1", "B1", message="@SUM(1+1) 进度滞后")])
    notify_run(mail_city, run)

    sheet = _xlsx(_one(smtp_server, B1)).active
    header, _ = _table(sheet)
    first = _header_row(sheet) + 1
    name_cell = sheet.cell(row=first, column=header.index("医疗机构") + 1)
    assert name_cell.data_type == "s" and name_cell.value == "'" + evil
    message_cell = sheet.cell(row=first, column=header.index("说明") + 1)
    assert message_cell.value == "'@SUM(1+1) 进度滞后"
    assert not [cell for row in sheet.iter_rows() for cell in row if cell.data_type == "f"]
    assert sheet.freeze_panes == "A6"  # title block (4 rows), header
    # the HTML shows it escaped, not as markup
    assert "=HYPERLINK(&quot;http://evil.example/x&quot;" in _one(smtp_server, B1).html()


def test_task_failure_mails_the_data_team_once_and_never_raises(smtp_server):
    try:
        raise ValueError("orders.csv 缺少列 amount")
    except ValueError as exc:
        error = exc
    ti = SimpleNamespace(dag_id=DAG, task_id="judge", run_id="scheduled__2025-03-03", try_number=3, max_tries=2)
    context = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "exception": error,
               "logical_date": dt.datetime(2025, 3, 2, 22, tzinfo=dt.UTC)}
    notify_task_failure(context)

    assert smtp_server.per_recipient() == {DATA_TEAM_EMAIL: 1}
    mail = _one(smtp_server, DATA_TEAM_EMAIL)
    assert "任务失败" in mail.subject and "Task failed" in mail.subject and "judge" in mail.subject
    html = mail.html()
    for text in ("vbp_monthly_monitoring", "scheduled__2025-03-03", "2025-03-02", "3 / 3",
                 "orders.csv 缺少列 amount", "用尽重试", "after its last retry"):
        assert text in html

    smtp_server.stop()
    notify_task_failure(context)  # server down: logged, not raised
    notify_task_failure({})  # a context without anything: still no exception


def test_a_long_list_is_cut_in_the_body_but_complete_in_the_attachment(mail_city, smtp_server):
    from vbp_monitor.notify.mailer import MAX_HTML_ROWS

    run = RunContext.for_test("vbp_order_response", judged_month(dt.date(2025, 3, 3)))
    overdue = [alert("ORDER_RESPONSE_OVERDUE", "H1", "B1", "warning", order_id=f"O{n:04d}",
                     message=f"订单O{n:04d}超过48小时未响应") for n in range(MAX_HTML_ROWS + 5)]
    raise_alerts(mail_city, run, overdue)
    notify_run(mail_city, run)

    b1 = _one(smtp_server, B1)
    assert "配送响应" in b1.subject and f"新增{MAX_HTML_ROWS + 5}条" in b1.subject
    html = b1.html()
    assert html.count('data-severity="warning"') == MAX_HTML_ROWS
    assert "其余 5 条见附件" in html
    assert len(_table(_xlsx(b1).active)[1]) == MAX_HTML_ROWS + 5


def test_a_metric_just_past_its_threshold_never_reads_as_the_threshold(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, [
        alert("BRANCH_ONLINE_RATE_LOW", None, "B1", "high", category="drug", metric_value="0.899996",
              threshold_value="0.9", message="章贡分局辖区药品网采率低于90%"),
        alert("PAYMENT_OVERDUE", "H1", "B1", "high", order_id="O-H1-7", metric_value="1234.00004",
              threshold_value="0", message="第一人民医院订单O-H1-7货款逾期未结清"),
    ])
    notify_run(mail_city, run)

    cells = re.findall(r'<td class="num">([^<]*)</td>', _one(smtp_server, B1).html())
    # below its minimum: rounded down; above its maximum: rounded up; thresholds half up;
    # each figure with the unit of its rule (a rate as a percentage, money in yuan)
    assert cells == ["89.99%", "90.00%", "1,234.01元", "0.00元"]


# ---------------------------------------------------------------- fit for older clients and for the reader

OLD_CLOSING = "请督促相关医疗机构及配送企业核实整改"


def _files(folder, *names: str) -> list:
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes("订单号,金额\nO-1,12.30\n".encode() if name.endswith(".csv") else b"PK\x03\x04 file")
        paths.append(path)
    return paths


def test_every_email_is_multipart_alternative_with_typed_attachments_and_chinese_names(
        mail_city, smtp_server, tmp_path):
    long_name = "年度集采监管工作报告草稿_章贡分局_2024年度_第二次修订稿_请各科室审阅后反馈.docx"
    b1_files = _files(tmp_path, "执行报表_B1_2025-02.xlsx", "延迟响应清单_B1_2025-02.csv", long_name)
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run, attachments={"B1": b1_files, "CITY": _files(tmp_path, "全市汇总_2025-02.xlsx")})

    assert len(smtp_server.messages) == 4  # B2's two addresses share one
    for mail in smtp_server.messages:
        types = check_mime(mail)  # every email, every attachment
        assert any(name.startswith("预警明细_") for name in types)
    b1 = check_mime(_one(smtp_server, B1))
    assert b1 == {
        "预警明细_月度监测_B1_2025-02.xlsx":
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "执行报表_B1_2025-02.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "延迟响应清单_B1_2025-02.csv": "text/csv",
        long_name: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
    assert _one(smtp_server, B1).attachments()["延迟响应清单_B1_2025-02.csv"] == "订单号,金额\nO-1,12.30\n".encode()
    assert "全市汇总_2025-02.xlsx" in check_mime(_one(smtp_server, CITY))

    # the subject: several encoded words (≤ 75 each, checked above) that decode to the subject
    raw = _one(smtp_server, CITY).raw.decode("ascii")
    subject_lines = raw[raw.index("Subject: "):].split("\r\n")
    assert subject_lines[1].startswith(" =?utf-8?b?")  # folded
    assert _one(smtp_server, CITY).subject.startswith("【集采监管预警】市医保局 · 月度监测 · 2025年2月 · 汇总新增6条")


def test_the_plain_text_says_what_the_html_says(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)

    b1 = _one(smtp_server, B1)
    text = b1.text()
    assert "<" not in text and "&" not in text
    assert text.startswith(b1.subject)
    # a Chinese body: no English sentence (the footer included) in either part
    assert "This message" not in text and "This message" not in b1.html()
    assert "月度监测（2025年2月）发现贵局辖区新增预警 3 条（严重1条、关注1条、提醒1条）" in text
    lines = [line for line in text.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(lines) == 3  # one alert per line, most severe first
    assert lines[0].startswith("1. 【严重】预警规则：货款逾期未结清（PAYMENT_OVERDUE）；医疗机构：M1 部队医院；")
    assert "指标值：24.00%；阈值：31.56%；" in lines[1]
    assert "请督促相关医疗机构核实情况、限期整改" in text
    # the city's summary as aligned lines
    city_text = _one(smtp_server, CITY).text()
    header = next(line for line in city_text.splitlines() if line.startswith("分局"))
    total = next(line for line in city_text.splitlines() if line.startswith("合计"))
    assert header.split() == ["分局", "预警规则", "严重", "高", "关注", "提醒", "合计"]
    assert total.split() == ["合计", "1", "2", "2", "1", "6"]
    from vbp_monitor.notify.templates import display_width

    assert display_width(header) == display_width(total)  # the counts right-aligned under their headers


def test_the_sender_has_a_display_name_from_the_configuration(mail_city, smtp_server, monkeypatch):
    from email.headerregistry import Address

    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)
    sender = _one(smtp_server, B1).message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("集采监管监测系统", "vbp-monitor@example.org")

    monkeypatch.setenv("VBP_MAIL_FROM", "市医保局集采监管 <vbp-monitor@example.gov.cn>")
    smtp_server.clear()
    notify_run(mail_city, _run(force_resend=True))
    for mail in smtp_server.messages:
        assert mail.message["From"].addresses[0] == Address("市医保局集采监管", addr_spec="vbp-monitor@example.gov.cn")
        assert mail.mail_from == "vbp-monitor@example.gov.cn"
        assert mail.message_id.endswith("@example.gov.cn>")
        check_mime(mail)

    monkeypatch.setenv("VBP_MAIL_FROM", "赣州市医疗保障局药品和医用耗材集中带量采购监管监测系统")  # a name only, long
    smtp_server.clear()
    notify_run(mail_city, _run(force_resend=True))
    mail = smtp_server.messages[0]
    check_mime(mail)  # two encoded words, each ≤ 75
    old_reader = email.message_from_bytes(mail.raw, policy=email.policy.compat32)
    assert str(make_header(decode_header(old_reader["From"]))) == (
        "赣州市医疗保障局药品和医用耗材集中带量采购监管监测系统 <vbp-monitor@example.org>")
    # (Python's own address parser puts a space between adjacent encoded words of a name)
    assert mail.message["From"].addresses[0].display_name.replace(" ", "") == (
        "赣州市医疗保障局药品和医用耗材集中带量采购监管监测系统")


UNIT_CASES = [
    # rule, metric, threshold → the table's 指标值, 阈值
    (alert("ORDER_RESPONSE_OVERDUE", "H1", "B1", "high", order_id="O-1", metric_value="62.5",
           threshold_value="48"), "62小时30分", "48小时"),
    (alert("OFFLINE_NOT_FILED", "H1", "B1", "high", order_id="O-2", metric_value="0", threshold_value="1"),
     "已备案：否", ""),
    (alert("OFFLINE_FILED_LATE", "H1", "B1", "warning", order_id="O-3", metric_value="9", threshold_value="7"),
     "9个工作日", "7个工作日"),
    (alert("NON_SELECTED_HIGH_PRICE", "H1", "B1", "warning", generic_name="氨氯地平", metric_value="1234.5",
           threshold_value="0.3"), "1,234.50元", "0.30元/单位"),
    (alert("SELECTED_SHARE_LOW", "H1", "B1", "warning", batch_code="NB1", generic_name="氨氯地平",
           metric_value="0.55", threshold_value="0.7"), "55.00%", "70.00%"),
    (alert("HISTORY_NOT_REPORTED", "H1", "B1", "high", batch_code="NB1", generic_name="氨氯地平",
           metric_value="0", threshold_value="12000"), "0单位", "12,000单位"),
]


@pytest.mark.parametrize("case", range(len(UNIT_CASES)))
def test_every_figure_of_the_table_carries_its_unit(mail_city, smtp_server, case):
    from vbp_monitor.core.catalog import RULES

    candidate, metric, threshold = UNIT_CASES[case]
    dag = RULES[candidate["rule_code"]].dag_id
    run = RunContext.for_test(dag, judged_month(dt.date(2025, 3, 3)))
    raise_alerts(mail_city, run, [dict(candidate)])
    notify_run(mail_city, run)

    b1 = _one(smtp_server, B1)
    alert_table = b1.html().split("</table>")[0]  # (a delay list's distributors follow in a table of their own)
    assert re.findall(r'<td class="num">([^<]*)</td>', alert_table) == [metric, threshold]
    line = next(line for line in b1.text().splitlines() if line.startswith("1. "))
    assert f"指标值：{metric}；" in line
    assert (f"阈值：{threshold}；" in line) == bool(threshold)  # a flag has no threshold


CLOSINGS = [
    # (DAG, alert) → the branch's closing sentence, the city's
    ("vbp_monthly_monitoring", alert("PROGRESS_BEHIND", "H1", "B1", "critical", batch_code="NB1"),
     "请督促相关医疗机构核实情况、限期整改", "严重预警请视情况约谈医疗机构负责人"),
    ("vbp_order_response", alert("ORDER_RESPONSE_ESCALATED", "H1", "B1", "critical", order_id="O-9"),
     "请将延迟响应清单（见附件）及时发送相关配送企业", "督促配送企业落实配送"),
    ("vbp_annual_report_collection", alert("ANNUAL_REPORT_MISSING", None, "B1", "critical"),
     "请贵局按模板要求按时报送（或补正）年度集采监管工作报告", "请督促其限期报送"),
    ("vbp_prepayment_reconciliation", alert("PREPAY_UNDER_DISBURSED", "H1", "B1", "high", batch_code="NB1",
                                            metric_value="1000", threshold_value="3000"),
     "请会同医保经办机构（基金管理中心）核对相关医疗机构的预付款台账", "请督促医保经办机构（基金管理中心）及时足额拨付"),
]


@pytest.mark.parametrize("case", range(len(CLOSINGS)))
def test_the_closing_instruction_names_who_must_act(mail_city, smtp_server, case):
    dag, candidate, branch_closing, city_closing = CLOSINGS[case]
    run = RunContext.for_test(dag, judged_month(dt.date(2025, 3, 3)))
    raise_alerts(mail_city, run, [dict(candidate)])
    notify_run(mail_city, run)

    b1, city = _one(smtp_server, B1), _one(smtp_server, CITY)
    for mail, closing in ((b1, branch_closing), (city, city_closing)):
        for body in (mail.html(), mail.text()):
            assert closing in body and OLD_CLOSING not in body
    others = [sentence for _, _, sentence, _ in CLOSINGS if sentence != branch_closing]
    assert not [sentence for sentence in others if sentence in b1.text()]
    assert "请市局掌握全市预警情况，对需市局关注的预警及时督办" in city.text()


def test_the_city_and_the_data_team_are_told_what_they_must_do(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, _february_alerts())
    notify_run(mail_city, run)

    city = _one(smtp_server, CITY)
    # what "涉及" counts is said: branches and institutions
    assert "新增预警 6 条（严重1条、高2条、关注2条、提醒1条），涉及 2 个分局、4 家医疗机构，" in city.text()
    assert "个单位" not in city.html()
    data_team = _one(smtp_server, DATA_TEAM_EMAIL)
    for body in (data_team.html(), data_team.text()):
        assert "请核对相关平台导出文件，修正后重新投放至数据接入目录" in body and OLD_CLOSING not in body
        assert "3行" in body  # failing rows, with their unit
    assert "问题行数：3行" in data_team.text()


def test_a_city_summary_without_detail_says_the_branches_act(mail_city, smtp_server):
    run = _run()
    raise_alerts(mail_city, run, [alert("PROGRESS_BEHIND", "H1", "B1", batch_code="NB1")])
    notify_run(mail_city, run)
    city = _one(smtp_server, CITY).text()
    assert "涉及 1 个分局、1 家医疗机构" in city
    assert "本次没有需市局直接处理的预警，请市局掌握全市预警情况" in city


def test_inline_images_go_in_multipart_related_with_valid_content_ids(smtp_server):
    from vbp_monitor.notify import mime
    from vbp_monitor.notify import templates as mail_templates
    from vbp_monitor.notify.mailer import SmtpSession

    png = b"\x89PNG\r\n\x1a\n fake chart"
    cid = mime.content_id("完成进度 chart", "example.org")
    page = mail_templates.Page("【集采监管预警】图表", ["市医保局："], [("完成进度", mail_templates.Image(cid, "各分局完成进度"))])
    session = SmtpSession()
    try:
        sender = session.open()
        session.send(mime.build_message(
            subject=page.title, sender=sender, to=[CITY], text=mail_templates.text(page),
            html=mail_templates.html(page), message_id="<chart.test@example.org>",
            attachments=[mime.Attachment("月度报告_2025-02.docx", b"PK\x03\x04")],
            inline_images=[mime.InlineImage(cid, png)]), [CITY])
    finally:
        session.close()

    mail = _one(smtp_server, CITY)
    assert check_mime(mail) == {
        "月度报告_2025-02.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
    structure = [part.get_content_type() for part in mail.message.walk()]
    assert structure == ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
                         "text/html", "image/png",
                         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"]
    image = next(part for part in mail.message.walk() if part.get_content_type() == "image/png")
    assert image["Content-ID"] == f"<{cid}>" and cid.endswith("@example.org")
    assert image.get_content() == png
    assert f'src="cid:{cid}"' in mail.html() and "［图：各分局完成进度］" in mail.text()


def test_the_failure_email_has_a_plain_text_part_too(smtp_server):
    ti = SimpleNamespace(dag_id=DAG, task_id="notify", run_id="scheduled__2025-03-03", try_number=2, max_tries=1)
    notify_task_failure({"ti": ti, "task_instance": ti, "run_id": ti.run_id, "exception": RuntimeError("SMTP 550")})
    mail = _one(smtp_server, DATA_TEAM_EMAIL)
    check_mime(mail)
    assert mail.message["From"].addresses[0].display_name == "集采监管监测系统"
    text = mail.text()
    assert "用尽重试次数" in text and "清除（Clear）该任务重跑" in text and "RuntimeError: SMTP 550" in text


def test_the_alert_workbook_is_typed_with_a_title_block_and_ids_only_in_the_last_sheet(mail_city, smtp_server):
    from vbp_monitor.core.formatting import XLSX_DATETIME, XLSX_MONEY, XLSX_PERCENT, XLSX_QUANTITY

    run = _run()
    raise_alerts(mail_city, run, [
        alert("NON_SELECTED_HIGH_PRICE", "H1", "B1", "warning", generic_name="氨氯地平", metric_value="1234.5",
              threshold_value="0.3", message="高价"),
        alert("SELECTED_SHARE_LOW", "H1", "B1", "warning", batch_code="NB1", generic_name="硝苯地平",
              metric_value="0.123456", threshold_value="0.7", message="占比低"),
        alert("HISTORY_NOT_REPORTED", "M1", "B1", "high", batch_code="NB1", generic_name="氨氯地平",
              metric_value="0", threshold_value="12000", message="未报量"),
        alert("OFFLINE_NOT_FILED", "H1", "B1", "high", order_id="O-2", metric_value="0", threshold_value="1",
              message="未备案"),
    ])
    notify_run(mail_city, run)

    book = _xlsx(_one(smtp_server, B1))
    assert book.sheetnames == ["预警明细", "技术信息（供数据组）"]  # the technical sheet last
    sheet = book["预警明细"]
    title = [sheet.cell(row=n, column=1).value for n in range(1, 5)]
    assert title[0] == "市医保局" and title[1] == "月度监测·预警明细（2025年2月）"
    assert "生成时间" in title[2] and title[3] == "发送对象：章贡分局"
    header, rows = _table(sheet)
    assert not {"alert_key", "预警编号", "规则代码", "分局代码", "DAG"} & set(header)
    assert not [value for row in rows for value in row if isinstance(value, str)
                and re.fullmatch(r"[A-Z_]{6,}|[0-9a-f]{32,}", value)]  # no rule codes, no keys
    first = _header_row(sheet) + 1
    by_message = {}
    for offset, row in enumerate(rows):
        by_message[row[header.index("说明")]] = {name: sheet.cell(row=first + offset, column=index + 1)
                                                for index, name in enumerate(header)}
    money = by_message["高价"]
    assert (money["指标值"].value, money["指标值"].number_format) == (1234.5, XLSX_MONEY)
    assert (money["阈值"].value, money["阈值"].number_format) == (0.3, XLSX_MONEY)
    assert money["计量单位"].value == "元/元/单位"
    share = by_message["占比低"]
    # rounded to what 0.00% shows, away from its threshold (below it: down), no float tail
    assert (share["指标值"].value, share["指标值"].number_format) == (0.1234, XLSX_PERCENT)
    assert (share["阈值"].value, share["阈值"].number_format) == (0.7, XLSX_PERCENT)
    assert share["计量单位"].value is None
    count = by_message["未报量"]
    assert (count["阈值"].value, count["阈值"].number_format) == (12000, XLSX_QUANTITY)
    assert isinstance(count["阈值"].value, int) and count["计量单位"].value == "单位"
    flag = by_message["未备案"]
    assert (flag["指标值"].value, flag["阈值"].value) == ("否", None)
    assert money["首次发现时间"].number_format == XLSX_DATETIME
    assert "NON_SELECTED_HIGH_PRICE" not in money["预警规则"].value
    technical_header, technical_rows = _table(book["技术信息（供数据组）"])
    assert technical_header[:4] == ["预警编号", "alert_key", "期间", "规则代码"]
    assert {row[3] for row in technical_rows} == {
        "NON_SELECTED_HIGH_PRICE", "SELECTED_SHARE_LOW", "HISTORY_NOT_REPORTED", "OFFLINE_NOT_FILED"}
