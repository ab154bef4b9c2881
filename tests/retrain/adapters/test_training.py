"""Training one adapter for real on a few rows of the demo corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain import cli
from retrain.adapters.model import AdapterClassifier, BaseModelError, _cached_base, default_base_model
from retrain.adapters.training import (
    UNPREDICTED_LABELS,
    TrainingDataError,
    TrainingParams,
    TrainingParamsError,
    check_rows,
    class_weights,
    holdout_mask,
    holdout_metrics,
    rows_fingerprint,
    train_adapter,
)
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository

PARAMS = TrainingParams(epochs=1, min_examples=10)


def test_bad_rows_name_the_customer_and_commit() -> None:
    empty = pd.DataFrame(columns=["example_id", "text", "label"])
    with pytest.raises(TrainingDataError, match="customer 'acme' at commit c1 has no training rows"):
        check_rows(empty, "acme", "c1", PARAMS)
    few = pd.DataFrame({"example_id": [1, 2], "text": ["a", "b"], "label": ["urgent", "routine"]})
    with pytest.raises(TrainingDataError, match="has 2 training rows; at least 10 are needed"):
        check_rows(few, "acme", "c1", PARAMS)
    one_class = pd.DataFrame({"example_id": range(12), "text": ["t"] * 12, "label": ["urgent"] * 12})
    with pytest.raises(TrainingDataError, match=r"single class \(urgent\)"):
        check_rows(one_class, "acme", "c1", PARAMS)


def test_split_depends_only_on_ids() -> None:
    ids = pd.Series(range(1000))
    mask = holdout_mask(ids, 20, seed=13)
    assert 150 < mask.sum() < 250
    assert (holdout_mask(ids[500:], 20, seed=13) == mask[500:]).all()  # removing rows moves no other row


def test_fingerprint_ignores_order_but_not_content() -> None:
    rows = pd.DataFrame({"example_id": [1, 2], "text": ["a", "b"], "label": ["x", "y"]})
    assert rows_fingerprint(rows) == rows_fingerprint(rows.iloc[::-1])
    assert rows_fingerprint(rows) != rows_fingerprint(rows.assign(label=["x", "x"]))


def test_metrics() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    metrics = holdout_metrics(["routine", "urgent", "urgent", "urgent"], probabilities, ["routine", "urgent"])
    assert metrics == pytest.approx({"accuracy": 0.75, "f1": 0.8, "roc_auc": 1.0, UNPREDICTED_LABELS: 0})
    assert "roc_auc" not in holdout_metrics(["urgent"], probabilities[:1], ["routine", "urgent"])


def test_an_adapter_that_always_answers_the_majority_class_is_measured() -> None:
    """``make demo``'s initech_saas: ROC AUC 0.86, accuracy 0.84, and never once ``urgent``."""
    always_routine = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    metrics = holdout_metrics(
        ["routine", "routine", "routine", "urgent"], always_routine, ["routine", "urgent"]
    )
    assert (metrics["f1"], metrics["roc_auc"], metrics[UNPREDICTED_LABELS]) == (0.0, 1.0, 1.0)
    # A label missing from the holdout is not held against the adapter: nothing shows it was needed.
    assert holdout_metrics(["routine"], always_routine[:1], ["routine", "urgent"])[UNPREDICTED_LABELS] == 0


def test_class_weights_balance_a_rare_class() -> None:
    np.testing.assert_allclose(class_weights([0, 0, 0, 1], 2).numpy(), [4 / 6, 2.0])
    np.testing.assert_allclose(class_weights([0, 0, 0, 0], 2).numpy(), [0.5, 2.0])  # absent class: finite


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be an integer >= 1, got 0"),
        ("epochs", -3, "epochs must be an integer >= 1, got -3"),
        ("epochs", 1.5, "epochs must be an integer >= 1, got 1.5"),
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("lora_rank", True, "lora_rank must be an integer >= 1, got True"),
        ("holdout_percent", 0, "holdout_percent must be an integer from 1 to 99, got 0"),
        ("holdout_percent", 100, "holdout_percent must be an integer from 1 to 99, got 100"),
        ("learning_rate", float("nan"), "learning_rate must be a number between 0 and 1, got nan"),
        ("learning_rate", 0.0, "learning_rate must be a number between 0 and 1, got 0.0"),
        ("min_examples", 1, "min_examples must be an integer >= 2, got 1"),
        ("lora_dropout", 1.0, "lora_dropout must be a number from 0 up to 1 (excluded), got 1.0"),
        ("lora_dropout", -0.1, "lora_dropout must be a number from 0 up to 1 (excluded), got -0.1"),
        ("lora_dropout", True, "lora_dropout must be a number from 0 up to 1 (excluded), got True"),
    ],
)
def test_params_that_cannot_train_are_refused_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(TrainingParamsError) as raised:
        TrainingParams(**{field: value})  # type: ignore[arg-type]
    assert str(raised.value) == f"training parameter {message}"


