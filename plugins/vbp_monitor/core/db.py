"""Warehouse connection and schema migrations."""
from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from vbp_monitor.core import config

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "model" / "migrations"

# SQLite has no DECIMAL; SQLAlchemy warns on every Numeric read. The rule SQL allows for
# it (see schema.py), so the warning is noise.
warnings.filterwarnings("ignore", category=sa_exc.SAWarning, message=".*Decimal objects natively.*")


@functools.cache
def get_engine(url: str | None = None) -> Engine:
    url = url or config.warehouse_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            # WAL lets parallel backfill runs read while one writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (url or config.warehouse_url()).replace("%", "%%"))
    return cfg


def upgrade_schema(url: str | None = None) -> None:
    """Bring the warehouse to the latest migration (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


UPSERT_CHUNK_ROWS = 1000
# From this many rows on, PostgreSQL upserts through COPY into a staging table (one
# INSERT … SELECT … ON CONFLICT instead of pages of VALUES); fewer go as before.
COPY_MIN_ROWS = 1000
COPY_PAGE_ROWS = 50_000


class _NotCopyable(Exception):
    """A value COPY's text format would not carry exactly as the bound parameter does."""


COPY_SPECIAL = "\\\t\n\r"  # characters COPY's text format escapes
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value) -> str:
    """One value in COPY's text format (the text PostgreSQL parses as the bound value)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        return value.translate(_COPY_ESCAPES)
    if kind is bool:
        return "t" if value else "f"
    if kind is int or kind is Decimal:
        return str(value)
    if kind is dt.date:
        return value.isoformat()
    if kind is dt.datetime and value.tzinfo is None:
        return value.isoformat(sep=" ")
    if kind is float and math.isfinite(value):
        return repr(value)
    # aware datetimes (psycopg2 binds them as timestamptz), NaN, JSON, subclasses: as before
    raise _NotCopyable(kind.__name__)


_NULL = "\\N"
_BOOLEAN_TEXT = {True: "t", False: "f"}


_datetime_text = operator.methodcaller("isoformat", " ")


class CopyColumns(dict):
    """Rows as columns (name → equally long lists) already in COPY's text format
    (``copy_column``): ``upsert`` sends them through COPY as they are (PostgreSQL only)."""


def copy_column(values) -> list[str]:
    """A column's values in COPY's text format: one conversion for the column's one type
    (C-level where it can be), value by value when types mix; a numpy datetime64 array
    (NaT for NULL) at C speed."""
    if not isinstance(values, list):
        import numpy as np

        texts = np.datetime_as_string(values)  # ISO 8601 ('T' between date and time) at the array's unit
        texts[np.isnat(values)] = _NULL
        return texts.tolist()
    kinds = set(map(type, values))
    nullable = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [_NULL] * len(values)
    if len(kinds) > 1:
        return [copy_text(value) for value in values]
    kind = kinds.pop()
    convert: Any
    if kind is str:
        special = "".join(filter(None, values))
        if any(char in special for char in COPY_SPECIAL):
            return [copy_text(value) for value in values]
        convert = None
    elif kind is bool:
        convert = _BOOLEAN_TEXT.__getitem__
    elif kind is int or kind is Decimal:
        convert = str
    elif kind is dt.date:
        convert = dt.date.isoformat
    elif kind is dt.datetime:
        if any(value.tzinfo is not None for value in values if value is not None):
            raise _NotCopyable("aware datetime")
        convert = _datetime_text
    elif kind is float:
        if not all(math.isfinite(value) for value in values if value is not None):
            raise _NotCopyable("float")
        convert = repr
    else:
        raise _NotCopyable(kind.__name__)
    if convert is None:
        return [_NULL if value is None else value for value in values] if nullable else values
    if kind is dt.date or kind is bool or kind is int:
        # dates and flags repeat: convert each distinct value once (not Decimals: 1.5 == 1.50)
        text = {value: _NULL if value is None else convert(value) for value in set(values)}
        return list(map(text.__getitem__, values))
    if kind is Decimal:
        # a typed column repeats the very Decimal objects (one per distinct text): each object
        # once, by identity (the list holds them: no id is reused meanwhile)
        ids = list(map(id, values))
        objects = dict(zip(ids, values))
        if len(objects) * 2 < len(values):
            by_id = {key: _NULL if value is None else convert(value) for key, value in objects.items()}
            return list(map(by_id.__getitem__, ids))
    if nullable:
        return [_NULL if value is None else convert(value) for value in values]
    return list(map(convert, values))


def _copy_page(rows: list[dict], names: list[str]) -> str:
    """Rows as the body of a COPY … FROM STDIN in text format."""
    if len(names) == 1:
        columns = [copy_column([row[names[0]] for row in rows])]
    else:
        columns = [copy_column(list(column)) for column in zip(*map(operator.itemgetter(*names), rows))]
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


def _copy_pages(rows: list[dict] | dict[str, list], names: list[str]) -> Iterator[str]:
    """The rows (dicts, or a mapping of equally long columns) as COPY bodies of at most
    ``COPY_PAGE_ROWS`` rows; ``_NotCopyable`` when a value cannot go through COPY exactly."""
    if isinstance(rows, dict):
        count = len(rows[names[0]])
        rendered = isinstance(rows, CopyColumns)
        for start in range(0, count, COPY_PAGE_ROWS):
            columns = [rows[name][start:start + COPY_PAGE_ROWS] for name in names]
            if not rendered:
                columns = list(map(copy_column, columns))
            yield "\n".join(map("\t".join, zip(*columns))) + "\n"
        return
    for start in range(0, len(rows), COPY_PAGE_ROWS):
        yield _copy_page(rows[start:start + COPY_PAGE_ROWS], names)


def _upsert_by_copy(conn, table, rows: list[dict] | dict[str, list], names: list[str], keys: list[str],
                    update_columns: list[str], old_values: dict[str, set] | None = None) -> bool:
    """PostgreSQL: COPY the rows straight into the table (in a savepoint: what it does when
    no row conflicts is what the upsert does); when that fails (a key already stored or
    repeated, or any other error) the savepoint is rolled back and the rows go by COPY into a
    temporary staging table (same transaction, the raw DBAPI connection of ``conn``), then one
    INSERT … SELECT … ON CONFLICT. False when a value cannot go through COPY exactly (nothing
    was written then).

    ``old_values`` (see ``upsert``): nothing when the COPY straight into the table succeeded
    (no key was stored); else the stored rows the staging table's keys meet, read before the
    INSERT."""
    import io
    import uuid

    import psycopg2

    quote = conn.dialect.identifier_preparer.quote
    target = quote(table.name) if table.schema is None else f"{quote(table.schema)}.{quote(table.name)}"
    staging = f"vbp_upsert_{uuid.uuid4().hex[:12]}"
    columns = ", ".join(quote(name) for name in names)
    try:
        pages = list(_copy_pages(rows, names))
    except _NotCopyable:
        return False
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(f"SAVEPOINT {staging}")
        try:
            for page in pages:
                cursor.copy_expert(f"COPY {target} ({columns}) FROM STDIN", io.StringIO(page), len(page) + 1)
        except psycopg2.Error:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {staging}")
            cursor.execute(f"RELEASE SAVEPOINT {staging}")
        else:
            cursor.execute(f"RELEASE SAVEPOINT {staging}")
            return True
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS "
                       f"SELECT {columns} FROM {target} WITH NO DATA")
        for page in pages:
            cursor.copy_expert(f"COPY {staging} ({columns}) FROM STDIN", io.StringIO(page), len(page) + 1)
        if old_values:
            wanted = list(old_values)
            # each staging row's key looked up in the target's key index: hashing the target
            # instead (the plan of a staging table without statistics) reads all of it, 1.2 s
            # at 1,000,000 orders against 0.6 s for 100,000 lookups
            with planner_settings(conn, enable_hashjoin="off", enable_mergejoin="off"):
                cursor.execute(f"SELECT DISTINCT {', '.join(f't.{quote(name)}' for name in wanted)} "
                               f"FROM {staging} s JOIN {target} t ON "
                               + " AND ".join(f"t.{quote(name)} = s.{quote(name)}" for name in keys))
                found = cursor.fetchall()
            for values in found:
                for name, value in zip(wanted, values):
                    old_values[name].add(value)
        conflict = ", ".join(quote(name) for name in keys)
        if update_columns:
            action = "DO UPDATE SET " + ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}"
                                                  for name in update_columns)
        else:
            action = "DO NOTHING"
        cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} "
                       f"ON CONFLICT ({conflict}) {action}")
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    return True


def _add_old_values(conn, table, keys: list[str], rows: list[dict], old_values: dict[str, set]) -> None:
    """Into ``old_values`` (see ``upsert``): the distinct values stored in the rows of ``rows``' keys."""
    from sqlalchemy import select, tuple_

    wanted = list(old_values)
    if len(keys) == 1:
        stored = table.c[keys[0]].in_([row[keys[0]] for row in rows])
    else:
        stored = tuple_(*(table.c[name] for name in keys)).in_([tuple(row[name] for name in keys) for row in rows])
    for values in conn.execute(select(*(table.c[name] for name in wanted)).distinct().where(stored)):
        for name, value in zip(wanted, values):
            old_values[name].add(value)


