"""The one way to write alerts (data-contract.md › Outbound: the alerts table).

Rules compute candidate alerts with set-based SQL and hand them to ``AlertStore.replace``,
which upserts them by a deterministic ``alert_key`` and marks ``resolved`` the open alerts
of the same DAG, judged period, rule codes and operator scope that this run no longer
raised. Nothing else writes to ``alerts``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from vbp_monitor.core.catalog import RULES
from vbp_monitor.core.db import upsert
from vbp_monitor.core.formatting import stored
from vbp_monitor.core.labels import SEVERITY_ORDER
from vbp_monitor.model.schema import alerts

KEY_FIELDS = (
    "rule_code", "period", "branch_code", "institution_code", "batch_code", "generic_name",
    "product_code", "order_id", "category", "milestone_month", "source_file",
)
SUBJECT_FIELDS = KEY_FIELDS[3:]
NULL_TOKEN = "\u2205"  # ∅: an explicit token for a null in the key
UPDATED_ON_RERAISE = (
    "severity", "branch_code", "metric_value", "threshold_value", "message", "dag_id",
    "run_id", "status", "last_raised_at",
)


def alert_key(alert: dict) -> str:
    parts = []
    for name in KEY_FIELDS:
        value = alert.get(name)
        parts.append(NULL_TOKEN if value is None else str(value))
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Scope:
    """An operator's restriction of a run (DAG params ``branch_code`` / ``batch_code``)."""

    branch_code: str | None = None
    batch_code: str | None = None

    @classmethod
    def from_params(cls, params: dict | None) -> Scope:
        params = params or {}
        return cls(params.get("branch_code") or None, params.get("batch_code") or None)

    def clauses(self):
        out = []
        if self.branch_code:
            out.append(alerts.c.branch_code == self.branch_code)
        if self.batch_code:
            out.append(alerts.c.batch_code == self.batch_code)
        return out


@dataclass
class WriteResult:
    raised: int = 0
    new: int = 0
    resolved: int = 0
    by_rule: Counter = field(default_factory=Counter)


@dataclass
class JudgeResult:
    """What every rule DAG's ``judge`` returns: the alerts written and the files made.

    ``attachments`` maps an audience (a branch code, or the city's) to the files its email
    carries; ``details`` holds the DAG's own figures for the task log (counts, coverage).
    """

    period: str
    rule_codes: Sequence[str]
    written: WriteResult
    attachments: dict[str, list[Path]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def as_xcom(self) -> dict[str, Any]:
        """A JSON-safe summary (the task's return value, shown in the UI)."""
        return {
            "period": self.period,
            "rule_codes": list(self.rule_codes),
            "raised": self.written.raised,
            "new": self.written.new,
            "resolved": self.written.resolved,
            "by_rule": dict(sorted(self.written.by_rule.items())),
            "attachments": {audience: [str(path) for path in paths]
                            for audience, paths in self.attachments.items()},
            **self.details,
        }


class AlertStore:
    """Writes the alerts of one run: ``dag_id``, ``run_id`` and judged ``period``."""

    def __init__(self, dag_id: str, run_id: str, period: str, now: dt.datetime | None = None):
        self.dag_id = dag_id
        self.run_id = run_id
        self.period = period
        # one timestamp per write: rows not stamped with it were not raised by it
        self._now = now

    def _stamp(self) -> dt.datetime:
        return self._now or dt.datetime.now(dt.UTC)

    def replace(
        self,
        conn: Connection,
        rule_codes: Sequence[str],
        candidates: Iterable[dict],
        scope: Scope | None = None,
        source_file: str | None = None,
    ) -> WriteResult:
        """Upsert ``candidates`` and resolve what these rule codes no longer raise.

        ``candidates`` are dicts with ``rule_code``, ``severity``, ``branch_code``,
        ``message``, the subject fields that apply, ``metric_value`` and
        ``threshold_value``. ``source_file`` narrows resolution to one file's
        DATA_QUALITY alerts.
        """
        scope = scope or Scope()
        now = self._stamp()
        rows = []
        by_rule: Counter = Counter()
        for candidate in candidates:
            row = {name: candidate.get(name) for name in SUBJECT_FIELDS}
            row.update(
                rule_code=candidate["rule_code"],
                severity=candidate["severity"],
                branch_code=candidate["branch_code"],
                message=candidate["message"],
                metric_value=stored(candidate.get("metric_value")),
                threshold_value=stored(candidate.get("threshold_value")),
                period=self.period,
                dag_id=self.dag_id,
                run_id=self.run_id,
                status="open",
                first_raised_at=now,
                last_raised_at=now,
                notified_at=None,
            )
            if row["rule_code"] not in RULES:
                raise ValueError(f"unknown rule code {row['rule_code']}")
            if row["rule_code"] not in rule_codes:
                raise ValueError(f"{row['rule_code']} is not among this write's rule codes {rule_codes}")
            if row["severity"] not in SEVERITY_ORDER:
                raise ValueError(f"unknown severity {row['severity']}")
            row["alert_key"] = alert_key(row)
            rows.append(row)
            by_rule[row["rule_code"]] += 1

        result = WriteResult(raised=len(rows), by_rule=by_rule)
        if rows:
            # An alert key hashes its rule code and period: the keys already stored are among
            # this period's alerts of these codes, read in one query (not one per key batch).
            existing = set(conn.execute(
                select(alerts.c.alert_key).where(alerts.c.period == self.period,
                                                 alerts.c.rule_code.in_(sorted(by_rule)))
            ).scalars())
            result.new = len({row["alert_key"] for row in rows} - existing)
            upsert(conn, alerts, rows, key_columns=["alert_key"], update_columns=UPDATED_ON_RERAISE)

        conditions = [
            alerts.c.dag_id == self.dag_id,
            alerts.c.period == self.period,
            alerts.c.rule_code.in_(list(rule_codes)),
            alerts.c.status == "open",
            alerts.c.last_raised_at != now,
            *scope.clauses(),
        ]
        if source_file is not None:
            conditions.append(alerts.c.source_file == source_file)
        resolved = conn.execute(
            update(alerts).where(and_(*conditions)).values(status="resolved", run_id=self.run_id)
        )
        result.resolved = resolved.rowcount or 0
        return result

