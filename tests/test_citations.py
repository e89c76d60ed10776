"""Every message cites the clause that sets its rule as applied to that case (domain.md ›
Citing the policy), and no clause whose rule it did not apply.

``EXPECTED`` is written from domain.md and the seeds, not read from the profiles: a profile
that cites the 30-day clause (seed 001 §五(三)9) for a public hospital, or the 50 % clause
(seed 001 §五(三)8) for the default 30 % disbursement, fails here.

Seeds: 000 责任清单 (items 11, 12) · 001 宁政办规发〔2019〕11号 · 002 赣市医保字〔2023〕28号 ·
003 陕西省医用耗材集中带量采购和使用工作实施方案 · 004 韶医保〔2019〕96号.

``assert_cited_as_applied`` checks real messages: here those of the rules run on the small
city under both profiles (both databases), and in tests/test_e2e_demo.py every alert of the
demo year.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from builders import city, seed
from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.labels import OWNERSHIP_ZH
from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.profiles import cite, load_profile
from vbp_monitor.model.schema import alerts, institutions
from vbp_monitor.orchestration.run_context import RunContext

PROFILES = ("default", "ningxia_2019")
OWNERSHIPS = tuple(OWNERSHIP_ZH)  # public, military, private

GANZHOU = "赣市医保字〔2023〕28号"
NINGXIA = "宁政办规发〔2019〕11号"
LIST_11 = "集采常态化制度化责任清单 第11项"
LIST_12 = "集采常态化制度化责任清单 第12项"
SHAANXI_5_5 = "陕西省医用耗材集中带量采购和使用工作实施方案 五(五)"
SHAOGUAN = "韶医保〔2019〕96号"

# The recovery steps of the default profile are its own choice, after seed 001 §五(三)8.
PROFILE_RECOVERY = f"本口径归还进度（参照{NINGXIA} 五(三)8 的归还节奏）"
DEFAULT = {
    "DATA_QUALITY": "平台数据接口约定（数据契约）",
    "ENTRY_NOT_PURCHASED": f"{GANZHOU} 二(二)",
    "ENTRY_BEHIND_AGREEMENT": f"{GANZHOU} 二(二)",
    "PROGRESS_BEHIND": f"{GANZHOU} 二(三)",
    "SELECTED_SHARE_LOW": f"{GANZHOU} 二(三)、附件1",
    "NON_SELECTED_HIGH_PRICE": f"{GANZHOU} 二(三)",
    "ONLY_NON_SELECTED": f"{GANZHOU} 二(三)",
    "ONLINE_RATE_LOW": f"{GANZHOU} 二(四)、附件1",
    "BRANCH_ONLINE_RATE_LOW": f"{GANZHOU} 二(四)、附件1",
    "OFFLINE_NOT_FILED": f"{GANZHOU} 二(四)",
    "OFFLINE_FILED_LATE": f"{GANZHOU} 二(四)",
    "NON_EVALUATED_PURCHASE": f"{NINGXIA} 五(一)4；{SHAOGUAN} 二(一)",
    # public: end of the month after acceptance; military and private: 30 days
    "PAYMENT_OVERDUE": {"public": f"{LIST_11}；{SHAANXI_5_5}",
                        "military": f"{NINGXIA} 五(三)9", "private": f"{NINGXIA} 五(三)9"},
    # the 30 % disbursement (never seed 001's 50 %)
    "PREPAY_UNDER_DISBURSED": f"{LIST_12}；{SHAANXI_5_5}；{SHAOGUAN} 二(三)",
    "PREPAY_RECOVERY_SHORT": PROFILE_RECOVERY,
    "PREPAY_OVER_RECOVERED": PROFILE_RECOVERY,
    "ANNUAL_REPORT_DUE": f"{GANZHOU} 三(二)",
    "ANNUAL_REPORT_MISSING": f"{GANZHOU} 三(二)",
    "ANNUAL_REPORT_LATE": f"{GANZHOU} 三(二)",
    "ANNUAL_REPORT_INCOMPLETE": f"{GANZHOU} 三(二)、附件2",
    "REPORT_BELOW_80_NO_EXPLANATION": f"{GANZHOU} 二(一)",
    "REPORT_BELOW_80": f"{GANZHOU} 二(一)",
    "REPORT_BELOW_HISTORY": f"{GANZHOU} 二(一)",
    "HISTORY_NOT_REPORTED": f"{GANZHOU} 二(一)",
    "ORDER_RESPONSE_OVERDUE": f"{GANZHOU} 二(六)",
    "ORDER_RESPONSE_ESCALATED": f"{GANZHOU} 二(六)",
    # the selected maker supplies at the selected price to the end of the cycle (中选价: list item 4)
    "SELECTED_PRICE_EXCEEDED": f"{GANZHOU} 二(五)；集采常态化制度化责任清单 第4项",
    "SANCTIONED_SUPPLIER_PURCHASE": f"{SHAOGUAN} 二(二)",
    "RECTIFICATION_OVERDUE": f"{GANZHOU} 二(三)",
    "ASSESSMENT_FAILED": f"{GANZHOU} 二(八)、附件1",
    "BRANCH_ASSESSMENT_FAILED": f"{GANZHOU} 二(八)、附件1",
}
# seed 001 sets the 50 % / full prepayment and the 10-20-30-40 % recovery itself
EXPECTED = {
    "default": DEFAULT,
    "ningxia_2019": {**DEFAULT, **dict.fromkeys(
        ("PREPAY_UNDER_DISBURSED", "PREPAY_RECOVERY_SHORT", "PREPAY_OVER_RECOVERED"), f"{NINGXIA} 五(三)8")},
}


def expected_clause(profile_name: str, code: str, ownership: str | None) -> str:
    clause = EXPECTED[profile_name][code]
    if isinstance(clause, dict):
        assert ownership in clause, f"{code}: the clause depends on the ownership, the alert has none"
        return clause[ownership]
    return clause


def _all_clauses(profile_name: str) -> set[str]:
    return {clause for value in EXPECTED[profile_name].values()
            for clause in (value.values() if isinstance(value, dict) else [value])}


def cited_in(message: str) -> str:
    """The clause a message cites: after its one 「依据：」, up to the closing 「。」."""
    assert message.count("依据：") == 1, message
    head, clause = message.split("依据：")
    assert clause.endswith("。"), message
    return clause.removesuffix("。")


def assert_cited_as_applied(rows, ownership_of: dict[str, str], profile_name: str = "default") -> set[str]:
    """Every alert's message cites exactly its rule's clause for its institution's ownership,
    and no other rule's clause anywhere. Returns the rule codes checked."""
    profile = load_profile(profile_name)
    others = _all_clauses(profile_name)
    checked = set()
    for row in rows:
        code, message = row["rule_code"], row["message"]
        ownership = ownership_of.get(row.get("institution_code") or "")
        expected = expected_clause(profile_name, code, ownership)
        assert cited_in(message) == expected, (code, ownership, message)
        variant = ownership if isinstance(EXPECTED[profile_name][code], dict) else None
        assert expected == cite(profile, code, variant)
        for clause in others - {expected}:
            if clause not in expected:
                assert clause not in message, (code, ownership, clause, message)
        checked.add(code)
    return checked


