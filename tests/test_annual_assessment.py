"""DAG 8 · 年度考核与结余留用测算 (domain.md DAG 8, examples.md 11): criteria, ranking, branch
rates, the savings-retention estimate, the outputs and the mail, on both databases.

The run of 1 February 2026 judges the calendar year 2025 (period '2025').
"""
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from builders import city, judge_and_mail, num, seed, sheet_rows
from vbp_monitor.core.catalog import DAGS, RULES, routed_to_city
from vbp_monitor.core.periods import PERIOD_OF, judged_year, yearly_cron
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import alerts
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules.annual_assessment import (
    DAG_ID,
    AssessmentSettings,
    Results,
    agreement_figures,
    branch_rates,
    institution_results,
    judge,
    notice_path,
    workbook_path,
)

pytestmark = pytest.mark.usefixtures("output_dir")

RUN_DAY = dt.date(2026, 2, 1)
PROFILE = load_profile("default")
SETTINGS = AssessmentSettings.from_profile(PROFILE)

# Batch NB9 (阿托伐他汀钙片, two selected makers) besides the helpers' NB1 (氨氯地平).
NB9 = {"batch_code": "NB9", "batch_name": "第九批国家集采", "level": "national", "category": "drug",
       "start_date": "2024-07-01", "cycle_months": 36, "report_deadline": "2024-05-20"}
ATOR = "阿托伐他汀钙片"
NB9_PRODUCTS = [
    {"product_code": "P-ATO-1", "generic_name": ATOR, "manufacturer": "甲药业", "category": "drug",
     "consistency_passed": "true", "is_selected": "true", "batch_code": "NB9", "selected_price": "0.20"},
    {"product_code": "P-ATO-2", "generic_name": ATOR, "manufacturer": "丁药业", "category": "drug",
     "consistency_passed": "true", "is_selected": "true", "batch_code": "NB9", "selected_price": "0.25"},
    {"product_code": "P-ATO-N", "generic_name": ATOR, "manufacturer": "戊药业", "category": "drug",
     "consistency_passed": "true", "is_selected": "false"},
]
HVC = [{"batch_code": "HC1", "batch_name": "冠脉支架集采", "level": "provincial", "category": "high_value_consumable",
        "start_date": "2025-01-01", "cycle_months": 24, "report_deadline": "2024-11-20"}]
STENT = {"product_code": "P-STENT", "generic_name": "冠脉支架", "manufacturer": "乙器械",
         "category": "high_value_consumable", "consistency_passed": "true", "is_selected": "true",
         "batch_code": "HC1", "selected_price": "700"}


def year_run(run_id: str = "test", **kwargs) -> RunContext:
    return RunContext.for_test(DAG_ID, judged_year(RUN_DAY), run_id=run_id, **kwargs)


def line(order_id, institution, quantity, price, day="2025-05-10", product="P-ATO-1", channel="platform",
         cancelled="false"):
    quantity, price = Decimal(str(quantity)), Decimal(str(price))
    return {"order_id": order_id, "institution_code": institution, "product_code": product,
            "distributor_code": "D1", "channel": channel, "order_time": f"{day} 10:00:00",
            "quantity": str(quantity), "unit_price": str(price), "amount": str(quantity * price),
            "cancelled": cancelled}


def deal(agreement_id, institution, quantity, ratio="0.6", start="2025-01-01", end="2025-12-31",
         batch="NB9", generic=ATOR):
    return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "period_start": start, "period_end": end,
            "agreed_quantity": str(quantity), "agreed_ratio": str(ratio), "agreed_amount": "1000"}


def baseline(batch="NB9", generic=ATOR, price="0.80"):
    return {"batch_code": batch, "generic_name": generic, "baseline_price": price}


def example_11(**extra):
    """examples.md 11: H1 (合格) bought 10,000 at 0.20 and 2,000 at 0.25 of NB9's selected
    阿托伐他汀钙片 in 2025; baseline 0.80. H2 has an NB1 agreement and no baseline price."""
    tables = city(
        batches=[NB9], products=NB9_PRODUCTS,
        agreements=[deal("A-H1", "H1", 12000)],
        orders=[line("O1", "H1", 10000, "0.20"), line("O2", "H1", 2000, "0.25", product="P-ATO-2")],
        baseline_prices=[baseline()],
    )
    for key, rows in extra.items():
        tables.setdefault(key, []).extend(rows)
    return tables


