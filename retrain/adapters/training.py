"""Train one customer's adapter on its rows as of a commit, and measure it on a holdout."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain.adapters.model import AdapterClassifier
from retrain.errors import InputError

log = logging.getLogger(__name__)

HOLDOUT_METRICS = ("roc_auc", "f1", "accuracy")  # what the promotion gate may compare
# How many of the labels in its holdout an adapter never predicts there: 1 for an adapter that
# always answers the majority class, however good its accuracy looks.
UNPREDICTED_LABELS = "unpredicted_labels"


class TrainingDataError(InputError):
    """A customer's rows cannot train an adapter (none, too few, a single class)."""


class TrainingParamsError(InputError):
    """A training parameter out of range; the message names it."""


@dataclass(frozen=True)
class TrainingParams:
    """Everything that changes the trained adapter besides data, base model and code."""

    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 1e-3
    lora_rank: int = 8
    lora_alpha: int = 16
    # Dropout on the LoRA inputs only; the frozen base runs as it scores (no dropout). At 0 training
    # is deterministic, and an adapter trained in a pack equals the one trained alone.
    lora_dropout: float = 0.0
    holdout_percent: int = 20
    max_length: int = 64
    min_examples: int = 20
    seed: int = 13

    def __post_init__(self) -> None:
        """Refuse what would register an untrained or unmeasured adapter (0 epochs, no holdout)."""
        at_least = {
            "epochs": 1,
            "batch_size": 1,
            "lora_rank": 1,
            "lora_alpha": 1,
            "max_length": 8,
            "min_examples": 2,
        }
        for name, minimum in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TrainingParamsError(
                    f"training parameter {name} must be an integer >= {minimum}, got {value!r}"
                )
        holdout = self.holdout_percent
        if isinstance(holdout, bool) or not isinstance(holdout, int) or not 1 <= holdout <= 99:
            raise TrainingParamsError(
                f"training parameter holdout_percent must be an integer from 1 to 99, got {holdout!r}"
            )
        rate = self.learning_rate
        if not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 < rate < 1:
            raise TrainingParamsError(
                f"training parameter learning_rate must be a number between 0 and 1, got {rate!r}"
            )
        dropout = self.lora_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise TrainingParamsError(
                f"training parameter lora_dropout must be a number from 0 up to 1 (excluded), got {dropout!r}"
            )

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainingResult:
    customer: str
    labels: list[str]
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    load_seconds: float  # building the base model with its LoRA layers
    fit_seconds: float  # the training loop itself
    adapter_dir: Path
    holdout: pd.DataFrame = field(repr=False)  # text, label and predicted probabilities


def rows_fingerprint(rows: pd.DataFrame, id_column: str = "example_id") -> str:
    """SHA-256 of the exact training rows (order-independent): equal data gives an equal fingerprint."""
    ordered = rows.sort_values(id_column)[[id_column, "text", "label"]]
    digest = hashlib.sha256()
    for record in ordered.itertuples(index=False):
        digest.update(json.dumps([str(v) for v in record]).encode())
    return digest.hexdigest()


def holdout_mask(ids: pd.Series, percent: int, seed: int) -> np.ndarray:
    """A row's split depends only on its id: it stays on the same side when other rows change."""
    buckets = [int(hashlib.md5(f"{seed}:{i}".encode()).hexdigest()[:8], 16) % 100 for i in ids]
    return np.array(buckets) < percent


def check_rows(rows: pd.DataFrame, customer: str, commit: str, params: TrainingParams) -> list[str]:
    """The customer's labels, sorted; raises naming the customer and commit when rows cannot train."""
    where = f"customer {customer!r} at commit {commit}"
    if rows.empty:
        raise TrainingDataError(f"{where} has no training rows")
    if len(rows) < params.min_examples:
        raise TrainingDataError(
            f"{where} has {len(rows)} training rows; at least {params.min_examples} are needed"
        )
    labels = sorted(str(label) for label in rows["label"].dropna().unique())
    if len(labels) < 2:
        raise TrainingDataError(
            f"{where} has a single class ({labels[0] if labels else 'no labels'}); need two"
        )
    return labels


