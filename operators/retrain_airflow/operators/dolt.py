"""DoltAdvanceWatermarkOperator: the last task of a run, recording that its commit range is done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from retrain.dolt.watermark import CommitWatermark
from retrain.errors import InputError
from retrain_airflow.handoff import resolve
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.links import DoltCommitDiffLink
from retrain_airflow.operators.failures import fails_fast


class DoltAdvanceWatermarkOperator(BaseOperator):
    """Move the consumer's ``done`` watermark to ``commit``. Idempotent; never moves backwards.

    Place it downstream of all the work for the range, with the default ``all_success`` trigger
    rule, so a failed run leaves the watermark where it was and the next range covers its commits.
    A run that went on without some customers (a partial release) names them in ``held_by``: the
    watermark stays and the task is skipped, so the next range retrains them.

    :param commit: the commit whose work finished, e.g. ``{{ ti.xcom_pull('sense')['commit'] }}`` (templated).
    :param consumer: watermark name (templated); defaults to the DAG id.
    :param branch: the watched branch (templated).
    :param held_by: customers whose work did not finish, e.g. the training's ``failed`` mapping or
        a handoff reference to it; any holds the watermark (templated).
    :param dolt_conn_id: Airflow connection of type ``dolt``; with a ``web_url`` extra the task
        links to the range's diff on DoltHub or DoltLab.
    """

    template_fields: Sequence[str] = ("commit", "consumer", "branch", "held_by")

    def __init__(
        self,
        *,
        commit: str,
        consumer: str = "{{ dag.dag_id }}",
        branch: str = "main",
        held_by: Any = None,
        dolt_conn_id: str = DoltHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.commit = commit
        self.consumer = consumer
        self.branch = branch
        self.held_by = held_by
        self.dolt_conn_id = dolt_conn_id

    operator_extra_links = (DoltCommitDiffLink(),)

    @fails_fast
    def execute(self, context: Context) -> str:
        held_by = resolve(self.held_by)
        if isinstance(held_by, str):
            raise InputError(
                f"held_by must be customers (a list or mapping), got the string {held_by[:80]!r}; render it "
                "natively (DAG render_template_as_native_obj=True) or pass an XComArg"
            )
        held = sorted(held_by or [])
        if held:
            named = ", ".join(held[:20]) + (" ..." if len(held) > 20 else "")
            raise AirflowSkipException(
                f"watermark of {self.consumer} stays: {len(held)} customer(s) did not finish at "
                f"{self.commit} ({named}); the next range retrains them"
            )
        hook = DoltHook(self.dolt_conn_id)
        with hook.get_repository() as repo:
            watermark = CommitWatermark(repo, self.consumer, self.branch)
            previous = watermark.done()
            done = watermark.advance(self.commit)
        url = hook.commit_diff_url(previous, done)
        if url:
            context["ti"].xcom_push(key=DoltCommitDiffLink.source_key, value=url)
        return done
