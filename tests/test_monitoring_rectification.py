"""DAG 2 continued · RECTIFICATION_OVERDUE (seed 002 §二(三): 拒不整改的，将有关线索移交同级
行风主管部门和纪检监察部门): consecutive months with an open alert of the same subject, read
from the alerts table after the month's other alerts are written; examples.md 10, on both
databases."""
from decimal import Decimal

import pytest
from sqlalchemy import text

import builders as b
from vbp_monitor.alerts.store import AlertStore, Scope
from vbp_monitor.core.catalog import routed_to_city
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import clear_facts_cache
from vbp_monitor.rules.monitoring import DAG_ID, judge

pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
RECTIFICATION = "RECTIFICATION_OVERDUE"
GENERIC = b.GENERIC  # 氨氯地平


def high_priced(order_id: str, day: str, institution: str = "H1") -> dict:
    """A purchase of the non-selected 氨氯地平 above the selected price (NON_SELECTED_HIGH_PRICE)."""
    return b.order(order_id, institution, 100, day, product="P-AML-N", price="0.60")


def rectification(engine) -> dict:
    return {(row["period"], row["institution_code"], row["generic_name"] or row["category"]): row
            for row in b.open_alerts(engine, RECTIFICATION)}


def figures(engine) -> dict:
    return {key: (row["severity"], b.num(row["metric_value"]), b.num(row["threshold_value"]))
            for key, row in rectification(engine).items()}


def plant(engine, period: str, code: str, severity: str = "warning", **subject) -> None:
    """An open alert of ``period`` as that month's run would have written it."""
    candidate = {"rule_code": code, "severity": severity, "branch_code": "B1", "institution_code": "H1",
                 "metric_value": Decimal(1), "threshold_value": Decimal(2), "message": f"{code} {period}",
                 **subject}
    with engine.begin() as conn:
        AlertStore(DAG_ID, f"planted__{period}", period).replace(conn, [code], [candidate])


def seed_months(engine, months: list[str], **extra) -> None:
    with engine.begin() as conn:
        b.seed(conn, b.city(agreements=[b.agreement("A-H1", "H1")],
                            orders=[high_priced(f"H1-{m}", f"{m}-10") for m in months], **extra))


def test_examples_10_three_months_in_a_row_with_different_codes(engine):
    plant(engine, "2025-01", "SELECTED_SHARE_LOW", batch_code="NB1", generic_name=GENERIC)
    plant(engine, "2025-02", "NON_SELECTED_HIGH_PRICE", generic_name=GENERIC)
    seed_months(engine, ["2025-03"])

    judge(engine, b.run_for("2025-03"), PROFILE)

    assert figures(engine) == {("2025-03", "H1", GENERIC): ("critical", Decimal(3), Decimal(3))}
    alert = rectification(engine)[("2025-03", "H1", GENERIC)]
    assert alert["branch_code"] == "B1" and alert["category"] is None and alert["product_code"] is None
    assert routed_to_city(RECTIFICATION, alert["severity"])
    message = alert["message"]
    assert message.startswith("【按月监测·连续预警拒不整改（移交线索）】第一人民医院（H1）：氨氯地平自2025年1月起连续 3 个月")
    # month by month, the codes raised (March: the share and the price rule of the data)
    assert ("2025年1月：中选产品采购数量占比低于约定比例；2025年2月：采购高价非中选产品；"
            "2025年3月：中选产品采购数量占比低于约定比例、采购高价非中选产品") in message
    assert "下一步：移交行风主管部门和纪检监察部门" in message and "赣市医保字〔2023〕28号 二(三)" in message


def test_runs_month_by_month_and_a_rerun_does_not_count_its_own(engine):
    seed_months(engine, ["2025-01", "2025-02", "2025-03", "2025-04"])
    for month in ("2025-01", "2025-02", "2025-03"):
        judge(engine, b.run_for(month), PROFILE)
    assert figures(engine) == {("2025-03", "H1", GENERIC): ("critical", Decimal(3), Decimal(3))}

    before = b.business(b.all_alerts(engine))
    judge(engine, b.run_for("2025-03", run_id="rerun"), PROFILE)
    assert b.business(b.all_alerts(engine)) == before

    judge(engine, b.run_for("2025-04"), PROFILE)
    assert figures(engine)[("2025-04", "H1", GENERIC)] == ("critical", Decimal(4), Decimal(3))


def test_a_resolved_alert_breaks_the_run(engine):
    """examples.md 10: February's alert resolved by a rerun → the run restarts in March."""
    seed_months(engine, ["2025-01", "2025-02", "2025-03"])
    for month in ("2025-01", "2025-02", "2025-03"):
        judge(engine, b.run_for(month), PROFILE)
    assert set(rectification(engine)) == {("2025-03", "H1", GENERIC)}

    # corrected platform files: February's purchase was cancelled (the facts cache is cleared)
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET cancelled = TRUE WHERE order_id = 'H1-2025-02'"))
        clear_facts_cache(conn)
    judge(engine, b.run_for("2025-02", run_id="corrected"), PROFILE)
    assert not [row for row in b.open_alerts(engine) if row["period"] == "2025-02"]
    judge(engine, b.run_for("2025-03", run_id="corrected"), PROFILE)
    assert rectification(engine) == {}


