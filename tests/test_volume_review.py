"""DAG 5 · 报量审核 (domain.md DAG 5, seed 002 §二(一)): every rule with its boundaries.

The helpers' batch NB1 has report_deadline 2024-11-20: the run of 2 December 2024 judges
November 2024, history = same-generic purchases in 2023.
"""
import datetime as dt
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import select

import builders
from builders import city, judge_and_mail, seed, sheet_rows
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.schema import alerts
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules.volume_review import DAG_ID, judge, workbook_path

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

NOVEMBER_RUN = dt.date(2024, 12, 2)  # first working day of December: judges 2024-11


purchase = partial(builders.purchase, when="2023-06-15 10:00:00")  # an order line at 0.50 a box


def report(report_id, institution, quantity, date="2024-11-10", explanation="", batch="NB1",
           generic="氨氯地平"):
    return {"report_id": report_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "reported_quantity": str(quantity),
            "explanation": explanation, "report_date": date}


def institution(code, branch="B1", ownership="public"):
    return {"institution_code": code, "institution_name": f"{code}医院", "branch_code": branch,
            "ownership": ownership}


def with_second_batch(report_deadline):
    """NB2 (阿托伐他汀) besides NB1; H1 bought 1,000 of NB1's generic and 600 of NB2's in 2023."""
    batch = {"batch_code": "NB2", "batch_name": "第二批国家集采", "level": "national", "category": "drug",
             "start_date": "2025-03-01", "cycle_months": 24, "report_deadline": report_deadline}
    product = {"product_code": "P-ATO-S", "generic_name": "阿托伐他汀", "manufacturer": "丁药业", "category": "drug",
               "consistency_passed": "true", "is_selected": "true", "batch_code": "NB2", "selected_price": "1.20"}
    orders = [purchase("O-AML", "H1", 1000), purchase("O-ATO", "H1", 600, product="P-ATO-S")]
    return city(batches=[batch], products=[product], orders=orders)


def run_for(day=NOVEMBER_RUN, run_id="test", **kwargs):
    return RunContext.for_test(DAG_ID, judged_month(day), run_id=run_id, **kwargs)


def open_alerts(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.status == "open")).mappings().all()
    return {(row["institution_code"], row["batch_code"]): row for row in rows}


def test_thresholds_explanations_and_every_ownership(engine):
    institutions = [institution("H3"), institution("H4", "B2"), institution("H5", "B2")]
    history = [purchase(f"O-{code}", code, 1000) for code in ("H1", "H2", "M1", "P1", "H3", "H4", "H5")]
    reports = [
        report("R-H1", "H1", 800),                     # exactly 80 %: below history only
        report("R-H2", "H2", 1000),                    # exactly 100 %: nothing
        report("R-M1", "M1", 799.99),                  # just below 80 %, explanation empty
        report("R-P1", "P1", 700, explanation=" \t\u3000\n "),  # whitespace is no explanation
        report("R-H3", "H3", 700, explanation="病区合并，门诊量下降约三成"),
        report("R-H4", "H4", 1200),                    # above history: nothing
        # H5: history but no report
    ]
    with engine.begin() as conn:
        seed(conn, city(institutions=institutions, orders=history, volume_reports=reports))

    result = judge(engine, run_for(), load_profile("default"))

    got = {inst: (row["rule_code"], row["severity"], Decimal(row["metric_value"]), Decimal(row["threshold_value"]))
           for (inst, _), row in open_alerts(engine).items()}
    assert got == {
        "H1": ("REPORT_BELOW_HISTORY", "info", Decimal("800"), Decimal("1000")),
        "M1": ("REPORT_BELOW_80_NO_EXPLANATION", "high", Decimal("799.99"), Decimal("800")),
        "P1": ("REPORT_BELOW_80_NO_EXPLANATION", "high", Decimal("700"), Decimal("800")),
        "H3": ("REPORT_BELOW_80", "warning", Decimal("700"), Decimal("800")),
        "H5": ("HISTORY_NOT_REPORTED", "high", Decimal("0"), Decimal("1000")),
    }
    assert result.details["subjects"] == 7 and result.details["batches"] == ["NB1"]
    rows = open_alerts(engine)
    assert all(row["period"] == "2024-11" and row["generic_name"] == "氨氯地平" for row in rows.values())
    assert rows[("M1", "NB1")]["branch_code"] == "B1" and rows[("H5", "NB1")]["branch_code"] == "B2"
    no_explanation = rows[("M1", "NB1")]["message"]
    assert "作出说明" in no_explanation and "退回" in no_explanation and "不少于上一年度实际采购量" in no_explanation
    # one rounding rule: 799.99 / 1000 fell below the floor and reads 79.99%, not 80.00%
    assert "799.99" in no_explanation and "79.99%" in no_explanation and "低于80.00%（800）" in no_explanation
    assert no_explanation.endswith("依据：赣市医保字〔2023〕28号 二(一)。")
    for (inst, _), row in rows.items():
        assert row["message"].endswith(f"依据：{cite(load_profile('default'), row['rule_code'])}。"), inst
    assert "病区合并" in rows[("H3", "NB1")]["message"]
    assert "重点关注" in rows[("H5", "NB1")]["message"] and "2023年" in rows[("H5", "NB1")]["message"]
    assert "原则上不少于上一年度实际采购量" in rows[("H1", "NB1")]["message"]


