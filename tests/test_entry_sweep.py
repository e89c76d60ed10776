"""DAG 1 · 进院排查 (domain.md DAG 1, seed 002 §二(二)): both rules with their boundaries.

The helpers' agreement year 2025-01-01 … 2025-12-31 (365 days) has month 3 ending
2025-03-31: the run of 1 April 2025 judges March 2025. As of 2025-03-31, 90 days have
elapsed, so with agreed quantity 3,650 the warning line is 0.8 × 90/365 × 3,650 = 720.
"""
import datetime as dt
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import delete, select

import builders
from builders import city, judge_and_mail, seed, sheet_rows
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.schema import agreements as agreements_table
from vbp_monitor.model.schema import alerts
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules.entry_sweep import DAG_ID, judge, workbook_path

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

MARCH_2025_RUN = dt.date(2025, 4, 1)
BUSINESS_COLUMNS = ("alert_key", "rule_code", "severity", "period", "branch_code",
                    "institution_code", "batch_code", "generic_name", "milestone_month",
                    "metric_value", "threshold_value", "message", "status")


def agreement(agreement_id, institution, quantity=3650, start="2025-01-01", end="2025-12-31",
              batch="NB1", generic="氨氯地平"):
    return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "period_start": start, "period_end": end,
            "agreed_quantity": str(quantity), "agreed_ratio": "0.7",
            "agreed_amount": str(Decimal(str(quantity)) * Decimal("0.50"))}


purchase = partial(builders.purchase, when="2025-02-15 10:00:00")  # an order line at 0.50 a box


def selected_in_batch(batch_code, start, cycle_months, product_code, generic, price):
    """Another national drug batch with one selected product, as ``city(**…)`` rows."""
    return {"batches": [{"batch_code": batch_code, "batch_name": f"{batch_code}国家集采", "level": "national",
                         "category": "drug", "start_date": start, "cycle_months": cycle_months}],
            "products": [{"product_code": product_code, "generic_name": generic, "manufacturer": "丙药业",
                          "category": "drug", "consistency_passed": "true", "is_selected": "true",
                          "batch_code": batch_code, "selected_price": price}]}


def institution(code, branch="B1", ownership="public"):
    return {"institution_code": code, "institution_name": f"{code}医院", "branch_code": branch,
            "ownership": ownership}


def run_for(day=MARCH_2025_RUN, run_id="test", **kwargs):
    return RunContext.for_test(DAG_ID, judged_month(day), run_id=run_id, **kwargs)


def all_alerts(engine):
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(alerts).order_by(alerts.c.alert_key)).mappings()]


def open_alerts(engine):
    return {(row["institution_code"], row["period"]): row
            for row in all_alerts(engine) if row["status"] == "open"}


