"""DoltHook: connection fields -> repository location, and opening real repositories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from airflow.sdk import Connection

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain_airflow.hooks.dolt import DoltHook, repository_location

from ...retrain.sockets import MARGIN, Elapsed, closed_port


def test_embedded_path_becomes_doltlite_location(tmp_path: Path) -> None:
    connection = Connection(conn_id="d", conn_type="dolt", extra=json.dumps({"path": str(tmp_path / "t.db")}))
    assert repository_location(connection) == f"doltlite://{tmp_path / 't.db'}"


def test_server_fields_become_mysql_url_with_quoted_password() -> None:
    connection = Connection(
        conn_id="d",
        conn_type="dolt",
        host="dolt.internal",
        port=3307,
        schema="training",
        login="trainer",
        password="p@ss/word",
    )
    assert repository_location(connection) == "mysql://trainer:p%40ss%2Fword@dolt.internal:3307/training"


def test_connection_without_path_or_host_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="Dolt connection 'empty' needs either extra"):
        repository_location(Connection(conn_id="empty", conn_type="dolt"))


def test_get_repository_from_environment_connection(dolt_conn: str, seeded: SeededRepository) -> None:
    with DoltHook(dolt_conn).get_repository() as repo:
        assert repo.head() == seeded.commits[-1]


def set_connection(monkeypatch: pytest.MonkeyPatch, **fields: object) -> DoltHook:
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DEFAULT", json.dumps({"conn_type": "dolt", **fields}))
    return DoltHook()


def test_test_connection_reads_the_head_of_main(dolt_conn: str, seeded: SeededRepository) -> None:
    ok, message = DoltHook(dolt_conn).test_connection()
    assert (ok, message) == (
        True,
        f"Dolt repository doltlite://{seeded.path}: main is at commit {seeded.commits[-1]}",
    )


def test_test_connection_to_a_missing_file_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "training.db"
    ok, message = set_connection(monkeypatch, extra={"path": str(missing)}).test_connection()
    assert (ok, message) == (False, f"Dolt repository file {missing} does not exist")
    assert not missing.parent.exists()  # testing never creates a repository


def test_test_connection_to_a_plain_sqlite_file_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    ok, message = set_connection(monkeypatch, extra={"path": str(plain)}).test_connection()
    assert (ok, message) == (False, f"{plain} is a plain SQLite database, not a doltlite (Dolt) repository")


def test_test_connection_to_a_closed_port_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    hook = set_connection(
        monkeypatch, host="127.0.0.1", port=port, schema="training", login="trainer", password="s3cret-pw"
    )
    with Elapsed() as timer:
        ok, message = hook.test_connection()
    assert not ok
    assert message.startswith(
        f"cannot reach Dolt sql-server at mysql://trainer:***@127.0.0.1:{port}/training: "
    )
    assert "s3cret-pw" not in message
    assert timer.seconds < MARGIN


def test_test_connection_without_path_or_host_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = set_connection(monkeypatch).test_connection()
    assert not ok
    assert message.startswith("Dolt connection 'dolt_default' needs either extra {'path': ...}")


def test_commit_diff_url_from_the_connections_web_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    web = "https://www.dolthub.com/repositories/acme/training/"
    old, new = "a" * 32, "b" * 32
    extra = {"path": str(tmp_path / "t.db"), "web_url": web}
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_WEB", json.dumps({"conn_type": "dolt", "extra": extra}))
    hook = DoltHook("dolt_web")
    assert hook.commit_diff_url(old, new) == f"{web.rstrip('/')}/compare/main/{old}...{new}"
    assert hook.commit_diff_url(None, new) == f"{web.rstrip('/')}/commits/main/{new}"
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_PLAIN", json.dumps({"conn_type": "dolt", "extra": {"path": "x"}}))
    assert DoltHook("dolt_plain").commit_diff_url(old, new) is None  # doltlite has no web UI


def test_timeout_extras_become_the_url_options() -> None:
    connection = Connection(
        conn_id="d",
        conn_type="dolt",
        host="dolt.internal",
        port=3307,
        schema="training",
        login="trainer",
        extra=json.dumps({"timeout": 4.5, "query_timeout": 1200}),
    )
    location = repository_location(connection)
    assert location == "mysql://trainer@dolt.internal:3307/training?timeout=4.5&query_timeout=1200"
    with DoltRepository.open(location) as repo:
        assert repo.connection.timeout == 4.5  # type: ignore[attr-defined]
        assert repo.connection.query_timeout == 1200  # type: ignore[attr-defined]
