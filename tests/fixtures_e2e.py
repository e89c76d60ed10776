"""Fixtures of the end-to-end tests: `airflow` in a subprocess with the environment of
scripts/env.sh, a temporary AIRFLOW_HOME (its metadata DB migrated once per session), a
fresh warehouse on SQLite and PostgreSQL, and a throwaway SMTP server on loopback.

Registered in conftest.py (``pytest_plugins``); test modules import only the helpers.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from builders import pg_database
from fixtures_smtp import SmtpTestServer

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = REPO / ".venv" / "bin" / "airflow"


def env_sh(smtp_connection: str | None = None, **overrides: str) -> dict[str, str]:
    """The environment scripts/env.sh exports, given ``overrides`` it keeps (it uses
    ${VAR:-default} for them). The SMTP connection is set afterwards, as scripts/demo.sh
    does, whatever env.sh makes of a preset one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VBP_"))}
    base.update(overrides)
    out = subprocess.run(["bash", "-c", ". scripts/env.sh && env -0"], cwd=REPO, env=base,
                         capture_output=True, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    if smtp_connection:
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = smtp_connection
    return env


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("airflow_home")
    env = env_sh(AIRFLOW_HOME=str(home))
    result = subprocess.run([str(AIRFLOW), "db", "migrate"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def e2e_warehouse(request, tmp_path):
    """An empty warehouse URL (no schema: the DAGs' `migrate` step creates it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e_warehouse.db'}"
        return
    name = f"vbp_e2e_{uuid.uuid4().hex[:12]}"
    yield pg_database(name)
    pg_database(name, drop=True)


@pytest.fixture
def smtp():
    server = SmtpTestServer().start()
    yield server
    server.stop()
