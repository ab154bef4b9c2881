"""Train many customers' adapters in the same batches: one pass of the frozen base serves a whole pack.

Each optimizer step takes one mini-batch from every customer in the pack, runs the base model once
over all those rows, and gives each row its own customer's LoRA factors and head (the slot pools of
:mod:`retrain.engine.lora`, with gradients). A row's gradient reaches only its customer's slot.

Per customer, everything is as if it trained alone with :func:`train_adapter`: its own shuffled
order, seed, epochs, class weights and AdamW state, with its own step count (a slot refilled mid-run
starts its bias correction afresh). With ``lora_dropout`` 0 a packed adapter equals the one trained
alone within float rounding. Customers finish at different steps; a finished customer's slot is
refilled from the queue, so the pack stays full. A customer whose loss stops being finite fails
alone, named; the others go on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retrain.adapters.model import AdapterClassifier, fresh_base, pick_device
from retrain.adapters.training import (
    TrainingParams,
    TrainingResult,
    check_rows,
    class_weights,
    holdout_mask,
    holdout_metrics,
)
from retrain.errors import RetrainError

if TYPE_CHECKING:
    import torch

    from retrain.engine.lora import SlotModel

log = logging.getLogger(__name__)

# Rows x padded tokens per forward pass: bounds the activations kept for the backward pass
# (about 170 kB a token for MiniLM), however many customers share a step.
CPU_TOKEN_BUDGET = 8_192
CUDA_TOKEN_BUDGET = 131_072
MAX_PACK = 256  # slots per pack; beyond it a step's rows outgrow any token budget's benefit
PROGRESS_SECONDS = 10.0
_BETAS, _EPS, _WEIGHT_DECAY = (0.9, 0.999), 1e-8, 1e-2  # torch.optim.AdamW's defaults, as train_adapter


class TrainingDivergedError(RetrainError):
    """A customer's loss became NaN or infinite: that adapter is dropped, the pack goes on."""


@dataclass(frozen=True)
class PackJob:
    """One customer's training: its rows as of ``commit``, and where its adapter is saved."""

    customer: str
    commit: str
    rows: pd.DataFrame
    out_dir: Path


@dataclass(frozen=True)
class PackFailure:
    customer: str
    error: RetrainError


