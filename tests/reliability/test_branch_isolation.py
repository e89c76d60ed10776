"""Branch isolation, property-based (issue 10 › a fault suite with figures).

Over random assignments of institutions to branches and random alerts (hypothesis), every
email a branch receives from the real loopback SMTP server — its HTML, its alert workbook and
the per-branch files attached to it — names only that branch's own institutions, never
another branch's (by code or by name); and every alert reaches its branch once (audit_mail).
"""
from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from builders import seed
from fixtures_smtp import alert, audit_mail, raise_alerts
from vbp_monitor.core.periods import judged_month
from vbp_monitor.model.schema import alert_deliveries, alerts, branches, institutions
from vbp_monitor.notify.mailer import notify_run
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.outputs.spreadsheets import write_branch_files

DAG = "vbp_monthly_monitoring"
RULES = [("PAYMENT_OVERDUE", "critical"), ("PROGRESS_BEHIND", "warning"), ("OFFLINE_NOT_FILED", "high"),
         ("PROGRESS_BEHIND", "high")]
MAX_INSTITUTIONS = 9


def code(i: int) -> str:
    return f"I{i:02d}Q"  # never a substring of another code, a hash or a date


def name(i: int) -> str:
    return f"第{i:02d}号医院"


@st.composite
def cities(draw):
    """(branch of each institution, alerts as (institution, rule index, figure))."""
    branch_count = draw(st.integers(2, 4))
    count = draw(st.integers(2, MAX_INSTITUTIONS))
    assignment = draw(st.lists(st.integers(1, branch_count), min_size=count, max_size=count))
    raised = draw(st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, len(RULES) - 1),
                                     st.integers(1, 999)), min_size=1, max_size=12, unique_by=lambda a: (a[0], a[1])))
    return branch_count, assignment, raised


def city_tables(branch_count: int, assignment: list[int]) -> dict[str, list[dict]]:
    rows = [{"branch_code": "CITY", "branch_name": "市医保局", "level": "city", "emails": "city@example.org"}]
    rows += [{"branch_code": f"B{b}", "branch_name": f"分局{b}", "level": "branch", "emails": f"b{b}@example.org"}
             for b in range(1, branch_count + 1)]
    return {"branches": rows, "institutions": [
        {"institution_code": code(i), "institution_name": name(i), "branch_code": f"B{b}", "ownership": "public"}
        for i, b in enumerate(assignment)]}


def texts_of(mail) -> str:
    """Everything a reader of the email sees: the HTML, the attachments' names and cells."""
    from openpyxl import load_workbook

    parts = [mail.html(), *mail.attachments()]
    for content in mail.attachments().values():
        for sheet in load_workbook(io.BytesIO(content), read_only=True).worksheets:
            for row in sheet.iter_rows(values_only=True):
                parts.extend(str(value) for value in row if value is not None)
    return "\n".join(parts)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_no_branch_is_ever_mailed_another_branchs_institution(engine, smtp_server, tmp_path, fault_table):
    period = judged_month(dt.date(2025, 7, 1))
    figures = {"examples": 0, "lost": 0, "duplicates": 0, "mislabelled": 0, "leaks": 0, "mails": 0}

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(cities())
    def example(city):
        branch_count, assignment, raised = city
        figures["examples"] += 1
        smtp_server.clear()
        with engine.begin() as conn:
            for table in (alert_deliveries, alerts, institutions, branches):
                conn.execute(delete(table))
            seed(conn, city_tables(branch_count, assignment))
            stored = dict(conn.execute(select(institutions.c.institution_code, institutions.c.branch_code)).all())
        run = RunContext.for_test(DAG, period, run_id=f"scheduled__{figures['examples']}")
        candidates = [alert(RULES[rule][0], code(i), stored[code(i)], RULES[rule][1], order_id=f"O-{code(i)}-{rule}",
                            metric_value=str(figure), message=f"{name(i)}（{code(i)}）指标 {figure}")
                      for i, rule, figure in raised]
        raise_alerts(engine, run, candidates)
        # per-branch files as the rules write them: one workbook per branch of its own alerts
        sheets: dict[str, dict] = {}
        for i, _rule, figure in raised:
            book = sheets.setdefault(stored[code(i)], {"明细": (["机构代码", "医疗机构", "指标"], [])})
            book["明细"][1].append([code(i), name(i), figure])
        folder = tmp_path / f"out{figures['examples']}"
        files = write_branch_files(folder, "执行报表", period.label, sheets)
        notify_run(engine, run, attachments=files)

        for mail in smtp_server.messages:
            figures["mails"] += 1
            if not (mail.audience or "").startswith("branch:"):
                continue
            branch = mail.audience.split(":", 1)[1]
            seen = texts_of(mail)
            others = [i for i in range(len(assignment)) if stored[code(i)] != branch]
            leaks = [code(i) for i in others if code(i) in seen or name(i) in seen]
            figures["leaks"] += len(leaks)
            assert not leaks, (branch, leaks)
            assert mail.rcpt_tos == [f"{branch.lower()}@example.org"]
        audit = audit_mail(engine, smtp_server)
        figures["lost"] += audit.lost
        figures["duplicates"] += audit.duplicates
        figures["mislabelled"] += audit.mislabelled
        assert (audit.lost, audit.duplicates, audit.mislabelled) == (0, 0, 0), audit

    try:
        example()
    finally:
        fault_table.append({
            "case": f"random branch assignments ({figures['examples']} examples, {figures['mails']} emails)",
            "db": engine.dialect.name, "faults": figures["examples"], "expected": "own institutions only",
            "ended": "no leak" if not figures["leaks"] else f"{figures['leaks']} leaks", "lost": figures["lost"],
            "duplicates": figures["duplicates"], "mislabelled": figures["mislabelled"],
            "mismatched": figures["leaks"]})
