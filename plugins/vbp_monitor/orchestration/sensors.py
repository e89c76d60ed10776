"""A deferrable wait for another DAG's run of the same logical date, cheap to parse.

Airflow's ``ExternalTaskSensor`` does this, but its module imports ``airflow.models.dag``
(and the DagBag) at parse time: 0.26 s added to every parse of a DAG file that uses it, in a
fresh interpreter (issue 11: a DAG file parses in ≤ 0.2 s beyond ``import airflow.sdk``).
This sensor defers to the same trigger (``WorkflowTrigger``, imported when the task runs),
so the triggerer waits, not a worker slot, and it ends the same way: the run succeeded →
done; it failed, or the wait timed out → failed, or skipped under ``soft_fail``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseSensorOperator


class SameDateRunSensor(BaseSensorOperator):
    """Waits until ``external_dag_id``'s run of this run's logical date has succeeded."""

    template_fields = ("external_dag_id",)
    ui_color = "#e8f0fe"

    def __init__(self, *, external_dag_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.external_dag_id = external_dag_id

    @staticmethod
    def _logical_date(context) -> dt.datetime:
        return context.get("logical_date") or context["dag_run"].run_after

    def poke(self, context) -> bool:
        """Whether that run succeeded (a failed run ends the wait as the trigger's "failed"
        event does). ``execute`` always defers; this is the same check, for a subclass that
        would poke instead."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        dates = [self._logical_date(context)]
        if RuntimeTaskInstance.get_dr_count(dag_id=self.external_dag_id, logical_dates=dates, states=["failed"]):
            self._failed()
        return RuntimeTaskInstance.get_dr_count(dag_id=self.external_dag_id, logical_dates=dates,
                                                states=["success"]) > 0

    def execute(self, context) -> None:
        # always deferred: the triggerer waits, not a worker slot
        from airflow.providers.standard.triggers.external_task import WorkflowTrigger

        self.defer(
            trigger=WorkflowTrigger(
                external_dag_id=self.external_dag_id, logical_dates=[self._logical_date(context)],
                allowed_states=["success"], failed_states=["failed"], skipped_states=None,
                poke_interval=self.poke_interval, soft_fail=self.soft_fail,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def _failed(self) -> None:
        from airflow.sdk.exceptions import AirflowException, AirflowSkipException

        if self.soft_fail:
            raise AirflowSkipException(f"the run of {self.external_dag_id} of this date failed: skipped (soft_fail)")
        raise AirflowException(f"the run of {self.external_dag_id} of this date failed")

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> None:
        if event and event.get("status") == "success":
            self.log.info("the run of %s of this date succeeded", self.external_dag_id)
            return
        self._failed()
