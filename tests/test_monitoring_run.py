"""DAG 2 · a monitoring run as a whole: reruns, corrections, operator scope, parallel
backfills, and the branches' execution reports (带量执行报表)."""
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update

from builders import (
    agreement,
    all_alerts,
    batch,
    business,
    city,
    institution,
    metrics,
    num,
    open_alerts,
    order,
    product,
    run_for,
    seed,
)
from vbp_monitor.alerts.store import Scope
from vbp_monitor.core.profiles import load_profile
from vbp_monitor.model.schema import clear_facts_cache
from vbp_monitor.model.schema import orders as orders_table
from vbp_monitor.model.schema import purchase_facts as facts_table
from vbp_monitor.outputs.execution_report import report_path
from vbp_monitor.rules.monitoring import CODES, judge

# every test here writes spreadsheets: into its own tmp folder (conftest.output_dir)
pytestmark = pytest.mark.usefixtures("output_dir")

PROFILE = load_profile("default")
YEAR = dict(start="2025-01-01", end="2025-12-31", quantity=12000)


def busy_city():
    """Every rule group raises something in both branches in June 2025."""
    return city(
        agreements=[agreement("A-H1", "H1", **{**YEAR, "quantity": 1200}),
                    agreement("A-H2", "H2", **{**YEAR, "quantity": 1200})],
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


def snapshot(engine, period):
    with engine.connect() as conn:
        facts = sorted(tuple(str(v) for v in row) for row in conn.execute(select(facts_table)))
    rows = {key: {k: (num(v) if isinstance(v, (float, Decimal)) else v) for k, v in row.items()}
            for key, row in metrics(engine, period).items()}
    return business(all_alerts(engine)), rows, facts


def test_a_rerun_for_the_same_month_changes_nothing(engine):
    with engine.begin() as conn:
        seed(conn, busy_city())

    first = judge(engine, run_for("2025-06", run_id="run-1"), PROFILE)
    before = snapshot(engine, "2025-06")
    second = judge(engine, run_for("2025-06", run_id="run-2"), PROFILE)

    assert snapshot(engine, "2025-06") == before
    assert first.written.new == first.written.raised > 0
    assert second.written.new == 0 and second.written.resolved == 0
    assert set(first.written.by_rule) == {
        "PROGRESS_BEHIND", "SELECTED_SHARE_LOW", "NON_SELECTED_HIGH_PRICE", "ONLY_NON_SELECTED",
        "ONLINE_RATE_LOW", "BRANCH_ONLINE_RATE_LOW", "PAYMENT_OVERDUE", "OFFLINE_NOT_FILED",
    }
    assert {row["rule_code"] for row in open_alerts(engine)} <= set(CODES)


def test_a_corrected_order_then_a_rerun_resolves_the_alert(engine):
    with engine.begin() as conn:
        seed(conn, city(agreements=[agreement("A-H1", "H1", "2025-06-01", "2025-07-31", 1000)],
                        orders=[order("O1", "H1", 100, "2025-06-10")]))
    judge(engine, run_for("2025-06"), PROFILE)
    (alert,) = open_alerts(engine, "PROGRESS_BEHIND")
    assert num(alert["metric_value"]) == Decimal("0.1")

    # the platform re-delivers the order with the right quantity; ingest clears the facts
    with engine.begin() as conn:
        conn.execute(update(orders_table).where(orders_table.c.order_id == "O1")
                     .values(quantity=Decimal(500), amount=Decimal(250)))
        clear_facts_cache(conn)
    result = judge(engine, run_for("2025-06", run_id="rerun"), PROFILE)

    assert open_alerts(engine, "PROGRESS_BEHIND") == []
    assert result.written.resolved == 1
    assert num(metrics(engine, "2025-06")["A-H1"]["cumulative_selected_quantity"]) == Decimal("500")


def test_branch_scope_judges_and_resolves_only_that_branch(engine):
    with engine.begin() as conn:
        seed(conn, busy_city())
    judge(engine, run_for("2025-06"), PROFILE)
    before_b2 = {row["alert_key"]: row["status"] for row in all_alerts(engine) if row["branch_code"] == "B2"}
    b2_metrics = metrics(engine, "2025-06")["A-H2"]

    # every order corrected to a selected platform purchase, then a B1-only rerun
    with engine.begin() as conn:
        conn.execute(update(orders_table).values(product_code="P-AML-S", channel="platform",
                                                 unit_price=Decimal("0.5")))
        conn.execute(update(orders_table).values(amount=orders_table.c.quantity * Decimal("0.5")))
        clear_facts_cache(conn)
    result = judge(engine, run_for("2025-06", run_id="b1", scope=Scope(branch_code="B1")), PROFILE)

    b1_open = [row for row in open_alerts(engine) if row["branch_code"] == "B1"]
    assert {row["rule_code"] for row in b1_open} == {"PAYMENT_OVERDUE"}  # not a data correction
    assert {row["alert_key"]: row["status"] for row in all_alerts(engine) if row["branch_code"] == "B2"} == before_b2
    assert metrics(engine, "2025-06")["A-H2"] == b2_metrics
    assert num(metrics(engine, "2025-06")["A-H1"]["selected_quantity"]) == Decimal("1000")
    assert set(result.attachments) == {"B1"}


def test_batch_scope_judges_only_that_batchs_agreement_rules(engine):
    products = [product("P-MET-S", "二甲双胍", "甲", selected=True, price="0.20", batch="NB2")]
    with engine.begin() as conn:
        seed(conn, city(
            batches=[batch("NB2", "2025-01-01")], products=products,
            agreements=[agreement("A-NB1", "H1", **YEAR),
                        agreement("A-NB2", "H1", **YEAR, generic="二甲双胍", batch="NB2")],
            orders=[order("ACC", "H1", 10, "2025-05-02", acceptance="2025-05-06")],
        ))
    judge(engine, run_for("2025-06"), PROFILE)
    assert {(r["rule_code"], r["batch_code"]) for r in open_alerts(engine)} == {
        ("PROGRESS_BEHIND", "NB1"), ("PROGRESS_BEHIND", "NB2"), ("PAYMENT_OVERDUE", None)}

    with engine.begin() as conn:
        conn.execute(update(orders_table).values(cancelled=True))  # would resolve the payment alert
        seed(conn, {"orders": [order("NB2-BUY", "H1", 12000, "2025-06-05", product="P-MET-S", price="0.20"),
                               order("NB1-BUY", "H1", 12000, "2025-06-05")]})
        clear_facts_cache(conn)
    result = judge(engine, run_for("2025-06", run_id="nb2", scope=Scope(batch_code="NB2")), PROFILE)

    assert list(result.rule_codes) == ["PROGRESS_BEHIND", "SELECTED_SHARE_LOW"]
    # NB2 resolved; NB1 and the batch-less payment rule were not judged by this run
    assert {(r["rule_code"], r["batch_code"]) for r in open_alerts(engine)} == {
        ("PROGRESS_BEHIND", "NB1"), ("PAYMENT_OVERDUE", None)}
    rows = metrics(engine, "2025-06")
    assert num(rows["A-NB2"]["selected_quantity"]) == Decimal("12000")
    assert num(rows["A-NB1"]["selected_quantity"]) == Decimal("0")  # kept from the full run


def test_backfilling_months_in_parallel_equals_running_them_one_by_one(engine):
    orders = [order(f"O{m}-{inst}", inst, 50 * m, f"2025-{m:02d}-1{m}", acceptance=f"2025-{m:02d}-2{m}")
              for m in range(1, 7) for inst in ("H1", "H2", "P1")]
    orders += [order(f"N{m}", "H2", 10, f"2025-{m:02d}-03", product="P-AML-N", price="0.9",
                     channel="offline") for m in range(1, 7)]
    with engine.begin() as conn:
        seed(conn, city(orders=orders, agreements=[agreement("A1", "H1", **YEAR),
                                                   agreement("A2", "P1", "2025-02-15", "2026-02-14")]))
    months = [f"2025-{m:02d}" for m in range(1, 7)]

    for month in months:
        judge(engine, run_for(month, run_id=f"seq-{month}"), PROFILE)
    sequential = [snapshot(engine, month) for month in months]

    with engine.begin() as conn:
        clear_facts_cache(conn)
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda m: judge(engine, run_for(m, run_id=f"par-{m}"), PROFILE), months))

    assert [snapshot(engine, month) for month in months] == sequential


