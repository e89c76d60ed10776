"""Reference data lookups every part needs (branches and their addresses)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from vbp_monitor.model.schema import branches, distributors

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


# The audience of a distributor's email (operations.md › Notification): its part of one
# branch's delay list, the branch in copy. Keyed by both: a distributor serving two branches
# gets one email from each, and neither branch sees the other's orders.
DISTRIBUTOR_AUDIENCE_PREFIX = "distributor:"


def distributor_audience(branch_code: str, distributor_code: str) -> str:
    return f"{DISTRIBUTOR_AUDIENCE_PREFIX}{branch_code}:{distributor_code}"


def distributor_of_audience(audience: str) -> tuple[str, str] | None:
    """(branch_code, distributor_code) of a distributor audience, else None."""
    if not audience.startswith(DISTRIBUTOR_AUDIENCE_PREFIX):
        return None
    branch_code, _, distributor_code = audience.removeprefix(DISTRIBUTOR_AUDIENCE_PREFIX).partition(":")
    return branch_code, distributor_code


def distributor_directory(conn: Connection) -> dict[str, dict]:
    """distributor_code -> {name, emails[]} (distributors.csv; empty when never delivered)."""
    rows = conn.execute(select(distributors)).mappings().all()
    return {row["distributor_code"]: {"name": row["distributor_name"], "emails": split_emails(row["emails"])}
            for row in rows}