def assess(engine, tables):
    with engine.begin() as conn:
        seed(conn, tables)
    return judge(engine, year_run(), PROFILE)


def figures(engine):
    run = year_run()
    with engine.connect() as conn:
        institutions = institution_results(conn, run, SETTINGS)
        agreements = agreement_figures(conn, run, SETTINGS)
        rates = branch_rates(conn, run, SETTINGS)
    assert_same_agreement_checks(institutions, agreements)
    return Results(institutions, agreements, rates, SETTINGS, {}, "CITY", 2025, RUN_DAY)


def assert_same_agreement_checks(institutions: list[dict], agreements: list[dict]) -> None:
    """assessment_institutions.sql repeats the agreement CTEs of assessment_agreements.sql:
    every test that reads both checks that they agree. An institution's C1 and C2 counts
    (agreements with an agreed quantity, those behind, those below their ratio) are those of
    its agreement rows (on_target / ratio_reached 0), whatever the scenario."""
    counts: dict[str, list[int]] = {}
    for agreement in agreements:
        if agreement["agreed_quantity"] > 0:
            count = counts.setdefault(agreement["institution_code"], [0, 0, 0])
            count[0] += 1
            count[1] += agreement["on_target"] == 0
            count[2] += agreement["ratio_reached"] == 0
    for institution in institutions:
        assert [institution["agreements"], institution["agreements_behind"],
                institution["agreements_ratio_low"]] == counts.get(institution["institution_code"], [0, 0, 0]), \
            institution["institution_code"]


def open_alerts(engine, rule_code=None):
    query = select(alerts).where(alerts.c.status == "open")
    if rule_code:
        query = query.where(alerts.c.rule_code == rule_code)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


# ------------------------------------------------------------------ period and schedule
def test_the_run_of_1_february_judges_the_year_before():
    scheduled = dt.datetime(2026, 1, 31, 22, 0, tzinfo=dt.UTC)  # 06:00 on 1 February in Shanghai
    period = judged_year(scheduled)
    assert (period.label, period.first_day, period.last_day, period.run_day) == (
        "2025", dt.date(2025, 1, 1), dt.date(2025, 12, 31), dt.date(2026, 2, 1))
    assert PERIOD_OF[DAGS[DAG_ID].period_kind] is judged_year
    # the catalog's cron is the default profile's assessment day at 06:00
    assert DAGS[DAG_ID].crons == (yearly_cron(PROFILE["assessment"]["assessment_day"]),) == ("0 6 1 2 *",)
    assert yearly_cron("03-15") == "0 6 15 3 *"
    with pytest.raises(ValueError):
        yearly_cron("02-30")
    assert routed_to_city("BRANCH_ASSESSMENT_FAILED", "high") and not RULES["ASSESSMENT_FAILED"].to_city


def test_the_schedule_follows_the_profiles_assessment_day(monkeypatch):
    from vbp_monitor.core import profiles
    from vbp_monitor.orchestration.wiring import schedule_of

    timetable = schedule_of(DAG_ID)
    assert (timetable.summary, str(timetable._timezone)) == ("0 6 1 2 *", "Asia/Shanghai")
    moved = {**PROFILE, "assessment": {**PROFILE["assessment"], "assessment_day": "03-10"}}
    monkeypatch.setattr(profiles, "load_profile", lambda name=None: moved)
    assert schedule_of(DAG_ID).summary == "0 6 10 3 *"


