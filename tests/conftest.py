"""Shared fixtures: a freshly migrated warehouse on SQLite *and* PostgreSQL.

PostgreSQL is the real server of every machine of this project (127.0.0.1:5432, trust
auth, user postgres); each test gets its own database (``builders.pg_database``). Set
VBP_TEST_PG_URL to point elsewhere. Test data builders live in tests/builders.py.
"""
from __future__ import annotations

import shutil
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


@pytest.fixture(scope="session")
def warehouse_templates(tmp_path_factory):
    """One migrated warehouse with its work calendar per database kind, built once per
    session: each test gets a copy (a file copy on SQLite, ``CREATE DATABASE … TEMPLATE``
    on PostgreSQL), which costs a fraction of migrating and building the calendar again."""
    folder = tmp_path_factory.mktemp("warehouse_template")
    templates: dict[str, str] = {}
    made: list[str] = []

    def template(kind: str) -> str:
        if kind not in templates:
            if kind == "sqlite":
                url = f"sqlite:///{folder / 'warehouse.db'}"
            else:
                name = f"vbp_template_{uuid.uuid4().hex[:12]}"
                url = pg_database(name)
                made.append(name)
            db.upgrade_schema(url)
            engine = db.get_engine(url)
            with engine.begin() as conn:
                rebuild_work_calendar(conn)
            engine.dispose()
            db.get_engine.cache_clear()
            templates[kind] = url if kind == "sqlite" else made[-1]
        return templates[kind]

    yield template
    for name in made:
        pg_database(name, drop=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path, warehouse_templates):
    """A migrated warehouse with its work calendar and no data; yields its SQLAlchemy URL."""
    template = warehouse_templates(request.param)
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        shutil.copyfile(template.removeprefix("sqlite:///"), path)
        url = f"sqlite:///{path}"
        name = None
    else:
        name = f"vbp_test_{uuid.uuid4().hex[:12]}"
        url = pg_database(name, template=template)
    yield url
    db.get_engine.cache_clear()
    if name:
        pg_database(name, drop=True)


@pytest.fixture
def engine(warehouse_url):
    eng = db.get_engine(warehouse_url)
    yield eng
    eng.dispose()
    db.get_engine.cache_clear()


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    """VBP_OUTPUT_DIR in the test's own folder (spreadsheets and drafts land there)."""
    monkeypatch.setenv("VBP_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path / "output"
