"""MLflow's scoring format (``POST /invocations``) for clients written against ``mlflow models serve``.

Accepts ``dataframe_split`` (``{"columns": [...], "data": [[...], ...]}``) and ``dataframe_records``
(``[{"text": ..., "customer_id": ...}, ...]``); answers ``{"predictions": [{"score", "label",
"adapter_version"}, ...]}``. Only the parsing and the answer's shape live here (no KServe): the
server routes the rows through the same batcher as the V2 endpoints.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from retrain.engine import EngineInputError, Predictions

COLUMNS = ("text", "customer_id")
FORMATS = ("dataframe_split", "dataframe_records")


def parse(body: Any) -> tuple[list[str], list[str]]:
    """The request's texts and customer ids, or :class:`EngineInputError` naming the field at fault."""
    if not isinstance(body, dict):
        raise EngineInputError(f"the body must be a JSON object with one of {', '.join(FORMATS)}")
    given = [key for key in FORMATS if key in body]
    if len(given) != 1:
        found = ", ".join(sorted(map(str, body))) or "none"
        raise EngineInputError(f"the body needs exactly one of {', '.join(FORMATS)} (found keys: {found})")
    rows = _split(body["dataframe_split"]) if given[0] == "dataframe_split" else body["dataframe_records"]
    if not isinstance(rows, list):
        raise EngineInputError(f"{given[0]} must hold a list of rows, got {type(rows).__name__}")
    texts: list[str] = []
    customers: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise EngineInputError(f"{given[0]} row {i} is {type(row).__name__}, not an object of columns")
        for column, out in zip(COLUMNS, (texts, customers), strict=True):
            value = row.get(column)
            if not isinstance(value, str):
                problem = (
                    "is missing"
                    if column not in row
                    else f"is {'null' if value is None else type(value).__name__}, not a string"
                )
                raise EngineInputError(f"{given[0]} row {i}: column {column!r} {problem}")
            out.append(value)
    return texts, customers


def _split(split: Any) -> list[Any]:
    """``dataframe_split`` rows as records, so both formats are checked the same way."""
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise EngineInputError('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
    columns = split["columns"]
    repeated = sorted(name for name, count in Counter(map(repr, columns)).items() if count > 1)
    if repeated:
        raise EngineInputError(
            f"dataframe_split columns {columns} repeat {', '.join(repeated)}: name each once"
        )
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise EngineInputError(f"dataframe_split columns {columns} lack {', '.join(map(repr, missing))}")
    data = split.get("data")
    if not isinstance(data, list):
        raise EngineInputError("dataframe_split.data must be a list of rows")
    records: list[Any] = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise EngineInputError(f"dataframe_split.data row {i} must be a list of {len(columns)} values")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def answer(predictions: Predictions) -> dict[str, Any]:
    return {
        "predictions": [
            {"score": float(score), "label": label, "adapter_version": version}
            for score, label, version in zip(
                predictions.scores, predictions.labels, predictions.adapter_versions, strict=True
            )
        ]
    }