def train_adapter(
    rows: pd.DataFrame,
    *,
    customer: str,
    commit: str,
    base_model: str | Path,
    params: TrainingParams,
    out_dir: str | Path,
) -> TrainingResult:
    """Train a LoRA adapter on ``rows`` (example_id, text, label) and save it to ``out_dir``."""
    import torch

    labels = check_rows(rows, customer, commit, params)
    started = time.perf_counter()
    random.seed(params.seed)
    np.random.seed(params.seed)
    torch.manual_seed(params.seed)

    in_holdout = holdout_mask(rows["example_id"], params.holdout_percent, params.seed)
    train, holdout = rows[~in_holdout], rows[in_holdout]
    index = {label: i for i, label in enumerate(labels)}
    classifier = AdapterClassifier.new(
        base_model,
        labels,
        rank=params.lora_rank,
        alpha=params.lora_alpha,
        dropout=params.lora_dropout,
        seed=params.seed,
    )
    torch.manual_seed(params.seed)  # dropout during training
    loaded = time.perf_counter()
    optimizer = torch.optim.AdamW(
        [p for p in classifier.model.parameters() if p.requires_grad], lr=params.learning_rate
    )
    texts, targets = train["text"].astype(str).tolist(), [index[str(v)] for v in train["label"]]
    generator = torch.Generator().manual_seed(params.seed)
    weights = class_weights(targets, len(labels)).to(classifier.device)
    classifier.train_adapter_only()
    for epoch in range(params.epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        epoch_loss, epoch_started = 0.0, time.perf_counter()
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            encoded = classifier.encode([texts[i] for i in batch], params.max_length)
            labels_tensor = torch.tensor([targets[i] for i in batch], device=classifier.device)
            logits = classifier.model(**encoded).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, labels_tensor, weight=weights)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            optimizer.step()
            optimizer.zero_grad()
            epoch_loss += loss.item() * len(batch)
        log.info(
            "customer %s epoch %d/%d: loss %.4f, %.0f examples/s",
            customer,
            epoch + 1,
            params.epochs,
            epoch_loss / max(1, len(texts)),
            len(texts) / (time.perf_counter() - epoch_started),
        )
    fitted = time.perf_counter()
    classifier.save(out_dir)
    probabilities = classifier.predict_proba(holdout["text"].astype(str).tolist())
    metrics = holdout_metrics([str(v) for v in holdout["label"]], probabilities, labels)
    scored = holdout[["example_id", "text", "label"]].reset_index(drop=True)
    for i, label in enumerate(labels):
        scored[f"p_{label}"] = probabilities[:, i] if len(scored) else []
    return TrainingResult(
        customer=customer,
        labels=labels,
        metrics=metrics,
        train_rows=len(train),
        holdout_rows=len(holdout),
        load_seconds=loaded - started,
        fit_seconds=fitted - loaded,
        adapter_dir=Path(out_dir),
        holdout=scored,
    )


def class_weights(targets: list[int], classes: int) -> Any:
    """Inverse class frequencies (sklearn's "balanced"): a rare class's mistakes cost as much in
    total as the common one's, so a 1-in-6 ``urgent`` does not train an always-``routine`` adapter."""
    import torch

    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=classes).astype(np.float64)
    weights = len(targets) / (classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def holdout_metrics(truth: list[str], probabilities: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy, F1 (binary on the last label, else macro), ROC AUC when both classes are held out,
    and :data:`UNPREDICTED_LABELS`."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    if not truth:
        return {}
    predicted = [labels[i] for i in probabilities.argmax(axis=1)]
    binary = len(labels) == 2
    metrics = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1": float(
            f1_score(truth, predicted, pos_label=labels[-1], average="binary", zero_division=0.0)
            if binary
            else f1_score(truth, predicted, average="macro", zero_division=0.0)
        ),
        UNPREDICTED_LABELS: float(len(set(truth) - set(predicted))),
    }
    if len(set(truth)) == len(labels):
        metrics["roc_auc"] = float(
            roc_auc_score([t == labels[-1] for t in truth], probabilities[:, -1])
            if binary
            else roc_auc_score(truth, probabilities, multi_class="ovr", labels=labels)
        )
    return metrics
