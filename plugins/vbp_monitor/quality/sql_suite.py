"""A table's expectation suite (include/expectations/<table>.json) as set-based SQL over the
typed warehouse table: what ``validation.validate_tables`` runs before a rule computes.

The suites are written for the contract's *text* frames (ingest of landing files, see
``expectations``). Over a typed warehouse table the same expectations compile to SQL
predicates, one per row-level expectation, and aggregates for the table-level ones:

* ``expect_column_to_exist``: the caller has checked the table's columns (helper columns are
  SQL expressions here, always present); ``extra_field_count`` (fields beyond a file's
  header) is 0 for a warehouse row;
* type and format expectations (``match_strftime_format`` on DATE/TIMESTAMP columns, the
  number/integer/boolean ``match_regex`` on typed columns) pass by construction: a typed
  column holds values of its type. Only what a database can still hold is checked: a
  numeric ``NaN`` on PostgreSQL, a value of another storage class on SQLite (type affinity
  keeps whatever a raw write gives). A ``match_regex`` on a text column is a real regular
  expression: ``~`` on PostgreSQL, ``REGEXP`` on SQLite (SQLAlchemy's pysqlite dialect
  registers a Python ``regexp`` function on every connection);
* ``<column>__num`` / ``<column>__bool`` helper columns are the typed columns themselves;
  the cross-column helpers of ``expectations.add_helper_columns`` are SQL expressions over
  typed columns (:data:`HELPERS`), day differences through ``work_calendar.day_ordinal``
  (no dialect date function);
* a ``{"$ref": "table.col[+col2]", "where": {...}}`` value set is a ``NOT EXISTS`` against
  that warehouse table (the values ``expectations.reference_values`` stands for);
* uniqueness of the table's primary key holds by construction (the key constraint); any
  other unique column is a ``GROUP BY … HAVING count(*) > 1`` over the validated rows.

:func:`run_table_suite` evaluates every expectation in one pass over the validated rows
(counts per expectation, failing rows, table-level figures), then fetches at most
``MAX_EXAMPLES`` primary keys per failed expectation: nothing but counts and a few keys
reach Python, whatever the size of the table.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vbp_monitor.model import contract
from vbp_monitor.quality.expectations import (
    EXTRA_FIELDS,
    KEY_SEPARATOR,
    MAX_EXAMPLES,
    NUMERIC_KINDS,
    REF_MARKER,
    TIMESTAMP_FORMAT,
    Failure,
    SuiteError,
    SuiteOutcome,
    load_suite_json,
)

log = logging.getLogger(__name__)

# Expectations with nothing left to check on a typed table (see the module docstring).
SCHEMA_TYPES = frozenset({"expect_column_to_exist"})
FORMAT_TYPES = frozenset({"expect_column_values_to_match_strftime_format", "expect_column_values_to_match_regex"})
# SQLite storage classes a typed column's values may have (``typeof``), and a GLOB the text
# of a date/timestamp written by SQLAlchemy matches.
SQLITE_STORAGE = {
    contract.INT: ("integer",), contract.BOOL: ("integer",),
    **{kind: ("integer", "real") for kind in NUMERIC_KINDS if kind != contract.INT},
    contract.DATE: ("text",), contract.TIMESTAMP: ("text",),
}
_D = "[0-9]"
SQLITE_SHAPE = {
    contract.DATE: f"{_D * 4}-{_D * 2}-{_D * 2}",
    contract.TIMESTAMP: f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}*",
}


def contract_text(kind: str, value) -> str | None:
    """A typed warehouse value in the contract's text format (as its landing file has it)."""
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