def test_not_purchased_behind_and_exactly_at_the_warning_line(engine):
    with engine.begin() as conn:
        seed(conn, city(
            institutions=[institution("H3"), institution("H4", "B2")],
            agreements=[agreement("A1", "H1"), agreement("A2", "H2"), agreement("A3", "H3"),
                        agreement("A4", "H4", quantity=0)],
            orders=[purchase("O1", "H1", 720), purchase("O2", "H2", 500),
                    purchase("O3", "H2", "219.9999", when="2025-03-31 23:59:59")],
        ))

    result = judge(engine, run_for(), load_profile("default"))

    found = open_alerts(engine)
    assert set(found) == {("H2", "2025-03"), ("H3", "2025-03")}  # H1 exactly at 720: nothing
    behind = found[("H2", "2025-03")]
    assert (behind["rule_code"], behind["severity"], behind["branch_code"]) == (
        "ENTRY_BEHIND_AGREEMENT", "warning", "B2")
    assert behind["milestone_month"] == 3 and behind["generic_name"] == "氨氯地平"
    assert behind["metric_value"] == Decimal("0.197260")  # 719.9999 / 3650
    assert behind["threshold_value"] == Decimal("0.197260")  # 0.8 × 90/365, both rounded
    assert "719.9999" in behind["message"] and "90/365" in behind["message"]
    # one rounding rule: the completion rate that fell below reads 19.72%, the line 19.73%
    assert "完成率 19.72%" in behind["message"] and "= 19.73%" in behind["message"]
    assert "序时进度 24.66%" in behind["message"] and "× 0.8" in behind["message"]
    assert behind["message"].endswith("依据：赣市医保字〔2023〕28号 二(二)。")
    assert behind["message"].endswith(f"依据：{cite(load_profile('default'), 'ENTRY_BEHIND_AGREEMENT')}。")
    missing = found[("H3", "2025-03")]
    assert (missing["rule_code"], missing["severity"]) == ("ENTRY_NOT_PURCHASED", "high")
    assert missing["metric_value"] == 0 and missing["threshold_value"] == 3650
    assert "2025-03-31" in missing["message"] and "3,650" in missing["message"]
    assert "执行第3个月末" in missing["message"]
    assert missing["message"].endswith(f"依据：{cite(load_profile('default'), 'ENTRY_NOT_PURCHASED')}。")
    assert result.details["swept"] == 3  # H1, H2, H3; H4's agreed quantity is 0
    assert result.written.by_rule == {"ENTRY_BEHIND_AGREEMENT": 1, "ENTRY_NOT_PURCHASED": 1}


def test_only_public_institutions_are_swept(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "M1"), agreement("A2", "P1"), agreement("A3", "H1")]))
    result = judge(engine, run_for(), load_profile("default"))
    assert set(open_alerts(engine)) == {("H1", "2025-03")}
    assert result.details["swept"] == 1


def test_only_platform_selected_uncancelled_lines_of_the_year_up_to_the_milestone_count(engine):
    orders = [
        purchase("O1", "H1", 3000, channel="offline"),
        purchase("O2", "H1", 3000, cancelled="true"),
        purchase("O3", "H1", 3000, product="P-AML-N"),  # non-selected, same generic
        purchase("O4", "H1", 3000, product="P-AML-X"),  # selected in another batch
        purchase("O5", "H1", 3000, when="2025-04-01 00:00:00"),  # the day after the milestone
        purchase("O6", "H1", 3000, when="2024-12-31 23:59:59"),  # before the agreement year
        purchase("O7", "H2", 3000),  # another institution
    ]
    with engine.begin() as conn:
        seed(conn, city(**selected_in_batch("NB2", "2025-01-01", 24, "P-AML-X", "氨氯地平", "0.40"),
                        agreements=[agreement("A1", "H1")], orders=orders))
    judge(engine, run_for(), load_profile("default"))
    assert open_alerts(engine)[("H1", "2025-03")]["rule_code"] == "ENTRY_NOT_PURCHASED"

    # The first counting line, on the milestone day itself, turns it into "behind".
    with engine.begin() as conn:
        seed(conn, {"orders": [purchase("O8", "H1", 10, when="2025-03-31 18:00:00")]})
    judge(engine, run_for(run_id="rerun"), load_profile("default"))
    found = open_alerts(engine)[("H1", "2025-03")]
    assert found["rule_code"] == "ENTRY_BEHIND_AGREEMENT"
    assert found["metric_value"] == Decimal("0.002740")  # 10 / 3650


