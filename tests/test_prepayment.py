"""DAG 3 · 预付对账 (domain.md DAG 3, examples.md 6): every rule, both profiles, boundaries.

The helpers' batch NB1 starts 2025-01-01; an agreement year 2025-01-01 … 2025-12-31 has its
milestones on 2025-03-31, 06-30, 09-30 and 12-31, judged by the runs of the following
month's first working day.
"""
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from builders import city, seed
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.schema import alerts, prepayment_ledger, prepayments
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.outputs.spreadsheets import branch_file_path
from vbp_monitor.rules.prepayment import DAG_ID, PrepaymentSettings, judge, workbook_folder

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

MARCH_RUN, JUNE_RUN, SEPTEMBER_RUN = dt.date(2025, 4, 1), dt.date(2025, 7, 1), dt.date(2025, 10, 9)
DEFAULT, NINGXIA = load_profile("default"), load_profile("ningxia_2019")
ALERT_COLUMNS = ("alert_key", "rule_code", "severity", "period", "branch_code", "institution_code",
                 "batch_code", "milestone_month", "metric_value", "threshold_value", "message", "status")
METFORMIN = {"product_code": "P-MET-S", "generic_name": "二甲双胍", "manufacturer": "丁药业",
             "category": "drug", "consistency_passed": "true", "is_selected": "true",
             "batch_code": "NB1", "selected_price": "0.10"}


def agreement(agreement_id, institution, amount=100000, start="2025-01-01", end="2025-12-31",
              batch="NB1", generic="氨氯地平"):
    return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "period_start": start, "period_end": end,
            "agreed_quantity": "1000", "agreed_ratio": "0.7", "agreed_amount": str(amount)}


def txn(txn_id, institution, amount, date, kind="disbursement", batch="NB1"):
    return {"txn_id": txn_id, "institution_code": institution, "batch_code": batch,
            "txn_date": date, "txn_type": kind, "amount": str(amount)}


def run_for(day, run_id="test", **kwargs):
    return RunContext.for_test(DAG_ID, judged_month(day), run_id=run_id, **kwargs)


def all_alerts(engine):
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(alerts).order_by(alerts.c.alert_key)).mappings()]


def open_alerts(engine):
    return {(row["institution_code"], row["period"], row["rule_code"]): row
            for row in all_alerts(engine) if row["status"] == "open"}


def ledger(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(prepayment_ledger).order_by(
            prepayment_ledger.c.institution_code, prepayment_ledger.c.period_start,
            prepayment_ledger.c.milestone_month)).mappings().all()
    return {(row["institution_code"], row["period_start"].isoformat(), row["milestone_month"]): dict(row)
            for row in rows}


def money(row, *names):
    return tuple(Decimal(row[name]).quantize(Decimal("0.01")) for name in names)