# ---------------------------------------------------------------- the validated rows
class Rows:
    """The rows of a warehouse table a task reads, as a FROM clause: the table restricted by
    the caller's WHERE (a derived table, so its unqualified column names mean the table's
    own), plus the LEFT JOINs helper columns need (each to at most one row)."""

    def __init__(self, table, where=None) -> None:
        from sqlalchemy import select

        self.table = table
        query = select(*table.c)
        if where is not None:
            query = query.where(where)
        self.t = query.subquery("validated")
        self.source: Any = self.t
        self._joined: dict[str, Any] = {}

    def join(self, name: str, build: Callable[[Any], tuple[Any, Any]]):
        """The joined ``name`` (built once by ``build(t) -> (from clause, on clause)``)."""
        if name not in self._joined:
            right, on = build(self.t)
            self.source = self.source.outerjoin(right, on)
            self._joined[name] = right
        return self._joined[name]

    @property
    def key(self) -> list:
        return [self.t.c[column.name] for column in self.table.primary_key.columns]


def _day_ordinal(rows: Rows, column: str):
    from vbp_monitor.model.schema import work_calendar

    def build(t):
        calendar = work_calendar.alias(f"calendar_{column}")
        return calendar, calendar.c.day == t.c[column]

    return rows.join(f"calendar_{column}", build).c.day_ordinal


def _days_between(rows: Rows, later: str, earlier: str):
    """Days from ``earlier`` to ``later`` (dates): NULL when either is NULL. A day outside
    ``work_calendar`` (2015…2032) leaves only the sign (-1 or 0), which is what the suites
    test (``min_value: 0``)."""
    from sqlalchemy import case, func, null, or_

    first, second = rows.t.c[later], rows.t.c[earlier]
    exact = _day_ordinal(rows, later) - _day_ordinal(rows, earlier)
    sign = case((first < second, -1), else_=0)
    return case((or_(first.is_(None), second.is_(None)), null()), else_=func.coalesce(exact, sign))


def _is_city(rows: Rows):
    from sqlalchemy import case

    return case((rows.t.c.level == "city", 1), else_=0)


def _amount_deviation(rows: Rows):
    """|amount − quantity × unit_price|, rounded to 6 decimals like the frame's figure."""
    from sqlalchemy import func

    t = rows.t
    return func.round(func.abs(t.c.amount - t.c.quantity * t.c.unit_price), 6)


def _response_after_order_hours(rows: Rows):
    # stored at ingest (contract.derive): (response_time − order_time) in hours
    return rows.t.c.response_hours


def _acceptance_after_order_days(rows: Rows):
    # order_date is order_time's day (contract.derive): the frame's normalised order time
    return _days_between(rows, "acceptance_date", "order_date")


def _period_length_days(rows: Rows):
    return _days_between(rows, "period_end", "period_start")


def _sanction_length_days(rows: Rows):
    return _days_between(rows, "sanction_end", "sanction_start")


def _period_conflicts(rows: Rows):
    """1 when the row's agreement year is an odd one out among the agreements of its
    institution and batch, else 0: ``expectations._period_conflicts`` in SQL over the whole
    warehouse ``agreements`` table (the validated rows are part of it).

    Years (institution, batch, start, end) with their support (agreements); overlapping
    pairs of different years of one institution and batch; a year is outvoted when a year
    it overlaps has more support; of the pairs where neither year is outvoted (ties), both
    years are odd. Odd years = outvoted ∪ tied.
    """
    from sqlalchemy import and_, case, exists, func, or_, select, union

    from vbp_monitor.model.schema import agreements

    year = ("institution_code", "batch_code", "period_start", "period_end")
    source = agreements.alias("conflict_agreements")
    years = (
        select(*[source.c[name] for name in year], func.count().label("support"))
        .where(*[source.c[name].is_not(None) for name in year])
        .group_by(*[source.c[name] for name in year])
        .cte("agreement_years")
    )
    mine, other = years.alias("year_self"), years.alias("year_other")
    pairs = select(
        *[mine.c[name] for name in year], mine.c.support,
        other.c.period_start.label("other_start"), other.c.period_end.label("other_end"),
        other.c.support.label("other_support"),
    ).where(
        mine.c.institution_code == other.c.institution_code,
        mine.c.batch_code == other.c.batch_code,
        or_(mine.c.period_start != other.c.period_start, mine.c.period_end != other.c.period_end),
        mine.c.period_start <= other.c.period_end,
        other.c.period_start <= mine.c.period_end,
    ).cte("agreement_year_overlaps")
    outvoted = (
        select(*[pairs.c[name] for name in year]).where(pairs.c.other_support > pairs.c.support)
        .distinct().cte("agreement_years_outvoted")
    )

    def is_outvoted(start, end):
        return exists().where(
            outvoted.c.institution_code == pairs.c.institution_code,
            outvoted.c.batch_code == pairs.c.batch_code,
            outvoted.c.period_start == start, outvoted.c.period_end == end,
        )

    tied = select(*[pairs.c[name] for name in year]).where(
        ~is_outvoted(pairs.c.period_start, pairs.c.period_end),
        ~is_outvoted(pairs.c.other_start, pairs.c.other_end),
    )

    def build(t):
        odd = union(select(*[outvoted.c[name] for name in year]), tied).subquery("agreement_years_odd")
        return odd, and_(*[odd.c[name] == t.c[name] for name in year])

    odd = rows.join("agreement_years_odd", build)
    return case((odd.c.institution_code.is_not(None), 1), else_=0)


