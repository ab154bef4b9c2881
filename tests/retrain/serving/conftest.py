"""The real model server over a real release, started once per session from .venv-serve.

``served_release`` is the fixture other tests build on: ``(base_url, release_id, release_dir)`` of a
``retrain serve`` subprocess on 127.0.0.1 that is ready (warmed up) when the fixture returns. At the
end of the session the server gets SIGTERM and must exit 0 within its grace period.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from .server_process import RunningServer, running_server

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from retrain.engine import AdapterEngine
    from tests.conftest import TrainedRelease

MODEL_NAME = "retrain"


class ServedRelease(NamedTuple):
    base_url: str  # http://127.0.0.1:<port>, no trailing slash
    release_id: str
    release_dir: Path


def retrain_command() -> Path:
    """The ``retrain`` script of the venv running the tests (.venv-serve under ``make test-serving``)."""
    found = Path(sys.executable).with_name("retrain")
    return found if found.exists() else Path(shutil.which("retrain") or "retrain")


ENGINE_WORKERS = 2


@pytest.fixture(scope="session")
def serving_process(
    trained_release: TrainedRelease, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``retrain serve --release-dir`` as a subprocess for the session."""
    pytest.importorskip("kserve", reason="the serving tests run in .venv-serve (make test-serving)")
    with running_server(
        retrain_command(),
        trained_release.release_dir,
        tmp_path_factory.mktemp("serve"),
        "--model-name",
        MODEL_NAME,
        "--max-wait-ms",
        "10",
        # The queue bounded by rows only (256, the default): what test_load refuses and queues does
        # not depend on how fast this machine scores today.
        "--max-queue-ms",
        "60000",
        # Pinned (the default follows the cores): how many requests the engine takes at once.
        "--engine-workers",
        str(ENGINE_WORKERS),
    ) as server:
        yield server


@pytest.fixture(scope="session")
def served_release(serving_process: RunningServer, trained_release: TrainedRelease) -> ServedRelease:
    """(base_url, release_id, release_dir) of the running server."""
    return ServedRelease(serving_process.base_url, trained_release.release_id, trained_release.release_dir)


@pytest.fixture(scope="session")
def engine(trained_release: TrainedRelease) -> AdapterEngine:
    """The same release scored in this process: what the server must answer, row for row."""
    from retrain.engine import AdapterEngine

    return AdapterEngine.from_release_dir(trained_release.release_dir)