def test_31_january_start_is_judged_by_the_april_run_not_may(engine):
    with engine.begin() as conn:
        seed(conn, city(**selected_in_batch("NB0", "2024-01-31", 12, "P-MET-S", "二甲双胍", "0.10"),
                        agreements=[agreement("A1", "H1", start="2024-01-31", end="2025-01-30",
                                              batch="NB0", generic="二甲双胍")],
                        orders=[purchase("O1", "H1", 5000, product="P-MET-S",
                                         when="2024-04-30 08:00:00")]))

    for day in (dt.date(2024, 4, 1), dt.date(2024, 6, 3)):  # judge March and May 2024
        assert judge(engine, run_for(day), load_profile("default")).details["swept"] == 0
    result = judge(engine, run_for(dt.date(2024, 5, 6)), load_profile("default"))  # April 2024

    assert result.details["swept"] == 1
    (alert,) = open_alerts(engine).values()
    assert (alert["period"], alert["rule_code"], alert["milestone_month"]) == (
        "2024-04", "ENTRY_NOT_PURCHASED", 3)
    assert "2024-04-29" in alert["message"]  # the order of 30 April is after the milestone


def test_a_cycle_starting_mid_month_is_swept_when_its_month_3_ends(engine):
    # 2025-03-15 … 2026-03-14: month 3 ends 2025-06-14 (92 of 365 days elapsed).
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", start="2025-03-15", end="2026-03-14")],
                        orders=[purchase("O1", "H1", 100, when="2025-06-14 12:00:00")]))
    assert judge(engine, run_for(dt.date(2025, 6, 3)), load_profile("default")).details["swept"] == 0  # May
    judge(engine, run_for(dt.date(2025, 7, 1)), load_profile("default"))  # June
    (alert,) = open_alerts(engine).values()
    assert (alert["period"], alert["rule_code"]) == ("2025-06", "ENTRY_BEHIND_AGREEMENT")
    assert alert["threshold_value"] == Decimal("0.201644")  # 0.8 × 92/365
    assert "92/365" in alert["message"]


def test_a_renewal_year_is_swept_again_with_its_own_purchases(engine):
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1"),
                        agreement("A2", "H1", start="2026-01-01", end="2026-12-31")],
            orders=[purchase("O1", "H1", 3650), purchase("O2", "H1", 3650, when="2025-12-20 09:00:00")],
        ))
    judge(engine, run_for(), load_profile("default"))
    assert open_alerts(engine) == {}  # year one on track
    judge(engine, run_for(dt.date(2026, 4, 1)), load_profile("default"))  # March 2026
    (alert,) = open_alerts(engine).values()
    assert (alert["period"], alert["rule_code"]) == ("2026-03", "ENTRY_NOT_PURCHASED")
    assert "2026-01-01" in alert["message"]


def test_rerun_is_idempotent_and_corrected_data_resolves(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
                        orders=[purchase("O1", "H2", 100)]))
    judge(engine, run_for(run_id="first"), load_profile("default"))
    first = [{k: row[k] for k in BUSINESS_COLUMNS} for row in all_alerts(engine)]
    judge(engine, run_for(run_id="second"), load_profile("default"))
    second = [{k: row[k] for k in BUSINESS_COLUMNS} for row in all_alerts(engine)]
    assert first == second and len(first) == 2

    with engine.begin() as conn:
        seed(conn, {"orders": [purchase("O2", "H1", 3650), purchase("O3", "H2", 3000)]})
    result = judge(engine, run_for(run_id="corrected"), load_profile("default"))
    assert result.written.resolved == 2
    assert {row["status"] for row in all_alerts(engine)} == {"resolved"}


