"""DAG 4 · 年度报告收集 (domain.md DAG 4, seed 002 §三(二), 附件2): every rule with its
boundaries, heading detection across file types, and the pre-filled draft report.

Report year 2024; the helpers' city has branch bureaus B1 (章贡分局) and B2 (南康分局)
and the city row CITY. A run with logical date D judges J = D − 1.
"""
import datetime as dt
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from builders import agreement, city, order, seed
from vbp_monitor.alerts.store import AlertStore, Scope
from vbp_monitor.core.catalog import routed_to_city
from vbp_monitor.core.periods import judged_day
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.schema import alerts, annual_reports, institution_file_metrics, prepayment_ledger
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.outputs.documents import (
    check_headings,
    normalize_heading,
    read_paragraphs,
    report_path,
)
from vbp_monitor.rules.annual_report import DAG_ID, RULE_CODES, check_submission, draft_path, judge

HEADINGS = ("总体进展", "具体工作落实情况", "存在的问题", "下一步打算")
COMPLETE_MD = "# 加强集采监管工作落实情况报告\n\n## 一、总体进展\n正文\n## 二、具体工作落实情况\n## 三、存在的问题\n## 四、下一步打算\n"
PARTIAL_MD = "# 报告\n\n## 一、总体进展\n正文\n## 二、具体工作落实情况\n今年存在的问题较多。\n"


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    landing, output = tmp_path / "landing", tmp_path / "output"
    (landing / "annual_reports").mkdir(parents=True)
    monkeypatch.setenv("VBP_LANDING_DIR", str(landing))
    monkeypatch.setenv("VBP_OUTPUT_DIR", str(output))
    return {"landing": landing, "output": output}


@pytest.fixture
def profile():
    return load_profile("default")


def put_report(folders, name: str, text: str, encoding: str = "utf-8") -> str:
    (folders["landing"] / "annual_reports" / name).write_bytes(text.encode(encoding))
    return name


def submission(branch, submitted_at, file_name, year=2024):
    return {"branch_code": branch, "report_year": str(year), "submitted_at": submitted_at,
            "file_name": file_name}


def submit_both(engine, folders, text: str, b1: tuple[str, str], b2: tuple[str, str]) -> None:
    """B1 and B2 submit ``text`` (b1.md, b2.md): each ``(submitted_at, file_name as recorded)``."""
    put_report(folders, "b1.md", text)
    put_report(folders, "b2.md", text)
    with engine.begin() as conn:
        seed(conn, city(annual_reports=[submission("B1", *b1), submission("B2", *b2)]))


def run_for(day, run_id="test", branch=None):
    return RunContext.for_test(DAG_ID, judged_day(dt.date.fromisoformat(day)), run_id=run_id,
                               scope=Scope(branch_code=branch))


def open_alerts(engine, period=None):
    query = select(alerts).where(alerts.c.status == "open", alerts.c.dag_id == DAG_ID)
    if period:
        query = query.where(alerts.c.period == period)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {(row["rule_code"], row["branch_code"]): row for row in rows}


def all_alerts(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.dag_id == DAG_ID)).mappings().all()
    return sorted((row["alert_key"], row["rule_code"], row["branch_code"], row["period"], row["status"],
                   row["severity"], row["message"], Decimal(row["metric_value"]),
                   Decimal(row["threshold_value"])) for row in rows)


# ------------------------------------------------------------------ reminders
def test_reminder_days_remind_only_branches_without_a_submission_by_the_judged_day(engine, folders, profile):
    # B2's is made on D itself, after J = 4 January: not "submitted by J" for the run of 5 January
    submit_both(engine, folders, COMPLETE_MD, ("2025-01-03 10:00:00", "annual_reports/b1.md"),
                ("2025-01-05 08:00:00", "b2.md"))

    result = judge(engine, run_for("2025-01-05"), profile)
    got = open_alerts(engine)
    assert set(got) == {("ANNUAL_REPORT_DUE", "B2")}
    due = got[("ANNUAL_REPORT_DUE", "B2")]
    assert due["severity"] == "info" and due["period"] == "2025-01-04"
    assert (Decimal(due["metric_value"]), Decimal(due["threshold_value"])) == (0, 1)
    assert "南康分局" in due["message"] and "2024年度" in due["message"] and "2025-01-15" in due["message"]
    assert "草稿" in due["message"]  # the first reminder carries the draft
    assert set(result.attachments) == {"B2"}

    # not a reminder day: nothing for anyone
    result = judge(engine, run_for("2025-01-06"), profile)
    assert open_alerts(engine, "2025-01-05") == {} and result.attachments == {}


