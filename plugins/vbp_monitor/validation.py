"""GX validation of what a task reads. INTERFACE STUB: to be implemented."""
from __future__ import annotations


def validate_tables(engine, run, tables: dict[str, str | None]) -> dict:
    """Validate warehouse tables a task reads with the suites in include/expectations/.

    ``tables``: table name -> optional SQL WHERE clause (may use :first_day / :last_day of
    ``run.period``) restricting the rows read. Failing rows raise one DATA_QUALITY alert per
    table through ``run.store``; a broken schema raises an exception (no rule computes).
    """
    raise NotImplementedError