def test_branch_and_batch_scope_leave_other_subjects_alone(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")]))
    judge(engine, run_for(), load_profile("default"))
    assert set(open_alerts(engine)) == {("H1", "2025-03"), ("H2", "2025-03")}

    with engine.begin() as conn:
        seed(conn, {"orders": [purchase("O1", "H1", 3650), purchase("O2", "H2", 3650)]})
    result = judge(engine, run_for(run_id="b1", scope=Scope(branch_code="B1")), load_profile("default"))
    assert result.details["swept"] == 1 and result.written.resolved == 1
    assert set(open_alerts(engine)) == {("H2", "2025-03")}  # B2 untouched by a B1 rerun
    result = judge(engine, run_for(run_id="other", scope=Scope(batch_code="NB9")), load_profile("default"))
    assert result.details["swept"] == 0 and result.written.resolved == 0
    assert set(open_alerts(engine)) == {("H2", "2025-03")}


def test_both_profiles_sweep_the_same_way(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1")], orders=[purchase("O1", "H1", 719)]))
    judge(engine, run_for(), load_profile("ningxia_2019"))
    assert open_alerts(engine)[("H1", "2025-03")]["rule_code"] == "ENTRY_BEHIND_AGREEMENT"


def test_branch_sweep_lists_every_swept_agreement_with_its_verdict(engine, output_dir):
    with engine.begin() as conn:
        seed(conn, city(
            institutions=[institution("H3")],
            agreements=[agreement("A1", "H1"), agreement("A2", "H2"), agreement("A3", "H3"),
                        agreement("A4", "M1")],
            orders=[purchase("O1", "H1", 3650), purchase("O2", "H2", 100)],
        ))
    result = judge(engine, run_for(), load_profile("default"))

    b1, b2 = workbook_path("2025-03", "B1"), workbook_path("2025-03", "B2")
    assert b1 == output_dir / "vbp_entry_sweep" / "2025-03" / "进院排查_B1_2025-03.xlsx"
    assert result.attachments == {"B1": [b1], "B2": [b2]}

    header, *rows = list_rows(b1, "进院排查")
    code, verdict = header.index("医疗机构代码"), header.index("排查结论")
    assert [(r[code], r[verdict]) for r in rows] == [
        ("H3", "中选产品未进院采购"), ("H1", "已进院，进度符合要求")]  # highest severity first
    header, *rows = list_rows(b2, "进院排查")
    assert [(r[code], r[verdict]) for r in rows] == [("H2", "未按协议量采购")]
    assert Decimal(str(rows[0][header.index("中选产品平台采购量")])) == 100

    # A rerun after every agreement was withdrawn leaves no stale list behind.
    with engine.begin() as conn:
        conn.execute(delete(agreements_table))
    result = judge(engine, run_for(run_id="withdrawn"), load_profile("default"))
    assert result.attachments == {} and not b1.exists() and not b2.exists()


def list_rows(path, sheet_name: str) -> list[list]:
    """The header and rows of a list (below its three-row title block)."""
    return sheet_rows(path, sheet_name)[3:]


def test_sweep_list_is_typed_titled_and_prints(engine):
    # H2 bought 719.99 of 3,650: completion 19.7259 %, just below the line 0.8 × 90/365 = 19.7260 %.
    # Rounded half up the rate would read 19.73 %, the line itself; in the list it reads 19.72 %.
    import openpyxl

    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
                        orders=[purchase("O1", "H1", 3650), purchase("O2", "H2", "719.99")]))
    judge(engine, run_for(), load_profile("ningxia_2019"))

    book = openpyxl.load_workbook(workbook_path("2025-03", "B2"))
    sheet = book["进院排查"]
    assert sheet["A1"].value == "市医保局"
    assert sheet["A2"].value == "中选产品进院排查清单·进院排查（2025年3月）"
    assert "政策口径：宁夏口径" in sheet["A3"].value and "ningxia" not in sheet["A3"].value
    header = [cell.value for cell in sheet[4]]
    assert header[9] == "排查节点（执行第3个月末）"
    row = dict(zip(header, sheet[5], strict=True))
    assert row["排查结论"].value == "未按协议量采购"
    # the rate that fell below the line is rounded down; the line and the progress half up
    assert (row["约定采购量完成率"].value, row["约定采购量完成率"].number_format) == (0.1972, "0.00%")
    assert (row["预警线（比例×序时进度）"].value, row["预警线（比例×序时进度）"].number_format) == (0.1973, "0.00%")
    assert row["序时进度"].value == 0.2466
    assert (row["约定采购量"].value, row["约定采购量"].number_format) == (3650, "#,##0")
    assert isinstance(row["约定采购量"].value, int)
    assert (row["中选产品平台采购量"].value, row["中选产品平台采购量"].number_format) == (719.99, "#,##0.####")
    for name in ("协议年度起", "协议年度止", "排查节点（执行第3个月末）", "首次采购日期"):
        assert row[name].number_format == "yyyy-mm-dd" and isinstance(row[name].value, dt.datetime), name
    assert row["排查节点（执行第3个月末）"].value == dt.datetime(2025, 3, 31)
    assert row["处理要求"].alignment.wrap_text
    # frozen header with a filter; A4 landscape, one page wide, header repeated, page numbers
    assert sheet.freeze_panes == "A5" and sheet.auto_filter.ref.startswith("A4:")
    assert (sheet.page_setup.orientation, sheet.page_setup.paperSize) == ("landscape", 9)
    assert (sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight) == (1, 0)
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.print_title_rows == "$4:$4"
    assert "&P" in sheet.oddFooter.center.text
    criteria = book["排查口径"]
    assert criteria.print_title_rows == "$4:$4" and criteria["A2"].value.startswith("中选产品进院排查清单")
    # a purchase rounded the other way is never "below": H1 on track
    on_track = {name: cell.value for name, cell in zip(header, openpyxl.load_workbook(
        workbook_path("2025-03", "B1"))["进院排查"][5], strict=True)}
    assert (on_track["约定采购量完成率"], on_track["排查结论"]) == (1, "已进院，进度符合要求")