def test_later_reminders_remind_without_a_new_draft(engine, profile):
    with engine.begin() as conn:
        seed(conn, city())
    result = judge(engine, run_for("2025-01-10"), profile)
    got = open_alerts(engine, "2025-01-09")
    assert set(got) == {("ANNUAL_REPORT_DUE", "B1"), ("ANNUAL_REPORT_DUE", "B2")}
    assert "草稿" not in got[("ANNUAL_REPORT_DUE", "B1")]["message"]
    assert result.attachments == {}
    assert not any(code == "CITY" for _, code in got)  # the city row never reports


# ------------------------------------------------------------------ deadline, late
def only_b2_alert(engine, period: str, rule_code: str, severity: str, metric_and_threshold: tuple) -> str:
    """The one open alert of ``period`` is ``rule_code`` for B2 with these values: its message."""
    got = open_alerts(engine, period)
    assert set(got) == {(rule_code, "B2")}
    alert = got[(rule_code, "B2")]
    assert alert["severity"] == severity
    assert (Decimal(alert["metric_value"]), Decimal(alert["threshold_value"])) == metric_and_threshold
    return alert["message"]


def test_deadline_is_inclusive_to_the_last_second(engine, folders, profile):
    submit_both(engine, folders, COMPLETE_MD, ("2025-01-15 23:59:59", "b1.md"), ("2025-01-16 00:00:00", "b2.md"))

    judge(engine, run_for("2025-01-16"), profile)  # J = the deadline
    message = only_b2_alert(engine, "2025-01-15", "ANNUAL_REPORT_MISSING", "critical", (0, 1))
    assert "2025-01-15" in message and "三(二)" in message

    judge(engine, run_for("2025-01-17"), profile)  # J = 16 January: B2's submission is late
    message = only_b2_alert(engine, "2025-01-16", "ANNUAL_REPORT_LATE", "warning", (1, 0))
    assert "于 2025-01-16 00:00 报送" in message and "1 天" in message

    judge(engine, run_for("2025-01-18"), profile)  # a late submission is judged once, on its day
    assert open_alerts(engine, "2025-01-17") == {}


def test_late_and_incomplete_together_with_days_late(engine, folders, profile):
    put_report(folders, "b1.md", PARTIAL_MD)
    with engine.begin() as conn:
        seed(conn, city(annual_reports=[submission("B1", "2025-01-20 09:30:00", "b1.md")]))
    judge(engine, run_for("2025-01-21"), profile)
    got = open_alerts(engine, "2025-01-20")
    assert set(got) == {("ANNUAL_REPORT_LATE", "B1"), ("ANNUAL_REPORT_INCOMPLETE", "B1")}
    assert Decimal(got[("ANNUAL_REPORT_LATE", "B1")]["metric_value"]) == 5
    incomplete = got[("ANNUAL_REPORT_INCOMPLETE", "B1")]
    assert incomplete["severity"] == "high"
    assert (Decimal(incomplete["metric_value"]), Decimal(incomplete["threshold_value"])) == (2, 4)
    # "今年存在的问题较多" is body text, not the heading
    assert "三、存在的问题" in incomplete["message"] and "四、下一步打算" in incomplete["message"]
    missing_part = incomplete["message"].split("缺少模板章节：")[1].split("（找到")[0]
    assert missing_part == "三、存在的问题；四、下一步打算"


# ------------------------------------------------------------------ which submissions are judged
def test_first_run_of_the_season_judges_earlier_submissions_later_runs_only_their_day(engine, folders, profile):
    submit_both(engine, folders, PARTIAL_MD, ("2024-12-28 16:00:00", "b1.md"), ("2025-01-02 09:00:00", "b2.md"))

    judge(engine, run_for("2025-01-02"), profile)  # J = 1 January: the season's first run
    assert set(open_alerts(engine, "2025-01-01")) == {("ANNUAL_REPORT_INCOMPLETE", "B1")}

    judge(engine, run_for("2025-01-03"), profile)  # J = 2 January: only B2's submission
    assert set(open_alerts(engine, "2025-01-02")) == {("ANNUAL_REPORT_INCOMPLETE", "B2")}

    judge(engine, run_for("2025-01-04"), profile)
    assert open_alerts(engine, "2025-01-03") == {}


