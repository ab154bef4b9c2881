"""Opening repositories by location, and the server connection's failure modes."""

from __future__ import annotations

import time

import pytest

from retrain.cli import main
from retrain.dolt import DoltConnectionError, DoltRepository, DoltUnreachableError, InvalidLocationError
from retrain.dolt.connections import DoltServerConnection
from retrain.errors import InputError, ServiceUnreachableError

from ..sockets import closed_port, silent_port


def test_unreachable_server_names_the_endpoint_and_hides_the_password() -> None:
    port = closed_port()
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


def test_closed_port_fails_fast_with_a_retryable_error_naming_the_endpoint() -> None:
    port = closed_port()
    repo = DoltRepository.open(f"mysql://trainer:s3cret-pw@127.0.0.1:{port}/training?timeout=2")
    started = time.monotonic()
    with pytest.raises(DoltUnreachableError) as raised:
        repo.head()
    assert time.monotonic() - started < 2 + 1
    assert isinstance(raised.value, ServiceUnreachableError)
    assert raised.value.retryable
    assert str(raised.value).startswith(
        f"cannot reach Dolt sql-server at mysql://trainer:***@127.0.0.1:{port}/training: "
        "Can't connect to MySQL server on '127.0.0.1'"
    )
    assert "s3cret-pw" not in str(raised.value)


@pytest.mark.timeout(60)
def test_a_server_that_accepts_but_never_answers_times_out_by_url_option() -> None:
    with silent_port() as port:
        repo = DoltRepository.open(f"mysql://trainer:s3cret-pw@127.0.0.1:{port}/training?timeout=1")
        started = time.monotonic()
        with pytest.raises(DoltUnreachableError) as raised:
            repo.head()
        elapsed = time.monotonic() - started
        repo.close()
    assert elapsed < 1 + 1.5
    assert str(raised.value) == (
        f"Dolt sql-server at mysql://trainer:***@127.0.0.1:{port}/training did not answer a connection "
        "within 1 s (set $RETRAIN_DOLT_TIMEOUT or ?timeout=<seconds> in the URL)"
    )


@pytest.mark.timeout(60)
def test_a_silent_server_times_out_by_environment_and_the_cli_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETRAIN_DOLT_TIMEOUT", "1.5")
    with silent_port() as port:
        started = time.monotonic()
        code = main(["dolt", "head", "--repo", f"mysql://trainer:s3cret-pw@127.0.0.1:{port}/training"])
        elapsed = time.monotonic() - started
    assert (code, capsys.readouterr().err) == (
        1,
        f"retrain: error: Dolt sql-server at mysql://trainer:***@127.0.0.1:{port}/training did not answer "
        "a connection within 1.5 s (set $RETRAIN_DOLT_TIMEOUT or ?timeout=<seconds> in the URL)\n",
    )
    assert elapsed < 1.5 + 1.5


def test_default_timeout_is_at_most_15_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRAIN_DOLT_TIMEOUT", raising=False)
    monkeypatch.delenv("RETRAIN_CONNECT_TIMEOUT", raising=False)
    connection = DoltServerConnection("mysql://trainer@db.internal/training")
    assert (connection.timeout, connection.query_timeout) == (15, 600)


@pytest.mark.timeout(60)
def test_the_suites_connect_timeout_bounds_dolt_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """One knob for every service's first contact; queries keep their own, longer bound."""
    monkeypatch.delenv("RETRAIN_DOLT_TIMEOUT", raising=False)
    monkeypatch.setenv("RETRAIN_CONNECT_TIMEOUT", "1")
    with silent_port() as port:
        repo = DoltRepository.open(f"mysql://trainer@127.0.0.1:{port}/training?query_timeout=30")
        started = time.monotonic()
        with pytest.raises(DoltUnreachableError, match="did not answer a connection within 1 s"):
            repo.head()
        elapsed = time.monotonic() - started
        repo.close()
    assert elapsed < 1 + 1.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://trainer:s3cret-pw@db.internal:99999/training",
            "bad port in Dolt repository URL mysql://trainer:***@db.internal:99999/training: "
            "Port out of range 0-65535",
        ),
        (
            "mysql://trainer:s3cret-pw@db.internal:abc/training",
            "bad port in Dolt repository URL mysql://trainer:***@db.internal:abc/training: "
            "Port could not be cast to integer value as 'abc'",
        ),
        ("mysql:///training", "Dolt repository URL mysql:///training names no host"),
        (
            "mysql://trainer:s3cret-pw@db.internal/training?timeout=0",
            "option timeout in mysql://trainer:***@db.internal/training?timeout=0 must be a number of "
            "seconds above 0 and at most 31536000 (a year), got '0'",
        ),
        (
            "mysql://trainer:s3cret-pw@db.internal/training?timeout=soon",
            "option timeout in mysql://trainer:***@db.internal/training?timeout=soon must be a number "
            "of seconds above 0 and at most 31536000 (a year), got 'soon'",
        ),
        (
            "mysql://db.internal/training?ssl=1&timeout=3",
            "unknown option(s) ssl in mysql://db.internal/training?ssl=1&timeout=3 "
            "(supported: timeout, query_timeout)",
        ),
    ],
)
def test_bad_server_urls_are_one_line_input_errors(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidLocationError) as raised:
        DoltRepository.open(url)
    assert str(raised.value) == message
    assert isinstance(raised.value, InputError)
    assert main(["dolt", "head", "--repo", url]) == 1
    assert capsys.readouterr().err == f"retrain: error: {message}\n"


@pytest.mark.parametrize("value", ["-3", "0", "1e9"])
def test_bad_timeout_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RETRAIN_DOLT_TIMEOUT", value)
    with pytest.raises(InvalidLocationError) as raised:
        DoltRepository.open("mysql://trainer@db.internal/training")
    assert str(raised.value) == (
        "$RETRAIN_DOLT_TIMEOUT must be a number of seconds above 0 and at most 31536000 (a year), "
        f"got '{value}'"
    )
