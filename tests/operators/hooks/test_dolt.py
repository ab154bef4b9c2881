"""DoltHook: connection fields -> repository location, and opening real repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk import Connection

from retrain.demo.seed import SeededRepository
from retrain_airflow.hooks.dolt import DoltHook, repository_location


def test_embedded_path_becomes_doltlite_location(tmp_path: Path) -> None:
    connection = Connection(conn_id="d", conn_type="dolt", extra=json.dumps({"path": str(tmp_path / "t.db")}))
    assert repository_location(connection) == f"doltlite://{tmp_path / 't.db'}"


def test_server_fields_become_mysql_url_with_quoted_password() -> None:
    connection = Connection(
        conn_id="d", conn_type="dolt", host="dolt.internal", port=3307, schema="training",
        login="trainer", password="p@ss/word",
    )  # fmt: skip
    assert repository_location(connection) == "mysql://trainer:p%40ss%2Fword@dolt.internal:3307/training"


def test_connection_without_path_or_host_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Dolt connection 'empty' needs either extra"):
        repository_location(Connection(conn_id="empty", conn_type="dolt"))


def test_get_repository_from_environment_connection(dolt_conn: str, seeded: SeededRepository) -> None:
    with DoltHook(dolt_conn).get_repository() as repo:
        assert repo.head() == seeded.commits[-1]


def test_ui_field_behaviour_relabels_schema() -> None:
    assert DoltHook.get_ui_field_behaviour()["relabeling"] == {"schema": "Database"}