# ------------------------------------------------------------------ examples.md 6
def test_example_6_recovery_short_and_under_disbursed(engine):
    # H1: 30,000 disbursed in month 1, 8,000 recovered by month 6 (and 2,000 the day after).
    # H2: only 20,000 disbursed. agreed_amount_total = 60,000 + 40,000 = 100,000 for each.
    agreements = [agreement("A1", "H1", 60000), agreement("A2", "H1", 40000, generic="二甲双胍"),
                  agreement("A3", "H2", 100000)]
    txns = [txn("T1", "H1", 30000, "2025-01-10"),
            txn("T2", "H1", 3000, "2025-03-20", "recovery"),
            txn("T3", "H1", 5000, "2025-06-30", "recovery"),
            txn("T4", "H1", 2000, "2025-07-01", "recovery"),
            txn("T5", "H2", 20000, "2025-01-10"),
            txn("T6", "H2", 8000, "2025-06-30", "recovery")]
    with engine.begin() as conn:
        seed(conn, city(products=[METFORMIN], agreements=agreements, prepayments=txns))

    result = judge(engine, run_for(JUNE_RUN), DEFAULT)

    found = open_alerts(engine)
    assert set(found) == {("H1", "2025-06", "PREPAY_RECOVERY_SHORT"),
                          ("H2", "2025-06", "PREPAY_UNDER_DISBURSED")}
    short = found[("H1", "2025-06", "PREPAY_RECOVERY_SHORT")]
    assert (short["severity"], short["branch_code"], short["batch_code"], short["milestone_month"]) == (
        "high", "B1", "NB1", 6)
    assert (short["metric_value"], short["threshold_value"]) == (8000, 9000)
    assert "8,000.00元" in short["message"] and "9,000.00元" in short["message"]
    assert "1,000.00元" in short["message"]
    assert short["message"].endswith(f"依据：{cite(DEFAULT, 'PREPAY_RECOVERY_SHORT')}。")
    assert "本口径归还进度" in short["message"]  # the recovery steps are the profile's choice
    under = found[("H2", "2025-06", "PREPAY_UNDER_DISBURSED")]
    assert (under["severity"], under["metric_value"], under["threshold_value"]) == ("high", 20000, 30000)
    assert "10,000.00元" in under["message"]

    rows = ledger(engine)
    assert set(rows) == {("H1", "2025-01-01", 6), ("H2", "2025-01-01", 6)}
    h1, h2 = rows[("H1", "2025-01-01", 6)], rows[("H2", "2025-01-01", 6)]
    assert money(h1, "agreed_amount_total", "disbursed", "recovered", "required_disbursement",
                 "required_recovery", "disbursement_gap", "recovery_gap") == (
        Decimal("100000.00"), Decimal("30000.00"), Decimal("8000.00"), Decimal("30000.00"),
        Decimal("9000.00"), Decimal("0.00"), Decimal("1000.00"))
    assert money(h2, "disbursed", "required_disbursement", "required_recovery", "recovery_gap") == (
        Decimal("20000.00"), Decimal("30000.00"), Decimal("6000.00"), Decimal("-2000.00"))
    assert (h1["period"], h1["branch_code"], h1["milestone_day"], h1["profile"]) == (
        "2025-06", "B1", dt.date(2025, 6, 30), "default")
    assert result.written.by_rule == {"PREPAY_RECOVERY_SHORT": 1, "PREPAY_UNDER_DISBURSED": 1}


def test_short_by_exactly_one_yuan_does_not_alert(engine):
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1"), agreement("A2", "H2"), agreement("A3", "M1"),
                        agreement("A4", "P1")],
            prepayments=[txn("T1", "H1", 29999, "2025-01-05"),  # required 30,000: short by 1
                         txn("T2", "H1", "2998.9", "2025-03-31", "recovery"),  # 10% of 29,999 = 2,999.9
                         txn("T3", "H2", "29998.99", "2025-01-05"),  # short by 1.01
                         txn("T4", "H2", "2998.89", "2025-03-31", "recovery"),  # 1.009 short of 2,999.899
                         txn("T5", "M1", 30000, "2025-01-05"),
                         txn("T6", "M1", 31000, "2025-03-31", "recovery"),  # exactly 1,000 over: alerts
                         txn("T7", "P1", 30000, "2025-01-05"),
                         txn("T8", "P1", 30001, "2025-02-01", "recovery")]),  # 1 over: nothing
        )
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    found = open_alerts(engine)
    assert set(found) == {("H2", "2025-03", "PREPAY_UNDER_DISBURSED"),
                          ("H2", "2025-03", "PREPAY_RECOVERY_SHORT"),
                          ("M1", "2025-03", "PREPAY_OVER_RECOVERED")}
    over = found[("M1", "2025-03", "PREPAY_OVER_RECOVERED")]
    assert (over["severity"], over["metric_value"], over["threshold_value"]) == ("critical", 31000, 30000)
    assert "台账" in over["message"] and "1,000.00元" in over["message"]
    assert found[("H2", "2025-03", "PREPAY_RECOVERY_SHORT")]["threshold_value"] == Decimal("2999.899")