def test_the_latest_submission_of_the_report_year_counts(engine, folders, profile):
    put_report(folders, "b1_v1.md", PARTIAL_MD)
    put_report(folders, "b1_v2.md", COMPLETE_MD)
    put_report(folders, "b2_2023.md", COMPLETE_MD)
    with engine.begin() as conn:
        seed(conn, city(annual_reports=[
            submission("B1", "2025-01-08 10:00:00", "b1_v1.md"),
            submission("B2", "2024-01-10 10:00:00", "b2_2023.md", year=2023),  # another year
        ]))
    judge(engine, run_for("2025-01-09"), profile)
    assert set(open_alerts(engine, "2025-01-08")) == {("ANNUAL_REPORT_INCOMPLETE", "B1")}
    judge(engine, run_for("2025-01-10"), profile)
    assert set(open_alerts(engine, "2025-01-09")) == {("ANNUAL_REPORT_DUE", "B2")}

    # B1 re-submits a complete report on 9 January (the platform re-delivers the row)
    with engine.begin() as conn:
        conn.execute(update(annual_reports).where(annual_reports.c.branch_code == "B1").values(
            submitted_at=dt.datetime(2025, 1, 9, 11, 0), file_name="b1_v2.md"))
    judge(engine, run_for("2025-01-10", run_id="rerun"), profile)
    assert set(open_alerts(engine, "2025-01-09")) == {("ANNUAL_REPORT_DUE", "B2")}  # v2 is complete


# ------------------------------------------------------------------ files
def _docx(path, paragraphs=(), table_cells=(), numbered=()):
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table_cells:
        table = document.add_table(rows=1, cols=len(table_cells))
        for cell, text in zip(table.rows[0].cells, table_cells):
            cell.text = text
    for text in numbered:  # Word's automatic numbering: the numeral is not in the text
        document.add_paragraph(text, style="List Number")
    document.save(str(path))
    return path


def test_heading_detection_in_docx_including_tables_and_auto_numbering(tmp_path):
    path = _docx(tmp_path / "r.docx",
                 paragraphs=["加强集采监管工作落实情况报告", "一、总体进展", "（概括一年来加强集采监管工作总体情况）",
                             "1. 具体工作落实情况"],
                 table_cells=["（三）存在的问题", "正文"],
                 numbered=["下一步打算"])
    check = check_headings(path, HEADINGS)
    assert check.complete and check.found == HEADINGS

    partial = _docx(tmp_path / "p.docx", paragraphs=["一、总体进展", "全年具体工作落实情况良好，存在的问题较少。"])
    check = check_headings(partial, HEADINGS)
    assert check.found == ("总体进展",) and check.missing == HEADINGS[1:] and check.problem is None


@pytest.mark.parametrize("text", [
    "一、总体进展", "一.总体进展", "1. 总体进展", "1、总体进展", "（一）总体进展", "(一) 总体进展", "①总体进展",
    "第一部分 总体进展", "  总 体 进 展：", "## 一、总体进展", "**一、总体进展**", "Ⅰ. 总体进展", "1.1 总体进展",
])
def test_numbering_spaces_and_punctuation_are_stripped(text):
    assert normalize_heading(text).startswith("总体进展")


@pytest.mark.parametrize("text", ["本年度总体进展顺利", "（概括一年来加强集采监管工作总体情况）", "总体", ""])
def test_body_text_is_not_a_heading(text):
    assert not normalize_heading(text).startswith("总体进展")


def test_markdown_and_txt_lines_any_encoding(tmp_path):
    md = tmp_path / "r.md"
    md.write_text(COMPLETE_MD, encoding="utf-8-sig")
    assert check_headings(md, HEADINGS).complete
    txt = tmp_path / "r.txt"
    txt.write_bytes("一、总体进展\r\n二、具体工作落实情况\r\n三、存在的问题\r\n".encode("gb18030"))
    check = check_headings(txt, HEADINGS)
    assert check.missing == ("下一步打算",)
    assert read_paragraphs(txt)[0] == "一、总体进展"


