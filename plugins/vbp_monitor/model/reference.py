"""Reference data lookups every part needs (branches and their addresses)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from vbp_monitor.model.schema import branches

# Used only before branches.csv was ever loaded (e.g. a DATA_QUALITY alert on that file).
UNKNOWN_CITY_CODE = "CITY"


def city_branch_code(conn: Connection) -> str:
    """The code of the one ``level = city`` row of branches."""
    code = conn.execute(select(branches.c.branch_code).where(branches.c.level == "city")).scalar()
    return code or UNKNOWN_CITY_CODE


def split_emails(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").replace("；", ";").split(";") if part.strip()]


def branch_directory(conn: Connection) -> dict[str, dict]:
    """branch_code -> {name, level, emails[]}."""
    rows = conn.execute(select(branches)).mappings().all()
    return {
        row["branch_code"]: {"name": row["branch_name"], "level": row["level"],
                             "emails": split_emails(row["emails"])}
        for row in rows
    }
