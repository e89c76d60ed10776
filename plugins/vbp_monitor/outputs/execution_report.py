"""带量执行报表: the monthly execution report per branch (DAG 2, seed 002 §二(三)).

One XLSX per branch in ``<output_dir>/vbp_monthly_monitoring/<YYYY-MM>/
执行报表_<branch_code>_<YYYY-MM>.xlsx``, attached to that branch's email:

* sheet 「带量执行情况」: per institution × batch (× agreement year): time progress, number
  of agreed generic names, how many have no selected purchase since the year began, are
  below time progress, on track, over the agreed quantity; the number of non-selected
  products bought in M; selected and non-selected amounts in M.
* sheet 「一院一档」: the institution-file rows of M.

Both read what the run just wrote (``institution_file_metrics``) and the facts of M, for
every branch in the run's branch scope; a batch-filtered run rewrites the whole report of
each branch from the table (the other batches' rows stay from the last full run).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.core import sqlfiles
from vbp_monitor.core.db import planner_settings
from vbp_monitor.core.formatting import as_date, decimal_of, stored
from vbp_monitor.core.labels import OWNERSHIP_ZH, label
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.outputs.run_files import run_file_path, run_folder
from vbp_monitor.outputs.spreadsheets import BookTitle, Column, Sheets, write_branch_files

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Row

    from vbp_monitor.orchestration.run_context import RunContext

# The report's folder is named after its DAG (outputs import no rules module).
DAG_ID = "vbp_monthly_monitoring"
REPORT_PREFIX = "执行报表"

REPORT_TITLE = "带量执行报表"
_TEXT, _DATE = "text", "date"
SUMMARY_HEADER = [
    Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"), Column("性质"), Column("批次代码"),
    Column("批次名称"), Column("协议年度起", _DATE), Column("协议年度止", _DATE), Column("统计截至", _DATE),
    Column("序时进度", "percent"), Column("约定品种数", "integer"), Column("零采购品种数", "integer"),
    Column("低于序时进度品种数", "integer"), Column("达到序时进度品种数", "integer"),
    Column("超约定采购量品种数", "integer"), Column("采购非中选产品品规数", "integer"),
    Column("中选产品采购金额（元）", "money"), Column("非中选产品采购金额（元）", "money"),
]
FILE_HEADER = [
    Column("分局"), Column("医疗机构代码"), Column("医疗机构名称"), Column("批次代码"), Column("批次名称"),
    Column("通用名"), Column("协议编号"), Column("协议年度起", _DATE), Column("协议年度止", _DATE),
    Column("统计截至", _DATE), Column("约定采购量", "quantity"), Column("约定采购比例", "percent"),
    Column("本月中选产品采购数量", "quantity"), Column("本月中选产品采购金额（元）", "money"),
    Column("本月同通用名采购数量", "quantity"), Column("本月同通用名采购金额（元）", "money"),
    Column("中选产品采购数量占比", "percent"), Column("中选产品采购金额占比", "percent"),
    Column("本月非中选产品采购数量", "quantity"), Column("本月非中选产品采购金额（元）", "money"),
    Column("累计中选产品采购数量", "quantity"), Column("约定采购量完成率", "percent"), Column("序时进度", "percent"),
]
NOTES_HEADER = [Column("项目"), Column("口径", "long_text")]
NOTES = [
    ["统计范围", "协议年度与本月有交集的约定采购协议；本月数据自 max(本月1日, 协议年度起) 至 min(本月末, 协议年度止)"],
    ["中选产品采购", "本机构在平台采购的、该批次中选且同通用名的产品（不含取消订单）"],
    ["同通用名采购", "本机构采购的同通用名全部产品，含线下采购"],
    ["非中选产品采购", "同通用名采购 − 中选产品采购"],
    ["序时进度", "(统计截至日 − 协议年度起 + 1) ÷ (协议年度止 − 协议年度起 + 1)，按天计"],
    ["完成率", "自协议年度起累计平台采购中选产品数量 ÷ 约定采购量"],
    ["零采购", "自协议年度起未在平台采购中选产品"],
    ["低于序时进度 / 达到序时进度", "完成率 < 序时进度 / 完成率 ≥ 序时进度且未超过约定采购量"],
    ["超约定采购量", "累计中选产品采购数量 > 约定采购量"],
    ["采购非中选产品品规数", "本月采购的约定通用名产品中，非该批次中选产品的品规个数"],
]


def report_folder(period_label: str) -> Path:
    return run_folder(DAG_ID, period_label)


def report_path(period_label: str, branch_code: str) -> Path:
    return run_file_path(DAG_ID, REPORT_PREFIX, period_label, branch_code)


def _summary_row(row: dict, branch_name: str) -> list:
    return [
        branch_name, row["institution_code"], row["institution_name"],
        label(OWNERSHIP_ZH, row["ownership"]), row["batch_code"], row["batch_name"],
        as_date(row["period_start"]), as_date(row["period_end"]), as_date(row["as_of_date"]),
        stored(row["time_progress"]), int(row["agreements"]), int(row["zero_purchase"]),
        int(row["below_progress"]), int(row["on_track"]), int(row["over_agreed"]),
        int(row["non_selected_products"]), decimal_of(row["selected_amount"]),
        decimal_of(row["non_selected_amount"]),
    ]


def _file_row(row: Mapping, branch_name: str) -> list:
    """A row of the institution file as the sheet shows it, from SQLite (floats, dates as
    text); PostgreSQL's rows are written as read (see ``_branch_workbooks``)."""
    return [
        branch_name, row["institution_code"], row["institution_name"], row["batch_code"],
        row["batch_name"], row["generic_name"], row["agreement_id"], as_date(row["period_start"]),
        as_date(row["period_end"]), as_date(row["as_of_date"]), decimal_of(row["agreed_quantity"]),
        stored(row["agreed_ratio"]), decimal_of(row["selected_quantity"]), decimal_of(row["selected_amount"]),
        decimal_of(row["same_generic_quantity"]), decimal_of(row["same_generic_amount"]),
        stored(row["selected_quantity_share"]), stored(row["selected_amount_share"]),
        decimal_of(row["non_selected_quantity"]), decimal_of(row["non_selected_amount"]),
        decimal_of(row["cumulative_selected_quantity"]), stored(row["completion_rate"]),
        stored(row["time_progress"]),
    ]