def test_file_names_with_or_without_the_folder_and_never_outside_it(folders):
    put_report(folders, "sub.md", COMPLETE_MD)
    assert check_submission("sub.md", HEADINGS).complete
    assert check_submission("annual_reports/sub.md", HEADINGS).complete
    assert report_path(folders["landing"], "annual_reports/sub.md") == folders["landing"] / "annual_reports" / "sub.md"
    outside = check_submission("../secret.md", HEADINGS)
    assert outside.problem and outside.found == ()
    unsupported = check_submission("report.pdf", HEADINGS)
    assert "不受支持" in unsupported.problem


def test_missing_or_unreadable_file_lacks_every_heading(engine, folders, profile):
    (folders["landing"] / "annual_reports" / "broken.docx").write_bytes(b"not a zip file")
    with engine.begin() as conn:
        seed(conn, city(annual_reports=[
            submission("B1", "2025-01-07 10:00:00", "annual_reports/nowhere.docx"),
            submission("B2", "2025-01-07 11:00:00", "broken.docx"),
        ]))
    judge(engine, run_for("2025-01-08"), profile)
    got = open_alerts(engine, "2025-01-07")
    assert set(got) == {("ANNUAL_REPORT_INCOMPLETE", "B1"), ("ANNUAL_REPORT_INCOMPLETE", "B2")}
    for code in ("B1", "B2"):
        row = got[("ANNUAL_REPORT_INCOMPLETE", code)]
        assert (Decimal(row["metric_value"]), Decimal(row["threshold_value"])) == (0, 4)
        assert "视为缺少全部4个章节" in row["message"]
    assert "找不到" in got[("ANNUAL_REPORT_INCOMPLETE", "B1")]["message"]
    assert "不是有效的 Word" in got[("ANNUAL_REPORT_INCOMPLETE", "B2")]["message"]


# ------------------------------------------------------------------ the draft report
def _docx_text(path):
    from docx import Document

    document = Document(str(path))
    return "\n".join(read_paragraphs(path)), document


def _metrics_row(agreement, institution, branch, period, agreed, cumulative, completion, progress):
    zero = Decimal(0)
    return {
        "period": period, "agreement_id": agreement, "institution_code": institution, "branch_code": branch,
        "batch_code": "NB1", "generic_name": "氨氯地平", "as_of_date": dt.date(2024, 12, 31),
        "agreed_quantity": Decimal(agreed), "selected_quantity": zero, "selected_amount": zero,
        "same_generic_quantity": zero, "same_generic_amount": zero, "selected_quantity_share": None,
        "selected_amount_share": None, "non_selected_quantity": zero, "non_selected_amount": zero,
        "cumulative_selected_quantity": Decimal(cumulative), "completion_rate": Decimal(completion),
        "time_progress": Decimal(progress),
    }


def _ledger_row(institution, branch, disbursed, recovered):
    return {
        "institution_code": institution, "batch_code": "NB1", "period_start": dt.date(2024, 1, 1),
        "milestone_month": 12, "period": "2024-12", "branch_code": branch, "period_end": dt.date(2024, 12, 31),
        "milestone_day": dt.date(2024, 12, 31), "profile": "default", "agreed_amount_total": Decimal("100000"),
        "disbursed": Decimal(disbursed), "recovered": Decimal(recovered),
        "required_disbursement": Decimal("30000"), "required_recovery": Decimal(disbursed),
        "disbursement_gap": Decimal(0), "recovery_gap": Decimal(disbursed) - Decimal(recovered),
    }


def _other_dag_alert(code, severity, branch, institution, metric, order_id=None):
    return {"rule_code": code, "severity": severity, "branch_code": branch, "institution_code": institution,
            "order_id": order_id, "metric_value": Decimal(metric), "threshold_value": Decimal(0),
            "message": f"{code} {institution}"}