def test_execution_report_per_branch_and_its_institution_file_sheet(engine, output_dir):
    from openpyxl import load_workbook

    with engine.begin() as conn:
        seed(conn, city(
            institutions=[institution("H3", "B1")],
            agreements=[
                agreement("A-ZERO", "H1", **YEAR),
                agreement("A-BELOW", "H1", **YEAR, generic="二甲双胍"),
                agreement("A-OVER", "H1", **{**YEAR, "quantity": 100}, generic="阿托伐他汀"),
                agreement("A-H3", "H3", **YEAR),
                agreement("A-H2", "H2", **YEAR),
            ],
            products=[product("P-MET-S", "二甲双胍", "甲", selected=True, price="0.20", batch="NB1"),
                      product("P-MET-N", "二甲双胍", "乙"),
                      product("P-ATO-S", "阿托伐他汀", "甲", selected=True, price="1.00", batch="NB1")],
            orders=[
                order("MET-S", "H1", 1000, "2025-06-10", product="P-MET-S", price="0.20"),
                order("MET-N", "H1", 10, "2025-06-10", product="P-MET-N", price="0.10"),
                order("AML-N", "H1", 10, "2025-06-10", product="P-AML-N", price="0.40"),
                order("ATO-S", "H1", 200, "2025-06-10", product="P-ATO-S", price="1.00"),
                order("H3-S", "H3", 6000, "2025-06-10"),   # half the year's volume by 30 June
            ]))

    result = judge(engine, run_for("2025-06"), PROFILE)

    paths = {branch: [report_path("2025-06", branch)] for branch in ("B1", "B2")}
    assert result.attachments == paths
    assert paths["B1"][0].name == "执行报表_B1_2025-06.xlsx"
    workbook = load_workbook(paths["B1"][0])
    assert workbook.sheetnames[:2] == ["带量执行情况", "一院一档"]
    summary = workbook["带量执行情况"]
    # a title block (issuing office, report and month, generated at · policy profile), then the header
    assert summary["A1"].value == "市医保局"
    assert summary["A2"].value == "带量执行报表·带量执行情况（2025年6月）"
    assert summary["A3"].value.startswith("生成时间：") and "政策口径：" in summary["A3"].value
    header = [cell.value for cell in summary[4]]
    rows = {row[1]: dict(zip(header, row, strict=True)) for row in summary.iter_rows(min_row=5, values_only=True)}
    h1 = rows["H1"]
    formats = {header[cell.column - 1]: cell.number_format for cell in next(summary.iter_rows(min_row=5, max_row=5))}
    assert (formats["序时进度"], formats["中选产品采购金额（元）"], formats["约定品种数"]) == ("0.00%", "#,##0.00", "0")
    assert (h1["约定品种数"], h1["零采购品种数"], h1["低于序时进度品种数"], h1["达到序时进度品种数"],
            h1["超约定采购量品种数"], h1["采购非中选产品品规数"]) == (3, 1, 1, 0, 1, 2)
    assert h1["中选产品采购金额（元）"] == pytest.approx(400.0)
    assert h1["非中选产品采购金额（元）"] == pytest.approx(5.0)
    assert h1["序时进度"] == pytest.approx(181 / 365, abs=1e-4)  # the 0.00% the reader sees
    assert h1["分局"] == "章贡分局" and h1["批次代码"] == "NB1"
    assert rows["H3"]["达到序时进度品种数"] == 1
    detail = workbook["一院一档"]
    assert detail.max_row == 4 + 4  # title block and header, then H1's three agreements and H3's
    detail_header = [cell.value for cell in detail[4]]
    assert "约定采购量完成率" in detail_header and "中选产品采购数量占比" in detail_header
    b2 = load_workbook(paths["B2"][0])["带量执行情况"]
    assert [row[1] for row in b2.iter_rows(min_row=5, values_only=True)] == ["H2"]