def pack_size_for(customers: int, base_model: str | Path, *, params: TrainingParams) -> int:
    """Slots for ``customers``: all of them, up to what a quarter of the free memory (the GPU's on
    CUDA) holds, and :data:`MAX_PACK`. A slot holds the LoRA factors of query and value in every
    layer and a head, each with its gradient and two AdamW moments (four fp32 copies): about
    1.3 MiB for MiniLM. Activations are bounded by the token budget, not by the pack."""
    import os

    import torch

    config = json.loads((Path(base_model) / "config.json").read_text())
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    slot_bytes = 4 * 4 * (layers * 2 * 2 * hidden * params.lora_rank + 16 * hidden)
    if pick_device()[0] == "cuda":
        free = int(torch.cuda.mem_get_info()[0])
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(customers, MAX_PACK, free // 4 // slot_bytes))


def train_packed(
    jobs: Sequence[PackJob],
    *,
    base_model: str | Path,
    params: TrainingParams,
    pack_size: int,
    token_budget: int | None = None,
) -> Iterator[TrainingResult | PackFailure]:
    """Train every job's adapter, ``pack_size`` customers at a time, yielding each as it finishes.

    A job whose rows cannot train (too few, one class) is yielded as a failure before any step.
    """
    trainable: list[tuple[PackJob, list[str]]] = []
    for job in jobs:
        try:
            trainable.append((job, check_rows(job.rows, job.customer, job.commit, params)))
        except RetrainError as error:
            yield PackFailure(job.customer, error)
    if trainable:
        width = max(len(labels) for _, labels in trainable)
        pack = _Pack(str(base_model), params, min(pack_size, len(trainable)), width, token_budget)
        yield from pack.run(deque(trainable))


@dataclass
class _Slot:
    """One customer's place in the pack: its data, its own shuffle and its progress."""

    job: PackJob
    labels: list[str]
    ids: list[list[int]]  # train texts, tokenized once
    targets: list[int]
    weights: Any  # class weights, torch [labels]
    holdout: pd.DataFrame
    generator: Any  # torch.Generator, seeded as train_adapter seeds its own
    epochs: int
    order: list[int]
    started: float
    setup_seconds: float
    position: int = 0
    epoch: int = 0
    step: int = 0

    def next_batch(self, batch_size: int) -> list[int] | None:
        """The next mini-batch's row indices, in this customer's own order; None when it is done."""
        import torch

        while self.position >= len(self.order):  # an epoch without rows has no step, as alone
            self.epoch += 1
            if self.epoch == self.epochs:
                return None
            self.order = torch.randperm(len(self.ids), generator=self.generator).tolist()
            self.position = 0
        batch = self.order[self.position : self.position + batch_size]
        self.position += batch_size
        self.step += 1
        return batch


class _Pack:
    """The base model once, with slot pools for ``slots`` customers, and their optimizer."""

    def __init__(
        self, base_model: str, params: TrainingParams, slots: int, width: int, token_budget: int | None
    ) -> None:
        import torch

        from retrain.engine.lora import SlotModel

        started = time.perf_counter()
        self.base_model, self.params = base_model, params
        self.tokenizer, model, self.device = fresh_base(base_model, 2)
        self.autocast = self.device.startswith("cuda")
        self.token_budget = token_budget or (CUDA_TOKEN_BUDGET if self.autocast else CPU_TOKEN_BUDGET)
        self._initial: dict[int, tuple[AdapterClassifier, dict[str, Any]]] = {}
        template, _ = self._initial_adapter(2)
        self.targets = sorted(
            name.removeprefix("base_model.model.").removesuffix(".lora_A.default.weight")
            for name, _ in template.model.named_parameters()
            if name.endswith(".lora_A.default.weight")
        )
        self.model: SlotModel = SlotModel.build(
            model.to(self.device).eval(),
            self.targets,
            slots=slots,
            rank=params.lora_rank,
            labels=width,
            trainable=True,
            dropout=params.lora_dropout,
            dtype=torch.float32,
        )
        self.model.model.requires_grad_(False)
        self._adapter_dropout(False)
        self.pools = [p for layer in self.model.layers.values() for p in (layer.down, layer.up)]
        self.pools += [self.model.head.weight, self.model.head.bias]
        for pool in self.pools:
            pool.requires_grad_(True)
        self.optimizer = _SlotAdamW(self.pools, slots, params.learning_rate)
        self.slots: list[_Slot | None] = [None] * slots
        log.info(
            "pack of %d slots over %s on %s (%.1fs to build)",
            slots,
            Path(base_model).name,
            self.device,
            time.perf_counter() - started,
        )

    def run(self, queue: deque[tuple[PackJob, list[str]]]) -> Iterator[TrainingResult | PackFailure]:
        total, done, rows_seen = len(queue), 0, 0
        started = last_report = time.perf_counter()
        while queue or any(self.slots):
            for index, slot in enumerate(self.slots):
                if slot is None and queue:
                    self.slots[index] = self._fill(index, *queue.popleft())
            batches = {}
            for index, slot in enumerate(self.slots):
                if slot is None:
                    continue
                batch = slot.next_batch(self.params.batch_size)
                if batch is None:
                    self.slots[index] = None
                    done += 1
                    yield self._finish(index, slot)
                else:
                    batches[index] = batch
            if not batches:
                continue
            losses = self._step(batches)
            rows_seen += sum(len(b) for b in batches.values())
            for index, loss in losses.items():
                if not math.isfinite(loss):
                    slot = self.slots[index]
                    assert slot is not None
                    self.slots[index] = None
                    done += 1
                    yield PackFailure(slot.job.customer, _diverged(slot, loss))
            if time.perf_counter() - last_report >= PROGRESS_SECONDS:
                last_report = time.perf_counter()
                elapsed = last_report - started
                log.info(
                    "packed training: %d/%d customers done, %d in the pack, %.0f rows/s, elapsed %.0fs",
                    done,
                    total,
                    sum(s is not None for s in self.slots),
                    rows_seen / elapsed,
                    elapsed,
                )

    def _initial_adapter(self, labels: int) -> tuple[AdapterClassifier, dict[str, Any]]:
        """A customer's starting adapter for ``labels`` labels, exactly as train_adapter builds it
        (same seeded LoRA init and head), built once per label count; also the template it is saved from."""
        if labels not in self._initial:
            params = self.params
            template = AdapterClassifier.new(
                self.base_model,
                [str(i) for i in range(labels)],
                rank=params.lora_rank,
                alpha=params.lora_alpha,
                dropout=params.lora_dropout,
                seed=params.seed,
            )
            trained = template.model.named_parameters()
            state = {name: p.detach().clone() for name, p in trained if p.requires_grad}
            self._initial[labels] = (template, state)
        return self._initial[labels]

    def _fill(self, index: int, job: PackJob, labels: list[str]) -> _Slot:
        import torch

        started = time.perf_counter()
        params = self.params
        _, state = self._initial_adapter(len(labels))
        scale = params.lora_alpha / params.lora_rank
        for path, layer in self.model.layers.items():
            prefix = f"base_model.model.{path}"
            layer.load_slot(
                index,
                state[f"{prefix}.lora_A.default.weight"].T,
                state[f"{prefix}.lora_B.default.weight"].T,
                scale,
            )
        self.model.head.load_slot(index, *_head_of(state))
        self.optimizer.reset(index)
        in_holdout = holdout_mask(job.rows["example_id"], params.holdout_percent, params.seed)
        train, holdout = job.rows[~in_holdout], job.rows[in_holdout]
        index_of = {label: i for i, label in enumerate(labels)}
        targets = [index_of[str(v)] for v in train["label"]]
        texts = train["text"].astype(str).tolist()
        ids = self._tokenize(texts)
        generator = torch.Generator().manual_seed(params.seed)
        order = torch.randperm(len(texts), generator=generator).tolist()
        return _Slot(
            job=job,
            labels=labels,
            ids=ids,
            targets=targets,
            weights=class_weights(targets, len(labels)).to(self.device),
            holdout=holdout,
            generator=generator,
            epochs=params.epochs,
            order=order,
            started=started,
            setup_seconds=time.perf_counter() - started,
        )

    def _step(self, batches: dict[int, list[int]]) -> dict[int, float]:
        """One optimizer step for every slot in ``batches``: forward and backward in token-bounded
        chunks (gradients add up), then each slot's own AdamW update. Returns each slot's loss."""
        import torch

        rows = []  # (slot, token ids, target, weight)
        denominators = {}  # cross_entropy(weight=...)'s mean divides by the batch's summed weights
        for index, batch in batches.items():
            slot = self.slots[index]
            assert slot is not None
            weights = slot.weights[[slot.targets[i] for i in batch]]
            denominators[index] = weights.sum()
            rows += [(index, slot.ids[i], slot.targets[i], w) for i, w in zip(batch, weights, strict=True)]
        rows.sort(key=lambda row: len(row[1]))
        losses = torch.zeros(len(self.slots), device=self.device)
        self._adapter_dropout(True)
        for chunk in _chunks(rows, self.token_budget):
            slots = torch.tensor([row[0] for row in chunk], device=self.device)
            logits = self._logits([row[1] for row in chunk], slots)
            targets = torch.tensor([row[2] for row in chunk], device=self.device)
            scale = torch.stack([row[3] / denominators[row[0]] for row in chunk])
            per_row = torch.nn.functional.cross_entropy(logits, targets, reduction="none") * scale
            per_row.sum().backward()  # type: ignore[no-untyped-call]  # torch leaves backward unannotated
            losses.index_add_(0, slots, per_row.detach())
        active = torch.zeros(len(self.slots), dtype=torch.bool, device=self.device)
        active[list(batches)] = True
        finite = torch.isfinite(losses)
        self.optimizer.step(active & finite)
        self._adapter_dropout(False)
        values = losses.tolist()
        return {index: values[index] for index in batches}

    def _adapter_dropout(self, on: bool) -> None:
        """Dropout on the adapters' inputs while stepping; the base never drops (it runs as it scores)."""
        for layer in self.model.layers.values():
            layer.dropout.train(on)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        ids: list[list[int]] = self.tokenizer(texts, truncation=True, max_length=self.params.max_length)[
            "input_ids"
        ]
        return ids

    def _logits(self, ids: list[list[int]], slots: torch.Tensor) -> torch.Tensor:
        import torch

        width = max(len(i) for i in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=self.device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=self.device)
        with self.model.routed(slots), torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            logits: torch.Tensor = self.model.model(input_ids=input_ids, attention_mask=mask).logits
        return logits.float()

    def _finish(self, index: int, slot: _Slot) -> TrainingResult | PackFailure:
        """Score the customer's holdout with its slot, save its adapter as PEFT does, free the slot."""
        import torch

        fitted = time.perf_counter()
        try:
            texts = slot.holdout["text"].astype(str).tolist()
            probabilities = np.zeros((0, len(slot.labels)))
            if texts:
                ids = self._tokenize(texts)
                chunks = []
                with torch.no_grad():
                    for start in range(0, len(ids), 64):
                        part = ids[start : start + 64]
                        slots = torch.full((len(part),), index, device=self.device)
                        logits = self._logits(part, slots)[:, : len(slot.labels)]
                        chunks.append(torch.softmax(logits, dim=-1).cpu().numpy())
                probabilities = np.concatenate(chunks)
            self._save(index, slot)
        except (OSError, RuntimeError) as error:
            return PackFailure(
                slot.job.customer,
                RetrainError(f"customer {slot.job.customer!r} at commit {slot.job.commit}: {error}"),
            )
        truth = [str(v) for v in slot.holdout["label"]]
        scored = slot.holdout[["example_id", "text", "label"]].reset_index(drop=True)
        for i, label in enumerate(slot.labels):
            scored[f"p_{label}"] = probabilities[:, i] if len(scored) else []
        return TrainingResult(
            customer=slot.job.customer,
            labels=slot.labels,
            metrics=holdout_metrics(truth, probabilities, slot.labels),
            train_rows=len(slot.ids),
            holdout_rows=len(slot.holdout),
            load_seconds=slot.setup_seconds,
            fit_seconds=fitted - slot.started - slot.setup_seconds,
            adapter_dir=slot.job.out_dir,
            holdout=scored,
        )

    def _save(self, index: int, slot: _Slot) -> None:
        """Write the slot's adapter through PEFT's own ``save_pretrained``: the same files as alone."""
        import torch

        template, _ = self._initial_adapter(len(slot.labels))
        trained = dict(template.model.named_parameters())
        rank, labels = self.params.lora_rank, len(slot.labels)
        with torch.no_grad():
            for path, layer in self.model.layers.items():
                prefix = f"base_model.model.{path}"
                trained[f"{prefix}.lora_A.default.weight"].copy_(layer.down[index, :, :rank].T)
                trained[f"{prefix}.lora_B.default.weight"].copy_(layer.up[index, :rank].T)
            weight, bias = _head_of(trained)
            weight.copy_(self.model.head.weight[index, :labels])
            bias.copy_(self.model.head.bias[index, :labels])
        replace(template, labels=slot.labels).save(slot.job.out_dir)


def _head_of(state: dict[str, Any]) -> tuple[Any, Any]:
    prefix = "base_model.model.classifier.modules_to_save.default"
    return state[f"{prefix}.weight"], state[f"{prefix}.bias"]


def _chunks(rows: list[Any], token_budget: int) -> Iterator[list[Any]]:
    """Rows sorted by length, cut where rows x longest length would pass ``token_budget``."""
    chunk: list[Any] = []
    for row in rows:
        if chunk and (len(chunk) + 1) * len(row[1]) > token_budget:
            yield chunk
            chunk = []
        chunk.append(row)
    if chunk:
        yield chunk


def _diverged(slot: _Slot, loss: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"customer {slot.job.customer!r} at commit {slot.job.commit}: training loss became {loss} at "
        f"epoch {slot.epoch + 1}, step {slot.step}; no adapter was saved"
    )


class _SlotAdamW:
    """AdamW over slot pools, one customer per slot: torch.optim.AdamW's arithmetic, with a step count
    per slot and updates only for the slots named in each step."""

    def __init__(self, pools: list[Any], slots: int, learning_rate: float) -> None:
        import torch

        self.pools = pools
        self.learning_rate = learning_rate
        self.steps = torch.zeros(slots, dtype=torch.float64, device=pools[0].device)
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in pools]

    def reset(self, slot: int) -> None:
        self.steps[slot] = 0
        for first, second in self.moments:
            first[slot].zero_()
            second[slot].zero_()

    def step(self, active: torch.Tensor) -> None:
        """Update the ``active`` slots from their gradients, then clear every gradient."""
        import torch

        (beta1, beta2), lr = _BETAS, self.learning_rate
        self.steps += active.to(self.steps.dtype)
        steps = self.steps.clamp(min=1)
        step_size = (lr / (1 - beta1**steps)).float()
        correction = (1 - beta2**steps).sqrt().float()
        with torch.no_grad():
            for pool, (first, second) in zip(self.pools, self.moments, strict=True):
                shape = (-1,) + (1,) * (pool.dim() - 1)
                keep = active.view(shape)
                grad = pool.grad if pool.grad is not None else torch.zeros_like(pool)
                decayed = pool * (1 - lr * _WEIGHT_DECAY)
                new_first = first.lerp(grad, 1 - beta1)
                new_second = second * beta2 + grad * grad * (1 - beta2)
                denominator = (new_second.sqrt() / correction.view(shape)).add_(_EPS)
                updated = decayed - step_size.view(shape) * new_first / denominator
                pool.copy_(torch.where(keep, updated, pool))
                first.copy_(torch.where(keep, new_first, first))
                second.copy_(torch.where(keep, new_second, second))
                pool.grad = None
