"""Rule queries live in include/sql/*.sql as plain SQL with :named parameters.

The same text runs on PostgreSQL and SQLite: dates come in as parameters or from the
calendar tables, never from dialect date functions.
"""
from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from decimal import Decimal

from sqlalchemy import bindparam, event, text
from sqlalchemy.engine import Connection, Row

from vbp_monitor.core import config

_STATEMENT_END = re.compile(r";\s*(?:\n|$)")
NUMERIC_OID = 1700  # PostgreSQL's NUMERIC


@functools.cache
def load_sql(name: str) -> str:
    return (config.SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def _for_dialect(conn: Connection, value):
    # PostgreSQL compares NUMERIC exactly with a Decimal parameter; SQLite stores REAL and its
    # driver takes no Decimal, so there a threshold goes in as the nearest float (the rule SQL
    # allows for that with its epsilon).
    if isinstance(value, Decimal) and conn.dialect.name == "sqlite":
        return float(value)
    return value


def _bound(conn: Connection, statement: str, params: dict):
    clause = text(statement)
    used = {key: _for_dialect(conn, value) for key, value in params.items() if key in clause._bindparams}
    expanding: list = [bindparam(key, expanding=True) for key, value in used.items()
                 if isinstance(value, (list, tuple, set, frozenset))]
    if expanding:
        clause = clause.bindparams(*expanding)
        used = {k: list(v) if isinstance(v, (set, frozenset, tuple)) else v for k, v in used.items()}
    return clause, used


def statements(name: str) -> list[str]:
    """The statements of a file, split at semicolons that end a line."""
    body = "\n".join(line for line in load_sql(name).splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in _STATEMENT_END.split(body) if part.strip()]


def query(conn: Connection, name: str, **params) -> list[dict]:
    """Run a file holding one SELECT; rows as dicts."""
    (statement,) = statements(name)
    clause, used = _bound(conn, statement, params)
    return [dict(row._mapping) for row in conn.execute(clause, used)]


def stream(conn: Connection, name: str, rows_per_fetch: int = 2000, numeric_text: bool = False,
           **params) -> Iterator[Row]:
    """Run a file holding one SELECT; its rows (tuples, the columns in the SELECT's order;
    ``row._mapping`` by name: no dict copied per row), fetched ``rows_per_fetch`` at a time
    (PostgreSQL: a server-side cursor), so a large result is never held whole.

    ``numeric_text``: on PostgreSQL a NUMERIC comes as the text PostgreSQL writes of it
    ('1367.0000'), the very text psycopg2 would read a Decimal of (half the client's time of
    reading a hundred thousand rows of a dozen figures); SQLite's values are as they are."""
    with _streamed(conn, name, rows_per_fetch, params, numeric_text=numeric_text) as result:
        yield from result


@contextlib.contextmanager
def _streamed(conn: Connection, name: str, rows_per_fetch: int, params: dict, numeric_text: bool):
    (statement,) = statements(name)
    clause, used = _bound(conn, statement, params)
    # (options of this statement: Connection.execution_options would set them for every
    # later statement of the connection)
    options = {"stream_results": True, "yield_per": rows_per_fetch}
    if not (numeric_text and conn.dialect.name == "postgresql"):
        with conn.execute(clause, used, execution_options=options) as result:
            yield result
        return

    def numeric_as_text(_conn, cursor, *_args) -> None:  # this statement's cursor only
        import psycopg2.extensions

        psycopg2.extensions.register_type(_numeric_text_type(), cursor)

    event.listen(conn, "before_cursor_execute", numeric_as_text)
    try:
        result = conn.execute(clause, used, execution_options=options)
    finally:
        event.remove(conn, "before_cursor_execute", numeric_as_text)
    with result:
        yield result


@functools.cache
def _numeric_text_type():
    import psycopg2.extensions

    return psycopg2.extensions.new_type((NUMERIC_OID,), "NUMERIC_TEXT", lambda text, _cursor: text)


def execute(conn: Connection, name: str, **params) -> None:
    """Run every statement of a file (DELETE/INSERT … SELECT scripts)."""
    for statement in statements(name):
        clause, used = _bound(conn, statement, params)
        conn.execute(clause, used)
