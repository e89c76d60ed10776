"""Shared fixtures: a freshly migrated warehouse on SQLite *and* PostgreSQL.

PostgreSQL is the real server of every machine of this project (127.0.0.1:5432, trust
auth, user postgres); each test gets its own database (``builders.pg_database``). Set
VBP_TEST_PG_URL to point elsewhere. Test data builders live in tests/builders.py.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "plugins"))
sys.path.insert(0, str(REPO_ROOT / "demo"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from builders import pg_database  # noqa: E402
from vbp_monitor.core import db  # noqa: E402
from vbp_monitor.model.calendar_tables import rebuild_work_calendar  # noqa: E402

# Real SMTP server on loopback (aiosmtpd) for mailer tests, and the session's Airflow home
# and warehouses for the e2e tests: see tests/fixtures_smtp.py and tests/fixtures_e2e.py.
pytest_plugins = ["fixtures_smtp", "fixtures_e2e"]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """A migrated, empty warehouse; yields its SQLAlchemy URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        name = None
    else:
        name = f"vbp_test_{uuid.uuid4().hex[:12]}"
        url = pg_database(name)
    db.upgrade_schema(url)
    yield url
    db.get_engine.cache_clear()
    if name:
        pg_database(name, drop=True)


@pytest.fixture
def engine(warehouse_url):
    eng = db.get_engine(warehouse_url)
    with eng.begin() as conn:
        rebuild_work_calendar(conn)
    yield eng
    eng.dispose()
    db.get_engine.cache_clear()


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    """VBP_OUTPUT_DIR in the test's own folder (spreadsheets and drafts land there)."""
    monkeypatch.setenv("VBP_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path / "output"