def test_history_counts_any_channel_and_product_of_the_generic_in_the_previous_year_only(engine):
    other_generic = {"product_code": "P-MET", "generic_name": "二甲双胍", "manufacturer": "丙药业",
                     "category": "drug", "consistency_passed": "true", "is_selected": "false"}
    orders = [
        purchase("IN-1", "H1", 300, when="2023-01-01 00:00:00"),                 # first instant
        purchase("IN-2", "H1", 200, when="2023-12-31 23:59:59", product="P-AML-N",
                 channel="offline"),                                            # off-platform, non-selected
        purchase("OUT-CANCELLED", "H1", 1000, cancelled="true"),
        purchase("OUT-2022", "H1", 1000, when="2022-12-31 23:59:59"),
        purchase("OUT-2024", "H1", 1000, when="2024-01-01 00:00:00"),
        purchase("OUT-GENERIC", "H1", 1000, product="P-MET"),
        purchase("OUT-OTHER-INST", "H2", 1000, when="2024-05-01 10:00:00"),     # H2: only this year's
    ]
    with engine.begin() as conn:
        seed(conn, city(products=[other_generic], orders=orders,
                        volume_reports=[report("R1", "H1", 450)]))

    judge(engine, run_for(), load_profile("default"))

    rows = open_alerts(engine)
    assert set(rows) == {("H1", "NB1")}  # H2 has no 2023 history and no report: no subject
    row = rows[("H1", "NB1")]
    # history = 300 + 200: 450 is between 80 % (400) and 100 %
    assert (row["rule_code"], Decimal(row["threshold_value"])) == ("REPORT_BELOW_HISTORY", Decimal("500"))


def test_latest_report_by_the_deadline_counts(engine):
    orders = [purchase(f"O-{code}", code, 1000) for code in ("H1", "H2", "M1")]
    reports = [
        report("R-H1-a", "H1", 1000, date="2024-11-01"),
        report("R-H1-b", "H1", 500, date="2024-11-15"),                 # later date wins
        report("R-H2-b", "H2", 1000, date="2024-11-20"),                # same day: higher id wins
        report("R-H2-a", "H2", 100, date="2024-11-20"),
        report("R-M1", "M1", 1000, date="2024-11-21"),                  # after the deadline: ignored
    ]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, volume_reports=reports))

    judge(engine, run_for(), load_profile("default"))

    got = {inst: (row["rule_code"], Decimal(row["metric_value"])) for (inst, _), row in open_alerts(engine).items()}
    assert got == {
        "H1": ("REPORT_BELOW_80_NO_EXPLANATION", Decimal("500")),
        "M1": ("HISTORY_NOT_REPORTED", Decimal("0")),
    }


def test_only_batches_whose_deadline_falls_in_the_judged_month(engine):
    with engine.begin() as conn:
        seed(conn, with_second_batch(report_deadline="2024-12-05"))

    judge(engine, run_for(NOVEMBER_RUN), load_profile("default"))
    assert {(k, row["generic_name"], row["period"]) for k, row in open_alerts(engine).items()} == {
        (("H1", "NB1"), "氨氯地平", "2024-11")}

    judge(engine, run_for(dt.date(2025, 1, 2)), load_profile("default"))  # judges December
    rows = open_alerts(engine)
    assert rows[("H1", "NB2")]["period"] == "2024-12"
    assert rows[("H1", "NB2")]["generic_name"] == "阿托伐他汀"
    assert Decimal(rows[("H1", "NB2")]["threshold_value"]) == Decimal("600")  # NB1's generic not counted
    assert rows[("H1", "NB1")]["period"] == "2024-11"  # December's run leaves November alone


