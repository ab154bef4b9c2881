"""The DAGs' settings: the provider's [retrain] section as Jinja templates a Variable overrides."""

from __future__ import annotations

import os
from typing import Any

import jinja2
import pytest

from retrain_airflow.settings import SUITE, overridable


class Variables:
    """What Airflow's template context offers as ``var.value``: ``get(name, default)``."""

    def __init__(self, **values: str) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def render(template: str, **variables: str) -> str:
    return jinja2.Environment().from_string(template).render(var={"value": Variables(**variables)})


def test_an_option_falls_back_to_its_declared_default_under_airflow_home() -> None:
    assert render(overridable("reports_dir")) == f"{os.environ['AIRFLOW_HOME']}/retrain/reports"
    assert render(overridable("training_backend")) == "local"


@pytest.mark.parametrize("value", ["/srv/it's here", r"C:\reports\new", "s3://b/{{ not a template }}"])
def test_a_configured_value_renders_back_exactly(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW__RETRAIN__REPORTS_DIR", value)
    assert render(overridable("reports_dir")) == value


def test_a_variable_overrides_the_configured_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__RETRAIN__WAREHOUSE", "/configured")
    assert render(overridable("warehouse"), retrain_warehouse="/from-variable") == "/from-variable"


def test_the_suite_is_empty_unless_configured_so_the_worker_finds_the_shipped_one() -> None:
    assert render(SUITE) == ""  # resolved by DoltValidateOperator on the worker, not at parse time
