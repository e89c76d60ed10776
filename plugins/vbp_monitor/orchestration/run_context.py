"""What a task needs to know about its run, taken from the Airflow context once."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vbp_monitor.alerts.store import AlertStore, Scope
from vbp_monitor.core.periods import JudgedPeriod


@dataclass
class RunContext:
    dag_id: str
    run_id: str
    period: JudgedPeriod
    scope: Scope = field(default_factory=Scope)
    force_resend: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> AlertStore:
        return AlertStore(self.dag_id, self.run_id, self.period.label)

    @classmethod
    def from_airflow(cls, context: dict, period_of: Callable[[Any], JudgedPeriod]) -> RunContext:
        dag_run = context["dag_run"]
        # Manual runs in Airflow 3 may have no logical date: fall back to run_after.
        logical = context.get("logical_date") or getattr(dag_run, "logical_date", None) or dag_run.run_after
        params = dict(context.get("params") or {})
        return cls(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            period=period_of(logical),
            scope=Scope.from_params(params),
            force_resend=bool(params.get("force_resend")),
            params=params,
        )

    @classmethod
    def for_test(cls, dag_id: str, period: JudgedPeriod, run_id: str = "test", **kwargs) -> RunContext:
        return cls(dag_id=dag_id, run_id=run_id, period=period, **kwargs)
