"""Golden scores through the real model server: ``retrain serve`` started from ``.venv-serve``.

The server runs as its own process (KServe cannot share this venv with Airflow), on a release's
context folder, and the check speaks plain V2 REST to it, the way it does in a cluster.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from retrain.cli import main
from retrain.connect import CONNECT_TIMEOUT_ENV
from retrain.release.context import ADAPTER_SUBDIR
from retrain.release.manifest import Manifest
from retrain.release.store import MANIFEST_FILE
from retrain.serving.check import (
    EndpointMismatchError,
    EndpointUnreachableError,
    ServedReleaseError,
    check_endpoint,
)
from retrain.serving.protocol import DEFAULT_MODEL_NAME

from ..sockets import BOUND, MARGIN, Elapsed, silent_port
from .server_process import SERVE_BIN, free_port, needs_serve_venv, served

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease


@pytest.fixture(scope="module")
def endpoint(trained_release: TrainedRelease, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The model server serving the trained release, shared by the module's tests."""
    if not SERVE_BIN.is_file():
        pytest.skip(f"{SERVE_BIN} is missing: make venv-serve builds it")
    with served(trained_release.release_dir, tmp_path_factory.mktemp("serve")) as url:
        yield url


def alter(release_dir: Path, customer: str) -> None:
    """Perturb ``customer``'s adapter tensors in place; the manifest (and release id) stay as they are."""
    from safetensors.torch import load_file, save_file

    weights = release_dir / ADAPTER_SUBDIR.format(customer=customer) / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({name: t * 1.5 + 0.05 for name, t in tensors.items()}, str(weights), metadata={"format": "pt"})


def other_release_copy(release_dir: Path, target: Path) -> tuple[Path, str]:
    """The release folder as a release of all but its last adapter: another manifest, another id."""
    shutil.copytree(release_dir, target)
    manifest = Manifest.from_json((target / MANIFEST_FILE).read_text())
    subset = replace(manifest, adapters=manifest.adapters[:-1])
    (target / MANIFEST_FILE).write_text(subset.canonical_json())
    (target / "RELEASE_ID").write_text(subset.release_id + "\n")
    return target, subset.release_id


# --- without a server ---------------------------------------------------------------------------------


def test_unreachable_endpoint_fails_fast_naming_the_url(trained_release: TrainedRelease) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    infer_url = f"{url}/v2/models/{DEFAULT_MODEL_NAME}/infer"
    with pytest.raises(EndpointUnreachableError, match=rf"model server at {infer_url} is unreachable"):
        check_endpoint(trained_release.store, trained_release.release_id, url)
    assert time.monotonic() - started < 10