# (table, helper column) -> its SQL expression over the validated rows
HELPERS: dict[tuple[str, str], Callable[[Rows], Any]] = {
    ("branches", "is_city"): _is_city,
    ("orders", "amount_deviation"): _amount_deviation,
    ("orders", "response_after_order_hours"): _response_after_order_hours,
    ("orders", "acceptance_after_order_days"): _acceptance_after_order_days,
    ("agreements", "period_length_days"): _period_length_days,
    ("agreements", "period_conflicts"): _period_conflicts,
    ("supplier_sanctions", "sanction_length_days"): _sanction_length_days,
}
# Helper columns that join several columns with KEY_SEPARATOR (compared column by column).
COMPOUND_HELPERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("agreements", "batch_generic"): ("batch_code", "generic_name"),
    ("baseline_prices", "batch_generic"): ("batch_code", "generic_name"),
}


def _value(rows: Rows, table: str, column: str):
    """The SQL value of a suite column (a contract column or a helper column)."""
    kinds = contract.FILES[table].columns
    if column in kinds:
        return rows.t.c[column]
    base, _, suffix = column.rpartition("__")
    typed = {"num": kinds.get(base) in NUMERIC_KINDS, "bool": kinds.get(base) == contract.BOOL}
    if typed.get(suffix):
        return rows.t.c[base]
    helper = HELPERS.get((table, column))
    if helper is None:
        raise SuiteError(f"suite of {table}: no SQL for column {column!r}")
    return helper(rows)


# ---------------------------------------------------------------- compiling a suite
@dataclass
class Check:
    """One expectation of a suite in SQL: ``failing`` (row level: true for a row that breaks
    it) or ``figure`` (table level: a per-row value summed over the rows) with ``accepts``."""

    position: int
    expectation_type: str
    column: str
    description: str
    failing: Any = None
    figure: Any = None
    accepts: Callable[[Any], bool] | None = None

    @property
    def scope(self) -> str:
        return "row" if self.failing is not None else "file"


def _condition(rows: Rows, table: str, condition) -> Any:
    """A GX 1.x structured ``row_condition`` (``{"type": "comparison", …}``) in SQL."""
    import operator

    operators = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                 ">": operator.gt, ">=": operator.ge}
    if not (isinstance(condition, dict) and condition.get("type") == "comparison"
            and condition.get("operator") in operators):
        raise SuiteError(f"suite of {table}: unsupported row_condition {condition!r}")
    column = condition["column"]["name"] if isinstance(condition["column"], dict) else condition["column"]
    return operators[condition["operator"]](_value(rows, table, column), condition["parameter"])