# ------------------------------------------------------------------ the profiles
def test_every_rule_of_the_catalog_has_its_expected_clause():
    # a new rule code must say here which clause sets it (and, if any, by which case)
    assert set(DEFAULT) == set(RULES), set(RULES) ^ set(DEFAULT)


@pytest.mark.parametrize("profile_name", PROFILES)
@pytest.mark.parametrize("code", sorted(DEFAULT))
def test_the_profile_cites_the_clause_of_each_rule_and_ownership(profile_name, code):
    profile = load_profile(profile_name)
    for ownership in OWNERSHIPS:
        expected = expected_clause(profile_name, code, ownership)
        assert cite(profile, code, ownership) == expected, (profile_name, code, ownership)
    if not isinstance(EXPECTED[profile_name][code], dict):
        assert cite(profile, code) == EXPECTED[profile_name][code]


def test_the_payment_deadline_and_the_prepayment_never_cite_each_others_clauses():
    default = load_profile("default")
    public = cite(default, "PAYMENT_OVERDUE", "public")
    assert "五(三)9" not in public and "第11项" in public and "五(五)" in public
    for ownership in ("military", "private"):
        assert cite(default, "PAYMENT_OVERDUE", ownership) == f"{NINGXIA} 五(三)9"
    disbursement = cite(default, "PREPAY_UNDER_DISBURSED")
    assert "五(三)8" not in disbursement and NINGXIA not in disbursement  # the 50 % clause
    assert cite(default, "PREPAY_RECOVERY_SHORT").startswith("本口径")  # the profile's choice
    assert cite(load_profile("ningxia_2019"), "PREPAY_UNDER_DISBURSED") == f"{NINGXIA} 五(三)8"


