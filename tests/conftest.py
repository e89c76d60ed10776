"""Shared fixtures: a freshly migrated warehouse on SQLite *and* PostgreSQL.

PostgreSQL is the real server of every machine of this project (127.0.0.1:5432, trust
auth, user postgres); each test gets its own database. Set VBP_TEST_PG_URL to point
elsewhere.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "plugins"))
sys.path.insert(0, str(REPO_ROOT / "demo"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from vbp_monitor.model import contract
from vbp_monitor.core import db  # noqa: E402
from vbp_monitor.core.prc_calendar import rebuild_work_calendar, ensure_cycle_month_calendar  # noqa: E402
from vbp_monitor.model.schema import metadata  # noqa: E402

PG_ADMIN_URL = os.environ.get("VBP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _pg_database(name: str, drop: bool = False) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if drop:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """A migrated, empty warehouse; yields its SQLAlchemy URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        name = None
    else:
        name = f"vbp_test_{uuid.uuid4().hex[:12]}"
        _pg_database(name)
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    db.upgrade_schema(url)
    yield url
    db.get_engine.cache_clear()
    if name:
        _pg_database(name, drop=True)


@pytest.fixture
def engine(warehouse_url):
    eng = db.get_engine(warehouse_url)
    with eng.begin() as conn:
        rebuild_work_calendar(conn)
    yield eng
    eng.dispose()
    db.get_engine.cache_clear()


def seed(conn, tables: dict[str, list[dict]]) -> None:
    """Insert rows the way ingest would store them (typed, with derived columns).

    Values may be strings as in the CSV files; they are parsed with the contract's kinds.
    Afterwards the cycle-month calendar is refreshed.
    """
    from helpers import typed_row

    for name in contract.LOAD_ORDER:
        rows = tables.get(name)
        if not rows:
            continue
        table = metadata.tables[name]
        conn.execute(insert(table), [contract.derive(name, typed_row(name, row)) for row in rows])
    ensure_cycle_month_calendar(conn)


# Real SMTP server on loopback (aiosmtpd) for mailer tests: see tests/fixtures_smtp.py.
pytest_plugins = ["fixtures_smtp"]