def _seed_year_of_figures(engine):
    """B1 and B2 with different figures in 2024 (and a 2023 alert that must not count)."""
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[
                agreement("A-H1", "H1", "2024-01-01", "2024-12-31", quantity=1000, ratio="0.6", amount="500"),
                agreement("A-H2", "H2", "2024-01-01", "2024-12-31", quantity=3000, ratio="0.6", amount="1500"),
            ],
            orders=[
                order("O1", "H1", 900, "2024-05-01", product="P-AML-S", channel="platform", price="0.50"),
                order("O2", "H1", 100, "2024-05-02", product="P-AML-N", channel="offline", price="0.50"),
            ],
        ))
        conn.execute(insert(institution_file_metrics), [
            _metrics_row("A-H1", "H1", "B1", "2024-12", 1000, 1100, "1.1", "1.0"),
            _metrics_row("A-H1", "H1", "B1", "2024-11", 1000, 900, "0.9", "0.9"),
            # two more of B1's agreements (years from July): one on track, one behind
            _metrics_row("A-H1-2", "H1", "B1", "2024-12", 5000, 3000, "0.6", "0.5"),
            _metrics_row("A-H1-3", "H1", "B1", "2024-12", 80, 20, "0.25", "0.5"),
            _metrics_row("A-H2", "H2", "B2", "2024-12", 3000, 600, "0.2", "1.0"),
        ])
        conn.execute(insert(prepayment_ledger), [
            _ledger_row("H1", "B1", "3000", "1000"),
            _ledger_row("H2", "B2", "7777", "0"),
        ])
        monthly = AlertStore("vbp_monthly_monitoring", "m", "2024-12")
        monthly.replace(conn, ["PAYMENT_OVERDUE", "PROGRESS_BEHIND"], [
            _other_dag_alert("PAYMENT_OVERDUE", "high", "B1", "H1", "1234.56", order_id="O1"),
            _other_dag_alert("PAYMENT_OVERDUE", "high", "B1", "H1", "100", order_id="O9"),
            _other_dag_alert("PAYMENT_OVERDUE", "high", "B2", "H2", "9876.54", order_id="O2"),
            _other_dag_alert("PROGRESS_BEHIND", "high", "B2", "H2", "0.2"),
        ])
        AlertStore("vbp_entry_sweep", "e", "2024-04").replace(conn, ["ENTRY_NOT_PURCHASED"], [
            _other_dag_alert("ENTRY_NOT_PURCHASED", "high", "B2", "H2", "0"),
        ])
        AlertStore("vbp_monthly_monitoring", "m", "2023-12").replace(conn, ["PAYMENT_OVERDUE"], [
            _other_dag_alert("PAYMENT_OVERDUE", "high", "B1", "H1", "5555.55", order_id="O-OLD"),
        ])


def test_first_reminder_attaches_a_draft_with_the_branchs_own_figures(engine, profile, folders):
    _seed_year_of_figures(engine)
    result = judge(engine, run_for("2025-01-05"), profile)
    assert set(result.attachments) == {"B1", "B2"}
    b1_path = draft_path(2024, "B1")
    assert result.attachments["B1"] == [b1_path]
    assert b1_path.name == "年度报告草稿_B1_2024.docx"
    assert b1_path.parent == folders["output"] / "vbp_annual_report_collection" / "2024"

    check = check_headings(b1_path, HEADINGS)
    assert check.complete, check  # the draft itself passes the heading check
    text, document = _docx_text(b1_path)
    assert "加强集采监管工作落实情况报告（2024年度）" in text
    assert "（概括一年来加强集采监管工作总体情况）" in text
    # 单位落款 signed by the branch, dated in the year it submits
    assert "单位落款" not in text and text.splitlines()[-2:] == ["章贡分局（盖章）", "2025年　　月　　日"]
    assert "章贡分局" in text
    assert "1,234.56" not in text and "1,334.56" in text  # B1's overdue amount (two orders), not 2023's
    assert "5,555.55" not in text
    assert "货款逾期未结清预警2条" in text
    # agreements counted, never quantities summed across generic names (different units)
    assert ("有约定采购量的协议3份，其中已完成约定采购量1份，达到序时进度1份，低于序时进度1份" in text)  # December
    assert "总体完成率" not in text and "合计约定采购量" not in text and "6,080" not in text
    # the payment clause per ownership, each naming whom it applies to
    assert ("公立医疗机构：集采常态化制度化责任清单 第11项；陕西省医用耗材集中带量采购和使用工作实施方案 五(五)；"
            "军队、民营医疗机构：宁政办规发〔2019〕11号 五(三)9") in text
    assert "药品网采率90.00%" in text  # 450 platform / 500 total
    assert "已拨付3,000.00元" in text and "已归还（冲抵）1,000.00元" in text
    assert "1. 货款逾期未结清：全年预警2条" in text  # the top problem
    # never another branch's figures
    for other in ("南康", "9,876.54", "7,777.00", "20.00%", "中选产品未进院采购1条"):
        assert other not in text, other
    assert document.core_properties.author == "市医保局"
    assert document.core_properties.created.date() == dt.date(2025, 1, 5)  # the run day, fixed

    b2_text, _ = _docx_text(draft_path(2024, "B2"))
    assert "南康分局" in b2_text and "9,876.54" in b2_text and "章贡" not in b2_text
    assert "中选产品未进院采购1条（涉及医疗机构1家）" in b2_text


