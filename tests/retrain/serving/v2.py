"""Helpers shared by the serving tests: V2 request bodies and the official REST spec's schemas."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

JSON_LENGTH_HEADER = "inference-header-content-length"  # the binary data extension's header
SPEC = Path(__file__).resolve().parents[4] / "shared" / "kserve" / "rest_predict_v2.yaml"


def infer_body(texts: list[str], customers: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts},
            {"name": "customer_id", "datatype": "BYTES", "shape": [len(customers)], "data": customers},
        ],
        **extra,
    }


def outputs(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {o["name"]: o["data"] for o in body["outputs"]}


def without_kserve_nulls(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` less the ``parameters: null`` KServe 0.21 writes for absent parameters.

    The spec types ``parameters`` as an object (absent when unused); KServe's pydantic models
    render the missing value as ``null``. Only that key is dropped, at the top and per output, so
    any other deviation still fails the check.
    """
    cleaned = {k: v for k, v in body.items() if not (k == "parameters" and v is None)}
    if "outputs" in cleaned:
        cleaned["outputs"] = [
            {k: v for k, v in o.items() if not (k == "parameters" and v is None)} for o in cleaned["outputs"]
        ]
    return cleaned


def spec_validator(component: str) -> Any:
    """A jsonschema validator for ``#/components/schemas/<component>`` of KServe's V2 REST spec."""
    if not SPEC.is_file():
        pytest.skip(
            f"KServe's V2 REST spec is not at {SPEC} (fetch docs/predict-api/v2/rest_predict_v2.yaml)"
        )
    import jsonschema
    import yaml

    spec = yaml.safe_load(SPEC.read_text())
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


def elements(*values: bytes) -> bytes:
    """A BYTES tensor as the binary data extension frames it: 4-byte little-endian length, then bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def binary_body(
    text: bytes, customer: bytes, *, sizes: tuple[Any, Any] | None = None, shapes: tuple[int, int] = (1, 1)
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request: JSON header part, then the text and customer_id tensors."""
    sizes = sizes or (len(text), len(customer))
    document = {
        "inputs": [
            {"name": n, "datatype": "BYTES", "shape": [s], "parameters": {"binary_data_size": size}}
            for n, s, size in zip(("text", "customer_id"), shapes, sizes, strict=True)
        ]
    }
    head = json.dumps(document).encode()
    return head + text + customer, {JSON_LENGTH_HEADER: str(len(head))}