def _bound(value):
    """A suite's number as a SQL literal (exact decimal on PostgreSQL)."""
    from sqlalchemy import Numeric, literal

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SuiteError(f"not a number: {value!r}")
    if isinstance(value, float):
        return literal(Decimal(repr(value)), Numeric(38, 10))
    return literal(value)


def _outside(value, kwargs) -> Any:
    """``value`` breaks the bounds of a ``*_to_be_between`` (NULL: no verdict, skipped)."""
    from sqlalchemy import false, or_

    parts = []
    if kwargs.get("min_value") is not None:
        low = _bound(kwargs["min_value"])
        parts.append(value <= low if kwargs.get("strict_min") else value < low)
    if kwargs.get("max_value") is not None:
        high = _bound(kwargs["max_value"])
        parts.append(value >= high if kwargs.get("strict_max") else value > high)
    return or_(*parts) if parts else false()


def _accepts(kwargs) -> Callable[[Any], bool]:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")

    def accepts(observed) -> bool:
        if observed is None:
            return False
        if low is not None and (observed <= low if kwargs.get("strict_min") else observed < low):
            return False
        return not (high is not None and (observed >= high if kwargs.get("strict_max") else observed > high))

    return accepts


def _malformed(dialect: str, value, kind: str):
    """A typed value that is not a value of its kind, or None when there can be none."""
    from sqlalchemy import Numeric, and_, cast, func, literal, not_, or_

    if dialect == "sqlite" and kind in SQLITE_STORAGE:
        wrong: Any = func.typeof(value).not_in(SQLITE_STORAGE[kind])
        if kind in SQLITE_SHAPE:
            wrong = or_(wrong, not_(value.op("GLOB", is_comparison=True)(SQLITE_SHAPE[kind])))
        return and_(value.is_not(None), wrong)
    if dialect == "postgresql" and kind in NUMERIC_KINDS and kind != contract.INT:
        return value == cast(literal("NaN"), Numeric)
    return None


def _reference(rows: Rows, table: str, column: str, marker: dict):
    """Rows whose value is not among those of a ``$ref`` marker: NOT EXISTS against the
    referenced warehouse table (``expectations.reference_values`` in SQL)."""
    from sqlalchemy import and_, exists

    from vbp_monitor.model.schema import metadata

    target_name, _, target_columns = marker[REF_MARKER].partition(".")
    target = metadata.tables[target_name].alias(f"ref_{target_name}")
    mine = COMPOUND_HELPERS.get((table, column), (column,))
    theirs = target_columns.split("+")
    if len(mine) != len(theirs) or any(contract.FILES[table].columns.get(name) != contract.TEXT for name in mine):
        raise SuiteError(f"suite of {table}: {column} cannot be compared with {marker[REF_MARKER]}")
    found = exists().where(
        *[target.c[their] == rows.t.c[my] for my, their in zip(mine, theirs)],
        *[target.c[name] == value for name, value in (marker.get("where") or {}).items()],
    )
    return and_(*[rows.t.c[my].is_not(None) for my in mine], ~found)


def _duplicated(rows: Rows, table: str, columns: list[str], where):
    """Rows whose value of ``columns`` another validated row shares; None for the primary key
    (unique by the table's key constraint)."""
    from sqlalchemy import func, select, tuple_

    if set(columns) == {column.name for column in rows.table.primary_key.columns}:
        return None
    inner = [rows.table.c[name] for name in columns]
    duplicates = select(*inner).group_by(*inner).having(func.count() > 1)
    if where is not None:
        duplicates = duplicates.where(where)
    mine = [rows.t.c[name] for name in columns]
    return (mine[0] if len(mine) == 1 else tuple_(*mine)).in_(duplicates)


