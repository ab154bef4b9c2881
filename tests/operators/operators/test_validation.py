"""DoltValidateOperator in real ``dag.test()`` runs: strict failure, quarantine, Data Docs link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.validation.suite import PACKAGED_SUITE
from retrain_airflow.links import DataDocsLink

from ..dag_files import load_dag

DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.validation import DoltValidateOperator

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    DoltValidateOperator(
        task_id="validate", table="examples", commit="main", suite={suite!r},
        docs_dir={docs!r}, quarantine={quarantine},
    )
"""


def dag_with(home: Path, dag_id: str, docs: Path, quarantine: bool, suite: str = str(PACKAGED_SUITE)) -> Any:
    """``suite=""`` is what the DAGs pass when [retrain] suite_path is unset: the shipped suite."""
    source = DAG_SOURCE.format(dag_id=dag_id, suite=suite, docs=str(docs), quarantine=quarantine)
    return load_dag(home, dag_id, source)


@pytest.fixture
def broken_label(seeded: SeededRepository) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        repo.execute(Statement("UPDATE examples SET label = 'maybe' WHERE example_id = 1"))
        repo.commit("a bad label for acme_air")


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn", "broken_label")
def test_strict_gate_fails_the_task_and_links_the_docs(airflow_db: Path, tmp_path: Path) -> None:
    run = dag_with(airflow_db, "validate_strict", tmp_path / "docs", quarantine=False).test()
    assert run.state == "failed"
    ti = run.get_task_instance("validate")
    assert ti.state == "failed"
    url = ti.xcom_pull(task_ids="validate", key=DataDocsLink.source_key)
    assert url.startswith("file://")
    assert Path(url.removeprefix("file://")).is_file()
    # What the UI shows: Airflow resolved the link on the worker and stored it for the button.
    assert ti.xcom_pull(task_ids="validate", key=DataDocsLink().xcom_key) == url


@pytest.mark.slow
@pytest.mark.usefixtures("dolt_conn", "broken_label")
def test_quarantine_passes_healthy_customers_downstream(airflow_db: Path, tmp_path: Path) -> None:
    run = dag_with(airflow_db, "validate_quarantine", tmp_path / "docs", quarantine=True, suite="").test()
    assert run.state == "success"
    result = run.get_task_instance("validate").xcom_pull(task_ids="validate")
    assert result["success"] is False
    assert result["quarantined"] == {"acme_air": ["expect_column_values_to_be_in_set on label"]}
    assert result["healthy_customers"] == ["globex_bank", "initech_saas", "umbrella_health"]
