"""ArgoWorkflowTrigger: waits for an Argo workflow to finish, logging progress counted in customers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from retrain.fanout.argo_client import ArgoError
from retrain_airflow.hooks.argo import ArgoHook


class ArgoWorkflowTrigger(BaseTrigger):
    """Poll ``workflow`` until it reaches Succeeded, Failed or Error, then fire once.

    Each poll reads the phase and the training pods' node statuses, and logs a line whenever they
    change, e.g. ``412/1000 customers done, 2 failed, 35.0 adapters/min (Running, 206/500 pods
    finished)``. Events: ``{"status": "finished", "phase", "progress", "message", "workflow",
    "customers", "customers_done", "customers_failed"}`` (the counts are None for a workflow that
    does not say how many customers it trains) or ``{"status": "error", "message"}`` when the
    Argo Server refuses the poll (the workflow is gone, the token is refused) or stays unreachable
    for ``unreachable_timeout``. An unreachable server is polled again meanwhile, each miss logged:
    the workflow runs on in the cluster, so an Argo Server restart should not cost the task a try.
    A user killing the deferred task stops the workflow (:meth:`on_kill`); triggerer restarts do
    not.

    :param argo_conn_id: Airflow connection of type ``argo``.
    :param workflow: the workflow's name.
    :param poll_interval: seconds between polls.
    :param unreachable_timeout: seconds the Argo Server may stay unreachable (every retry of a
        poll spent) before the trigger gives up.
    """

    def __init__(
        self,
        *,
        argo_conn_id: str,
        workflow: str,
        poll_interval: float = 30.0,
        unreachable_timeout: float = 600.0,
    ) -> None:
        super().__init__()
        self.argo_conn_id = argo_conn_id
        self.workflow = workflow
        self.poll_interval = poll_interval
        self.unreachable_timeout = unreachable_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "argo_conn_id": self.argo_conn_id,
                "workflow": self.workflow,
                "poll_interval": self.poll_interval,
                "unreachable_timeout": self.unreachable_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await ArgoHook(self.argo_conn_id).aget_client()
        last_seen: tuple[Any, ...] | None = None
        unreachable_since: float | None = None
        while True:
            try:
                status = await asyncio.to_thread(client.status, self.workflow)
            except ArgoError as error:
                now = time.monotonic()
                unreachable_since = now if unreachable_since is None else unreachable_since
                unreachable_for = now - unreachable_since
                if not error.retryable or unreachable_for >= self.unreachable_timeout:
                    yield TriggerEvent({"status": "error", "workflow": self.workflow, "message": str(error)})
                    return
                self.log.warning(
                    "workflow %s: %s; polling again (unreachable for %.0fs, giving up after %.0fs)",
                    self.workflow,
                    error,
                    unreachable_for,
                    self.unreachable_timeout,
                )
                await asyncio.sleep(self.poll_interval)
                continue
            unreachable_since = None
            counts = status.customer_counts()
            if (seen := (status.phase, status.progress, counts)) != last_seen:
                self.log.info("workflow %s: %s", self.workflow, status.progress_line(datetime.now(UTC)))
                last_seen = seen
            if status.finished:
                done, failed = counts or (None, None)
                yield TriggerEvent(
                    {
                        "status": "finished",
                        "workflow": self.workflow,
                        "phase": status.phase,
                        "progress": status.progress,
                        "message": status.message,
                        "customers": status.customers,
                        "customers_done": done,
                        "customers_failed": failed,
                    }
                )
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        client = await ArgoHook(self.argo_conn_id).aget_client()
        await asyncio.to_thread(client.stop, self.workflow, "Airflow task was killed")
        self.log.info("stopped workflow %s", self.workflow)
