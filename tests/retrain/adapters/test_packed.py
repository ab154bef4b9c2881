"""Packed training against training alone: the same adapters, the same holdout scores, failures alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from retrain.adapters.model import AdapterClassifier, default_base_model
from retrain.adapters.packed import (
    PackFailure,
    PackJob,
    TrainingDivergedError,
    _Pack,
    train_packed,
)
from retrain.adapters.registry import train_and_register, train_and_register_pack
from retrain.adapters.training import TrainingDataError, TrainingParams, TrainingResult, train_adapter
from retrain.demo.corpus import customer_profiles, generate_examples
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement

EXACT = 1e-4  # fp32 on the CPU, summed in another order
PARAMS = TrainingParams(epochs=2, batch_size=4, max_length=24, min_examples=6)
CUSTOMERS = 17


def customer_rows() -> dict[str, pd.DataFrame]:
    """17 customers with uneven row counts (8 to 20); one of them has three labels."""
    frames, next_id = {}, 1
    for index, profile in enumerate(customer_profiles(CUSTOMERS, seed=5)):
        count = 8 + (index * 5) % 13
        rows = pd.DataFrame(
            [
                {"example_id": next_id + i, "text": e.text, "label": e.label}
                for i, e in enumerate(generate_examples(profile, count, seed=5))
            ]
        )
        rows.loc[:1, "label"] = ["routine", "urgent"]  # two classes at least, however few the rows
        if index == 4:
            rows.loc[rows.index % 3 == 0, "label"] = "billing"
        frames[profile.customer_id] = rows
        next_id += count
    return frames


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainingResult]:
    out = tmp_path_factory.mktemp("alone")
    return {
        customer: train_adapter(
            rows,
            customer=customer,
            commit="c0",
            base_model=default_base_model(),
            params=PARAMS,
            out_dir=out / customer,
        )
        for customer, rows in customer_rows().items()
    }


def pack(tmp_path: Path, pack_size: int, rows: dict[str, pd.DataFrame]) -> list[TrainingResult | PackFailure]:
    jobs = [PackJob(customer, "c0", frame, tmp_path / customer) for customer, frame in rows.items()]
    return list(train_packed(jobs, base_model=default_base_model(), params=PARAMS, pack_size=pack_size))


def assert_same_adapter(packed: TrainingResult, alone: TrainingResult) -> None:
    ours = load_file(packed.adapter_dir / "adapter_model.safetensors")
    theirs = load_file(alone.adapter_dir / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys()
    difference = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert difference < EXACT, (packed.customer, difference)
    assert packed.labels == alone.labels
    assert (packed.train_rows, packed.holdout_rows) == (alone.train_rows, alone.holdout_rows)
    columns = [f"p_{label}" for label in alone.labels]
    assert np.abs(packed.holdout[columns].to_numpy() - alone.holdout[columns].to_numpy()).max() < EXACT
    for metric, value in alone.metrics.items():
        assert packed.metrics[metric] == pytest.approx(value, abs=1e-6), (packed.customer, metric)


@pytest.mark.parametrize(("pack_size", "customers"), [(1, 5), (3, 8), (CUSTOMERS, CUSTOMERS)])
def test_a_packed_adapter_equals_the_adapter_trained_alone(
    alone: dict[str, TrainingResult], tmp_path: Path, pack_size: int, customers: int
) -> None:
    """Slots refill as customers finish (K=1, 3); K=17 holds every customer at once."""
    rows = dict(list(customer_rows().items())[:customers])
    results = pack(tmp_path, pack_size, rows)
    assert sorted(r.customer for r in results) == sorted(rows)
    for result in results:
        assert isinstance(result, TrainingResult), result
        assert_same_adapter(result, alone[result.customer])
    three = next(r for r in results if len(r.labels) == 3)
    reloaded = AdapterClassifier.load(three.adapter_dir, default_base_model())  # PEFT reads what we saved
    assert reloaded.labels == three.labels
    texts = three.holdout["text"].tolist()
    columns = [f"p_{label}" for label in three.labels]
    assert np.abs(reloaded.predict_proba(texts) - three.holdout[columns].to_numpy()).max() < EXACT


def test_a_customer_that_fails_in_the_pack_fails_alone_and_named(
    alone: dict[str, TrainingResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = dict(list(customer_rows().items())[:4])
    diverging, single_class, *healthy = list(rows)
    rows[single_class] = rows[single_class].assign(label="urgent")
    fill = _Pack._fill

    def poisoned(self: _Pack, index: int, job: PackJob, labels: list[str]) -> Any:
        """The diverging customer's head starts at NaN: its loss is NaN from its first step."""
        slot = fill(self, index, job, labels)
        if job.customer == diverging:
            self.model.head.weight.data[index] = float("nan")
        return slot

    monkeypatch.setattr(_Pack, "_fill", poisoned)
    results = {r.customer: r for r in pack(tmp_path, 4, rows)}
    failure = results[single_class]
    assert isinstance(failure, PackFailure)
    assert isinstance(failure.error, TrainingDataError)
    assert f"customer '{single_class}' at commit c0 has a single class" in str(failure.error)
    failure = results[diverging]
    assert isinstance(failure, PackFailure)
    assert isinstance(failure.error, TrainingDivergedError)
    assert f"customer '{diverging}' at commit c0: training loss became nan at epoch 1, step 1" in str(
        failure.error
    )
    assert not (tmp_path / diverging).exists()
    for customer in healthy:  # the customers beside it are untouched by its NaNs
        result = results[customer]
        assert isinstance(result, TrainingResult)
        assert_same_adapter(result, alone[customer])


