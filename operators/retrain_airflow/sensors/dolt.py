"""DoltCommitSensor: waits until a Dolt branch moves past the consumer's watermark."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from retrain.dolt.watermark import CommitRange, CommitWatermark
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.lineage import DoltTable, EmitsLineage, Lineage
from retrain_airflow.operators.failures import fails_fast
from retrain_airflow.triggers.dolt import DoltCommitTrigger


class DoltCommitSensor(EmitsLineage, BaseSensorOperator):
    """Complete when ``branch`` has a head not yet sensed past the watermark of ``consumer``.

    Returns (and pushes to XCom) ``{commit, previous_commit, changed_keys, all_changed, reason,
    commit_count, commits}``: the range since the watermark, several commits forming one range.
    The watermark itself moves only when a downstream
    :class:`~retrain_airflow.operators.dolt.DoltAdvanceWatermarkOperator` succeeds.

    :param table: training table to diff (templated).
    :param key_column: column whose changed values are reported, e.g. ``customer_id`` (templated).
    :param consumer: watermark name (templated); defaults to the DAG id.
    :param branch: branch to watch (templated).
    :param dolt_conn_id: Airflow connection of type ``dolt``.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: seconds between polls when deferred.
    """

    template_fields: Sequence[str] = ("table", "key_column", "consumer", "branch")

    def __init__(
        self,
        *,
        table: str,
        key_column: str,
        consumer: str = "{{ dag.dag_id }}",
        branch: str = "main",
        dolt_conn_id: str = DoltHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.key_column = key_column
        self.consumer = consumer
        self.branch = branch
        self.dolt_conn_id = dolt_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def _sense(self) -> CommitRange | None:
        with DoltHook(self.dolt_conn_id).get_repository() as repo:
            found = CommitWatermark(repo, self.consumer, self.branch).sense(self.table, self.key_column)
        if found is not None:
            self._sensed(found.commit, found.previous_commit)
        return found

    def _sensed(self, commit: str, previous_commit: str | None) -> None:
        """The lineage of a sensed range: the table read at its head, from its start."""
        self.lineage = Lineage(inputs=(DoltTable(self.dolt_conn_id, self.table, commit, previous_commit),))

    def poke(self, context: Context) -> PokeReturnValue:
        found = self._sense()
        return PokeReturnValue(is_done=found is not None, xcom_value=found.to_payload() if found else None)

    @fails_fast
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self._sense()
        if found is not None:
            return found.to_payload()
        self.defer(
            trigger=DoltCommitTrigger(
                dolt_conn_id=self.dolt_conn_id,
                consumer=self.consumer,
                table=self.table,
                key_column=self.key_column,
                branch=self.branch,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Dolt head %s sensed (%d commit(s))", event["commit"], event["commit_count"])
        self._sensed(event["commit"], event.get("previous_commit"))
        return event
