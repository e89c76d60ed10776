"""DAG 7 · 月度工作进展报告 (domain.md DAG 7, seed 001 §七(三), seed 002 §二(二)(三)): the
flight-inspection ranking and its ties, the five sections with the month's figures, the
native chart, the wording when a month's run is missing, reruns (identical files, no second
email), a server that was down, and the DAG under `airflow dags test` (e2e).
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from builders import agreement, city, institution, order, run_for, seed, sheet_rows
from fixtures_smtp import alert, raise_alerts
from vbp_monitor.core.periods import judged_day, judged_month, judged_year
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import document_deliveries, institution_file_metrics
from vbp_monitor.notify.mailer import NotificationError, notify_documents
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.outputs.documents import read_paragraphs
from vbp_monitor.rules import monitoring
from vbp_monitor.rules.monthly_report import DAG_ID, HEADINGS, UPSTREAM_DAGS, judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
ALL_SUCCEEDED = dict.fromkeys(UPSTREAM_DAGS, True)
CITY_EMAIL = "city@example.org"


def report_run(month: str = "2025-06", run_id: str = "report-1", **kwargs) -> RunContext:
    first = dt.date.fromisoformat(month + "-01")
    run_day = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return RunContext.for_test(DAG_ID, judged_month(run_day), run_id=run_id, **kwargs)


def with_leads(count: int) -> dict:
    return {**PROFILE, "monthly_report": {**PROFILE["monthly_report"], "inspection_leads": count}}


# ------------------------------------------------------------------ the ranking
def file_row(agreement_id: str, institution_code: str, branch: str, agreed, cumulative, period="2025-06") -> dict:
    """An institution-file row of ``period`` (only the figures the report reads matter)."""
    zero = Decimal(0)
    return {"period": period, "agreement_id": agreement_id, "institution_code": institution_code,
            "branch_code": branch, "batch_code": "NB1", "generic_name": "氨氯地平",
            "as_of_date": dt.date(2025, 6, 30), "agreed_quantity": Decimal(agreed), "selected_quantity": zero,
            "selected_amount": zero, "same_generic_quantity": zero, "same_generic_amount": zero,
            "non_selected_quantity": zero, "non_selected_amount": zero,
            "cumulative_selected_quantity": Decimal(cumulative), "time_progress": Decimal("0.5")}


def ranked_city(engine) -> None:
    """Scores of the open alerts of June 2025 (critical 8, high 4, warning 2, info 1):
    H2 8 (two high, completion 20 %), H1 8 (one critical, 50 %), M1 8 (high + two warnings,
    50 %: ties with H1, then the code), P1 5 (info + a daily DAG's high of 15 June, no
    agreement), X1 nothing counted (a resolved critical and an alert of May)."""
    with engine.begin() as conn:
        seed(conn, city(institutions=[institution("X1", "B1")]))
        conn.execute(insert(institution_file_metrics), [
            file_row("A-H1", "H1", "B1", 1000, 500), file_row("A-H2", "H2", "B2", 1000, 200),
            file_row("A-M1", "M1", "B1", 2000, 1000), file_row("A-X1", "X1", "B1", 1000, 0)])
    june = RunContext.for_test("vbp_monthly_monitoring", judged_month(dt.date(2025, 7, 1)))
    may = RunContext.for_test("vbp_monthly_monitoring", judged_month(dt.date(2025, 6, 2)))
    raise_alerts(engine, june, [
        alert("ONLY_NON_SELECTED", "H1", "B1", "critical", generic_name="氨氯地平"),
        alert("ONLINE_RATE_LOW", "H2", "B2", "high", category="drug"),
        alert("PAYMENT_OVERDUE", "H2", "B2", "high", order_id="O-9", metric_value="120.5"),
        alert("ONLINE_RATE_LOW", "M1", "B1", "high", category="high_value_consumable"),
        alert("SELECTED_SHARE_LOW", "M1", "B1", "warning", batch_code="NB1", generic_name="氨氯地平"),
        alert("NON_EVALUATED_PURCHASE", "M1", "B1", "warning", generic_name="阿托伐他汀"),
        alert("NON_SELECTED_HIGH_PRICE", "P1", "B2", "info", generic_name="氨氯地平"),
        alert("OFFLINE_NOT_FILED", "X1", "B1", "critical", order_id="O-X1"),
    ])
    raise_alerts(engine, may, [alert("SELECTED_SHARE_LOW", "X1", "B1", "warning", batch_code="NB1",
                                     generic_name="氨氯地平")])
    daily = RunContext.for_test("vbp_order_response", judged_day(dt.date(2025, 6, 16)))
    raise_alerts(engine, daily, [alert("ORDER_RESPONSE_OVERDUE", "P1", "B2", "high", order_id="O-P1")])
    with engine.begin() as conn:  # a rerun no longer raises X1's June alert: resolved
        june.store.replace(conn, ["OFFLINE_NOT_FILED"], [], scope=june.scope)


def test_leads_rank_by_weighted_severity_then_lower_completion_then_code(engine):
    ranked_city(engine)
    result = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    assert result["leads"] == ["H2", "H1", "M1", "P1"]

    docx, xlsx = map(Path, result["files"])
    leads = sheet_rows(xlsx, "飞检线索")
    header = leads.index(next(row for row in leads if row[0] == "排名"))
    body = leads[header + 1:]
    assert [row[1] for row in body] == ["H2", "H1", "M1", "P1"]
    assert [row[4] for row in body] == [8, 8, 8, 5]
    assert [round(row[6], 4) if row[6] is not None else None for row in body] == [0.2, 0.5, 0.5, None]
    h2_reasons = body[0][7]
    assert "网采率不达标（高）1条" in h2_reasons and "货款逾期未结清（高）1条" in h2_reasons
    assert "订单超时未响应（高）1条" in body[3][7]

    fewer = judge(engine, report_run(run_id="report-2"), with_leads(2), upstream=ALL_SUCCEEDED)
    assert fewer["leads"] == ["H2", "H1"]


def test_the_alert_section_counts_new_earlier_and_resolved(engine):
    ranked_city(engine)
    result = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    rows = sheet_rows(Path(result["files"][1]), "预警情况")
    by_rule = {(row[0], row[1]): row[2:] for row in rows if row and row[0] in ("章贡分局", "南康分局")}
    # X1's May alert is still open; its June critical was resolved by the rerun
    assert by_rule[("章贡分局", "中选产品采购数量占比低于约定比例")] == [1, 0, 1, 0, 1]
    assert by_rule[("章贡分局", "线下议价采购未备案")] == [0, 0, 0, 1, 0]
    assert by_rule[("章贡分局", "不报量不采购中选产品而只采购高价非中选产品")] == [1, 1, 0, 0, 1]
    text = "\n".join(read_paragraphs(Path(result["files"][0])))
    assert "共产生预警8条（其中严重1条），以前月份尚未关闭的预警1条，本月经重新核查已解除的预警1条" in text
    # 五、下一步工作: a sentence for the open critical alert
    assert "第一人民医院·氨氯地平“不报量不采购中选产品而只采购高价非中选产品”（2025年6月）：约谈医疗机构负责人" in text


def test_a_years_assessment_alerts_raised_later_leave_a_months_report_unchanged(engine):
    # the 2025 assessment (period '2025', raised in February 2026) is neither "of June" nor
    # "from an earlier month": a rerun of June's report after it must write the same files
    ranked_city(engine)
    first = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    before = [Path(path).read_bytes() for path in first["files"]]
    assessment = RunContext.for_test("vbp_annual_assessment", judged_year(dt.date(2026, 2, 1)))
    raise_alerts(engine, assessment, [
        alert("ASSESSMENT_FAILED", "H1", "B1", "warning", metric_value="2", threshold_value="3"),
        alert("BRANCH_ASSESSMENT_FAILED", None, "B2", "high", category="drug")])
    again = judge(engine, report_run(run_id="report-2"), PROFILE, upstream=ALL_SUCCEEDED)
    assert again["documents"][0]["key"] == first["documents"][0]["key"]
    assert [Path(path).read_bytes() for path in again["files"]] == before


# ------------------------------------------------------------------ the document
def busy_city():
    """June 2025 of the monitoring tests: both branches behind, offline purchases, an overdue payment."""
    year = dict(start="2025-01-01", end="2025-12-31", quantity=1200)
    return city(
        agreements=[agreement("A-H1", "H1", **year), agreement("A-H2", "H2", **year)],
        orders=[
            order("H1-S", "H1", 100, "2025-06-10"),
            order("H1-N", "H1", 900, "2025-06-10", product="P-AML-N", price="0.60", channel="offline"),
            order("H2-S", "H2", 100, "2025-06-10"),
            order("H2-N", "H2", 900, "2025-06-10", product="P-AML-N", price="0.60", channel="offline"),
            order("P1-N", "P1", 10, "2025-06-11", product="P-AML-N", price="0.70"),
            order("H1-ACC", "H1", 10, "2025-05-02", acceptance="2025-05-06"),
            order("H2-OFF", "H2", 10, "2025-06-03", channel="offline"),
        ],
    )


def monitored_june(engine) -> None:
    with engine.begin() as conn:
        seed(conn, busy_city())
    monitoring.judge(engine, run_for("2025-06"), PROFILE)


def document_text(path: Path) -> str:
    return "\n".join(read_paragraphs(path))


def test_the_report_has_the_five_sections_with_the_months_figures(engine):
    monitored_june(engine)
    result = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    docx = Path(result["files"][0])
    assert docx.name == "月度工作进展报告_全市_2025-06.docx"
    paragraphs = read_paragraphs(docx)
    positions = [paragraphs.index(heading) for heading in HEADINGS]
    assert positions == sorted(positions)
    text = "\n".join(paragraphs)
    # 181 days of 365: time progress 49.59 %; H1 bought 110 of 1,200 (9.16 %, below: rounded down),
    # H2 100 (8.33 %), the city 210 of 2,400 (8.75 %); both agreements high (< 0.5 × time progress)
    assert "纳入一院一档监测的医疗机构2家、约定采购协议2份" in text
    assert "全市约定采购量完成率8.75%（序时进度49.59%）" in text
    assert "0份协议进度正常，0份进度滞后，2份严重滞后" in text
    assert "药品网采率8.43%（要求不低于90.00%）" in text  # 100 of 1,185 yuan
    assert "逾期未付金额合计5.00元" in text  # H1-ACC: accepted 6 May, due end of June
    assert "第一人民医院（H1）" in text and "南康区人民医院（H2）" in text  # leads
    assert "vbp_" not in text and "PROGRESS_BEHIND" not in text  # no internal identifiers

    rows = sheet_rows(Path(result["files"][1]), "总体情况")
    city_line = next(row for row in rows if row and row[0] == "全市")
    assert city_line[1:4] == [2, 2, 2] and round(city_line[6], 4) == 0.0875
    assert result["missing"] == [] and result["documents"][0]["audience"] == "city"


def test_the_report_rebuilds_the_months_facts_an_ingest_cleared_since_the_monitoring_run(engine):
    # an ingest of orders (or products, batches, agreements) between June's monitoring run and
    # the report (or a rerun of the report months later) clears the facts cache: the online
    # rates must still be the month's, not a month without purchases
    from vbp_monitor.model.schema import clear_facts_cache

    monitored_june(engine)
    first = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    with engine.begin() as conn:
        clear_facts_cache(conn)
    again = judge(engine, report_run(run_id="report-2"), PROFILE, upstream=ALL_SUCCEEDED)
    assert "药品网采率8.43%（要求不低于90.00%）" in document_text(Path(again["files"][0]))
    assert again["documents"][0]["key"] == first["documents"][0]["key"]


def test_the_report_carries_native_charts_with_their_figures(engine):
    monitored_june(engine)
    docx = Path(judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)["files"][0])
    with zipfile.ZipFile(docx) as package:
        names = package.namelist()
        types = package.read("[Content_Types].xml").decode()
        rels = package.read("word/_rels/document.xml.rels").decode()
        body = package.read("word/document.xml").decode()
        first = package.read("word/charts/chart1.xml").decode()
        second = package.read("word/charts/chart2.xml").decode()
    assert {"word/charts/chart1.xml", "word/charts/chart2.xml"} <= set(names)
    assert 'PartName="/word/charts/chart1.xml"' in types and "drawingml.chart+xml" in types
    assert rels.count("relationships/chart") == 2 and body.count("<c:chart ") == 2
    # cached values: the branches and the city, completion 9.16 % / 8.33 % / 8.75 %, time progress 49.59 %
    assert "<c:v>章贡分局</c:v>" in first and "<c:v>全市</c:v>" in first
    assert re.findall(r"<c:v>(0\.\d+)</c:v>", first) == ["0.0916", "0.0833", "0.0875", "0.4959", "0.4959", "0.4959"]
    assert "<c:lineChart>" in second and "药品要求（90.00%）" in second


def test_a_missing_run_is_named_and_the_report_is_written_anyway(engine, smtp_server):
    monitored_june(engine)
    upstream = {**ALL_SUCCEEDED, "vbp_prepayment_reconciliation": False, "vbp_volume_review": False}
    result = judge(engine, report_run(), PROFILE, upstream=upstream)
    assert result["missing"] == ["vbp_volume_review", "vbp_prepayment_reconciliation"]
    text = document_text(Path(result["files"][0]))
    assert "特别说明：截至本报告生成时，本月报量审核、预付对账任务未成功完成（执行失败或等待超时）" in text
    assert "预付对账：预付款对账节点及预付款预警" in text
    assert "（注：本月预付对账未成功完成，本节预付款对账节点及预付款预警缺失或不完整。）" in text
    assert "全市约定采购量完成率8.75%" in text  # the monthly monitoring's figures are there
    notes = sheet_rows(Path(result["files"][1]), "口径说明")
    assert any(row[0] == "数据缺失" for row in notes)

    notify_documents(engine, report_run(), result)
    (mail,) = smtp_server.messages
    assert "部分数据缺失" in mail.subject and "报量审核、预付对账任务未成功完成" in mail.text()


# ------------------------------------------------------------------ mail once
def test_a_rerun_writes_identical_files_and_mails_nothing(engine, smtp_server):
    monitored_june(engine)
    first = judge(engine, report_run(run_id="r1"), PROFILE, upstream=ALL_SUCCEEDED)
    files = {path: Path(path).read_bytes() for path in first["files"]}
    assert notify_documents(engine, report_run(run_id="r1"), first)["emails"] == 1
    (mail,) = smtp_server.messages
    assert mail.rcpt_tos == [CITY_EMAIL] and mail.audience == "city"
    assert sorted(mail.attachments()) == ["月度工作进展报告_全市_2025-06.docx", "月度工作进展报告数据_全市_2025-06.xlsx"]
    assert mail.attachments()["月度工作进展报告_全市_2025-06.docx"] == files[first["files"][0]]
    assert "2025年6月" in mail.subject and "第一人民医院" in mail.text()

    second = judge(engine, report_run(run_id="r2"), PROFILE, upstream=ALL_SUCCEEDED)
    assert {path: Path(path).read_bytes() for path in second["files"]} == files
    assert notify_documents(engine, report_run(run_id="r2"), second)["emails"] == 0
    assert len(smtp_server.messages) == 1
    with engine.connect() as conn:
        rows = conn.execute(select(document_deliveries)).mappings().all()
    assert [(row["recipient"], row["period"]) for row in rows] == [("city|city@example.org", "2025-06")]

    resend = report_run(run_id="r3", force_resend=True)
    assert notify_documents(engine, resend, second)["emails"] == 1
    assert len(smtp_server.messages) == 2 and smtp_server.messages[1].message_id != mail.message_id


def test_changed_figures_mail_the_new_report_once_marked_as_an_update(engine, smtp_server):
    monitored_june(engine)
    notify_documents(engine, report_run(), judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED))
    # a daily run of June raised one more alert since: the report's figures change
    daily = RunContext.for_test("vbp_order_response", judged_day(dt.date(2025, 6, 21)))
    raise_alerts(engine, daily, [alert("ORDER_RESPONSE_OVERDUE", "H2", "B2", "high", order_id="H2-S")])
    corrected = judge(engine, report_run(run_id="r2"), PROFILE, upstream=ALL_SUCCEEDED)
    notify_documents(engine, report_run(run_id="r2"), corrected)
    notify_documents(engine, report_run(run_id="r3"), corrected)
    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[1].subject.startswith("【更新】")


def test_a_server_down_then_up_sends_the_report_once(engine, smtp_server):
    monitored_june(engine)
    result = judge(engine, report_run(), PROFILE, upstream=ALL_SUCCEEDED)
    smtp_server.stop()
    with pytest.raises(NotificationError, match="unreachable"):
        notify_documents(engine, report_run(run_id="try-1"), result)
    with engine.connect() as conn:  # the claim was released: nothing recorded as sent
        assert conn.execute(select(document_deliveries)).all() == []
    smtp_server.start()
    assert notify_documents(engine, report_run(run_id="try-2"), result)["emails"] == 1
    assert notify_documents(engine, report_run(run_id="try-3"), result)["emails"] == 0
    assert smtp_server.per_recipient() == {CITY_EMAIL: 1}


# ------------------------------------------------------------------ e2e
@pytest.mark.e2e
# the CLI path on the production database; tests/test_e2e_demo.py runs the DAG on both
@pytest.mark.parametrize("e2e_warehouse", ["postgresql"], indirect=True)
def test_the_dag_under_airflow_dags_test_after_the_monthly_runs(airflow_home, e2e_warehouse, smtp, tmp_path):
    """The demo's ingest and the four monthly DAGs of 2025-09-01, then `airflow dags test
    vbp_monthly_report 2025-09-01`: the deferrable sensors find the runs (their triggers run
    in-process), the report is mailed to the city once, and a second CLI run mails nothing."""
    from fixtures_e2e import AIRFLOW, REPO, env_sh

    landing, output = tmp_path / "landing", tmp_path / "output"
    env = env_sh(AIRFLOW_HOME=str(airflow_home), VBP_WAREHOUSE_URL=e2e_warehouse,
                 VBP_LANDING_DIR=str(landing), VBP_OUTPUT_DIR=str(output),
                 AIRFLOW_CONN_SMTP_DEFAULT=smtp.connection_json(),
                 VBP_DATA_TEAM_EMAILS="data-team@example.org", VBP_RETRY_DELAY_SECONDS="1")

    def run(*args: str) -> str:
        result = subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout + result.stderr

    run(sys.executable, "scripts/generate_demo_data.py", "--out", str(landing))
    run(sys.executable, "scripts/run_dags.py", "vbp_ingest", "2025-12-31")
    for dag_id in UPSTREAM_DAGS:
        run(sys.executable, "scripts/run_dags.py", dag_id, "2025-09-01")
    before = len(smtp.messages)
    log = run(str(AIRFLOW), "dags", "test", DAG_ID, "2025-09-01")
    assert "running trigger in line" in log  # the sensors deferred, and their triggers ran
    reports = [m for m in smtp.messages[before:] if "月度进展报告" in m.subject]
    assert len(reports) == 1 and reports[0].audience == "city"
    assert "部分数据缺失" not in reports[0].subject
    assert sorted(reports[0].attachments()) == ["月度工作进展报告_全市_2025-08.docx",
                                                "月度工作进展报告数据_全市_2025-08.xlsx"]
    docx = output / DAG_ID / "2025-08" / "月度工作进展报告_全市_2025-08.docx"
    text = document_text(docx)
    assert all(heading in text for heading in HEADINGS)
    sent = len(smtp.messages)
    run(str(AIRFLOW), "dags", "test", DAG_ID, "2025-09-01")
    assert len(smtp.messages) == sent