def test_packed_registration_registers_each_customer_as_alone_and_reuses_on_a_rerun(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    with DoltRepository.open(str(seeded.path)) as repo:
        one_class = seeded.customers[-1]
        repo.execute(Statement(f"UPDATE examples SET label = 'urgent' WHERE customer_id = '{one_class}'"))
        commit = repo.commit(f"{one_class} has one class")
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        params = TrainingParams(epochs=1, min_examples=10)
        first = train_and_register_pack(
            repo, table="examples", commit=commit, customers=seeded.customers, params=params, mlflow_uri=uri
        )
        assert sorted(a.customer for a in first.registered) == sorted(seeded.customers[:-1])
        assert list(first.failed) == [one_class]
        assert "single class" in str(first.failed[one_class])
        again = train_and_register_pack(
            repo,
            table="examples",
            commit=commit,
            customers=seeded.customers[:2],
            params=params,
            mlflow_uri=uri,
        )
        assert [a.reused for a in again.registered] == [True, True]
        reused = train_and_register(
            repo, table="examples", commit=commit, customer=seeded.customers[0], params=params, mlflow_uri=uri
        )
    assert reused.reused  # the training key does not depend on how the adapter was trained
    client = MlflowClient(uri)
    for adapter in first.registered:
        (version,) = client.search_model_versions(f"name = 'adapter-{adapter.customer}'")
        assert version.tags["retrain.commit"] == commit
        assert version.tags["retrain.customer"] == adapter.customer
        artifacts = Path(version.tags["retrain.artifact_uri"].removeprefix("file://"))
        assert (artifacts / "artifacts" / "adapter" / "adapter_model.safetensors").stat().st_size > 0
        run = client.get_run(adapter.run_id)
        assert run.data.tags["retrain.trainer"] == "packed"
        assert float(run.data.metrics["train_rows"]) > 0
    (failed_run,) = client.search_runs(
        [client.get_experiment_by_name("retrain-adapters").experiment_id],
        filter_string="attributes.status = 'FAILED'",
    )
    assert failed_run.data.tags["retrain.customer"] == one_class
    assert "single class" in failed_run.data.tags["retrain.error"]