def test_rerun_is_idempotent_and_a_corrected_report_resolves(engine):
    with engine.begin() as conn:
        seed(conn, city(orders=[purchase("O1", "H1", 1000), purchase("O2", "H2", 1000)],
                        volume_reports=[report("R1", "H1", 500), report("R2", "H2", 900)]))
    judge(engine, run_for(run_id="first"), load_profile("default"))
    with engine.connect() as conn:
        before = {row.alert_key: (row.rule_code, row.message, row.metric_value)
                  for row in conn.execute(select(alerts)).all()}
    judge(engine, run_for(run_id="again"), load_profile("default"))
    with engine.connect() as conn:
        after = {row.alert_key: (row.rule_code, row.message, row.metric_value)
                 for row in conn.execute(select(alerts)).all()}
    assert after == before and len(before) == 2

    # H1 re-reports (dated on or before the deadline, later than its first report)
    with engine.begin() as conn:
        seed(conn, {"volume_reports": [report("R1-fix", "H1", 1000, date="2024-11-18")]})
    result = judge(engine, run_for(run_id="corrected"), load_profile("default"))

    assert result.written.resolved == 1
    with engine.connect() as conn:
        statuses = {row.institution_code: (row.rule_code, row.status) for row in conn.execute(select(alerts)).all()}
    assert statuses == {"H1": ("REPORT_BELOW_80_NO_EXPLANATION", "resolved"),
                        "H2": ("REPORT_BELOW_HISTORY", "open")}


def test_branch_workbooks_list_every_subject_of_their_own_branch(engine):
    orders = [purchase("O1", "H1", 1000), purchase("O2", "H2", 1000), purchase("O3", "M1", 1000)]
    reports = [report("R1", "H1", 1000), report("R2", "H2", 700, explanation="门诊量下降")]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, volume_reports=reports))

    result = judge(engine, run_for(), load_profile("default"))

    b1, b2 = workbook_path("2024-11", "B1"), workbook_path("2024-11", "B2")
    assert b1.name == "报量审核_B1_2024-11.xlsx" and b1.parent.name == "2024-11"
    assert result.attachments == {"B1": [b1], "B2": [b2]}

    header, *rows_b1 = sheet_rows(b1, "报量审核")[3:]  # below the title block
    institution_col, verdict_col = header.index("医疗机构代码"), header.index("审核结论")
    assert {(r[institution_col], r[verdict_col]) for r in rows_b1} == {
        ("M1", "有历史采购量而未报量"), ("H1", "符合要求（不低于上一年度实际采购量）")}
    header, *rows_b2 = sheet_rows(b2, "报量审核")[3:]
    assert [r[institution_col] for r in rows_b2] == ["H2"]
    assert rows_b2[0][header.index("填报说明")] == "门诊量下降"
    ratio_col = header.index("报量/历史采购量")
    assert Decimal(str(rows_b2[0][ratio_col])) == Decimal("0.7")


def test_review_list_is_typed_titled_and_prints(engine):
    # H2 reported 2,399.99 of a 3,000 history: 79.9997 %, just below the 80 % floor. Rounded
    # half up it would read 80.00 %, the floor itself; in the list it reads 79.99 %.
    import openpyxl

    orders = [purchase("O1", "H1", 1000), purchase("O2", "H2", 3000), purchase("O3", "M1", 1000)]
    reports = [report("R1", "H1", 1000), report("R2", "H2", "2399.99", explanation="门诊量下降")]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, volume_reports=reports))
    judge(engine, run_for(), load_profile("default"))

    book = openpyxl.load_workbook(workbook_path("2024-11", "B2"))
    sheet = book["报量审核"]
    assert sheet["A1"].value == "市医保局" and sheet["A2"].value == "集采报量审核清单·报量审核（2024年11月）"
    assert "政策口径：默认口径" in sheet["A3"].value and "default" not in sheet["A3"].value
    header = [cell.value for cell in sheet[4]]
    row = dict(zip(header, sheet[5], strict=True))
    assert row["审核结论"].value == "报量低于历史采购量预警线（已说明，需审核）"
    assert (row["报量/历史采购量"].value, row["报量/历史采购量"].number_format) == (0.7999, "0.00%")
    assert (row["上一年度实际采购量"].value, row["上一年度实际采购量"].number_format) == (3000, "#,##0")
    assert (row["报量"].value, row["报量"].number_format) == (2399.99, "#,##0.####")
    for name in ("报量截止日", "报量日期"):
        assert row[name].number_format == "yyyy-mm-dd" and isinstance(row[name].value, dt.datetime), name
    assert row["报量截止日"].value == dt.datetime(2024, 11, 20)
    assert row["填报说明"].alignment.wrap_text and row["处理要求"].alignment.wrap_text
    assert sheet.freeze_panes == "A5" and sheet.auto_filter.ref.startswith("A4:")
    assert (sheet.page_setup.orientation, sheet.page_setup.paperSize) == ("landscape", 9)
    assert (sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight) == (1, 0)
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.print_title_rows == "$4:$4"
    assert "&P" in sheet.oddFooter.center.text
    criteria = [cell.value for row in book["审核口径"].iter_rows() for cell in row if isinstance(cell.value, str)]
    assert not any("history_floor_ratio" in text for text in criteria)

    # B1: M1 has a history and no report (text where a figure would be), H1 at 100 % (half up)
    sheet = openpyxl.load_workbook(workbook_path("2024-11", "B1"))["报量审核"]
    rows = {r[1]: r for r in sheet.iter_rows(min_row=5, values_only=True)}
    assert (rows["M1"][header.index("报量")], rows["M1"][header.index("报量/历史采购量")]) == ("未报量", "—")
    assert rows["M1"][header.index("报量日期")] is None
    assert rows["H1"][header.index("报量/历史采购量")] == 1


