"""The Hive metastore's first contact: one that is down fails in bounded time, before any JVM starts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.errors import InputError
from retrain.spark import MetastoreUnreachableError, SparkSettings, check_metastore, spark_session

from .sockets import BOUND, MARGIN, Elapsed, closed_port, silent_port


@pytest.fixture(autouse=True)
def bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))


@contextmanager
def closing_port() -> Iterator[int]:
    """A port whose server reads the request and hangs up, as a framed or SASL metastore does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        thread.join(5)
        listener.close()


def test_closed_metastore_fails_in_bound_before_spark_starts() -> None:
    uri = f"thrift://127.0.0.1:{closed_port()}"
    with Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        spark_session(SparkSettings(metastore_uri=uri))
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value) == f"cannot reach the Hive metastore at {uri} (Connection refused)"
    assert raised.value.retryable


def test_silent_metastore_fails_in_bound() -> None:
    with silent_port() as port, Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        check_metastore(f"thrift://127.0.0.1:{port}")
    assert BOUND * 0.9 < timer.seconds < BOUND + MARGIN
    assert str(raised.value) == (
        f"cannot reach the Hive metastore at thrift://127.0.0.1:{port} "
        f"(no answer within {BOUND:g}s, $RETRAIN_CONNECT_TIMEOUT)"
    )


def test_several_metastores_share_one_bound_and_one_answer_is_enough() -> None:
    down = f"thrift://127.0.0.1:{closed_port()}"
    with silent_port() as port, Elapsed() as timer, pytest.raises(MetastoreUnreachableError) as raised:
        check_metastore(f"{down}, thrift://127.0.0.1:{port},{down}")
    assert timer.seconds < BOUND + MARGIN
    assert str(raised.value).startswith(f"cannot reach the Hive metastore at {down} (Connection refused), ")
    assert str(raised.value).endswith(f"{down} (not tried: time is up)")
    with closing_port() as port:
        check_metastore(f"{down},thrift://127.0.0.1:{port}")


@pytest.mark.parametrize("uri", ["127.0.0.1:9083", "thrift://", "thrift://host:port", "http://host:9083"])
def test_a_malformed_metastore_uri_is_refused(uri: str) -> None:
    with pytest.raises(InputError, match=f"invalid Hive metastore URI '{uri}': use thrift://host:port"):
        check_metastore(uri)
