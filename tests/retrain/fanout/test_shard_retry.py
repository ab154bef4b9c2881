"""An Argo pod killed mid-pack: Argo's retry runs the same `retrain train-shard`, and no customer is
registered twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrain.demo.seed import SeededRepository


def train_shard(seeded: SeededRepository, uri: str) -> subprocess.Popen[str]:
    selection = json.dumps({"customers": seeded.customers})
    command = [sys.executable, "-m", "retrain.cli", "train-shard", "--repo", str(seeded.path)]
    command += ["--table", "examples", "--commit", "main", "--mlflow-uri", uri, "--epochs", "1"]
    command += ["--selection", selection, "--shard", "0", "--shards", "1", "--pack", "2"]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def versions(client: MlflowClient, customers: list[str]) -> dict[str, int]:
    return {c: len(client.search_model_versions(f"name = 'adapter-{c}'")) for c in customers}


@pytest.mark.slow
def test_a_shard_killed_mid_pack_is_retried_without_registering_anyone_twice(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.search_experiments()  # the store's tables exist before the pod opens it: no two migrations
    pod = train_shard(seeded, uri)
    deadline = time.monotonic() + 240
    try:
        while sum(versions(client, seeded.customers).values()) == 0:  # the first customer is registered
            assert pod.poll() is None, pod.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no customer was registered in 240 s"
            time.sleep(0.5)
    finally:
        if pod.poll() is None:
            os.killpg(pod.pid, signal.SIGKILL)  # the node is lost mid-pack
        pod.wait()
    before = versions(client, seeded.customers)
    assert 1 <= sum(before.values()) < len(seeded.customers), before
    retry = train_shard(seeded, uri)
    out, err = retry.communicate(timeout=300)
    assert retry.returncode == 0, err[-2000:]
    registered = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["customer"] for r in registered) == sorted(seeded.customers)
    assert {r["customer"] for r in registered if r["reused"]} == {c for c, n in before.items() if n}
    assert versions(client, seeded.customers) == dict.fromkeys(seeded.customers, 1)
    assert f"shard 0/1: {len(seeded.customers)} registered, 0 failed" in err