# ------------------------------------------------------------------ examples.md 11
def test_example_11_savings_and_retention_ceiling(engine):
    judged = assess(engine, example_11())
    results = figures(engine)
    h1 = results.institution("H1")
    assert (h1["passed"], h1["criteria_met"], h1["rank_position"]) == (True, 3, 1)
    ((agreement, retention),) = [(a, r) for a, r in results.retentions if a["institution_code"] == "H1"]
    assert (retention.savings, retention.ceiling) == (Decimal("7100.00"), Decimal("3550.00"))
    assert num(agreement["selected_quantity"]) == Decimal(12000)
    # the city's workbook shows it, typed, and says it is an estimate
    rows = sheet_rows(workbook_path(2025, "CITY"), "结余留用测算")
    header = rows[3]
    h1_row = dict(zip(header, next(row for row in rows[4:] if row[1] == "H1")))
    assert (h1_row["节约金额（测算，元）"], h1_row["可留用金额上限（测算，元）"], h1_row["留用比例上限"]) == (7100, 3550, 0.5)
    notes = sheet_rows(workbook_path(2025, "CITY"), "考核口径")
    assert any("仅供市医保局研究决定结余留用时参考" in str(row[1]) for row in notes)
    assert judged.attachments["CITY"] == [workbook_path(2025, "CITY"), notice_path(2025, "CITY")]


def test_a_generic_without_baseline_price_gets_no_estimate_and_a_negative_saving_counts_as_0(engine):
    tables = example_11(
        agreements=[deal("A-H1-AML", "H1", 1000, batch="NB1", generic="氨氯地平"),
                    deal("A-H2", "H2", 100)],
        orders=[line("O3", "H1", 1000, "0.50", product="P-AML-S"),
                line("O4", "H2", 100, "0.90")],  # bought above the baseline: savings −10 → 0
    )
    assess(engine, tables)
    results = figures(engine)
    by_agreement = {a["agreement_id"]: r for a, r in results.retentions}
    assert by_agreement["A-H1-AML"].savings is None and by_agreement["A-H1-AML"].ceiling is None
    assert "无基期价格" in by_agreement["A-H1-AML"].note
    assert (by_agreement["A-H2"].savings, by_agreement["A-H2"].ceiling) == (Decimal(0), Decimal(0))
    rows = sheet_rows(workbook_path(2025, "CITY"), "结余留用测算")
    aml = next(row for row in rows[4:] if row[6] == "氨氯地平")
    assert aml[12] == "无基期价格" and aml[14] == "未测算"


def test_a_failed_institution_gets_0_with_the_reason(engine):
    # H1 completed only 11,000 of 12,000 by the end of its agreement year in 2025
    tables = example_11()
    tables["orders"][0]["quantity"], tables["orders"][0]["amount"] = "9000", "1800.00"
    assess(engine, tables)
    results = figures(engine)
    h1 = results.institution("H1")
    assert (h1["passed"], h1["c1_pass"], h1["criteria_met"], h1["rank_position"]) == (False, 0, 2, None)
    ((_, retention),) = [(a, r) for a, r in results.retentions if a["institution_code"] == "H1"]
    assert retention.savings == Decimal("6500.00") and retention.ceiling == 0
    assert "约定采购量完成未达标" in retention.note
    (alert,) = open_alerts(engine, "ASSESSMENT_FAILED")
    assert (alert["institution_code"], alert["period"], alert["severity"]) == ("H1", "2025", "warning")
    assert (num(alert["metric_value"]), num(alert["threshold_value"])) == (2, 3)
    assert "11,000" not in alert["message"] and "阿托伐他汀钙片" in alert["message"]
    assert "不参与排名" in alert["message"] and "赣市医保字〔2023〕28号 二(八)、附件1" in alert["message"]