def test_a_silent_endpoint_fails_within_the_connect_timeout(
    trained_release: TrainedRelease, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts connections but never answers: the bound is $RETRAIN_CONNECT_TIMEOUT."""
    monkeypatch.setenv(CONNECT_TIMEOUT_ENV, str(BOUND))
    with silent_port() as port, Elapsed() as timer, pytest.raises(EndpointUnreachableError) as raised:
        check_endpoint(trained_release.store, trained_release.release_id, f"http://127.0.0.1:{port}")
    assert BOUND * 0.9 < timer.seconds < BOUND + MARGIN
    assert str(raised.value) == (
        f"model server at http://127.0.0.1:{port}/v2/models/{DEFAULT_MODEL_NAME}/infer did not answer "
        f"within {BOUND:g}s (--timeout, $RETRAIN_CONNECT_TIMEOUT)"
    )


def test_cli_says_one_line_when_the_endpoint_is_down(
    trained_release: TrainedRelease, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = main(
        [
            "release",
            "check",
            "--endpoint",
            url,
            "--release",
            trained_release.release_id,
            "--mlflow-uri",
            trained_release.store.tracking_uri,
            "--timeout",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("retrain: error: model server at ")
    assert url in err
    assert err.count("\n") == 1


class _Hostile(BaseHTTPRequestHandler):
    """A V2 endpoint gone bad: ``/trickle`` sends its answer a byte a second; anything else answers
    500 with an error that would forge a line and colour the user's terminal."""

    stop = threading.Event()

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/trickle"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not self.stop.wait(1.0):
                self.wfile.write(b" ")
                self.wfile.flush()
            return
        body = json.dumps({"error": "\x1b[31mboom\nretrain: release check passed"}).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    _Hostile.stop.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    _Hostile.stop.set()
    server.shutdown()
    server.server_close()


def test_a_trickling_endpoint_fails_within_the_timeout(
    trained_release: TrainedRelease, hostile_port: int
) -> None:
    """--timeout bounds the whole request: a server sending a byte a second does not hold it."""
    url = f"http://127.0.0.1:{hostile_port}/trickle"
    with Elapsed() as timer, pytest.raises(EndpointUnreachableError, match=r"did not answer within 2s"):
        check_endpoint(trained_release.store, trained_release.release_id, url, timeout=BOUND)
    assert timer.seconds < BOUND + MARGIN


def test_the_error_hides_the_password_and_escapes_the_servers_text(
    trained_release: TrainedRelease, hostile_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"http://checker:secretpw@127.0.0.1:{hostile_port}"
    release = ["--release", trained_release.release_id, "--mlflow-uri", trained_release.store.tracking_uri]
    code = main(["release", "check", "--endpoint", endpoint, *release])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1  # one line: the server's newline is shown as \n, not printed
    assert "secretpw" not in err
    assert f"http://checker:***@127.0.0.1:{hostile_port}/v2/models/retrain/infer answered HTTP 500" in err
    assert "\x1b" not in err
    assert r"\x1b[31mboom\nretrain: release check passed" in err


def test_the_grpc_port_is_named_as_such(trained_release: TrainedRelease) -> None:
    """A real gRPC server (HTTP/2 only) where the REST endpoint was expected: no raw frame bytes."""
    import grpc

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(EndpointUnreachableError) as raised:
            check_endpoint(trained_release.store, trained_release.release_id, f"http://127.0.0.1:{port}")
    finally:
        server.stop(grace=None)
    assert str(raised.value).endswith(
        "is unreachable: it answers in HTTP/2 frames, not HTTP/1.1: is that the gRPC port? "
        "The check needs REST"
    )
    assert "\\x00" not in str(raised.value)


# --- against the real server --------------------------------------------------------------------------


@needs_serve_venv
@pytest.mark.slow
def test_check_passes_against_the_served_release(trained_release: TrainedRelease, endpoint: str) -> None:
    checked = check_endpoint(trained_release.store, trained_release.release_id, endpoint, batch_rows=7)
    assert sorted(checked.checked_rows) == sorted(trained_release.customers)
    assert all(rows > 0 for rows in checked.checked_rows.values())
    assert max(checked.max_difference.values()) < 1e-4


@needs_serve_venv
@pytest.mark.slow
def test_cli_prints_one_line_per_customer(
    trained_release: TrainedRelease, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "release",
            "check",
            "--endpoint",
            endpoint,
            "--release",
            trained_release.release_id,
            "--mlflow-uri",
            trained_release.store.tracking_uri,
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert sorted(line.split(":")[0] for line in lines) == sorted(trained_release.customers)
    assert all("reference rows match" in line for line in lines)


@needs_serve_venv
@pytest.mark.slow
def test_a_wrong_model_name_is_named(trained_release: TrainedRelease, endpoint: str) -> None:
    with pytest.raises(EndpointUnreachableError, match=r"/v2/models/nope/infer answered HTTP 404"):
        check_endpoint(trained_release.store, trained_release.release_id, endpoint, model_name="nope")


@needs_serve_venv
@pytest.mark.slow
def test_an_altered_adapter_fails_naming_the_customer(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    """An adapter file altered after the server checked it at start-up (a tampered volume): the
    engine reads it when first asked for that customer, and the check names the customer."""
    customer = sorted(trained_release.customers)[1]  # not the first: warming up reads that one
    copy = Path(shutil.copytree(trained_release.release_dir, tmp_path / "altered"))
    with served(copy, tmp_path / "logs") as url:
        alter(copy, customer)
        with pytest.raises(EndpointMismatchError) as failure:
            check_endpoint(trained_release.store, trained_release.release_id, url)
    message = str(failure.value)
    assert f"{customer} (adapter-{customer} v" in message
    assert f"served as model version {trained_release.release_id}" in message
    assert "rows differ by up to" in message
    others = [c for c in trained_release.customers if c != customer]
    assert not any(f"{c} (" in message for c in others)  # only the altered customer is named


@needs_serve_venv
@pytest.mark.slow
def test_a_server_of_another_release_fails_naming_both_ids(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    other_dir, other_id = other_release_copy(trained_release.release_dir, tmp_path / "other")
    assert other_id != trained_release.release_id
    with served(other_dir, tmp_path / "logs") as url, pytest.raises(ServedReleaseError) as failure:
        check_endpoint(trained_release.store, trained_release.release_id, url)
    assert f"serves release {other_id}, not release {trained_release.release_id}" in str(failure.value)