def test_transactions_dated_after_the_milestone_day_do_not_count(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1")],
                        prepayments=[txn("T1", "H1", 20000, "2025-03-31"),
                                     txn("T4", "H1", 2000, "2025-03-31", "recovery"),
                                     txn("T2", "H1", 10000, "2025-04-01"),
                                     txn("T3", "H1", 5000, "2025-04-01", "recovery")]))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    found = open_alerts(engine)
    assert set(found) == {("H1", "2025-03", "PREPAY_UNDER_DISBURSED")}
    row = ledger(engine)[("H1", "2025-01-01", 3)]
    assert money(row, "disbursed", "recovered") == (Decimal("20000.00"), Decimal("2000.00"))
    # the same facts seen from the month-6 milestone: both count now
    judge(engine, run_for(JUNE_RUN), DEFAULT)
    row = ledger(engine)[("H1", "2025-01-01", 6)]
    assert money(row, "disbursed", "recovered", "required_recovery") == (
        Decimal("30000.00"), Decimal("7000.00"), Decimal("9000.00"))


def test_only_milestones_in_the_judged_month_are_judged(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1")]))
    for day in (dt.date(2025, 3, 3), dt.date(2025, 5, 6), dt.date(2025, 8, 1)):  # Feb, Apr, Jul
        assert judge(engine, run_for(day), DEFAULT).details["milestones"] == 0
    assert ledger(engine) == {} and open_alerts(engine) == {}


# ------------------------------------------------------------------ profiles
def test_ningxia_2019_schedule_and_recovery_base(engine):
    # 50% from month 1, 100% from month 7; recovery 10/30/60/100% of agreed_amount_total,
    # capped at what was disbursed. Public institutions only.
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1"), agreement("A2", "M1"), agreement("A3", "P1")],
            prepayments=[txn("T1", "H1", 50000, "2025-01-05"),
                         txn("T2", "H1", 10000, "2025-03-31", "recovery"),
                         txn("T3", "H1", 29000, "2025-06-30", "recovery")],
        ))

    judge(engine, run_for(MARCH_RUN), NINGXIA)
    assert open_alerts(engine) == {}  # 50,000 ≥ 50%; 10,000 = 10% of 100,000
    row = ledger(engine)[("H1", "2025-01-01", 3)]
    assert money(row, "required_disbursement", "required_recovery") == (
        Decimal("50000.00"), Decimal("10000.00"))
    assert row["profile"] == "ningxia_2019"
    assert set(ledger(engine)) == {("H1", "2025-01-01", 3)}  # military/private not subjects

    judge(engine, run_for(JUNE_RUN), NINGXIA)
    assert open_alerts(engine) == {}  # still 50% due; 39,000 recovered of 30% × 100,000
    assert money(ledger(engine)[("H1", "2025-01-01", 6)], "required_disbursement", "required_recovery") == (
        Decimal("50000.00"), Decimal("30000.00"))

    judge(engine, run_for(SEPTEMBER_RUN), NINGXIA)
    found = open_alerts(engine)
    under = found[("H1", "2025-09", "PREPAY_UNDER_DISBURSED")]
    assert (under["metric_value"], under["threshold_value"]) == (50000, 100000)
    short = found[("H1", "2025-09", "PREPAY_RECOVERY_SHORT")]
    # 60% × 100,000 = 60,000, capped at the 50,000 disbursed
    assert (short["metric_value"], short["threshold_value"]) == (39000, 50000)
    assert "带量采购总金额" in short["message"] and "按已拨付计" in short["message"]


def test_default_profile_covers_every_ownership_with_the_disbursed_base(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "M1"), agreement("A3", "P1")],
                        prepayments=[txn("T1", "M1", 30000, "2025-01-05"),
                                     txn("T2", "P1", 30000, "2025-01-05"),
                                     txn("T3", "P1", 3000, "2025-03-01", "recovery")]))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    assert set(open_alerts(engine)) == {("H1", "2025-03", "PREPAY_UNDER_DISBURSED"),
                                        ("M1", "2025-03", "PREPAY_RECOVERY_SHORT")}
    assert money(ledger(engine)[("H1", "2025-01-01", 3)], "required_recovery") == (Decimal("0.00"),)


