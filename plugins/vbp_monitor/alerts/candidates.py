"""Candidate alerts: what rules hand to the store (one per alert key)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from vbp_monitor.alerts.store import alert_key
from vbp_monitor.core.labels import SEVERITY_ORDER


def by_severity_then_later_year(candidate: dict) -> tuple:
    """The default preference: the more severe, then the later agreement year."""
    return (-SEVERITY_ORDER[candidate["severity"]], candidate.get("_period_start") or dt.date.min)


def one_per_key(candidates: Iterable[dict],
                rank: Callable[[dict], tuple] = by_severity_then_later_year) -> list[dict]:
    """Keep one candidate per alert key, the one ``rank`` puts highest.

    Two agreement years of one subject can both be active in a boundary month, and two
    milestones can fall in one judged month: the store takes one alert per key. Keys that
    start with ``_`` are the rule's own working values and are dropped.
    """
    chosen: dict[str, tuple[tuple, dict]] = {}
    for candidate in candidates:
        key = alert_key(candidate)
        ranked = rank(candidate)
        if key not in chosen or ranked > chosen[key][0]:
            chosen[key] = (ranked, candidate)
    return [{k: v for k, v in candidate.items() if not k.startswith("_")}
            for _, candidate in chosen.values()]
