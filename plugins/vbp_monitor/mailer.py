"""The one way to send mail (operations.md › Notification). INTERFACE STUB: to be implemented."""
from __future__ import annotations

from pathlib import Path


def notify_run(engine, run, attachments: dict[str, list[Path]] | None = None) -> dict:
    """Email the new, un-notified alerts of ``run.dag_id`` (see module docs).

    ``attachments``: extra files per audience: a branch_code (that branch's email) or the
    city row's branch_code (the city's email). Returns counts of emails/alerts sent.
    """
    raise NotImplementedError


def notify_task_failure(context) -> None:
    raise NotImplementedError
