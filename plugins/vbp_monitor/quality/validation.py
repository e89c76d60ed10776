"""Validation of what a rule task reads (domain.md › Data quality), in the database.

The rule DAGs' ``validate`` task calls :func:`validate_tables` before they compute. Each
table's suite (the same one its landing file is validated with at ingest) runs as
set-based SQL over the typed warehouse table, restricted to the rows the task reads
(``sql_suite``): type and format expectations pass on typed data by construction;
references resolve against the warehouse. Only counts and a few example keys per failed
expectation come back from the database, so memory does not grow with the table. Failing
rows raise one DATA_QUALITY alert per table and run; a table missing columns, or failing a
table-level expectation, stops the task.
"""
from __future__ import annotations

import logging
import re
import time

from vbp_monitor.core.catalog import dag_title
from vbp_monitor.core.formatting import period_zh
from vbp_monitor.model import contract
from vbp_monitor.quality.expectations import clause, column_label, data_quality_alert
from vbp_monitor.quality.sql_suite import run_table_suite

log = logging.getLogger(__name__)

PERIOD_PARAMS = ("first_day", "last_day")
VALIDATION_WORKERS = 2  # tables validated at once on PostgreSQL (this kind of machine: 2 cores)
# How a scope's SQL reads in Chinese: its words, its columns with their Chinese names.
_SQL_WORDS = {"AND": "且", "OR": "或", "NOT": "非", "IS NULL": "为空", "IS NOT NULL": "不为空"}
_SQL_TOKENS = re.compile(r"\bIS NOT NULL\b|\bIS NULL\b|\b(?:AND|OR|NOT)\b|(?<![:\w])[a-z][a-z0-9_]*\b")


class DataQualityError(RuntimeError):
    """A table a rule needs is broken (schema or table-level expectation): no rule computes."""


class Where:
    """The rows of a table a task reads: SQL with ``:named`` parameters and their values.

    Values are bound, never formatted into the SQL text (``Where("order_date >= :first",
    first=day)``). ``:first_day`` / ``:last_day`` default to the run's judged period.
    """

    def __init__(self, sql: str, **params):
        self.sql = sql
        self.params = params

    def __repr__(self) -> str:
        return f"Where({self.sql!r}, {self.params!r})"

    def values(self, run=None) -> dict:
        """The parameters' values: the run's period days (when a run is given), then its own."""
        values = {name: getattr(run.period, name) for name in PERIOD_PARAMS} if run is not None else {}
        values.update(self.params)
        return values

    def clause(self, run):
        import datetime as dt

        from sqlalchemy import Date, bindparam, text

        binds = []
        for name, value in self.values(run).items():
            if f":{name}" not in self.sql:
                continue
            kind = Date() if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None
            binds.append(bindparam(name, value=value, type_=kind))
        return text(self.sql).bindparams(*binds)

    def describe(self, run=None) -> str:
        """The scope as a person reads it: parameters (and the run's period days) filled in,
        columns by their Chinese names, AND/OR in Chinese."""
        text = _SQL_TOKENS.sub(lambda match: _SQL_WORDS.get(match.group(0)) or column_label(match.group(0)),
                               self.sql)
        for name, value in sorted(self.values(run).items(), key=lambda item: -len(item[0])):
            text = text.replace(f":{name}", str(value))
        return text


def _missing_columns(conn, table: str) -> list[str]:
    from sqlalchemy import inspect

    inspector = inspect(conn)
    if not inspector.has_table(table):
        return list(contract.FILES[table].columns)
    present = {column["name"] for column in inspector.get_columns(table)}
    return [name for name in contract.FILES[table].columns if name not in present]


def _alert(engine, run, table: str, message: str | None, metric: int) -> None:
    with engine.begin() as conn:
        candidates = [data_quality_alert(conn, table, message, metric)] if message else []
        run.store.replace(conn, ["DATA_QUALITY"], candidates, source_file=table)


def validate_table(engine, run, table: str, where: Where | str | None = None) -> dict:
    """Validate one warehouse table (see :func:`validate_tables`)."""
    from sqlalchemy import text

    if table not in contract.FILES:
        raise ValueError(f"no expectation suite for table {table!r}")
    if isinstance(where, str):
        where = Where(where)
    started = time.perf_counter()
    scope = f"（范围：{where.describe(run)}）" if where else ""
    with engine.connect() as conn:
        missing = _missing_columns(conn, table)
    if missing:
        message = (
            f"数据质量问题：仓库表 {table} 缺少契约列 {'、'.join(map(column_label, missing))}，本次评判"
            f"（{dag_title(run.dag_id)} {period_zh(run.period.label)}）已停止，不根据该表计算任何预警。"
            f"请数据组检查仓库迁移（alembic upgrade）后重跑。依据：{clause()}。"
        )
        _alert(engine, run, table, message, 0)
        raise DataQualityError(f"table {table} lacks contract columns {missing}")

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # the counts and the example keys from one snapshot of the table; no JIT: the
            # planner's estimate of the NOT EXISTS probes triggers a compile that costs more
            # (about 1 s) than the whole pass
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.execute(text("SET LOCAL jit = off"))
        outcome = run_table_suite(conn, table, where.clause(run) if where else None)
    read = outcome.row_count

    message = None
    failed_rows = outcome.failing_rows
    if outcome.failures:
        examples = "、".join(outcome.example_keys()) or "（表级期望，无单行）"
        consequence = (
            "本次评判已停止，不根据该表计算任何预警" if outcome.file_failures
            else "这些行仍在仓库中，相关预警可能不准确"
        )
        message = (
            f"数据质量问题：仓库表 {table}{scope}共读取 {read} 行，{failed_rows} 行未通过期望套件 "
            f"{outcome.suite_name} 的校验（{dag_title(run.dag_id)} {period_zh(run.period.label)}）。未通过的期望："
            f"{outcome.failure_summary()}。示例主键：{examples}。{consequence}。"
            f"请数据组更正数据（重新投递相应文件）后重跑本次任务；重跑校验通过后本预警自动关闭。依据：{clause()}。"
        )
    _alert(engine, run, table, message, failed_rows)
    summary = {**outcome.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    log.info("validated %s: %d rows, %d failing (%.1fs)", table, read, failed_rows, summary["seconds"])
    if outcome.file_failures:
        raise DataQualityError(f"table {table} fails {outcome.suite_name}: {outcome.failure_summary()}")
    return summary


def validate_tables(engine, run, tables: dict[str, Where | None]) -> dict:
    """Validate warehouse tables a task reads with the suites in include/expectations/.

    ``tables``: table name -> an optional :class:`Where` (bound parameters; may use
    :first_day / :last_day of ``run.period``) restricting the rows read. Failing rows raise one DATA_QUALITY alert per
    table through ``run.store`` (source_file = the table; a clean rerun resolves it); a
    broken schema or a failed table-level expectation raises :class:`DataQualityError`
    (no rule computes). Returns ``{table: {suite, rows, failed_rows, failed_expectations,
    seconds}}``.
    """
    if engine.dialect.name != "postgresql" or len(tables) < 2:
        return {table: validate_table(engine, run, table, where) for table, where in tables.items()}
    # PostgreSQL: two tables at a time, each pass on its own connection (the work is the
    # server's; the big tables' passes, e.g. orders and payments, then use both cores). A broken
    # table still stops the task: the first failure in the tables' order is raised once every
    # pass has ended (each table's alert is written or resolved as a sequential run would).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=VALIDATION_WORKERS) as pool:
        futures = {table: pool.submit(validate_table, engine, run, table, where) for table, where in tables.items()}
    return {table: future.result() for table, future in futures.items()}