def test_branch_email_carries_its_sweep_list(engine, smtp_server):
    from vbp_monitor.notify.mailer import notify_run

    run = run_for()
    judged = judge_and_mail(engine, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
                                         orders=[purchase("O1", "H2", 3650)]), run, judge)

    (b1_mail,) = smtp_server.to("b1@example.org")
    assert "进院排查_B1_2025-03.xlsx" in b1_mail.attachments()
    assert "第一人民医院" in b1_mail.html() and "南康区人民医院" not in b1_mail.html()
    assert smtp_server.to("b2@example.org") == []  # H2 on track: no new alert, no email
    notify_run(engine, run, attachments=judged.attachments)
    assert len(smtp_server.to("b1@example.org")) == 1  # a rerun mails nothing twice


def test_large_quantities_exactly_at_the_warning_line_do_not_alert(engine):
    # 0.8 × 90/365 × 36,500,000 = 7,200,000 exactly; 0.0001 less is behind.
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", 36500000), agreement("A2", "H2", 36500000)],
                        orders=[purchase("O1", "H1", 7200000), purchase("O2", "H2", "7199999.9999")]))
    judge(engine, run_for(), load_profile("default"))
    assert set(open_alerts(engine)) == {("H2", "2025-03")}


def test_duplicate_agreements_of_one_subject_give_one_alert(engine):
    # A data error (two agreements for one institution, batch and generic in one year) must
    # not break the run: one alert per subject, the sweep list shows both agreements.
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A1b", "H1", quantity=100)]))
    result = judge(engine, run_for(), load_profile("default"))
    assert result.details["swept"] == 2 and result.written.raised == 1
    (alert,) = open_alerts(engine).values()
    assert alert["threshold_value"] in (3650, 100)


def test_validate_reads_only_the_rows_of_the_sweep_window(engine):
    from vbp_monitor.rules.entry_sweep import validate

    # k = 3 months before March 2025: agreements starting and orders dated from 2024-12-01
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"),
                                    agreement("A0", "H1", start="2024-01-01", end="2024-12-31")],
                        orders=[purchase("O1", "H1", 10), purchase("O0", "H1", 10, when="2024-11-30 23:59:59")]))
    report = validate(engine, run_for(), load_profile("default"))
    assert (report["agreements"]["rows"], report["orders"]["rows"]) == (1, 1)
    assert [table["failed_rows"] for table in report.values()] == [0] * 5