def test_draft_renders_with_no_data_and_is_byte_identical_on_rerun(engine, profile):
    with engine.begin() as conn:
        seed(conn, {"branches": city()["branches"]})
    judge(engine, run_for("2025-01-05"), profile)
    path = draft_path(2024, "B1")
    first = path.read_bytes()
    assert check_headings(path, HEADINGS).complete
    text, _ = _docx_text(path)
    assert "暂无数据" in text and "货款逾期未结清预警0条" in text
    with zipfile.ZipFile(path) as package:
        assert {info.date_time for info in package.infolist()} == {(2025, 1, 5, 0, 0, 0)}

    judge(engine, run_for("2025-01-05", run_id="rerun"), profile)
    assert path.read_bytes() == first


# ------------------------------------------------------------------ idempotency and scope
def test_rerun_is_idempotent_and_resolves_what_a_correction_removed(engine, folders, profile):
    put_report(folders, "b2.md", COMPLETE_MD)
    with engine.begin() as conn:
        seed(conn, city())
    judge(engine, run_for("2025-01-05"), profile)
    before = all_alerts(engine)
    judge(engine, run_for("2025-01-05", run_id="rerun"), profile)
    assert all_alerts(engine) == before
    assert len(before) == 2

    # the platform delivers B2's submission of 4 January late: the rerun withdraws its reminder
    with engine.begin() as conn:
        seed(conn, {"annual_reports": [submission("B2", "2025-01-04 17:00:00", "b2.md")]})
    result = judge(engine, run_for("2025-01-05", run_id="rerun-2"), profile)
    assert set(open_alerts(engine)) == {("ANNUAL_REPORT_DUE", "B1")}
    assert set(result.attachments) == {"B1"}
    assert not draft_path(2024, "B2").exists() and draft_path(2024, "B1").exists()


def test_branch_scope_judges_writes_and_resolves_only_that_branch(engine, folders, profile):
    with engine.begin() as conn:
        seed(conn, city())
    judge(engine, run_for("2025-01-05"), profile)
    put_report(folders, "b1.md", COMPLETE_MD)
    put_report(folders, "b2.md", COMPLETE_MD)
    with engine.begin() as conn:  # both branches turn out to have submitted
        seed(conn, {"annual_reports": [submission("B1", "2025-01-03 10:00:00", "b1.md"),
                                       submission("B2", "2025-01-03 10:00:00", "b2.md")]})
    result = judge(engine, run_for("2025-01-05", run_id="scoped", branch="B1"), profile)
    assert result.details["branches"] == 1 and result.attachments == {}
    assert set(open_alerts(engine)) == {("ANNUAL_REPORT_DUE", "B2")}  # B2 untouched
    assert draft_path(2024, "B2").exists() and not draft_path(2024, "B1").exists()