# ------------------------------------------------------------------ C1 boundaries
def test_an_agreement_ending_in_the_year_needs_100_percent_one_running_on_its_time_progress(engine):
    institutions = [{"institution_code": code, "institution_name": f"{code}医院", "branch_code": "B1",
                     "ownership": "public"} for code in ("H3", "H4", "H5", "H6")]
    tables = city(
        batches=[NB9], products=NB9_PRODUCTS, institutions=institutions,
        agreements=[
            # ends 2025-06-30: 999 of 1,000 → behind; exactly 1,000 → on target
            deal("A-H3", "H3", 1000, start="2024-07-01", end="2025-06-30"),
            deal("A-H4", "H4", 1000, start="2024-07-01", end="2025-06-30"),
            # runs on to 2026-06-30: time progress on 31 Dec = 184/365 = 0.50411; 505 → 0.505 on
            # target, 504 → 0.504 behind (a year-end completion, not 100 %)
            deal("A-H5", "H5", 1000, start="2025-07-01", end="2026-06-30"),
            deal("A-H6", "H6", 1000, start="2025-07-01", end="2026-06-30"),
        ],
        orders=[line("O3a", "H3", 500, "0.20", day="2024-12-01"), line("O3b", "H3", 499, "0.20"),
                line("O3c", "H3", 1, "0.20", day="2025-07-01"),  # after its period_end: does not count
                line("O4a", "H4", 500, "0.20", day="2024-12-01"), line("O4b", "H4", 500, "0.20"),
                line("O5", "H5", 505, "0.20", day="2025-09-01"), line("O6", "H6", 504, "0.20", day="2025-09-01"),
                line("O6b", "H6", 10, "0.20", day="2026-01-05")],  # after 31 Dec: does not count
    )
    assess(engine, tables)
    results = figures(engine)
    c1 = {code: results.institution(code)["c1_pass"] for code in ("H3", "H4", "H5", "H6")}
    assert c1 == {"H3": 0, "H4": 1, "H5": 1, "H6": 0}
    on_target = {a["agreement_id"]: a["on_target"] for a in results.agreements}
    assert on_target == {"A-H3": 0, "A-H4": 1, "A-H5": 1, "A-H6": 0}
    failed = {a["institution_code"] for a in open_alerts(engine, "ASSESSMENT_FAILED")}
    assert failed == {"H3", "H6"}


def test_c2_over_the_days_of_the_year_inside_the_agreement_year_and_no_purchase_passes(engine):
    institutions = [{"institution_code": "H3", "institution_name": "H3医院", "branch_code": "B1",
                     "ownership": "public"}]
    tables = city(
        batches=[NB9], products=NB9_PRODUCTS, institutions=institutions,
        agreements=[deal("A-H1", "H1", 100, ratio="0.6"),
                    # H3's year ended in June 2025, completed in 2024: no same-generic purchase in 2025
                    deal("A-H3", "H3", 100, start="2024-07-01", end="2025-06-30")],
        orders=[line("O1", "H1", 600, "0.20"), line("O2", "H1", 401, "0.50", product="P-ATO-N", channel="offline"),
                line("O3", "H3", 100, "0.20", day="2024-09-01"),
                line("O3x", "H3", 900, "0.50", day="2025-08-01", product="P-ATO-N")],  # after its year
    )
    assess(engine, tables)
    results = figures(engine)
    h1, h3 = results.institution("H1"), results.institution("H3")
    # H1: 600 / 1,001 = 59.94 % < 60 % → C2 fails (and C3: drug online 120/320.5)
    assert (h1["c1_pass"], h1["c2_pass"], h1["c3_pass"]) == (1, 0, 0)
    assert (h3["c1_pass"], h3["c2_pass"]) == (1, 1)
    # H2 (public, no agreement, no purchase) passes everything; ranking needs purchases
    h2 = results.institution("H2")
    assert (h2["passed"], h2["rank_position"]) == (True, None)