def test_no_deadline_in_month_raises_nothing_and_writes_no_workbook(engine, output_dir):
    with engine.begin() as conn:
        seed(conn, city(orders=[purchase("O1", "H1", 1000)]))
    result = judge(engine, run_for(dt.date(2024, 11, 1)), load_profile("default"))  # judges October
    assert result.details["subjects"] == 0 and result.attachments == {}
    assert open_alerts(engine) == {}


def test_batch_filter_rejudges_only_that_batch(engine):
    with engine.begin() as conn:
        seed(conn, with_second_batch(report_deadline="2024-11-25"))
    judge(engine, run_for(), load_profile("default"))
    assert set(open_alerts(engine)) == {("H1", "NB1"), ("H1", "NB2")}

    with engine.begin() as conn:
        seed(conn, {"volume_reports": [report("R-AML", "H1", 1000), report("R-ATO", "H1", 600, batch="NB2",
                                                                             generic="阿托伐他汀")]})
    judge(engine, run_for(scope=Scope(batch_code="NB2")), load_profile("default"))
    assert set(open_alerts(engine)) == {("H1", "NB1")}  # NB1 not re-judged by an NB2 rerun
    judge(engine, run_for(scope=Scope(batch_code="NB1")), load_profile("default"))
    assert open_alerts(engine) == {}


def test_branch_email_carries_its_workbook(engine, smtp_server):
    judge_and_mail(engine, city(orders=[purchase("O1", "H1", 1000), purchase("O2", "H2", 1000)],
                                volume_reports=[report("R1", "H1", 500)]), run_for(), judge)

    (b1_mail,) = smtp_server.to("b1@example.org")
    assert "报量审核_B1_2024-11.xlsx" in b1_mail.attachments()
    assert "作出说明" in b1_mail.html() and "H2" not in b1_mail.html()
    (b2_mail,) = smtp_server.to("b2@example.org")
    assert "报量审核_B2_2024-11.xlsx" in b2_mail.attachments()


def test_the_floor_follows_the_profile(engine):
    default = load_profile("default")
    profile = {**default, "volume_review": {**default["volume_review"], "history_floor_ratio": Decimal("0.75")}}
    with engine.begin() as conn:
        seed(conn, city(orders=[purchase("O1", "H1", 1000), purchase("O2", "H2", 1000)],
                        volume_reports=[report("R1", "H1", 760), report("R2", "H2", "749.9999")]))
    judge(engine, run_for(), profile)
    rows = open_alerts(engine)
    assert rows[("H1", "NB1")]["rule_code"] == "REPORT_BELOW_HISTORY"
    assert "不低于75.00%（750）" in rows[("H1", "NB1")]["message"]
    below = rows[("H2", "NB1")]
    assert (below["rule_code"], Decimal(below["threshold_value"])) == ("REPORT_BELOW_80_NO_EXPLANATION", Decimal("750"))
    assert "74.99%" in below["message"] and "低于75.00%（750）" in below["message"]


def test_validate_reads_the_reports_by_the_month_end_and_the_history_year(engine):
    from vbp_monitor.rules.volume_review import validate

    orders = [purchase("O1", "H1", 1000), purchase("O-2024", "H1", 1000, when="2024-01-01 00:00:00")]
    reports = [report("R1", "H1", 800), report("R-LATE", "H2", 800, date="2024-12-01")]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, volume_reports=reports))
    report_of = validate(engine, run_for())
    assert (report_of["orders"]["rows"], report_of["volume_reports"]["rows"]) == (1, 1)
    assert [table["failed_rows"] for table in report_of.values()] == [0] * 5
