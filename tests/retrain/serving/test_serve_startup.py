"""``retrain serve`` refuses to start with one line naming the problem, before loading the release.

The serving tests' own server holds its two ports, so each refusal here is a real one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retrain.cli import main
from retrain.release.context import ADAPTER_SUBDIR

from .conftest import retrain_command
from .server_process import RunningServer, free_port

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease


def serve(release_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "_DOLTLITE_BOOTSTRAPPED"}
    command = [str(retrain_command()), "serve", "--release-dir", str(release_dir), *options]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.serving
@pytest.mark.parametrize("taken", ["rest", "grpc"])
def test_a_taken_port_stops_the_start_naming_it(
    serving_process: RunningServer, trained_release: TrainedRelease, taken: str
) -> None:
    http, grpc = (
        (serving_process.http_port, free_port())
        if taken == "rest"
        else (free_port(), serving_process.grpc_port)
    )
    started = serve(trained_release.release_dir, "--http-port", str(http), "--grpc-port", str(grpc))
    assert started.returncode == 1
    port = http if taken == "rest" else grpc
    what = "REST" if taken == "rest" else "gRPC"
    assert started.stderr == (
        f"retrain: error: {what} port {port} on 127.0.0.1 cannot be used (Address already in use): "
        f"choose another with --{'http' if taken == 'rest' else 'grpc'}-port or --host\n"
    )


@pytest.mark.serving
def test_altered_adapter_bytes_stop_the_start(trained_release: TrainedRelease, tmp_path: Path) -> None:
    release = Path(shutil.copytree(trained_release.release_dir, tmp_path / "release"))
    customer = trained_release.customers[2]
    weights = release / ADAPTER_SUBDIR.format(customer=customer) / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    started = serve(release, "--http-port", str(free_port()), "--grpc-port", str(free_port()))
    assert started.returncode == 1
    assert started.stderr.startswith(f"retrain: error: adapter of customer {customer} (")
    assert "artifacts/adapter/adapter_model.safetensors does not match the SHA-256" in started.stderr
    assert started.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--http-port", "70000"],
            "argument --http-port: expected a port number from 1 to 65535, got '70000'",
        ),
        (["--grpc-port", "0"], "argument --grpc-port: expected a port number from 1 to 65535, got '0'"),
        (["--model-name", "../x"], "argument --model-name: invalid model name '../x'"),
        (["--http-port", "9000", "--grpc-port", "9000"], "--http-port and --grpc-port are both 9000"),
    ],
    ids=["port-70000", "port-0", "model-name-path", "same-ports"],
)
def test_bad_options_are_one_line(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--release-dir", str(tmp_path), *option]) != 0
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.serving
def test_ready_needs_a_registered_loaded_model(trained_release: TrainedRelease) -> None:
    """KServe answered ready with no model at all (after an unload); here ready means loaded."""
    from retrain.serving.kserve_server import ReleaseServer
    from retrain.serving.model import ReleaseModel

    server = ReleaseServer(
        host="127.0.0.1", http_port=free_port(), grpc_port=free_port(), release_id="0" * 32, grace_period=1
    )
    assert asyncio.run(server.dataplane.ready()) is False  # nothing registered
    server.register_model(ReleaseModel(trained_release.release_dir))
    assert asyncio.run(server.dataplane.ready()) is False  # registered, not loaded
