"""The multi-adapter engine against the single-adapter path (PEFT, unmerged) on a real trained release."""

from __future__ import annotations

import itertools
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from retrain.adapters.model import AdapterClassifier, default_base_model, load_base
from retrain.engine import AdapterEngine, AdapterFileError, EngineError, UnknownCustomerError
from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease

EXACT = 1e-5  # fp32 on the CPU


def peft_probabilities(adapter_dir: Path, texts: list[str]) -> np.ndarray:
    return AdapterClassifier.load(adapter_dir, default_base_model(), merged=False).predict_proba(texts)


def test_every_adapter_scores_as_peft_does_in_one_mixed_batch(trained_release: TrainedRelease) -> None:
    release = trained_release
    engine = AdapterEngine.from_release_dir(release.release_dir, device="cpu", workers=2)
    assert engine.release_id == release.release_id
    assert engine.customers == sorted(release.customers)
    predictions = engine.predict(release.texts, release.text_customers)
    assert len(set(release.text_customers[: engine.batch_size])) == len(release.customers)  # really mixed
    # Room for every adapter: a mixed batch is one forward pass, whatever the workers' count.
    assert engine.timings.batches == -(-len(release.texts) // engine.batch_size)
    for customer in release.customers:
        rows = [i for i, c in enumerate(release.text_customers) if c == customer]
        adapter_dir = release.release_dir / ADAPTER_SUBDIR.format(customer=customer)
        expected = peft_probabilities(adapter_dir, [release.texts[i] for i in rows])
        got = np.stack([predictions.probabilities[i] for i in rows])
        assert np.abs(got - expected).max() < EXACT, customer
        labels = AdapterClassifier.load(adapter_dir, default_base_model()).labels
        assert [predictions.labels[i] for i in rows] == [labels[k] for k in expected.argmax(axis=1)]
        assert {predictions.adapter_versions[i] for i in rows} == {engine.adapter_version(customer)}
    assert predictions.scores.shape == (len(release.texts),)


def test_adapters_with_different_label_sets_share_a_batch(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    three = AdapterClassifier.new(default_base_model(), ["billing", "outage", "question"], seed=3)
    with torch.no_grad():  # a fresh LoRA has B = 0; give it a real delta to check
        for name, parameter in three.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    three.save(tmp_path / "three")
    customer = trained_release.customers[0]
    adapters = {
        "three_labels": (tmp_path / "three", "7"),
        customer: (trained_release.release_dir / ADAPTER_SUBDIR.format(customer=customer), "1"),
    }
    engine = AdapterEngine("f" * 32, adapters, device="cpu", batch_size=8)
    texts = trained_release.texts[:12]
    owners = ["three_labels", customer] * 6
    predictions = engine.predict(texts, owners)
    expected = peft_probabilities(tmp_path / "three", texts[0::2])
    assert np.abs(np.stack(predictions.probabilities[0::2]) - expected).max() < EXACT
    assert all(p.shape == (2,) for p in predictions.probabilities[1::2])
    assert set(predictions.labels[0::2]) <= {"billing", "outage", "question"}
    assert set(predictions.adapter_versions[0::2]) == {"7"}


def test_a_small_byte_budget_evicts_and_reloads_without_changing_scores(
    trained_release: TrainedRelease,
) -> None:
    release = trained_release
    roomy = AdapterEngine.from_release_dir(release.release_dir, device="cpu")
    expected = roomy.predict(release.texts, release.text_customers).scores
    one_adapter = roomy.cache.bytes // len(release.customers)
    tight = AdapterEngine.from_release_dir(
        release.release_dir, device="cpu", cache_bytes=one_adapter + 1, batch_size=4
    )
    for text, customer in zip(release.texts, release.text_customers, strict=True):  # one customer at a time
        tight.predict([text], [customer])
    assert len(tight.cache) == 1
    assert tight.cache.bytes <= one_adapter + 1
    assert tight.cache.stats.evictions > 0
    assert tight.cache.stats.loads > len(release.customers)
    mixed = tight.predict(release.texts, release.text_customers).scores  # batches of 4 over 4 customers
    assert np.abs(mixed - expected).max() < EXACT
    assert len(tight.cache) <= 4


def test_an_unknown_customer_is_an_error_naming_it(trained_release: TrainedRelease) -> None:
    engine = AdapterEngine.from_release_dir(trained_release.release_dir, device="cpu")
    known = trained_release.customers[0]
    with pytest.raises(
        UnknownCustomerError, match=r"no adapter for customer 'nobody_inc' in release [0-9a-f]{32}"
    ):
        engine.predict(["hello", "hi"], [known, "nobody_inc"])
    with pytest.raises(EngineError, match="2 texts but 1 customers"):
        engine.predict(["hello", "hi"], [known])


def test_a_corrupt_adapter_file_names_customer_and_file(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(trained_release.release_dir, tmp_path / "release"))
    broken, healthy = trained_release.customers[:2]
    weights = copy / ADAPTER_SUBDIR.format(customer=broken) / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    engine = AdapterEngine.from_release_dir(copy, device="cpu")
    with pytest.raises(AdapterFileError, match=rf"customer '{broken}': adapter file {weights} is unreadable"):
        engine.predict(["my card was charged twice"], [broken])
    assert engine.predict(["my card was charged twice"], [healthy]).adapter_versions == ["1"]


def test_a_release_directory_whose_id_does_not_match_its_manifest_is_refused(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(trained_release.release_dir, tmp_path / "release"))
    (copy / RELEASE_ID_FILE).write_text("0" * 32 + "\n")
    with pytest.raises(EngineError, match="inconsistent"):
        AdapterEngine.from_release_dir(copy)
    with pytest.raises(EngineError, match="is not a release manifest"):
        AdapterEngine.from_release_dir(tmp_path)


def test_a_budget_or_batch_size_below_one_is_refused(trained_release: TrainedRelease) -> None:
    with pytest.raises(EngineError, match="positive byte budget, got 0 bytes"):
        AdapterEngine.from_release_dir(trained_release.release_dir, cache_bytes=0)
    with pytest.raises(EngineError, match="batch size must be at least 1, got 0"):
        AdapterEngine.from_release_dir(trained_release.release_dir, batch_size=0)


def peft_adapter(directory: Path, labels: list[str], targets: list[str], rank: int) -> Path:
    """A PEFT adapter on the packaged base with LoRA on ``targets`` at ``rank``, its factors random."""
    from peft import LoraConfig, TaskType, get_peft_model

    tokenizer, base, device = load_base(default_base_model(), len(labels))
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, target_modules=targets)
    model = get_peft_model(base, config)
    with torch.no_grad():  # a fresh LoRA has B = 0; give it a real delta to check
        for name, parameter in model.named_parameters():
            if "lora_" in name or "classifier" in name:
                parameter.normal_(0, 0.05)
    return AdapterClassifier(tokenizer, model, labels, device).save(directory)


def test_layers_of_different_shapes_and_ranks_share_pools_and_slots(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    """Per-layer pools: one adapter on the 384 -> 1536 feed-forward layers at r=8, another on
    query and value at r=4 (zero-padded to 8); with one slot, each load must also clear the layers
    the previous occupant targeted."""
    wide = peft_adapter(tmp_path / "wide", ["a", "b", "c"], ["intermediate.dense", "value"], rank=8)
    narrow = peft_adapter(tmp_path / "narrow", ["x", "y"], ["query", "value"], rank=4)
    adapters = {"wide": (wide, "1"), "narrow": (narrow, "1")}
    texts = trained_release.texts[:8]
    owners = ["wide", "narrow"] * 4
    roomy = AdapterEngine("e" * 32, adapters, device="cpu")
    one_slot = AdapterEngine("e" * 32, adapters, device="cpu", cache_bytes=roomy.cache.slot_bytes)
    assert (roomy.cache.max_slots, one_slot.cache.max_slots) == (2, 1)
    for engine in (roomy, one_slot):
        predictions = engine.predict(texts, owners)
        for name, start in (("wide", 0), ("narrow", 1)):
            expected = peft_probabilities(adapters[name][0], texts[start::2])
            assert np.abs(np.stack(predictions.probabilities[start::2]) - expected).max() < EXACT, name
    assert one_slot.cache.stats.evictions > 0


def test_a_stream_of_requests_scores_each_as_predict_does(trained_release: TrainedRelease) -> None:
    release = trained_release
    engine = AdapterEngine.from_release_dir(release.release_dir, device="cpu", batch_size=4)
    cuts = [0, 1, 1, 30, len(release.texts)]  # one row, none, many batches, the rest
    requests = [(release.texts[a:b], release.text_customers[a:b]) for a, b in itertools.pairwise(cuts)]
    streamed = list(engine.predict_each(requests))
    assert [len(p.labels) for p in streamed] == [b - a for a, b in itertools.pairwise(cuts)]
    for (texts, customers), got in zip(requests, streamed, strict=True):
        alone = engine.predict(texts, customers)
        assert got.labels == alone.labels
        assert (
            np.abs(got.scores - alone.scores).max(initial=0.0) < EXACT
        )  # rows may share batches differently
    assert engine.timings.rows == 2 * len(release.texts)
    assert engine.timings.tokenize > 0
    assert engine.timings.forward > 0
    bad = iter([requests[0], (["hello"], ["nobody_inc"])])
    with pytest.raises(UnknownCustomerError, match="'nobody_inc'"):
        list(engine.predict_each(bad))
    assert engine.predict(*requests[0]).labels == streamed[0].labels  # nothing was left held


def test_predicts_from_many_threads_at_once_score_as_one_at_a_time(trained_release: TrainedRelease) -> None:
    """A server's threads share one engine: two workers, five callers, two slots for all of them."""
    release = trained_release
    serial = AdapterEngine.from_release_dir(release.release_dir, device="cpu", batch_size=4, workers=1)
    engine = AdapterEngine.from_release_dir(
        release.release_dir, device="cpu", batch_size=4, workers=2, cache_bytes=2 * serial.cache.slot_bytes
    )
    threads = torch.get_num_threads()
    requests = [(release.texts[i::5], release.text_customers[i::5]) for i in range(5)]
    alone = [serial.predict(texts, customers, features=True) for texts, customers in requests]
    with ThreadPoolExecutor(max_workers=5) as callers:
        together = list(callers.map(lambda request: engine.predict(*request, features=True), requests))
    for expected, got in zip(alone, together, strict=True):
        assert got.labels == expected.labels
        assert np.abs(got.scores - expected.scores).max() < EXACT
        assert expected.features is not None
        assert got.features is not None
        assert np.abs(got.features.embeddings - expected.features.embeddings).max() < EXACT
        assert [len(ids) for ids in got.features.token_ids] == list(expected.features.tokens)
    assert engine.cache.stats.evictions > 0  # slots changed hands between the threads' batches
    assert torch.get_num_threads() == threads  # the workers' thread counts are their own


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the bf16 GPU path needs one")
def test_on_cuda_bf16_scores_within_1e_2_of_peft(trained_release: TrainedRelease) -> None:
    release = trained_release
    engine = AdapterEngine.from_release_dir(release.release_dir, device="cuda")
    assert engine.dtype is torch.bfloat16
    predictions = engine.predict(release.texts, release.text_customers)
    for customer in release.customers:
        rows = [i for i, c in enumerate(release.text_customers) if c == customer]
        adapter_dir = release.release_dir / ADAPTER_SUBDIR.format(customer=customer)
        expected = peft_probabilities(adapter_dir, [release.texts[i] for i in rows])  # PEFT's own, bf16 too
        got = np.stack([predictions.probabilities[i] for i in rows])
        assert np.abs(got - expected).max() < 1e-2, customer


def test_an_adapter_for_another_base_is_refused_naming_its_file_and_the_others_score(
    trained_release: TrainedRelease, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(trained_release.release_dir, tmp_path / "release"))
    foreign, healthy = trained_release.customers[:2]
    weights = copy / ADAPTER_SUBDIR.format(customer=foreign) / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("query.lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], 1024)  # lora_A of a 1024-wide model
    save_file(tensors, str(weights))
    engine = AdapterEngine.from_release_dir(copy, device="cpu")
    with pytest.raises(
        AdapterFileError, match=rf"customer '{foreign}': adapter file {weights} targets .*query"
    ):
        engine.predict(["my card was charged twice"], [foreign])
    assert engine.predict(["my card was charged twice"], [healthy]).adapter_versions == ["1"]