def _summary(conn, run: RunContext, eps: float) -> dict[str, list[dict]]:
    """The summary rows (one per institution × batch × agreement year) by branch."""
    summary: dict[str, list[dict]] = {}
    # (the facts × institution-file join on institution and generic: see write_institution_file)
    with planner_settings(conn, work_mem="64MB", enable_mergejoin="off", jit="off"):
        rows = sqlfiles.query(conn, "monitoring_execution_report", period=run.period.label,
                              month_start=run.period.first_day, eps=eps, branch_code=run.scope.branch_code)
    for row in rows:
        summary.setdefault(row["branch_code"], []).append(row)
    return summary


def _read_summary(engine, run: RunContext, eps: float) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        return _summary(conn, run, eps)


def _branch_workbooks(conn, run: RunContext, branches: dict,
                      summary_of: Callable[[], dict[str, list[dict]]]) -> Iterator[tuple[str, Sheets]]:
    """(branch code, sheets) of each branch in the scope, one branch's rows at a time.

    The institution-file rows (one per agreement: the bulk) stream from the database in
    branch order; the summary (``summary_of()``: by branch) is asked for when the first
    workbook is made. ``branches``: model.reference.branch_directory.

    On PostgreSQL the rows' figures come as PostgreSQL's text of them (sqlfiles.stream:
    a Decimal is made of each distinct text when the sheet is typed, not of each cell) and
    a row is the query's own, the branch's name first: the figures need no rounding here
    (the query gives the ratios their 6 places: formatting.stored's) and the dates are dates.
    SQLite's rows go through ``_file_row``."""
    summary: dict[str, list[dict]] | None = None
    as_read = conn.dialect.name == "postgresql"

    def sheets(branch_code: str, detail_rows: Iterable[Row]) -> Sheets:
        nonlocal summary
        if summary is None:
            summary = summary_of()
        name = branches.get(branch_code, {}).get("name", branch_code)
        if as_read:
            file_rows: list = [(name, *row[1:]) for row in detail_rows]
        else:
            file_rows = [_file_row(row._mapping, name) for row in detail_rows]
        return {
            "带量执行情况": (SUMMARY_HEADER, [_summary_row(row, name) for row in summary.pop(branch_code, [])]),
            "一院一档": (FILE_HEADER, file_rows),
            "口径说明": (NOTES_HEADER, NOTES),
        }

    rows = sqlfiles.stream(conn, "monitoring_institution_file_rows", numeric_text=as_read,
                           period=run.period.label, branch_code=run.scope.branch_code)
    for branch_code, detail_rows in groupby(rows, key=itemgetter(0)):  # (branch_code)
        yield branch_code, sheets(branch_code, detail_rows)
    if summary is None:
        summary = summary_of()
    for branch_code in sorted(summary):  # (every summary row has its file rows: none left)
        yield branch_code, sheets(branch_code, [])


def write_branch_reports(engine, run: RunContext, eps: float) -> dict[str, list[Path]]:
    """Write each branch's execution report; returns {branch_code: [path]}.

    ``eps``: the rules' relative tolerance, so "below time progress" here is the rules' own.
    One branch's rows are held at a time (the institution file streams in branch order).
    On PostgreSQL the summary (its join of the month's facts: seconds of the server's time
    at province scale) is read on a connection of its own while the institution file's rows
    start to stream on this one.
    """
    from vbp_monitor.core.profiles import load_profile

    summary_of: Callable[[], dict[str, list[dict]]]
    with ThreadPoolExecutor(max_workers=1) as pool, engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            summary_of = pool.submit(_read_summary, engine, run, eps).result
        else:
            summary = _summary(conn, run, eps)
            summary_of = summary.copy
        # the title block: the issuing office (the city bureau), the report and its month
        branches = branch_directory(conn)
        office = branches.get(city_branch_code(conn), {}).get("name", "")
        title = BookTitle(office=office, title=REPORT_TITLE, period=run.period.label, profile=load_profile())
        return write_branch_files(report_folder(run.period.label), REPORT_PREFIX, run.period.label,
                                  _branch_workbooks(conn, run, branches, summary_of),
                                  scope_branch=run.scope.branch_code, title=title)