def upsert(conn, table, rows, key_columns=None, update_columns=None, *,
           old_values: dict[str, set] | None = None) -> int:
    """The one upsert for PostgreSQL and SQLite: INSERT … ON CONFLICT (key) DO UPDATE.

    ``key_columns`` default to the primary key; ``update_columns`` default to every other
    column of the rows; an empty ``update_columns`` means DO NOTHING (insert-if-absent).
    On PostgreSQL, ``COPY_MIN_ROWS`` rows or more go through COPY: straight into the table
    when no key conflicts, else (the savepoint rolled back) into a temporary staging table and
    one INSERT … SELECT … ON CONFLICT (see ``_upsert_by_copy``); otherwise (and on SQLite) rows
    are sent in chunks. Returns the number of rows sent.

    ``rows`` may also be a mapping of column name to equally long lists of values (the same
    rows, column-wise: COPY then converts column by column, no dict per row), or
    ``CopyColumns`` (PostgreSQL, ``COPY_MIN_ROWS`` rows or more: sent as they are).

    ``old_values``: for each column it names, a set that receives the distinct values the
    column had in the rows whose key was already stored before this write (an update may have
    changed them: what the write moved rows away from); rows of new keys add nothing. Read by
    one query per page of rows (the VALUES path) or one join with the staging table; nothing
    when the COPY straight into the table succeeded (then no key was stored).
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - the contract names PostgreSQL and SQLite
        raise NotImplementedError(conn.dialect.name)
    columns: dict[str, list] | None = None
    if isinstance(rows, dict):
        columns = rows
        names = list(columns)
        count = len(columns[names[0]]) if names else 0
    else:
        rows = list(rows)
        names = list(rows[0]) if rows else []
        count = len(rows)
    if not count:
        return 0
    keys = list(key_columns or [column.name for column in table.primary_key.columns])
    if update_columns is None:
        update_columns = [name for name in names if name not in keys]
    if isinstance(rows, CopyColumns) and (conn.dialect.name != "postgresql" or count < COPY_MIN_ROWS):
        raise ValueError(f"COPY text for {count} rows on {conn.dialect.name}")
    if (conn.dialect.name == "postgresql" and count >= COPY_MIN_ROWS
            and _upsert_by_copy(conn, table, rows if columns is None else columns, names, keys,
                                list(update_columns), old_values)):
        return count
    if columns is not None:
        rows = [dict(zip(names, values)) for values in zip(*columns.values())]
    statement = insert(table)
    if update_columns:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in update_columns})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    if conn.dialect.name == "postgresql":
        # RETURNING lets psycopg2 send the rows in pages (insertmanyvalues): ~4× faster
        paged: Any = statement.returning(*[table.c[name] for name in keys])
    else:
        paged = statement
    for start in range(0, len(rows), UPSERT_CHUNK_ROWS):
        page = rows[start:start + UPSERT_CHUNK_ROWS]
        if old_values:
            _add_old_values(conn, table, keys, page, old_values)
        conn.execute(paged, page).close()
    return count


@contextmanager
def planner_settings(conn, **settings: str) -> Iterator[None]:
    """PostgreSQL planner and executor settings for the statements run inside, within the
    transaction only (``set_config(…, is_local)``), reset after them. SQLite: nothing.

    For a bulk statement whose join PostgreSQL misestimates (two join columns it takes for
    independent): ``work_mem`` so its sorts and hashes stay in memory, ``enable_mergejoin``
    off so that half a million rows are hashed, not sorted by text keys.
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    for name, value in settings.items():
        conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
    yield
    for name in settings:
        conn.execute(text(f"RESET {_setting_name(name)}"))


def _setting_name(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a setting name: {name!r}")
    return name
