"""Per-customer values that outgrow XCom travel as files; XCom keeps a small reference.

XCom rows live in Airflow's metadata database and every ``xcom_pull`` reads them whole, so a task
must not push a value that grows with the number of customers. A value whose JSON is over
:data:`HANDOFF_LIMIT` bytes is written to ``<retrain_handoff_path>/<dag>/<run>/<task>/<name>.json``
and the XCom carries ``{"handoff": <url>, "count": <items>}``. The path is an Airflow
``ObjectStoragePath`` (``[retrain] handoff_path``, which Variable ``retrain_handoff_path``
overrides): a local folder by default, ``s3://`` or ``gs://`` where workers share no disk. The
Argo fan-out does the same with the parent MLflow run's ``customers.json``. Operators taking such
values pass them through :func:`resolve`, so a template may pull either form.

A run's files live as long as the run may read them: :func:`purge_on_success`, a DAG's
``on_success_callback``, removes them when the run succeeds; a failed run keeps them, so that its
failed tasks can be cleared and rerun. (A DAG callback runs in the DAG processor; a listener would
run inside the scheduler's locked loop, where neither a Variable nor slow storage may be read.)
:func:`resolve` follows only references under the handoff path: a reference is data (an XCom, a
template, a run's conf) and must not open any file.

Why not Airflow's ``XComObjectStorageBackend`` (common.io 1.11, Airflow 3.3): it is one
deployment-wide ``[core] xcom_backend``, which a provider cannot set for its own tasks; it hands
off a whole return value (the small fields too) by one global threshold; and it purges only on an
explicit ``XCom.delete``: a retry writes another file, and clearing or deleting a run leaves them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from airflow.sdk import Context, ObjectStoragePath, Variable

from retrain.errors import RetrainError
from retrain_airflow import settings

log = logging.getLogger(__name__)

HANDOFF_LIMIT = 16_384  # bytes of JSON kept inline in XCom, as for the Argo workflow's selection
HANDOFF_KEY = "handoff"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class HandoffError(RetrainError):
    """A handoff reference that cannot be followed: outside the handoff path, or its file gone."""


def bounded(value: Any, *, context: Context, name: str) -> Any:
    """``value`` itself while its JSON is small, else a reference to the file it was written to.

    The file is named by DAG, run, task and ``name``, so a retried task overwrites its own.
    """
    text = _json(value)
    if len(text) <= HANDOFF_LIMIT:
        return value
    return _hand_off(text, len(value), context=context, name=name)


def bounded_fields(result: dict[str, Any], keys: Sequence[str], *, context: Context) -> dict[str, Any]:
    """A task's return value kept under the bound as a whole: when its JSON is over it, each of
    its per-customer ``keys`` travels as a file, whatever its own size (two lists just under the
    bound each would still double it)."""
    if len(_json(result)) <= HANDOFF_LIMIT:
        return result
    handed = {key: _hand_off(_json(result[key]), len(result[key]), context=context, name=key) for key in keys}
    return {**result, **handed}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _handoff_path() -> ObjectStoragePath:
    """``[retrain] handoff_path``, or Variable ``retrain_handoff_path`` when set."""
    configured = settings.configured("handoff_path")
    return ObjectStoragePath(Variable.get("retrain_handoff_path", default=configured))


def _run_folder(dag_id: str, run_id: str) -> ObjectStoragePath:
    return _handoff_path() / _segment(dag_id) / _segment(run_id)


def _segment(name: str) -> str:
    """``name`` as one path segment: no separator, and never ``.`` or ``..`` (a run id may be "..")."""
    safe = _UNSAFE.sub("_", name)
    return safe if safe.strip(".") else safe.replace(".", "_")


def _hand_off(text: str, count: int, *, context: Context, name: str) -> dict[str, Any]:
    """Write ``text`` (the JSON of ``count`` items) to the run's handoff folder; the reference."""
    ti = context["ti"]
    path = _run_folder(ti.dag_id, ti.run_id) / ti.task_id / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {HANDOFF_KEY: str(path), "count": count}


def resolve(value: Any) -> Any:
    """The value a :func:`bounded` reference stands for; any other value unchanged."""
    if not is_reference(value):
        return value
    path = _confined(str(value[HANDOFF_KEY]))
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HandoffError(
            f"handed-off value {path} is gone (its run's files are purged when the run succeeds): "
            "the task that wrote it must run again"
        ) from None


def _confined(url: str) -> ObjectStoragePath:
    """The file a reference names, refused unless it lies under the handoff path."""
    base, path = _handoff_path(), ObjectStoragePath(url)
    if (
        path.protocol != base.protocol
        or ".." in PurePosixPath(path.path).parts  # is_relative_to does not normalise: a/../../b passes
        or not path.is_relative_to(base)
    ):
        raise HandoffError(f"handed-off value {url!r} is outside the handoff path {base}: not read")
    return path


def purge_on_success(context: Context) -> None:
    """A DAG's ``on_success_callback``: remove the files the run handed off, since nothing reads
    them again (clearing a task of the run then needs its upstream tasks cleared too)."""
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    if purge(dag_id, run_id):
        log.info("purged the handed-off files of %s run %s", dag_id, run_id)


def purge(dag_id: str, run_id: str) -> bool:
    """Remove the files the run ``run_id`` of ``dag_id`` handed off; False when it wrote none."""
    folder = _run_folder(dag_id, run_id)
    if not folder.exists():
        return False
    folder.rmdir(recursive=True)
    return True


def is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {HANDOFF_KEY, "count"}
