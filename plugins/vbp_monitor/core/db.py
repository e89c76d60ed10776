"""Warehouse connection and schema migrations."""
from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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


def upsert(conn, table, rows, key_columns=None, update_columns=None) -> int:
    """The one upsert for PostgreSQL and SQLite: INSERT … ON CONFLICT (key) DO UPDATE.

    ``key_columns`` default to the primary key; ``update_columns`` default to every other
    column of the rows; an empty ``update_columns`` means DO NOTHING (insert-if-absent).
    Rows are sent in chunks. Returns the number of rows sent.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - the contract names PostgreSQL and SQLite
        raise NotImplementedError(conn.dialect.name)
    rows = list(rows)
    if not rows:
        return 0
    keys = list(key_columns or [column.name for column in table.primary_key.columns])
    statement = insert(table)
    if update_columns is None:
        update_columns = [name for name in rows[0] if name not in keys]
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
        conn.execute(paged, rows[start:start + UPSERT_CHUNK_ROWS]).close()
    return len(rows)


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