# ------------------------------------------------------------------ C3, scope, ranking
def test_online_rates_private_institutions_and_the_branch_rule(engine):
    tables = city(
        batches=[NB9, *HVC], products=[*NB9_PRODUCTS, STENT],
        orders=[
            # H1: drug 90 % exactly (900 platform / 1,000) → passes; stents 79.99… % → fails
            line("O1", "H1", 4500, "0.20"), line("O2", "H1", 200, "0.50", product="P-ATO-N", channel="offline"),
            line("O3", "H1", 7999, "1", product="P-STENT"),
            line("O4", "H1", 2001, "1", product="P-STENT", channel="offline"),
            # H2 (B2): all offline drugs → B2's drug rate 0 % → BRANCH_ASSESSMENT_FAILED
            line("O5", "H2", 100, "0.50", product="P-ATO-N", channel="offline"),
            # P1: private, all offline: not assessed, not in B2's rate
            line("O6", "P1", 100000, "0.50", product="P-ATO-N", channel="offline"),
        ],
    )
    assess(engine, tables)
    results = figures(engine)
    assert "P1" not in results.by_code and "M1" not in results.by_code
    h1 = results.institution("H1")
    assert (h1["c3_drug_pass"], h1["c3_hvc_pass"], h1["criteria_met"]) == (1, 0, 2)
    branch = {(a["branch_code"], a["category"]): a for a in open_alerts(engine, "BRANCH_ASSESSMENT_FAILED")}
    assert set(branch) == {("B1", "high_value_consumable"), ("B2", "drug")}
    stent = branch[("B1", "high_value_consumable")]
    assert (num(stent["metric_value"]), num(stent["threshold_value"])) == (Decimal("0.7999"), Decimal("0.8"))
    assert stent["severity"] == "high" and stent["period"] == "2025" and "79.99%" in stent["message"]
    b2 = branch[("B2", "drug")]
    assert "1 家公立医疗机构" in b2["message"] and "50.00" in b2["message"]  # 50.00元 total, not P1's
    assert {a["institution_code"] for a in open_alerts(engine, "ASSESSMENT_FAILED")} == {"H1", "H2"}


def test_ranking_by_selected_drug_share_ties_by_code_and_c1_failures_after(engine):
    institutions = [{"institution_code": code, "institution_name": f"{code}医院", "branch_code": "B1",
                     "ownership": "public"} for code in ("H0", "H3", "H4")]
    tables = city(
        batches=[NB9], products=NB9_PRODUCTS, institutions=institutions,
        agreements=[deal("A-H4", "H4", 10000)],  # H4 misses its agreed volume: listed after
        orders=[
            # H3 and H0: 1/2 and 2/4 → tied at 50 %: H0 before H3 by code
            line("O1", "H3", 100, "0.20"), line("O2", "H3", 100, "0.50", product="P-ATO-N"),
            line("O3", "H0", 200, "0.20"), line("O4", "H0", 200, "0.50", product="P-ATO-N"),
            # H1: 3/4 (selected of NB1 and NB9 generics, any channel) → first
            line("O5", "H1", 300, "0.20"), line("O6", "H1", 100, "0.50", product="P-ATO-N"),
            # H4: 100 % but C1 fails → unranked
            line("O7", "H4", 100, "0.20"),
            # cancelled lines do not count
            line("O8", "H3", 1000, "0.50", product="P-ATO-N", cancelled="true"),
        ],
    )
    assess(engine, tables)
    results = figures(engine)
    order = [(row["institution_code"], row["rank_position"]) for row in results.institutions]
    assert order == [("H1", 1), ("H0", 2), ("H3", 3), ("H2", None), ("H4", None)]
    rows = sheet_rows(workbook_path(2025, "CITY"), "考核结果与排名")
    listed = {row[2]: row for row in rows[4:]}
    assert listed["H4"][0] == "—" and listed["H4"][-1] == "未全部完成约定采购量"
    assert listed["H1"][0] == 1 and listed["H1"][10] == 0.75


# ------------------------------------------------------------------ reruns, outputs, mail
def test_rerun_is_idempotent_and_a_correction_resolves(engine):
    tables = example_11()
    tables["orders"][0]["quantity"], tables["orders"][0]["amount"] = "9000", "1800.00"
    assess(engine, tables)
    judge(engine, year_run("again"), PROFILE)
    (alert,) = open_alerts(engine)
    assert alert["rule_code"] == "ASSESSMENT_FAILED"
    with engine.begin() as conn:
        seed(conn, {"orders": [line("O9", "H1", 1000, "0.20", day="2025-11-30")]})
    written = judge(engine, year_run("corrected"), PROFILE).written
    assert (written.raised, written.resolved) == (0, 1)
    assert open_alerts(engine) == []


def test_branch_scope_writes_only_that_branchs_part(engine, output_dir):
    from vbp_monitor.alerts.store import Scope

    with engine.begin() as conn:
        seed(conn, example_11(orders=[line("O5", "H2", 100, "0.50", product="P-ATO-N", channel="offline")]))
    judged = judge(engine, year_run(scope=Scope(branch_code="B2")), PROFILE)
    assert list(judged.attachments) == ["B2"]
    assert {a["branch_code"] for a in open_alerts(engine)} == {"B2"}