def test_the_institution_file_streams_its_figures_as_postgresql_writes_them(engine):
    """sqlfiles.stream(numeric_text=True), as the execution report reads the institution
    file: on PostgreSQL a NUMERIC comes as its text, the very digits of the Decimal it would
    be (the ratios with their 6 places); SQLite's values are as they are; the connection
    reads Decimals again after."""
    from vbp_monitor.core import sqlfiles

    with engine.begin() as conn:
        seed(conn, busy_city())
    judge(engine, run_for("2025-06"), PROFILE, write_reports=False)

    params = dict(period="2025-06", branch_code=None)
    with engine.connect() as conn:
        as_mappings = [dict(row._mapping) for row in sqlfiles.stream(conn, "monitoring_institution_file_rows",
                                                                     **params)]
        as_read = [tuple(row) for row in sqlfiles.stream(conn, "monitoring_institution_file_rows",
                                                          numeric_text=True, **params)]
        after = [dict(row._mapping) for row in sqlfiles.stream(conn, "monitoring_institution_file_rows", **params)]
    assert len(as_read) == len(as_mappings) == 2 and after == as_mappings
    for row, mapping in zip(as_read, as_mappings, strict=True):
        for value, (name, expected) in zip(row, mapping.items(), strict=True):
            if engine.dialect.name == "postgresql" and isinstance(expected, Decimal):
                assert type(value) is str and Decimal(value).as_tuple() == expected.as_tuple(), name
            else:
                assert value == expected and type(value) is type(expected), name
    if engine.dialect.name == "postgresql":  # the ratios: 6 places, formatting.stored's
        ratios = [value for row in as_read for value in (row[11], row[16], row[17], row[21], row[22]) if value]
        assert ratios and all(len(ratio.split(".")[1]) == 6 for ratio in ratios)


def test_validate_reads_the_judged_months_rows_cleanly(engine):
    from vbp_monitor.rules.monitoring import validate

    with engine.begin() as conn:
        seed(conn, busy_city())

    report = validate(engine, run_for("2025-06"), PROFILE)

    assert {"orders", "agreements", "products", "payments", "offline_filings"} <= set(report)
    assert report["orders"]["rows"] == 7 and report["orders"]["failed_rows"] == 0
    assert open_alerts(engine, "DATA_QUALITY") == []


def test_the_dag_builds_facts_while_validating_and_judges_after_both():
    from airflow.dag_processing.dagbag import DagBag

    from vbp_monitor.core.timetables import FirstWorkingDayTimetable

    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags" / "vbp_monthly_monitoring.py")
                 ).dags["vbp_monthly_monitoring"]
    upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert upstream == {"validate": set(), "build_facts": set(), "judge": {"validate", "build_facts"},
                        "notify": {"judge"}}
    assert isinstance(dag.timetable, FirstWorkingDayTimetable)
    assert set(dag.tags) == {"vbp", "集采监管", "monthly", "月度监测"} and not dag.catchup
    assert {"branch_code", "batch_code", "force_resend"} <= set(dag.params)
