"""Validation against Argo's official JSON Schema, shipped beside the checkout (see the platform facts)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "argo-workflows" / "schema.json"


def load_definitions() -> dict[str, Any]:
    if not SCHEMA.is_file():
        pytest.skip(f"Argo's JSON Schema is provided beside the checkout at {SCHEMA}; it is not there")
    definitions: dict[str, Any] = copy.deepcopy(json.loads(SCHEMA.read_text())["definitions"])
    # The schema types IntOrString as string only; Argo accepts integers there (retryStrategy.limit...).
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    return definitions


def validate(definitions: dict[str, Any], kind: str, document: dict[str, Any]) -> None:
    schema = {"$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}", "definitions": definitions}
    jsonschema.Draft202012Validator(schema).validate(document)