def test_a_rare_class_is_still_predicted(tmp_path: Path) -> None:
    """Class weights: 100 initech_saas rows (18 urgent), 2 epochs. Without them the adapter answered
    ``routine`` to every holdout row (F1 0.000), as initech_saas v1 did in ``make demo``."""
    from retrain.demo.corpus import customer_profiles, generate_examples

    (profile,) = [p for p in customer_profiles(3) if p.customer_id == "initech_saas"]
    examples = generate_examples(profile, 100, 7)
    rows = pd.DataFrame(
        [(i, e.customer_id, e.text, e.label) for i, e in enumerate(examples)],
        columns=["example_id", "customer_id", "text", "label"],
    )
    assert (rows["label"] == "urgent").mean() < 0.2
    result = train_adapter(
        rows,
        customer="initech_saas",
        commit="c",
        base_model=default_base_model(),
        params=TrainingParams(epochs=2),
        out_dir=tmp_path / "adapter",
    )
    assert result.metrics[UNPREDICTED_LABELS] == 0
    assert result.metrics["f1"] > 0


def test_train_save_load_and_score(repo: DoltRepository, tmp_path: Path) -> None:
    rows = repo.read_table("examples", "main", where={"customer_id": "globex_bank"})
    result = train_adapter(
        rows,
        customer="globex_bank",
        commit="c",
        base_model=default_base_model(),
        params=PARAMS,
        out_dir=tmp_path / "adapter",
    )
    assert result.labels == ["routine", "urgent"]
    assert result.train_rows + result.holdout_rows == len(rows)
    assert set(result.metrics) >= {"accuracy", "f1"}
    assert {"adapter_model.safetensors", "adapter_config.json", "labels.json"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()
    }
    assert (
        sum(p.stat().st_size for p in (tmp_path / "adapter").iterdir()) < 2_000_000
    )  # the base is not copied
    reloaded = AdapterClassifier.load(tmp_path / "adapter", default_base_model())
    probabilities = reloaded.predict_proba(result.holdout["text"].tolist())
    np.testing.assert_allclose(probabilities, result.holdout[["p_routine", "p_urgent"]].to_numpy(), atol=1e-5)


def test_missing_base_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match=f"base model {tmp_path / 'nope'} not found"):
        AdapterClassifier.new(tmp_path / "nope", ["a", "b"])


def test_training_is_deterministic_within_one_process(repo: DoltRepository, tmp_path: Path) -> None:
    """The base model is cached per process; a second adapter must not depend on the first."""
    _cached_base.cache_clear()  # the first training below loads the base model cold
    rows = repo.read_table("examples", "main", where={"customer_id": "acme_air"})
    other = repo.read_table("examples", "main", where={"customer_id": "initech_saas"})
    common = {"customer": "acme_air", "commit": "c", "base_model": default_base_model(), "params": PARAMS}
    first = train_adapter(rows, out_dir=tmp_path / "a", **common)  # type: ignore[arg-type]
    train_adapter(
        other,
        customer="initech_saas",
        commit="c",
        base_model=default_base_model(),
        params=PARAMS,
        out_dir=tmp_path / "b",
    )
    again = train_adapter(rows, out_dir=tmp_path / "c", **common)  # type: ignore[arg-type]
    columns = ["p_routine", "p_urgent"]
    np.testing.assert_allclose(
        first.holdout[columns].to_numpy(), again.holdout[columns].to_numpy(), atol=1e-6
    )


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--epochs", "0"], ["epochs", "0"]),
        (["--epochs", "-2"], ["epochs", "-2"]),
        (["--base-model", "/nonexistent/model"], ["base model /nonexistent/model not found"]),
    ],
)
def test_the_cli_refuses_untrainable_settings_in_one_line(
    seeded: SeededRepository,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: list[str],
) -> None:
    store = tmp_path / "mlflow.db"
    code = cli.main(
        [
            "train",
            "--repo",
            str(seeded.path),
            "--table",
            "examples",
            "--commit",
            "main",
            "--customer",
            "acme_air",
            "--mlflow-uri",
            f"sqlite:///{store}",
            *argv,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("retrain: error: ")
    assert all(part in err for part in named), err
    assert err.count("\n") == 1
    assert not store.exists()  # refused before any run or version was recorded