def compile_suite(dialect: str, table: str, rows: Rows, where=None, suite_json: dict | None = None) -> list[Check]:
    """The checks of ``table``'s suite over ``rows`` (SQL for ``dialect``), in suite order.

    Expectations that hold by construction on a typed table give no check. An expectation
    type, column or option the SQL cannot express raises :class:`SuiteError` (a new suite
    feature needs SQL here, not a silent pass).
    """
    from sqlalchemy import and_

    suite_json = suite_json or load_suite_json(table)
    kinds = contract.FILES[table].columns
    checks: list[Check] = []
    for position, item in enumerate(suite_json["expectations"]):
        kind_of, kwargs = item["type"], dict(item.get("kwargs") or {})
        column = kwargs.get("column") or "+".join(kwargs.get("column_list") or [])
        check = Check(position, kind_of, column, item.get("description") or kind_of)
        condition = kwargs.pop("row_condition", None)
        if kwargs.get("mostly") not in (None, 1, 1.0):
            raise SuiteError(f"suite of {table}: {kind_of} on {column}: 'mostly' has no SQL here")
        if kind_of in SCHEMA_TYPES or column == EXTRA_FIELDS:
            continue  # columns checked by the caller; a warehouse row has exactly its table's columns
        if kind_of == "expect_column_values_to_not_be_null":
            check.failing = _value(rows, table, column).is_(None)
        elif kind_of in FORMAT_TYPES:
            kind = kinds.get(column)
            if kind == contract.TEXT and kind_of == "expect_column_values_to_match_regex":
                # Python's re on SQLite, an ARE on PostgreSQL: the suites' patterns (including
                # a leading "(?i)") mean the same in both
                value = rows.t.c[column]
                check.failing = and_(value.is_not(None), ~value.regexp_match(kwargs["regex"]))
            elif kind is None or kind == contract.TEXT:
                raise SuiteError(f"suite of {table}: {kind_of} on {column} has no SQL here")
            else:
                check.failing = _malformed(dialect, rows.t.c[column], kind)
        elif kind_of == "expect_column_values_to_be_in_set":
            value_set = kwargs["value_set"]
            if isinstance(value_set, dict) and REF_MARKER in value_set:
                check.failing = _reference(rows, table, column, value_set)
            elif kinds.get(column) == contract.TEXT:
                value = rows.t.c[column]
                check.failing = and_(value.is_not(None), value.not_in([str(v) for v in value_set]))
            else:
                raise SuiteError(f"suite of {table}: a value set on {column} has no SQL here")
        elif kind_of == "expect_column_values_to_be_unique":
            check.failing = _duplicated(rows, table, [column], where)
        elif kind_of == "expect_compound_columns_to_be_unique":
            check.failing = _duplicated(rows, table, list(kwargs["column_list"]), where)
        elif kind_of == "expect_column_values_to_be_between":
            check.failing = _outside(_value(rows, table, column), kwargs)
        elif kind_of == "expect_column_sum_to_be_between":
            check.figure, check.accepts = _value(rows, table, column), _accepts(kwargs)
        else:
            raise SuiteError(f"suite of {table}: {kind_of} has no SQL here")
        if check.failing is None and check.figure is None:
            continue  # holds by construction
        if condition is not None:
            if check.failing is None:
                raise SuiteError(f"suite of {table}: row_condition on a table-level {kind_of}")
            check.failing = and_(_condition(rows, table, condition), check.failing)
        checks.append(check)
    return checks


# ---------------------------------------------------------------- running it
@dataclass
class TableOutcome(SuiteOutcome):
    """A :class:`SuiteOutcome` counted by the database: failing rows as a count and the
    first ``MAX_EXAMPLES`` failing rows' keys in key order (no row numbers, no per-row
    reasons: ``row_reasons`` and ``row_keys`` stay empty)."""

    failing_rows: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def failed_rows(self) -> list[int]:
        raise NotImplementedError("a table validated in SQL has no row numbers: use failing_rows")

    def example_keys(self, limit: int = MAX_EXAMPLES) -> list[str]:
        return self.examples[:limit]

    def as_dict(self) -> dict:
        return {**super().as_dict(), "failed_rows": self.failing_rows}


