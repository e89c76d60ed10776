"""GX validation of what a rule task reads (domain.md › Data quality).

The rule DAGs' ``validate`` task calls :func:`validate_tables` before they compute. Each
table is read from the warehouse (optionally restricted, e.g. orders to the judged month),
written back in the contract's text format and validated with the same suite as its
landing file: type and format expectations pass on typed data by construction; references
resolve against the warehouse. Failing rows raise one DATA_QUALITY alert per table and
run; a table missing columns, or failing a table-level expectation, stops the task.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from vbp_monitor.model import contract
from vbp_monitor.quality.expectations import (
    EXTRA_FIELDS,
    ROW_NUMBER,
    TIMESTAMP_FORMAT,
    SuiteOutcome,
    chunkable,
    clause,
    data_quality_alert,
    merge_outcomes,
    validate_frame,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

PERIOD_PARAMS = ("first_day", "last_day")
# Rows of a warehouse table validated at a time (GX on a pandas frame of this many rows).
CHUNK_ROWS = 50_000


class DataQualityError(RuntimeError):
    """A table a rule needs is broken (schema or table-level expectation): no rule computes."""


def _text(kind: str, value):
    """A typed warehouse value in the contract's text format."""
    if value is None:
        return None
    if kind == contract.TIMESTAMP:
        return value.strftime(TIMESTAMP_FORMAT)
    if kind == contract.DATE:
        return (value.date() if isinstance(value, dt.datetime) else value).isoformat()
    if kind == contract.BOOL:
        return "true" if value else "false"
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def warehouse_frame(table: str, rows, first_row: int = 1) -> pd.DataFrame:
    """Warehouse rows as the landing file would carry them, numbered ``first_row``.."""
    import pandas as pd

    spec = contract.FILES[table]
    columns: dict[str, list] = {name: [] for name in spec.columns}
    for row in rows:
        for name, kind in spec.columns.items():
            columns[name].append(_text(kind, row[name]))
    frame = pd.DataFrame({name: pd.Series(values, dtype=str) for name, values in columns.items()})
    frame[EXTRA_FIELDS] = 0
    frame[ROW_NUMBER] = range(first_row, first_row + len(frame))
    return frame


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

    def clause(self, run):
        import datetime as dt

        from sqlalchemy import Date, bindparam, text

        values = {name: getattr(run.period, name) for name in PERIOD_PARAMS}
        values.update(self.params)
        binds = []
        for name, value in values.items():
            if f":{name}" not in self.sql:
                continue
            kind = Date() if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None
            binds.append(bindparam(name, value=value, type_=kind))
        return text(self.sql).bindparams(*binds)

    def describe(self) -> str:
        text = self.sql
        for name, value in sorted(self.params.items(), key=lambda item: -len(item[0])):
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
    from sqlalchemy import select

    from vbp_monitor.model.schema import metadata

    if table not in contract.FILES:
        raise ValueError(f"no expectation suite for table {table!r}")
    if isinstance(where, str):
        where = Where(where)
    started = time.perf_counter()
    scope = f"（范围：{where.describe()}）" if where else ""
    with engine.connect() as conn:
        missing = _missing_columns(conn, table)
    if missing:
        message = (
            f"数据质量问题：仓库表 {table} 缺少契约列 {'、'.join(missing)}，本次评判（{run.dag_id} "
            f"{run.period.label}）已停止，不根据该表计算任何预警。请数据组检查仓库迁移（alembic upgrade）"
            f"后重跑。依据：{clause()}。"
        )
        _alert(engine, run, table, message, 0)
        raise DataQualityError(f"table {table} lacks contract columns {missing}")

    definition = metadata.tables[table]
    spec = contract.FILES[table]
    query = select(*[definition.c[name] for name in spec.columns])
    if where:
        query = query.where(where.clause(run))
    query = query.order_by(*definition.primary_key.columns)
    # A large table is read and validated CHUNK_ROWS at a time (server-side cursor): memory
    # stays bounded by the chunk, not the table. A suite with a whole-table figure (the
    # branches' one city) reads its table at once.
    chunk_rows = CHUNK_ROWS if chunkable(table) else None
    outcomes: list[SuiteOutcome] = []
    read = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows or 1000).execute(query)
        parts = result.mappings().partitions(chunk_rows) if chunk_rows else [result.mappings().all()]
        for part in parts:
            if not part and outcomes:
                break
            frame = warehouse_frame(table, part, first_row=read + 1)
            read += len(frame)
            outcomes.append(validate_frame(conn, table, frame))
            del frame
        if not outcomes:  # an empty table still runs its suite (table-level expectations)
            outcomes.append(validate_frame(conn, table, warehouse_frame(table, [])))
    outcome = merge_outcomes(table, outcomes)

    message = None
    failed_rows = len(outcome.failed_rows)
    if outcome.failures:
        examples = "、".join(outcome.example_keys()) or "（表级期望，无单行）"
        consequence = (
            "本次评判已停止，不根据该表计算任何预警" if outcome.file_failures
            else "这些行仍在仓库中，相关预警可能不准确"
        )
        message = (
            f"数据质量问题：仓库表 {table}{scope}共读取 {read} 行，{failed_rows} 行未通过期望套件 "
            f"{outcome.suite_name} 的校验（{run.dag_id} {run.period.label}）。未通过的期望："
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
    return {table: validate_table(engine, run, table, where) for table, where in tables.items()}
