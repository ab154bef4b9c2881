"""The operators' datasets in OpenLineage's form: stable namespaces and names, no credentials, the
facets each kind carries. A whole run's events are tested in ``tests/dags/test_lineage.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.serde import Serde

from retrain_airflow.lineage import (
    DoltTable,
    EmitsLineage,
    Folder,
    HiveTable,
    Lineage,
    ModelVersion,
    Release,
    mlflow_namespace,
)

COMMIT, PREVIOUS = "c" * 40, "b" * 40


def as_json(dataset: InputDataset | OutputDataset) -> dict[str, object]:
    encoded: dict[str, object] = json.loads(Serde.to_json(dataset))
    return encoded


def test_a_dolt_table_is_named_by_its_server_or_file_never_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = {"host": "dolt.internal", "port": 3307, "schema": "training", "login": "u", "password": "s3cret"}
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_SERVER", json.dumps({"conn_type": "dolt", **server}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOLT_FILE", json.dumps({"conn_type": "dolt", "extra": {"path": str(tmp_path)}})
    )
    assert DoltTable("dolt_server", "examples", COMMIT).location() == (
        "dolt://dolt.internal:3307",
        "training.examples",
    )
    assert DoltTable("dolt_file", "examples", COMMIT).location() == ("doltlite", f"{tmp_path}.examples")
    read = as_json(DoltTable("dolt_server", "examples", COMMIT, PREVIOUS).as_input())
    assert "s3cret" not in json.dumps(read)
    facets = read["facets"]
    assert isinstance(facets, dict)
    assert facets["version"]["datasetVersion"] == COMMIT
    assert (facets["retrainDoltCommit"]["commit"], facets["retrainDoltCommit"]["previousCommit"]) == (
        COMMIT,
        PREVIOUS,
    )


@pytest.mark.parametrize(
    ("uri", "namespace"),
    [
        ("http://user:pw@mlflow.internal:5000/", "mlflow+http://mlflow.internal:5000"),
        ("https://mlflow.example.com/api?token=t", "mlflow+https://mlflow.example.com/api"),
        ("sqlite:////srv/mlflow/mlflow.db", "mlflow+sqlite:////srv/mlflow/mlflow.db"),
        ("databricks", "mlflow+databricks"),
    ],
)
def test_the_mlflow_namespace_is_the_store_without_credentials(uri: str, namespace: str) -> None:
    assert mlflow_namespace(uri) == namespace
    assert Release(uri, "0" * 32).location() == (namespace, "retrain-releases")


def test_a_trained_version_carries_its_training_key_and_code_version() -> None:
    trained = as_json(
        ModelVersion("sqlite:////m.db", "adapter-acme_air", "3", "k" * 24, "v1.2.0").as_output()
    )
    assert (trained["namespace"], trained["name"]) == ("mlflow+sqlite:////m.db", "adapter-acme_air")
    facets = trained["facets"]
    assert isinstance(facets, dict)
    assert facets["version"]["datasetVersion"] == "3"
    assert (facets["retrainTraining"]["trainingKey"], facets["retrainTraining"]["codeVersion"]) == (
        "k" * 24,
        "v1.2.0",
    )
    released = as_json(ModelVersion("sqlite:////m.db", "adapter-acme_air", "3").as_input())
    assert set(released["facets"]) == {"version"}  # type: ignore[arg-type]


def test_hive_tables_are_named_by_their_metastore_and_carry_the_partition(tmp_path: Path) -> None:
    served = HiveTable(
        "scores", "thrift://metastore:9083", str(tmp_path), {"ds": "2026-11-01", "release": "r"}
    )
    assert served.location() == ("hive://metastore:9083", "default.scores")
    embedded = HiveTable("analytics.requests", None, str(tmp_path / "wh"))
    assert embedded.location() == (f"hive+{(tmp_path / 'wh').as_uri()}", "analytics.requests")
    written = as_json(served.as_output())
    condition = written["outputFacets"]["subset"]["outputCondition"]  # type: ignore[index]
    assert condition["partitions"] == [
        {"dimensions": {"ds": "2026-11-01", "release": "r"}, "identifier": "ds=2026-11-01/release=r"}
    ]
    assert as_json(embedded.as_input())["inputFacets"] == {}  # the whole table


def test_an_operator_reports_what_its_run_recorded() -> None:
    class Task(EmitsLineage):
        pass

    task = Task()
    assert task.get_openlineage_facets_on_complete(None).inputs == []  # not run yet: nothing
    task.lineage = Lineage(inputs=(Release("databricks", "0" * 32),), outputs=(Folder("/reports/acme"),))
    reported = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in reported.inputs] == [("mlflow+databricks", "retrain-releases")]
    assert [(d.namespace, d.name) for d in reported.outputs] == [("file", "/reports/acme")]
    assert Task().lineage == Lineage()  # one task's record is its own
