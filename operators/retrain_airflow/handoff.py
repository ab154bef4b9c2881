"""Per-customer values that outgrow XCom travel as files; XCom keeps a small reference.

XCom rows live in Airflow's metadata database and every ``xcom_pull`` reads them whole, so a task
must not push a value that grows with the number of customers. A value whose JSON is over
:data:`HANDOFF_LIMIT` bytes is written to ``<retrain_handoff_path>/<dag>/<run>/<task>/<name>.json``
and the XCom carries ``{"handoff": <url>, "count": <items>}``. The path is an Airflow
``ObjectStoragePath`` (``[retrain] handoff_path``, which Variable ``retrain_handoff_path``
overrides): a local folder by default, ``s3://`` or ``gs://`` where workers share no disk. The
Argo fan-out does the same with the parent MLflow run's ``customers.json``. Operators taking such
values pass them through :func:`resolve`, so a template may pull either form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Context, ObjectStoragePath, Variable

from retrain_airflow import settings

HANDOFF_LIMIT = 16_384  # bytes of JSON kept inline in XCom, as for the Argo workflow's selection
HANDOFF_KEY = "handoff"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


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


def _hand_off(text: str, count: int, *, context: Context, name: str) -> dict[str, Any]:
    """Write ``text`` (the JSON of ``count`` items) to the run's handoff folder; the reference."""
    ti = context["ti"]
    configured = settings.configured("handoff_path")
    folder = ObjectStoragePath(Variable.get("retrain_handoff_path", default=configured))
    path = folder / _UNSAFE.sub("_", ti.dag_id) / _UNSAFE.sub("_", ti.run_id) / ti.task_id / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {HANDOFF_KEY: str(path), "count": count}


def resolve(value: Any) -> Any:
    """The value a :func:`bounded` reference stands for; any other value unchanged."""
    if not is_reference(value):
        return value
    path = ObjectStoragePath(value[HANDOFF_KEY])
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"handed-off value {path} is gone: the task that wrote it must run again"
        ) from None


def is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {HANDOFF_KEY, "count"}