def test_schedule_steps_are_read_from_the_profile():
    settings = PrepaymentSettings.from_profile(NINGXIA)
    assert [(r["milestone_month"], r["disbursement_fraction"], r["recovery_fraction"])
            for r in settings.schedule_rows()] == [
        (3, Decimal("0.5"), Decimal("0.1")), (6, Decimal("0.5"), Decimal("0.3")),
        (9, Decimal("1.0"), Decimal("0.6")), (12, Decimal("1.0"), Decimal("1.0"))]
    assert settings.ownerships == ("public",) and settings.base_is_agreed
    default = PrepaymentSettings.from_profile(DEFAULT)
    assert not default.base_is_agreed and default.tolerance == 1 and default.final_milestone == 12


# ------------------------------------------------------------------ agreement years
def test_transactions_before_the_first_year_and_in_a_gap(engine):
    # Year 1: 2025-01-01 … 2025-06-30; year 2: 2025-09-01 … 2026-08-31.
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1", end="2025-06-30"),
                        agreement("A2", "H1", start="2025-09-01", end="2026-08-31")],
            prepayments=[txn("T1", "H1", 30000, "2024-12-20"),  # before year 1 → year 1
                         txn("T2", "H1", 50000, "2025-08-15"),  # in the gap → year 1
                         txn("T3", "H1", 20000, "2025-09-05"),  # year 2
                         txn("T4", "H1", 3000, "2025-03-31", "recovery"),
                         txn("T5", "H1", 2000, "2025-10-10", "recovery"),
                         txn("T6", "H1", 5000, "2026-09-10")],  # after the last year → year 2
        ))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    assert open_alerts(engine) == {}
    assert money(ledger(engine)[("H1", "2025-01-01", 3)], "disbursed") == (Decimal("30000.00"),)

    judge(engine, run_for(dt.date(2025, 12, 1)), DEFAULT)  # November: year 2's month 3
    (alert,) = open_alerts(engine).values()
    assert (alert["rule_code"], alert["metric_value"], alert["threshold_value"]) == (
        "PREPAY_UNDER_DISBURSED", 20000, 30000)  # the gap's 50,000 stays with year 1
    assert set(ledger(engine)) == {("H1", "2025-01-01", 3), ("H1", "2025-09-01", 3)}


def test_a_short_year_ends_with_a_final_milestone_at_period_end(engine):
    # 2025-01-01 … 2025-08-20: milestones 3 and 6, then one final milestone on 2025-08-20
    # with month 12's step (100% of the disbursed amount recovered).
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", end="2025-08-20")],
                        prepayments=[txn("T1", "H1", 30000, "2025-01-05"),
                                     txn("T2", "H1", 29000, "2025-08-20", "recovery"),
                                     txn("T3", "H1", 1000, "2025-08-21", "recovery")]))
    judge(engine, run_for(dt.date(2025, 9, 1)), DEFAULT)  # August
    (alert,) = open_alerts(engine).values()
    assert (alert["rule_code"], alert["milestone_month"], alert["period"]) == (
        "PREPAY_RECOVERY_SHORT", 12, "2025-08")
    assert (alert["metric_value"], alert["threshold_value"]) == (29000, 30000)
    assert "最后1个月" in alert["message"] and "2025-08-20" in alert["message"]
    row = ledger(engine)[("H1", "2025-01-01", 12)]
    assert row["milestone_day"] == dt.date(2025, 8, 20) and row["period"] == "2025-08"
    # months 9 and 12 do not come again
    assert judge(engine, run_for(SEPTEMBER_RUN), DEFAULT).details["milestones"] == 0
    assert judge(engine, run_for(dt.date(2026, 1, 5)), DEFAULT).details["milestones"] == 0