def test_emails_city_gets_workbook_and_notice_each_branch_its_part(engine, smtp_server, tmp_path):
    tables = example_11(orders=[line("O5", "H2", 100, "0.50", product="P-ATO-N", channel="offline")])
    judge_and_mail(engine, tables, year_run(), judge)
    (city_mail,) = smtp_server.to("city@example.org")
    assert {"年度考核_CITY_2025.xlsx", "年度考核通报_CITY_2025.docx"} <= set(city_mail.attachments())
    (b2_mail,) = smtp_server.to("b2@example.org")
    files = b2_mail.attachments()
    assert "年度考核_B2_2025.xlsx" in files and not any("通报" in name for name in files)
    part = tmp_path / "b2.xlsx"
    part.write_bytes(files["年度考核_B2_2025.xlsx"])
    ranking = sheet_rows(part, "考核结果与排名")
    assert [row[2] for row in ranking[4:]] == ["H2"]  # only its own institutions
    assert "H1" not in b2_mail.html()
    # the city's alert email carries its files: no separate document
    assert judge(engine, year_run(run_id="again"), PROFILE).as_xcom()["documents"] == []


def test_a_year_without_a_branch_failure_mails_the_city_its_notice_once(engine, smtp_server):
    from vbp_monitor.notify.mailer import notify_documents

    judged = judge_and_mail(engine, example_11(), year_run(), judge)  # no branch fails its rate
    assert not open_alerts(engine, "BRANCH_ASSESSMENT_FAILED")
    assert smtp_server.to("city@example.org") == []  # no alert of the city: no alert email
    notify_documents(engine, year_run(), judged.as_xcom())
    (city_mail,) = smtp_server.to("city@example.org")
    assert set(city_mail.attachments()) == {"年度考核_CITY_2025.xlsx", "年度考核通报_CITY_2025.docx"}
    assert "年度考核通报" in city_mail.subject and "不合格0家" in city_mail.html()
    # a rerun on the same figures writes the same files: nothing mailed again
    again = judge(engine, year_run(run_id="again"), PROFILE).as_xcom()
    assert notify_documents(engine, year_run(run_id="again"), again)["emails"] == 0
    assert len(smtp_server.to("city@example.org")) == 1


def test_the_notice_names_the_ranking_failures_and_estimates(engine):
    from docx import Document

    tables = example_11(orders=[line("O5", "H2", 100, "0.50", product="P-ATO-N", channel="offline")])
    assess(engine, tables)
    document = Document(str(notice_path(2025, "CITY")))
    text = "\n".join(p.text for p in document.paragraphs)
    cells = "\n".join(cell.text for table in document.tables for row in table.rows for cell in row.cells)
    assert "关于2025年度集中带量采购考核结果的通报" in text
    for heading in ("一、考核范围与标准", "二、考核结果与排名", "三、不合格机构", "四、分局网采率", "五、结余留用测算"):
        assert heading in text
    assert "仅供市医保局研究决定结余留用时参考" in text
    assert "7,100.00元" in cells and "3,550.00元" in cells  # H1's estimate
    assert "南康区人民医院" in cells and "网采率" in cells  # H2 failed C3
    assert document.core_properties.category == "年度考核通报"


def test_validate_checks_the_baseline_prices_generic_against_the_batch(engine):
    from vbp_monitor.rules.annual_assessment import validate

    tables = example_11(baseline_prices=[baseline(generic="氨氯地平")])  # not a generic of NB9
    with engine.begin() as conn:
        seed(conn, tables)
    report = validate(engine, year_run())
    assert report["baseline_prices"]["failed_rows"] == 1
    assert report["orders"]["rows"] == 2 and report["orders"]["failed_rows"] == 0
    (quality,) = open_alerts(engine, "DATA_QUALITY")
    assert quality["source_file"] == "baseline_prices"