def test_the_draft_is_mailed_to_its_branch_only_and_the_city_hears_of_every_reminder(engine, profile, smtp_server):
    from vbp_monitor.notify.mailer import notify_run

    _seed_year_of_figures(engine)
    run = run_for("2025-01-05", run_id="scheduled__2025-01-04T22:00:00+00:00")
    judged = judge(engine, run, profile)
    notify_run(engine, run, attachments=judged.attachments)
    (b1,) = smtp_server.to("b1@example.org")
    (b2,) = smtp_server.to("b2@example.org")
    (city_mail,) = smtp_server.to("city@example.org")
    assert [n for n in b1.attachments() if n.endswith(".docx")] == ["年度报告草稿_B1_2024.docx"]
    assert [n for n in b2.attachments() if n.endswith(".docx")] == ["年度报告草稿_B2_2024.docx"]
    assert b1.attachments()["年度报告草稿_B1_2024.docx"] == draft_path(2024, "B1").read_bytes()
    assert not [n for n in city_mail.attachments() if n.endswith(".docx")]
    assert "章贡分局" in city_mail.html() and "南康分局" in city_mail.html()

    judge(engine, run, profile)  # a rerun mails nothing again
    notify_run(engine, run, attachments={})
    assert len(smtp_server.to("b1@example.org")) == 1


def test_every_rule_is_raised_with_the_catalogs_severity_and_the_profiles_clause(engine, folders, profile):
    # One season: B1 submits an incomplete report late (20 January), B2 never submits.
    put_report(folders, "b1.md", PARTIAL_MD)
    with engine.begin() as conn:
        seed(conn, city(annual_reports=[submission("B1", "2025-01-20 09:30:00", "b1.md")]))
    raised = {}
    for day in ("2025-01-05", "2025-01-16", "2025-01-21"):  # a reminder, the deadline, B1's day
        judge(engine, run_for(day, run_id=day), profile)
        raised.update(open_alerts(engine))
    assert {code for code, _ in raised} == set(RULE_CODES) == {
        "ANNUAL_REPORT_DUE", "ANNUAL_REPORT_MISSING", "ANNUAL_REPORT_LATE", "ANNUAL_REPORT_INCOMPLETE"}
    # domain.md DAG 4's severities, and every alert also goes to the city bureau
    assert {code: row["severity"] for (code, _), row in raised.items()} == {
        "ANNUAL_REPORT_DUE": "info", "ANNUAL_REPORT_MISSING": "critical",
        "ANNUAL_REPORT_LATE": "warning", "ANNUAL_REPORT_INCOMPLETE": "high"}
    assert all(routed_to_city(code, row["severity"]) for (code, _), row in raised.items())
    for (code, _), row in raised.items():
        assert row["message"].endswith(f"依据：{cite(profile, code)}。"), row["message"]
    # the deadline in the messages is the profile's
    assert "次年1月15日前" in raised[("ANNUAL_REPORT_MISSING", "B2")]["message"]


def test_the_deadline_in_messages_is_the_profiles(engine, profile):
    with engine.begin() as conn:
        seed(conn, city())
    later = {**profile, "annual_report": {**profile["annual_report"], "annual_report_deadline": "01-20"}}
    judge(engine, run_for("2025-01-21"), later)  # J = 20 January, this profile's deadline
    message = open_alerts(engine, "2025-01-20")[("ANNUAL_REPORT_MISSING", "B1")]["message"]
    assert "次年1月20日前" in message and "2025-01-20" in message
    assert "15日" not in message


# ------------------------------------------------------------------ the DAG
def test_dag_runs_daily_from_2_january_to_1_february_at_six_shanghai():
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag_file = Path(__file__).resolve().parents[1] / "dags" / "vbp_annual_report_collection.py"
    bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}
    dag = bag.dags["vbp_annual_report_collection"]
    assert [task.task_id for task in dag.tasks] and set(dag.task_ids) == {"validate", "judge", "notify"}
    assert "batch_code" not in dag.params and "branch_code" in dag.params
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable

    runs, last = [], None
    restriction = TimeRestriction(earliest=pendulum.datetime(2025, 1, 1, tz="UTC"), latest=None, catchup=True)
    for _ in range(32):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        runs.append(info.logical_date.in_timezone("Asia/Shanghai"))
        last = info.data_interval
    days = [run.date() for run in runs]
    assert days[0] == dt.date(2025, 1, 2) and days[30] == dt.date(2025, 2, 1)
    assert days[31] == dt.date(2026, 1, 2)
    assert all(run.hour == 6 and run.minute == 0 for run in runs)
    assert [judged_day(run).label for run in runs[:1]] == ["2025-01-01"]
