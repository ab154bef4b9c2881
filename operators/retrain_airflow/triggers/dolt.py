"""DoltCommitTrigger: fires once per new head of a Dolt branch, with the customers the new commits changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from retrain.dolt import DoltConnectionError, DoltRepository
from retrain.dolt.watermark import CommitRange, CommitWatermark
from retrain_airflow.hooks.dolt import DoltHook


class DoltCommitTrigger(BaseEventTrigger):
    """Poll a branch head and emit the commit range since the consumer's watermark.

    Usable both by :class:`~retrain_airflow.sensors.dolt.DoltCommitSensor` (deferral) and by an
    ``AssetWatcher`` (event-driven scheduling). The event payload is
    :meth:`retrain.dolt.watermark.CommitRange.to_payload`. Only the connection id is serialized,
    never credentials. An unreachable repository (a retryable error: the server refused, or did not
    answer within its timeout; the engine process died) is retried at the next poll; any other
    error (unknown branch, table or column, a file that is not a whole doltlite database) ends the
    trigger with that error.

    :param dolt_conn_id: Airflow connection of type ``dolt``.
    :param consumer: the watermark's name, usually the DAG id.
    :param table: the training table to diff.
    :param key_column: the column whose changed values are reported (e.g. ``customer_id``).
    :param branch: the branch to watch.
    :param poll_interval: seconds between polls.
    """

    def __init__(
        self,
        *,
        dolt_conn_id: str,
        consumer: str,
        table: str,
        key_column: str,
        branch: str = "main",
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.dolt_conn_id = dolt_conn_id
        self.consumer = consumer
        self.table = table
        self.key_column = key_column
        self.branch = branch
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dolt_conn_id": self.dolt_conn_id,
                "consumer": self.consumer,
                "table": self.table,
                "key_column": self.key_column,
                "branch": self.branch,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        location = await DoltHook(self.dolt_conn_id).aget_repository_location()
        repo: DoltRepository | None = None
        try:
            while True:
                try:
                    if repo is None:
                        repo = await asyncio.to_thread(DoltRepository.open, location)
                    found = await asyncio.to_thread(self._sense, repo)
                except DoltConnectionError as error:
                    if not error.retryable:
                        raise
                    self.log.warning(
                        "Dolt repository unreachable, retrying in %ss: %s", self.poll_interval, error
                    )
                    if repo is not None:
                        repo.close()
                    repo = None
                    found = None
                if found is not None:
                    self.log.info(
                        "new head %s on %s: %d commit(s) since %s, changed: %s",
                        found.commit,
                        self.branch,
                        found.commit_count,
                        found.previous_commit,
                        found.changed.describe(),
                    )
                    yield TriggerEvent(found.to_payload())
                await asyncio.sleep(self.poll_interval)
        finally:
            if repo is not None:
                repo.close()

    def _sense(self, repo: DoltRepository) -> CommitRange | None:
        return CommitWatermark(repo, self.consumer, self.branch).sense(self.table, self.key_column)