def test_a_year_ending_on_a_milestone_month_end_takes_the_final_step_there(engine):
    # 2025-01-01 … 2025-06-30: month 6 ends on period_end, so it is the final milestone.
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", end="2025-06-30")],
                        prepayments=[txn("T1", "H1", 30000, "2025-01-05"),
                                     txn("T2", "H1", 9000, "2025-06-30", "recovery")]))
    judge(engine, run_for(JUNE_RUN), DEFAULT)
    assert set(ledger(engine)) == {("H1", "2025-01-01", 12)}
    (alert,) = open_alerts(engine).values()
    assert (alert["rule_code"], alert["threshold_value"]) == ("PREPAY_RECOVERY_SHORT", 30000)


# ------------------------------------------------------------------ reruns and scope
def test_rerun_is_idempotent_and_corrected_data_resolves(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
                        prepayments=[txn("T1", "H1", 30000, "2025-01-05"),
                                     txn("T2", "H2", 20000, "2025-01-05")]))
    judge(engine, run_for(MARCH_RUN, run_id="first"), DEFAULT)
    first_alerts = [{k: row[k] for k in ALERT_COLUMNS} for row in all_alerts(engine)]
    first_ledger = ledger(engine)
    judge(engine, run_for(MARCH_RUN, run_id="second"), DEFAULT)
    assert [{k: row[k] for k in ALERT_COLUMNS} for row in all_alerts(engine)] == first_alerts
    assert ledger(engine) == first_ledger
    assert len(first_alerts) == 3 and len(first_ledger) == 2  # H1 recovery; H2 both

    with engine.begin() as conn:
        seed(conn, {"prepayments": [txn("T3", "H2", 10000, "2025-03-15"),
                                    txn("T4", "H1", 3000, "2025-03-31", "recovery"),
                                    txn("T5", "H2", 3000, "2025-03-31", "recovery")]})
    result = judge(engine, run_for(MARCH_RUN, run_id="corrected"), DEFAULT)
    assert result.written.resolved == 3 and open_alerts(engine) == {}
    assert money(ledger(engine)[("H2", "2025-01-01", 3)], "disbursed", "recovered", "disbursement_gap") == (
        Decimal("30000.00"), Decimal("3000.00"), Decimal("0.00"))


def test_branch_and_batch_scope_rewrite_only_their_own_ledger_rows_and_alerts(engine):
    other_batch = {"batch_code": "NB2", "batch_name": "第二批国家集采", "level": "national",
                   "category": "drug", "start_date": "2025-01-01", "cycle_months": 24}
    with engine.begin() as conn:
        seed(conn, city(batches=[other_batch],
                        agreements=[agreement("A1", "H1"), agreement("A2", "H2"),
                                    agreement("A3", "H1", batch="NB2")]))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    assert sum(a["status"] == "open" for a in all_alerts(engine)) == 3
    with engine.connect() as conn:
        assert len(conn.execute(select(prepayment_ledger)).all()) == 3

    with engine.begin() as conn:
        seed(conn, {"prepayments": [txn("T1", "H1", 30000, "2025-01-05"),
                                    txn("T2", "H2", 30000, "2025-01-05"),
                                    txn("T3", "H1", 30000, "2025-01-05", batch="NB2"),
                                    txn("T4", "H1", 3000, "2025-03-10", "recovery"),
                                    txn("T5", "H2", 3000, "2025-03-10", "recovery"),
                                    txn("T6", "H1", 3000, "2025-03-10", "recovery", batch="NB2")]})
    result = judge(engine, run_for(MARCH_RUN, run_id="b1-nb1", scope=Scope("B1", "NB1")), DEFAULT)
    assert result.details["milestones"] == 1 and result.written.resolved == 1
    with engine.connect() as conn:
        kept = {(r.institution_code, r.batch_code): r.disbursed
                for r in conn.execute(select(prepayment_ledger)).all()}
    assert {key: Decimal(value) for key, value in kept.items()} == {
        ("H1", "NB1"): 30000, ("H2", "NB1"): 0, ("H1", "NB2"): 0}
    assert {(a["institution_code"], a["batch_code"]) for a in all_alerts(engine) if a["status"] == "open"} == {
        ("H2", "NB1"), ("H1", "NB2")}


