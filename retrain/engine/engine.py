"""Score rows of many customers together: the base model once, each customer's adapter as its own bytes.

Used by Spark scoring (one engine per Python worker) and by ``retrain serve`` (one per server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrain.adapters.model import load_base, pick_device, resolve_base_model
from retrain.engine.cache import AdapterCache
from retrain.engine.errors import AdapterFileError, EngineError, UnknownCustomerError
from retrain.engine.weights import WEIGHTS_FILE, AdapterWeights
from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE
from retrain.release.manifest import Manifest
from retrain.release.store import MANIFEST_FILE

if TYPE_CHECKING:  # torch is imported when an engine is built, not with this module (DAG parsing imports it)
    from retrain.engine.lora import MultiLoraLinear

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024  # ~1,700 adapters of r=8 on MiniLM
DEFAULT_BATCH_SIZE = 64
MAX_LENGTH = 64  # tokens, as in training and AdapterClassifier.encode


@dataclass(frozen=True)
class Predictions:
    """Per row: class probabilities (in that adapter's label order), the argmax label, the adapter version."""

    probabilities: list[np.ndarray]
    labels: list[str]
    adapter_versions: list[str]

    @property
    def scores(self) -> np.ndarray:
        """Probability of each row's last label in sorted order (``urgent`` for the demo's adapters)."""
        return np.array([p[-1] for p in self.probabilities], dtype=np.float64)


class AdapterEngine:
    """The adapters of one release over one shared base model.

    :param adapters: customer -> (adapter directory, model version).
    :param cache_bytes: memory for adapters; the least recently used are dropped beyond it and
        reloaded from disk when next needed.
    :param device: ``cuda`` (bf16) or ``cpu`` (fp32); default CUDA when present.
    """

    def __init__(
        self,
        release_id: str,
        adapters: dict[str, tuple[Path, str]],
        *,
        base_model: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
    ) -> None:
        import torch

        from retrain.engine.lora import MultiHead, swap_module

        if batch_size < 1:
            raise EngineError(f"batch size must be at least 1, got {batch_size}")
        self.release_id = release_id
        self.batch_size = batch_size
        self._adapters = adapters
        self.base_model = str(resolve_base_model(override=base_model))
        self.device, self.dtype = pick_device() if device is None else (device, _dtype_for(device))
        started = time.perf_counter()
        self._tokenizer, model, _ = load_base(self.base_model, num_labels=2)
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        head = getattr(self._model, "classifier", None)
        if not isinstance(head, torch.nn.Linear):
            raise EngineError(
                f"base model {self.base_model}: its head is {type(head).__name__}, not a linear "
                "`classifier`; the engine serves BERT-style sequence classifiers"
            )
        self._head = MultiHead()
        swap_module(self._model, "classifier", self._head)
        self._lora_layers: dict[str, MultiLoraLinear] = {}  # in order of first use
        self._layer_index: dict[str, int] = {}
        self._buffers: dict[str, Any] = {}  # per-row factors and heads, reused batch after batch
        self._cache = AdapterCache(cache_bytes, self._load_adapter)
        self._lock = threading.Lock()
        log.info(
            "engine for release %s: %d adapters over %s on %s (%.1fs to load the base)",
            release_id,
            len(adapters),
            Path(self.base_model).name,
            self.device,
            time.perf_counter() - started,
        )

    @classmethod
    def from_release_dir(cls, release_dir: str | Path, **options: Any) -> AdapterEngine:
        """An engine over a release context (``retrain release context``, or what Spark ships)."""
        root = Path(release_dir)
        try:
            manifest = Manifest.from_json((root / MANIFEST_FILE).read_text())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise EngineError(f"{root / MANIFEST_FILE} is not a release manifest ({error})") from None
        marker = root / RELEASE_ID_FILE
        if marker.is_file() and marker.read_text().strip() != manifest.release_id:
            raise EngineError(
                f"{marker} says {marker.read_text().strip()} but {root / MANIFEST_FILE} hashes to "
                f"{manifest.release_id}: the release directory is inconsistent"
            )
        adapters = {
            entry.customer: (root / ADAPTER_SUBDIR.format(customer=entry.customer), entry.version)
            for entry in manifest.adapters
        }
        return cls(manifest.release_id, adapters, **options)

    @property
    def customers(self) -> list[str]:
        return sorted(self._adapters)

    @property
    def cache(self) -> AdapterCache:
        return self._cache

    def adapter_version(self, customer: str) -> str:
        if customer not in self._adapters:
            raise UnknownCustomerError([customer], self.release_id)
        return self._adapters[customer][1]

    def warm_up(self) -> None:
        """One forward pass, so the first request does not pay for the first use of every kernel."""
        if self._adapters:
            self.predict(["warm-up"], [self.customers[0]])

    def predict(self, texts: Sequence[str], customers: Sequence[str]) -> Predictions:
        """Score ``texts[i]`` with ``customers[i]``'s adapter; customers may differ from row to row."""
        if len(texts) != len(customers):
            raise EngineError(f"{len(texts)} texts but {len(customers)} customers: one customer per text")
        unknown = {c for c in customers if c not in self._adapters}
        if unknown:
            raise UnknownCustomerError(unknown, self.release_id)
        probabilities: list[np.ndarray] = [np.empty(0)] * len(texts)
        labels = [""] * len(texts)
        with self._lock:
            for rows in self._batches(texts):
                scored = self._score([texts[i] for i in rows], [customers[i] for i in rows])
                for row, (p, label) in zip(rows, scored, strict=True):
                    probabilities[row], labels[row] = p, label
        return Predictions(probabilities, labels, [self._adapters[c][1] for c in customers])

    def _batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Row indices in batches of similar token length, so little of each batch is padding."""
        lengths = self._tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH, return_length=True)[
            "length"
        ]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _score(self, texts: list[str], customers: list[str]) -> list[tuple[np.ndarray, str]]:
        """One forward pass over a batch; per row its probabilities and argmax label."""
        import torch

        distinct = list(dict.fromkeys(customers))
        weights = self._cache.get_many(distinct)
        adapters = [weights[c] for c in distinct]
        rows = [
            torch.tensor([i for i, c in enumerate(customers) if c == customer], device=self.device)
            for customer in distinct
        ]
        self._bind(adapters, rows)
        try:
            encoded = self._tokenizer(
                texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                logits = self._model(**encoded).logits
            probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        finally:
            self._unbind()
        scored = []
        for i, customer in enumerate(customers):
            labels = weights[customer].labels
            row = probabilities[i, : len(labels)]
            scored.append((row, labels[int(np.argmax(row))]))
        return scored

    def _bind(self, adapters: list[AdapterWeights], rows: list[Any]) -> None:
        """Give every swapped layer this batch's per-row factors, and the head its per-row weights.

        Each distinct adapter is copied once into the rows that use it (``rows[i]`` for
        ``adapters[i]``); a layer an adapter does not target, or a lower rank, stays zero.
        """
        import torch

        layers = list(self._lora_layers.values())
        batch = sum(len(r) for r in rows)
        rank = max(a.rank for a in adapters)
        first, template = layers[0].base, adapters[0]
        width = max(len(a.labels) for a in adapters)
        down = self._workspace("down", (len(layers), batch, first.in_features, rank), 0.0, template.down_t)
        up = self._workspace("up", (len(layers), batch, rank, first.out_features), 0.0, template.up_t)
        weight = self._workspace(
            "weight", (batch, width, template.head_weight.shape[1]), 0.0, template.head_weight
        )
        bias = self._workspace("bias", (batch, width), float("-inf"), template.head_bias)
        for adapter, at in zip(adapters, rows, strict=True):
            where = torch.tensor([self._layer_index[m] for m in adapter.modules], device=self.device)
            down[where[:, None], at[None, :], :, : adapter.rank] = adapter.down_t[:, None]
            up[where[:, None], at[None, :], : adapter.rank, :] = adapter.up_t[:, None]
            weight[at, : len(adapter.labels)] = adapter.head_weight
            bias[at, : len(adapter.labels)] = adapter.head_bias
        for m, layer in enumerate(layers):
            layer.factors = (down[m], up[m])
        self._head.heads = (weight, bias)

    def _workspace(self, name: str, shape: tuple[int, ...], fill: float, like: Any) -> Any:
        """``shape`` filled with ``fill``, in a buffer kept for the next batch: scoring allocates
        nothing per batch, so memory stays flat however long the engine runs.

        The buffer holds a full batch (``batch_size`` rows); a smaller batch uses its first rows.
        """
        rows_axis = 1 if name in ("down", "up") else 0
        full = (*shape[:rows_axis], max(self.batch_size, shape[rows_axis]), *shape[rows_axis + 1 :])
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != full:
            buffer = self._buffers[name] = like.new_empty(full)
        used = buffer.narrow(rows_axis, 0, shape[rows_axis])
        return used.fill_(fill)

    def _unbind(self) -> None:
        for layer in self._lora_layers.values():
            layer.factors = None
        self._head.heads = None

    def _load_adapter(self, customer: str) -> AdapterWeights:

        adapter_dir, version = self._adapters[customer]
        weights = AdapterWeights.load(
            adapter_dir, customer=customer, version=version, device=self.device, dtype=self.dtype
        )
        for path in weights.modules:
            if path not in self._lora_layers:
                self._swap_in(path, customer, adapter_dir)
        layer = self._lora_layers[weights.modules[0]].base
        if weights.down_t.shape[1] != layer.in_features or weights.up_t.shape[2] != layer.out_features:
            raise AdapterFileError(
                f"customer {customer!r}: adapter file {adapter_dir / WEIGHTS_FILE} has LoRA factors of "
                f"{tuple(weights.down_t.shape[1:])} x {tuple(weights.up_t.shape[1:])}, which do not fit "
                f"the base model's {layer.in_features} -> {layer.out_features} layers"
            )
        return weights

    def _swap_in(self, path: str, customer: str, adapter_dir: Path) -> None:
        """Replace base layer ``path`` by a :class:`MultiLoraLinear`, the first time an adapter targets it."""
        import torch

        from retrain.engine.lora import MultiLoraLinear, swap_module

        try:
            layer = self._model.get_submodule(path)
        except AttributeError:
            layer = None
        known = next(iter(self._lora_layers.values()), None)
        if not isinstance(layer, torch.nn.Linear) or (
            known is not None
            and (layer.in_features, layer.out_features) != (known.base.in_features, known.base.out_features)
        ):
            raise AdapterFileError(
                f"customer {customer!r}: adapter file {adapter_dir / WEIGHTS_FILE} targets {path}, which is "
                f"not a linear layer of base model {self.base_model} shaped like the other targets"
            )
        self._layer_index[path] = len(self._lora_layers)
        self._lora_layers[path] = MultiLoraLinear(layer)
        swap_module(self._model, path, self._lora_layers[path])


def _dtype_for(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16
    if device == "cpu":
        return torch.float32
    raise EngineError(f"device {device!r} is not supported (use cpu or cuda)")
