"""The DAGs' settings: the provider's [retrain] section as Jinja templates a Variable overrides."""

from __future__ import annotations

import os

import jinja2
import pytest
from airflow.sdk.execution_time.context import VariableAccessor

from retrain_airflow.settings import SUITE, overridable, seconds


def render(template: str) -> str:
    """As a task renders it: Airflow's own ``var.value`` accessor (Variables from ``AIRFLOW_VAR_*``)."""
    return (
        jinja2.Environment()
        .from_string(template)
        .render(var={"value": VariableAccessor(deserialize_json=False)})
    )


def test_an_option_falls_back_to_its_declared_default_under_airflow_home() -> None:
    assert render(overridable("reports_dir")) == f"{os.environ['AIRFLOW_HOME']}/retrain/reports"
    assert render(overridable("training_backend")) == "local"


@pytest.mark.parametrize("value", ["/srv/it's here", r"C:\reports\new", "s3://b/{{ not a template }}"])
def test_a_configured_value_renders_back_exactly(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW__RETRAIN__REPORTS_DIR", value)
    assert render(overridable("reports_dir")) == value


def test_a_variable_overrides_the_configured_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__RETRAIN__WAREHOUSE", "/configured")
    monkeypatch.setenv("AIRFLOW_VAR_RETRAIN_WAREHOUSE", "/from-variable")
    assert render(overridable("warehouse")) == "/from-variable"


def test_the_suite_is_empty_unless_configured_so_the_worker_finds_the_shipped_one() -> None:
    assert render(SUITE) == ""  # resolved by DoltValidateOperator on the worker, not at parse time


def test_the_commit_poll_is_a_number_of_seconds_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    assert seconds("commit_poll_seconds") == 30.0
    monkeypatch.setenv("AIRFLOW__RETRAIN__COMMIT_POLL_SECONDS", "2.5")
    assert seconds("commit_poll_seconds") == 2.5
    for bad in ("0", "soon", "inf"):
        monkeypatch.setenv("AIRFLOW__RETRAIN__COMMIT_POLL_SECONDS", bad)
        refused = rf"\[retrain\] commit_poll_seconds must be a number of seconds above 0, got '{bad}'"
        with pytest.raises(ValueError, match=refused):
            seconds("commit_poll_seconds")
