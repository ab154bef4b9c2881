"""DoltCommitTrigger driven as an async generator against a real doltlite repository."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository, NotADoltDatabaseError, UnknownTableError
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark
from retrain_airflow.triggers.dolt import DoltCommitTrigger


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the triggerer drives triggers the same way)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def make_trigger(conn_id: str, table: str = "examples") -> DoltCommitTrigger:
    return DoltCommitTrigger(
        dolt_conn_id=conn_id, consumer="on_commit", table=table, key_column="customer_id", poll_interval=0.05
    )


def commit_change(path: str, customer: str) -> str:
    with DoltRepository.open(path) as repo:
        repo.execute(Statement("UPDATE examples SET text = text || '.' WHERE customer_id = ?", (customer,)))
        return repo.commit(f"edit {customer}")


def test_serialize_round_trips() -> None:
    classpath, kwargs = make_trigger("dolt_default").serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert "password" not in str(kwargs)


@run_async
async def test_fires_once_per_new_head_with_changed_customers(
    dolt_conn: str, seeded: SeededRepository
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        CommitWatermark(repo, "on_commit").advance(seeded.commits[0])
    events = make_trigger(dolt_conn).run()
    first = await asyncio.wait_for(events.__anext__(), timeout=20)
    assert first.payload["commit"] == seeded.commits[1]
    assert first.payload["changed_keys"] == sorted(seeded.changed_in_last_commit)
    with pytest.raises(TimeoutError):  # same head: nothing more
        await asyncio.wait_for(asyncio.shield(pending := asyncio.ensure_future(events.__anext__())), 0.5)
    new_head = await asyncio.to_thread(commit_change, str(seeded.path), "acme_air")
    second = await asyncio.wait_for(pending, timeout=20)
    assert second.payload["commit"] == new_head
    assert second.payload["previous_commit"] == seeded.commits[0]  # done never moved: range grows
    assert set(second.payload["changed_keys"]) == {"acme_air", *seeded.changed_in_last_commit}
    await events.aclose()


@run_async
async def test_restarted_trigger_does_not_refire(dolt_conn: str, seeded: SeededRepository) -> None:
    first_run = make_trigger(dolt_conn).run()
    await asyncio.wait_for(first_run.__anext__(), timeout=20)
    await first_run.aclose()
    restarted = make_trigger(dolt_conn).run()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(restarted.__anext__(), 0.5)


@run_async
async def test_unreachable_repository_is_retried(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_DOLT_DOWN", f"dolt://trainer:s3cret-pw@127.0.0.1:{port}/training")
    events = make_trigger("dolt_down").run()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(events.__anext__(), 0.6)
    logged = capsys.readouterr().out  # the trigger logs through Airflow's structlog to stdout
    assert (
        logged.count("Dolt repository unreachable, retrying in 0.05s: cannot reach Dolt sql-server at") >= 2
    )
    assert f"127.0.0.1:{port}/training" in logged
    assert "s3cret-pw" not in logged


@run_async
async def test_unknown_table_ends_the_trigger_with_the_error(
    dolt_conn: str, seeded: SeededRepository
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        CommitWatermark(repo, "on_commit").advance(seeded.commits[0])
    with pytest.raises(UnknownTableError, match="'exmples'"):
        await asyncio.wait_for(make_trigger(dolt_conn, table="exmples").run().__anext__(), timeout=20)


@pytest.mark.timeout(60)
@run_async
async def test_a_silent_server_during_deferral_is_retried_within_its_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that accepts but never answers costs each poll its timeout (1 s here), not forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel accepts connections; nobody ever answers them
    port = listener.getsockname()[1]
    extra = {"timeout": 1}
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOLT_SILENT",
        json.dumps(
            {
                "conn_type": "dolt",
                "host": "127.0.0.1",
                "port": port,
                "login": "trainer",
                "password": "s3cret-pw",
                "schema": "training",
                "extra": extra,
            }
        ),
    )
    events = make_trigger("dolt_silent").run()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(events.__anext__(), 3.5)
    finally:
        listener.close()
    logged = capsys.readouterr().out
    expected = (
        f"Dolt sql-server at mysql://trainer:***@127.0.0.1:{port}/training "
        "did not answer a connection within 1 s"
    )
    assert logged.count(f"Dolt repository unreachable, retrying in 0.05s: {expected}") >= 2
    assert "s3cret-pw" not in logged


@run_async
async def test_a_repository_that_can_never_open_ends_the_trigger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Retrying cannot fix a FIFO (or a truncated file): the trigger ends with the error at once."""
    fifo = tmp_path / "training.db"
    os.mkfifo(fifo)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOLT_FIFO", json.dumps({"conn_type": "dolt", "extra": {"path": str(fifo)}})
    )
    with pytest.raises(NotADoltDatabaseError, match="named pipe"):
        await asyncio.wait_for(make_trigger("dolt_fifo").run().__anext__(), timeout=20)
