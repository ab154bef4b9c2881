"""Opening repositories by location, and the server connection's failure modes."""

from __future__ import annotations

import socket

import pytest

from retrain.dolt import DoltConnectionError, DoltRepository
from retrain.dolt.connections import DoltServerConnection


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_names_the_endpoint_and_hides_the_password() -> None:
    port = _closed_port()
    repo = DoltRepository.open(f"mysql://trainer:s3cret-pw@127.0.0.1:{port}/training")
    with pytest.raises(DoltConnectionError) as raised:
        repo.head()
    message = str(raised.value)
    assert f"127.0.0.1:{port}/training" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(repo)


def test_server_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAIN_DOLT_PASSWORD", "from-env")
    connection = DoltServerConnection("mysql://trainer@db.internal:3307/training")
    assert connection._url.password == "from-env"
    assert connection.location == "mysql://trainer:***@db.internal:3307/training"
    assert isinstance(connection.dialect.placeholder, str)


def test_worker_imports_doltlite_before_anything_else() -> None:
    """If sqlite3 came first, doltlite would re-exec the worker (or, under -c, refuse to load)."""
    import ast
    from pathlib import Path

    import retrain.dolt.connections as connections

    tree = ast.parse(Path(connections.__file__).with_name("worker.py").read_text())
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    first = imports[0]
    assert isinstance(first, ast.Import)
    assert first.names[0].name == "doltlite"