# ------------------------------------------------------------------ messages of the rules
def _alerts_and_ownership(engine) -> tuple[list[dict], dict[str, str]]:
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(select(alerts).where(alerts.c.status == "open")).mappings()]
        ownership = dict(conn.execute(select(institutions.c.institution_code, institutions.c.ownership)).all())
    return rows, ownership


@pytest.mark.usefixtures("output_dir")
@pytest.mark.parametrize("profile_name", PROFILES)
def test_payment_and_prepayment_messages_cite_the_clause_of_the_case(engine, profile_name):
    """Public (H1, H2), military (M1) and private (P1) institutions, overdue and short of
    their prepayment, judged under each profile."""
    from test_monitoring_deadlines import accepted
    from test_prepayment import agreement, txn
    from vbp_monitor.rules import monitoring, prepayment

    profile = load_profile(profile_name)
    members = ("H1", "H2", "M1", "P1")
    with engine.begin() as conn:
        seed(conn, city(
            orders=[accepted(f"UNPAID-{code}", code, "2025-01-20") for code in members],
            agreements=[agreement(f"A-{code}", code) for code in members],
            prepayments=[txn(f"T-{code}", code, 10000, "2025-01-05") for code in members],
        ))
    monitoring.judge(engine, RunContext.for_test("vbp_monthly_monitoring", judged_month(dt.date(2025, 3, 3))),
                     profile)
    prepayment.judge(engine, RunContext.for_test(prepayment.DAG_ID, judged_month(dt.date(2025, 4, 1))), profile)

    rows, ownership = _alerts_and_ownership(engine)
    payments = {row["institution_code"] for row in rows if row["rule_code"] == "PAYMENT_OVERDUE"}
    assert payments == set(members)
    under = {row["institution_code"] for row in rows if row["rule_code"] == "PREPAY_UNDER_DISBURSED"}
    # default: every ownership; ningxia_2019: public institutions only
    assert under == (set(members) if profile_name == "default" else {"H1", "H2"})
    assert assert_cited_as_applied(rows, ownership, profile_name) >= {"PAYMENT_OVERDUE", "PREPAY_UNDER_DISBURSED"}


@pytest.mark.usefixtures("output_dir")
@pytest.mark.parametrize("profile_name", PROFILES)
def test_sweep_and_review_messages_cite_their_clause_under_each_profile(engine, profile_name):
    from test_entry_sweep import agreement as sweep_agreement
    from test_entry_sweep import purchase as sweep_purchase
    from test_volume_review import purchase as history_purchase
    from test_volume_review import report
    from vbp_monitor.rules import entry_sweep, volume_review

    profile = load_profile(profile_name)
    with engine.begin() as conn:
        seed(conn, city(
            agreements=[sweep_agreement("A1", "H1"), sweep_agreement("A2", "H2")],
            orders=[sweep_purchase("O1", "H2", 100), *(history_purchase(f"O-{code}", code, 1000)
                                                      for code in ("H1", "H2", "M1", "P1"))],
            volume_reports=[report("R1", "H1", 500), report("R2", "H2", 700, explanation="门诊量下降"),
                            report("R3", "M1", 900)],
        ))
    entry_sweep.judge(engine, RunContext.for_test(entry_sweep.DAG_ID, judged_month(dt.date(2025, 4, 1))), profile)
    volume_review.judge(engine, RunContext.for_test(volume_review.DAG_ID, judged_month(dt.date(2024, 12, 2))),
                        profile)

    rows, ownership = _alerts_and_ownership(engine)
    assert assert_cited_as_applied(rows, ownership, profile_name) == {
        "ENTRY_NOT_PURCHASED", "ENTRY_BEHIND_AGREEMENT", "REPORT_BELOW_80_NO_EXPLANATION", "REPORT_BELOW_80",
        "REPORT_BELOW_HISTORY", "HISTORY_NOT_REPORTED"}


def assert_demo_citations(warehouse_url: str, profile_name: str = "default") -> set[str]:
    """Every alert of a warehouse (the demo year's: tests/test_e2e_demo.py) cites as applied."""
    from sqlalchemy import create_engine

    engine = create_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(select(alerts)).mappings()]
            ownership = dict(conn.execute(select(institutions.c.institution_code, institutions.c.ownership)).all())
    finally:
        engine.dispose()
    return assert_cited_as_applied(rows, ownership, profile_name)