def test_ledger_spreadsheets_city_wide_and_per_branch(engine, output_dir):
    openpyxl = pytest.importorskip("openpyxl")
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2"), agreement("A3", "M1")],
                        prepayments=[txn("T1", "H1", 30000, "2025-01-05"),
                                     txn("T2", "H1", 3000, "2025-03-05", "recovery"),
                                     txn("T3", "M1", 30000, "2025-01-05")]))
    result = judge(engine, run_for(MARCH_RUN), DEFAULT)

    folder = workbook_folder("2025-03")
    assert folder == output_dir / "vbp_prepayment_reconciliation" / "2025-03"
    city_file, b1, b2 = (branch_file_path(folder, "预付对账台账", audience, "2025-03") for audience in ("CITY", "B1", "B2"))
    assert city_file.name == "预付对账台账_CITY_2025-03.xlsx"  # the city's ledger: one more audience
    assert result.attachments == {"CITY": [city_file], "B1": [b1], "B2": [b2]}
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (city_file, b1, b2))

    def sheet(path):  # a title block (rows 1–3), then the header
        header, *rows = [list(r) for r in openpyxl.load_workbook(path)["预付对账台账"].iter_rows(min_row=4, values_only=True)]
        return [dict(zip(header, row)) for row in rows]

    ledger_sheet = openpyxl.load_workbook(city_file)["预付对账台账"]
    assert ledger_sheet["A1"].value == "市医保局" and ledger_sheet["A2"].value == "医保基金预付款对账台账·预付对账台账（2025年3月）"
    assert "政策口径：" in ledger_sheet["A3"].value and "default" not in ledger_sheet["A3"].value
    assert [cell.number_format for cell in ledger_sheet[5]][10:17] == ["#,##0.00"] * 7
    assert "政策口径" not in [cell.value for cell in ledger_sheet[4]]

    city_rows = sheet(city_file)
    assert [(r["分局"], r["医疗机构代码"]) for r in city_rows] == [
        ("章贡分局", "H1"), ("章贡分局", "M1"), ("南康分局", "H2")]
    by_code = {r["医疗机构代码"]: r for r in city_rows}
    assert by_code["H2"]["预警"] == "医保基金预付款拨付不足"
    assert by_code["M1"]["预警"] == "预付款归还（冲抵）不足"
    assert by_code["H1"]["预警"] == "无"
    assert Decimal(str(by_code["M1"]["应归还（元）"])) == 3000
    assert [r["医疗机构代码"] for r in sheet(b2)] == ["H2"]
    assert [r["医疗机构代码"] for r in sheet(b1)] == ["H1", "M1"]

    # every agreement withdrawn: the month's ledger is empty and no stale file is left
    from vbp_monitor.model.schema import agreements
    with engine.begin() as conn:
        conn.execute(delete(agreements))
        conn.execute(delete(prepayments))
    result = judge(engine, run_for(MARCH_RUN, run_id="withdrawn"), DEFAULT)
    assert result.attachments == {} and not city_file.exists() and not b1.exists() and not b2.exists()
    assert ledger(engine) == {} and open_alerts(engine) == {}


def test_city_email_carries_the_city_ledger_and_under_disbursement(engine, smtp_server):
    from vbp_monitor.notify.mailer import notify_run

    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
                        prepayments=[txn("T1", "H1", 30000, "2025-01-05")]))
    run = run_for(MARCH_RUN)
    judged = judge(engine, run, DEFAULT)  # H1 recovery short (branch); H2 under-disbursed (city too)
    notify_run(engine, run, attachments=judged.attachments)

    (city_mail,) = smtp_server.to("city@example.org")
    assert "预付对账台账_CITY_2025-03.xlsx" in city_mail.attachments()
    assert "南康区人民医院" in city_mail.html()  # PREPAY_UNDER_DISBURSED is routed to the city
    (b1_mail,) = smtp_server.to("b1@example.org")
    assert set(b1_mail.attachments()) >= {"预付对账台账_B1_2025-03.xlsx"}
    assert "预付对账台账_B2_2025-03.xlsx" not in b1_mail.attachments()
    assert "南康区人民医院" not in b1_mail.html()
    (b2_mail,) = smtp_server.to("b2@example.org")
    assert "预付对账台账_B2_2025-03.xlsx" in b2_mail.attachments()