def _plain(value):
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def run_table_suite(conn, table: str, where=None, suite_json: dict | None = None) -> TableOutcome:
    """Validate the rows of warehouse ``table`` matching ``where`` (a SQL clause, or None for
    the whole table) with its suite, in SQL: one aggregate pass, then at most
    ``MAX_EXAMPLES`` keys per failed expectation."""
    from sqlalchemy import case, func, literal, or_, select

    from vbp_monitor.model.schema import metadata

    suite_json = suite_json or load_suite_json(table)
    definition = metadata.tables[table]
    key_kinds = [contract.FILES[table].columns[column.name] for column in definition.primary_key.columns]
    rows = Rows(definition, where)
    checks = compile_suite(conn.dialect.name, table, rows, where, suite_json)
    row_checks = [check for check in checks if check.scope == "row"]
    file_checks = [check for check in checks if check.scope == "file"]

    # one pass: a 0/1 flag per row-level check and the per-row figures of the table-level
    # ones; OFFSET 0 keeps the flags a derived table (each predicate, with its NOT EXISTS
    # probes, is evaluated once per row, not again for the failing-row count)
    flags = (
        select(literal(1).label("row_"),
               *[case((check.failing, 1), else_=0).label(f"f{i}") for i, check in enumerate(row_checks)],
               *[check.figure.label(f"v{i}") for i, check in enumerate(file_checks)])
        .select_from(rows.source).offset(0).subquery("flags")
    )
    failing_any = (
        func.sum(case((or_(*[flags.c[f"f{i}"] == 1 for i in range(len(row_checks))]), 1), else_=0))
        if row_checks else literal(0)
    )
    figures = select(
        func.count(flags.c.row_),
        func.coalesce(failing_any, 0),
        *[func.coalesce(func.sum(flags.c[f"f{i}"]), 0) for i in range(len(row_checks))],
        *[func.coalesce(func.sum(flags.c[f"v{i}"]), 0) for i in range(len(file_checks))],
    )
    counted = conn.execute(figures).one()
    row_count, failing_rows = int(counted[0]), int(counted[1])
    counts = [int(value) for value in counted[2:2 + len(row_checks)]]
    observed = [_plain(value) for value in counted[2 + len(row_checks):]]

    def key_text(row) -> str:
        return KEY_SEPARATOR.join(contract_text(kind, value) or "" for kind, value in zip(key_kinds, row))

    failures: list[Failure] = []
    candidates: list[tuple] = []
    for check, count in zip(row_checks, counts):
        if not count:
            continue
        keys = conn.execute(
            select(*rows.key).select_from(rows.source).where(check.failing)
            .order_by(*rows.key).limit(MAX_EXAMPLES)
        ).all()
        candidates.extend(tuple(row) for row in keys)
        failures.append(Failure(check.expectation_type, check.column, check.description, "row", count,
                                examples=[key_text(row) for row in keys], position=check.position))
    for check, value in zip(file_checks, observed):
        assert check.accepts is not None
        if not check.accepts(value):
            failures.append(Failure(check.expectation_type, check.column, check.description, "file", 0,
                                    observed=value, position=check.position))
    failures.sort(key=lambda failure: failure.position)

    # the first failing rows overall are among the first rows of each failed expectation
    examples = [key_text(row) for row in _first_keys(conn, definition, sorted(set(candidates)))]
    return TableOutcome(table, suite_json["name"], row_count, failures, {}, {},
                        failing_rows=failing_rows, examples=examples)


def _first_keys(conn, definition, candidates: list[tuple]) -> list[tuple]:
    """The first ``MAX_EXAMPLES`` of ``candidates`` (primary key values) in the database's
    key order."""
    from sqlalchemy import and_, or_, select

    if not candidates:
        return []
    key = list(definition.primary_key.columns)
    if len(key) == 1:
        chosen = key[0].in_([values[0] for values in candidates])
    else:
        chosen = or_(*[and_(*[column == value for column, value in zip(key, values)]) for values in candidates])
    return [tuple(row) for row in conn.execute(
        select(*key).where(chosen).order_by(*key).limit(MAX_EXAMPLES)).all()]