def test_a_month_not_judged_breaks_the_run(engine):
    seed_months(engine, ["2025-01", "2025-02", "2025-03"])
    judge(engine, b.run_for("2025-01"), PROFILE)
    judge(engine, b.run_for("2025-03"), PROFILE)
    assert rectification(engine) == {}
    judge(engine, b.run_for("2025-02"), PROFILE)
    judge(engine, b.run_for("2025-03", run_id="again"), PROFILE)
    assert set(rectification(engine)) == {("2025-03", "H1", GENERIC)}


def test_online_rate_subjects_and_other_subjects_keep_apart(engine):
    # H1 × drug: ONLINE_RATE_LOW in January and February, March from the data (all offline)
    for period in ("2025-01", "2025-02"):
        plant(engine, period, "ONLINE_RATE_LOW", severity="high", category="drug")
    # H1 × 阿托伐他汀: only two months; the two months of 氨氯地平 do not make it three
    plant(engine, "2025-02", "NON_SELECTED_HIGH_PRICE", generic_name="阿托伐他汀")
    plant(engine, "2025-02", "PROGRESS_BEHIND", severity="high", batch_code="NB1", generic_name=GENERIC)
    # a code that is not watched does not count (NON_EVALUATED_PURCHASE)
    plant(engine, "2025-02", "NON_EVALUATED_PURCHASE", generic_name="二甲双胍")
    plant(engine, "2025-01", "NON_EVALUATED_PURCHASE", generic_name="二甲双胍")
    with engine.begin() as conn:
        b.seed(conn, b.city(orders=[
            b.order("H1-OFF", "H1", 100, "2025-03-10", channel="offline"),
            b.order("H1-ATV", "H1", 100, "2025-03-10", product="P-AML-N", price="0.60"),
        ]))

    judge(engine, b.run_for("2025-03"), PROFILE)

    assert figures(engine) == {("2025-03", "H1", "drug"): ("critical", Decimal(3), Decimal(3))}
    alert = rectification(engine)[("2025-03", "H1", "drug")]
    assert alert["generic_name"] is None and "药品网采率自2025年1月起" in alert["message"]
    assert "2025年3月：网采率不达标" in alert["message"]


def test_counted_back_at_most_twelve_months_and_the_profile_months(engine):
    for year, month in [(2024, m) for m in range(2, 13)] + [(2025, 1), (2025, 2)]:
        plant(engine, f"{year}-{month:02d}", "NON_SELECTED_HIGH_PRICE", generic_name=GENERIC)
    seed_months(engine, ["2025-03"])
    judge(engine, b.run_for("2025-03"), PROFILE)
    assert figures(engine) == {("2025-03", "H1", GENERIC): ("critical", Decimal(12), Decimal(3))}

    # two months in the profile: February's own alert (with January's) is already a run
    shorter = {**PROFILE, "monitoring": {**PROFILE["monitoring"], "rectification_months": 2}}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alerts"))
    plant(engine, "2025-02", "NON_SELECTED_HIGH_PRICE", generic_name=GENERIC)
    judge(engine, b.run_for("2025-03", run_id="shorter"), shorter)
    assert figures(engine) == {("2025-03", "H1", GENERIC): ("critical", Decimal(2), Decimal(2))}
    with pytest.raises(ValueError, match="rectification_months"):
        judge(engine, b.run_for("2025-03"), {**PROFILE, "monitoring": {**PROFILE["monitoring"],
                                                                      "rectification_months": 13}})


def test_a_branch_run_judges_its_branch_and_a_batch_run_leaves_the_alert(engine):
    for period in ("2025-01", "2025-02"):
        plant(engine, period, "NON_SELECTED_HIGH_PRICE", generic_name=GENERIC)
        with engine.begin() as conn:
            AlertStore(DAG_ID, f"planted__{period}", period).replace(conn, ["NON_SELECTED_HIGH_PRICE"], [
                {"rule_code": "NON_SELECTED_HIGH_PRICE", "severity": "warning", "branch_code": "B1",
                 "institution_code": "H1", "generic_name": GENERIC, "metric_value": 1, "threshold_value": 2,
                 "message": "H1"},
                {"rule_code": "NON_SELECTED_HIGH_PRICE", "severity": "warning", "branch_code": "B2",
                 "institution_code": "H2", "generic_name": GENERIC, "metric_value": 1, "threshold_value": 2,
                 "message": "H2"}])
    with engine.begin() as conn:
        b.seed(conn, b.city(agreements=[b.agreement("A-H1", "H1")],
                            orders=[high_priced("H1-M", "2025-03-10"), high_priced("H2-M", "2025-03-10", "H2")]))

    judge(engine, b.run_for("2025-03", scope=Scope(branch_code="B2")), PROFILE)
    assert set(rectification(engine)) == {("2025-03", "H2", GENERIC)}
    judge(engine, b.run_for("2025-03"), PROFILE)
    assert set(rectification(engine)) == {("2025-03", "H1", GENERIC), ("2025-03", "H2", GENERIC)}
    judge(engine, b.run_for("2025-03", run_id="batch", scope=Scope(batch_code="NB1")), PROFILE)
    assert set(rectification(engine)) == {("2025-03", "H1", GENERIC), ("2025-03", "H2", GENERIC)}