def test_large_amounts_exactly_at_the_tolerance_do_not_alert(engine):
    # 30% of 123,456,789.1234 = 37,037,036.73702 → 37,037,036.7370 due (money keeps 4 decimals);
    # H1 is short by exactly 1 yuan on both; H2 by 1.0001 (its 10% due rounds to 3,703,703.5737).
    # SQLite computes in REAL.
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "123456789.1234"), agreement("A2", "H2", "123456789.1234")],
                        prepayments=[txn("T1", "H1", "37037035.7370", "2025-01-05"),
                                     txn("T2", "H1", "3703702.5737", "2025-03-31", "recovery"),
                                     txn("T3", "H2", "37037035.7369", "2025-01-05"),
                                     txn("T4", "H2", "3703702.5736", "2025-03-31", "recovery")]))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    assert set(open_alerts(engine)) == {("H2", "2025-03", "PREPAY_UNDER_DISBURSED"),
                                        ("H2", "2025-03", "PREPAY_RECOVERY_SHORT")}


def test_overlapping_agreement_years_sharing_a_milestone_month_give_one_alert(engine):
    # A data error ingest should have quarantined; the run still completes, keeping the
    # larger shortfall, and the ledger keeps a row per year.
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1"),
                                    agreement("A2", "H1", 50000, start="2024-12-31", end="2025-12-30")]))
    result = judge(engine, run_for(MARCH_RUN), DEFAULT)
    assert result.details["milestones"] == 2 and result.written.raised == 1
    (alert,) = open_alerts(engine).values()
    assert alert["threshold_value"] == 30000


# ------------------------------------------------------------------ citations
def test_under_disbursement_cites_the_clause_of_the_profile_that_set_its_schedule(engine):
    # H1: 10,000 disbursed by month 3 — short under both profiles (30 % and 50 %).
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1")], prepayments=[txn("T1", "H1", 10000, "2025-01-05")]))

    judge(engine, run_for(MARCH_RUN, run_id="default"), DEFAULT)
    message = open_alerts(engine)[("H1", "2025-03", "PREPAY_UNDER_DISBURSED")]["message"]
    assert message.endswith(f"依据：{DEFAULT['prepayment']['citations']['PREPAY_UNDER_DISBURSED']}。")
    assert "集采常态化制度化责任清单 第12项" in message
    assert "宁政办规发〔2019〕11号" not in message  # the 50 % clause was not applied
    assert "30.00%" in message and "20,000.00元" in message

    judge(engine, run_for(MARCH_RUN, run_id="ningxia"), NINGXIA)
    message = open_alerts(engine)[("H1", "2025-03", "PREPAY_UNDER_DISBURSED")]["message"]
    assert message.endswith("依据：宁政办规发〔2019〕11号 五(三)8。")
    assert "责任清单" not in message
    assert "50.00%" in message and "40,000.00元" in message


def test_figures_in_messages_are_rounded_toward_the_breach(engine):
    # required 30% × 100,000.01 = 30,000.003 → 30,000.0030; disbursed 28,999.996:
    # short by 1,000.007 → shown 1,000.01元 (up), the disbursed amount 28,999.99元 (down).
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A1", "H1", "100000.01")],
                        prepayments=[txn("T1", "H1", "28999.996", "2025-01-05")]))
    judge(engine, run_for(MARCH_RUN), DEFAULT)
    under = open_alerts(engine)[("H1", "2025-03", "PREPAY_UNDER_DISBURSED")]
    assert (under["metric_value"], under["threshold_value"]) == (Decimal("28999.996"), Decimal("30000.003"))
    assert "已拨付 28,999.99元" in under["message"] and "即 30,000.00元" in under["message"]
    assert "少拨付 1,000.01元" in under["message"] and "超过容差 1.00元" in under["message"]
