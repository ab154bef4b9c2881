"""ServingCheckOperator in a real ``dag.test()`` run against the real model server (``.venv-serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ...retrain.serving.server_process import SERVE_BIN, free_port, served
from ..dag_files import load_dag

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease


def check_dag(dag_id: str, endpoint: str, release: TrainedRelease) -> str:
    """A DAG of one check; the endpoint comes through a param, so the template is rendered."""
    return f"""
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.serving import ServingCheckOperator

with DAG({dag_id!r}, schedule=None, start_date=dt.datetime(2026, 1, 1),
         params={{"endpoint": {endpoint!r}}}) as dag:
    ServingCheckOperator(task_id="check", endpoint="{{{{ params.endpoint }}}}",
                         release_id={release.release_id!r}, mlflow_uri={release.store.tracking_uri!r},
                         timeout=5)
"""


@pytest.fixture(scope="module")
def endpoint(trained_release: TrainedRelease, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not SERVE_BIN.is_file():
        pytest.skip(f"{SERVE_BIN} is missing: make venv-serve builds it")
    with served(trained_release.release_dir, tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.mark.slow
def test_passes_against_the_served_release(
    trained_release: TrainedRelease, endpoint: str, airflow_db: Path
) -> None:
    run = load_dag(airflow_db, "serving_check", check_dag("serving_check", endpoint, trained_release)).test()
    assert run.state == "success"
    result = run.get_task_instance("check").xcom_pull(task_ids="check")
    assert result["endpoint"] == endpoint  # rendered from the template
    assert sorted(result["checked_rows"]) == sorted(trained_release.customers)
    assert max(result["max_difference"].values()) < 1e-4


def test_fails_when_the_endpoint_is_down(trained_release: TrainedRelease, airflow_db: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    source = check_dag("serving_check_down", down, trained_release)
    run = load_dag(airflow_db, "serving_check_down", source).test()
    assert run.state == "failed"
