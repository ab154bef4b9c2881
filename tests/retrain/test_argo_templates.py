"""Every generated WorkflowTemplate: committed YAML equals the Hera code, round trip, Argo's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows import WorkflowTemplate

from retrain.argo_templates import TEMPLATES, write_templates

from .argo_schema import ROOT, validate


def test_committed_yaml_is_what_the_code_generates(tmp_path: Path) -> None:
    generated = write_templates(tmp_path)
    committed_files = sorted(p.name for p in (ROOT / "argo_templates").glob("*.yaml"))
    assert sorted(p.name for p in generated) == committed_files
    for path in generated:
        committed = ROOT / "argo_templates" / path.name
        assert committed.read_text() == path.read_text(), "run `make templates` and commit the result"


@pytest.mark.parametrize("file_name", sorted(TEMPLATES))
def test_hera_round_trip_and_plain_yaml(file_name: str) -> None:
    template = TEMPLATES[file_name]()
    assert WorkflowTemplate.from_yaml(template.to_yaml()).to_dict() == template.to_dict()
    document = yaml.safe_load((ROOT / "argo_templates" / f"{file_name}.yaml").read_text())
    assert (document["kind"], document["metadata"]["name"]) == ("WorkflowTemplate", template.name)


@pytest.mark.parametrize("file_name", sorted(TEMPLATES))
def test_templates_validate_against_argo_schema(argo_definitions: dict[str, Any], file_name: str) -> None:
    document = TEMPLATES[file_name]().to_dict()
    validate(argo_definitions, "WorkflowTemplate", document)
    document["spec"]["templates"][0]["retryStrategy"]["limit"] = {"not": "a number"}
    with pytest.raises(Exception, match="is not of type"):
        validate(argo_definitions, "WorkflowTemplate", document)
