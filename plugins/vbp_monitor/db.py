"""Warehouse connection and schema migrations."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

from sqlalchemy import create_engine, event, exc as sa_exc
from sqlalchemy.engine import Engine

from vbp_monitor import config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

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
