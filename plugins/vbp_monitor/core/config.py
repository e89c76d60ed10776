"""Configuration from the environment (see operations.md › Interfaces).

Paths are found relative to this file so the DAGs work under any AIRFLOW_HOME whose
dags_folder and plugins_folder point at the repository's folders.
"""
from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = REPO_ROOT / "include"
SQL_DIR = INCLUDE_DIR / "sql"
EXPECTATIONS_DIR = INCLUDE_DIR / "expectations"
PROFILES_DIR = INCLUDE_DIR / "profiles"
TEMPLATES_DIR = INCLUDE_DIR / "templates"
DATA_DIR = REPO_ROOT / "data"

# The platform's times and the runs' logical dates are read in this zone (operations.md).
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def warehouse_url() -> str:
    """VBP_WAREHOUSE_URL; default: a SQLite file in the project's data folder."""
    url = os.environ.get("VBP_WAREHOUSE_URL")
    if url:
        return url
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DATA_DIR / 'warehouse.db'}"


def landing_dir() -> Path:
    return Path(os.environ.get("VBP_LANDING_DIR") or DATA_DIR / "landing")


def output_dir() -> Path:
    """Where spreadsheets and draft reports are written (besides being mailed)."""
    path = Path(os.environ.get("VBP_OUTPUT_DIR") or DATA_DIR / "output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def policy_profile_name() -> str:
    return os.environ.get("VBP_POLICY_PROFILE") or "default"


def data_team_emails() -> list[str]:
    raw = os.environ.get("VBP_DATA_TEAM_EMAILS", "")
    return [address.strip() for address in raw.split(";") if address.strip()]


def smtp_conn_id() -> str:
    return os.environ.get("VBP_SMTP_CONN_ID", "smtp_default")


def mail_from() -> str | None:
    """VBP_MAIL_FROM: the From of every email, ``显示名称 <address>`` (or only one of the two);
    unset: a Chinese display name and the SMTP connection's ``from_email``."""
    return os.environ.get("VBP_MAIL_FROM") or None