# ------------------------------------------------------------------ end to end, under Airflow
@pytest.mark.e2e
# the CLI path on the production database; tests/test_e2e_demo.py runs the DAG on both
@pytest.mark.parametrize("e2e_warehouse", ["postgresql"], indirect=True)
def test_airflow_dags_test_assesses_the_demo_year(airflow_home, e2e_warehouse, smtp, tmp_path):
    """The demo city ingested, then `airflow dags test vbp_annual_assessment 2026-02-01` (the
    DAG's scheduled day): the planted cases raised for 2025, mailed with the files."""
    import subprocess
    import sys

    from sqlalchemy import create_engine

    from fixtures_e2e import AIRFLOW, REPO, env_sh
    from vbp_demo import generator as demo_data

    landing, output = tmp_path / "landing", tmp_path / "output"
    env = env_sh(AIRFLOW_HOME=str(airflow_home), VBP_WAREHOUSE_URL=e2e_warehouse, VBP_LANDING_DIR=str(landing),
                 VBP_OUTPUT_DIR=str(output), AIRFLOW_CONN_SMTP_DEFAULT=smtp.connection_json(),
                 VBP_DATA_TEAM_EMAILS="data-team@example.org", VBP_RETRY_DELAY_SECONDS="1")

    def run(*args):
        result = subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    run(sys.executable, "scripts/generate_demo_data.py", "--out", str(landing))
    run(sys.executable, "scripts/run_dags.py", "vbp_ingest", demo_data.INGEST_DAY)
    sent_before = len(smtp.messages)
    run(str(AIRFLOW), "dags", "test", DAG_ID, demo_data.ASSESSMENT_DAY)

    engine = create_engine(e2e_warehouse)
    with engine.connect() as conn:
        raised = [dict(row) for row in conn.execute(
            select(alerts).where(alerts.c.dag_id == DAG_ID, alerts.c.status == "open")).mappings()]
    engine.dispose()
    subjects = {(a["rule_code"], a["period"], a["institution_code"], a["branch_code"], a["category"]) for a in raised}
    assert subjects == {
        ("ASSESSMENT_FAILED", "2025", demo_data.I_DY1, demo_data.ASSESSMENT_BRANCH, None),
        ("BRANCH_ASSESSMENT_FAILED", "2025", None, demo_data.ASSESSMENT_BRANCH, "high_value_consumable"),
    }
    assert all(a["notified_at"] is not None for a in raised)
    mails = smtp.messages[sent_before:]
    (city_mail,) = [m for m in mails if m.audience == "city"]
    assert {"年度考核_360700_2025.xlsx", "年度考核通报_360700_2025.docx"} <= set(city_mail.attachments())
    (branch_mail,) = [m for m in mails if m.audience == f"branch:{demo_data.ASSESSMENT_BRANCH}"]
    assert f"年度考核_{demo_data.ASSESSMENT_BRANCH}_2025.xlsx" in branch_mail.attachments()
    assert not any(name.endswith(".docx") for name in branch_mail.attachments())

    # a rerun of the same day changes nothing and mails nothing
    sent = len(smtp.messages)
    run(str(AIRFLOW), "dags", "test", DAG_ID, demo_data.ASSESSMENT_DAY)
    assert len(smtp.messages) == sent


def test_ingest_quarantines_a_baseline_price_of_a_generic_the_batch_did_not_select(engine, tmp_path):
    """The GX suite at ingest gives the SQL suite's verdict (batch_generic against products)."""
    from builders import full_city, write_landing
    from vbp_monitor.core.periods import ingest_period
    from vbp_monitor.model.schema import baseline_prices, quarantine
    from vbp_monitor.quality.ingest import ingest_landing

    tables = full_city(baseline_prices=[{"batch_code": "NB1", "generic_name": ATOR, "baseline_price": "1.00"}])
    landing = write_landing(tmp_path / "landing", tables)
    ingest_landing(engine, RunContext.for_test("vbp_ingest", ingest_period(RUN_DAY)), landing)
    with engine.connect() as conn:
        stored = conn.execute(select(baseline_prices.c.generic_name)).scalars().all()
        reasons = conn.execute(select(quarantine.c.reasons).where(
            quarantine.c.source_file == "baseline_prices.csv")).scalars().all()
    assert stored == ["氨氯地平"]
    (reason,) = reasons
    assert "该批次中选产品的通用名" in reason
