"""Score rows of many customers together: the base model once, each customer's adapter in a slot.

Every adapter of the release that fits the base model is planned for at start: the target layers
of all of them are swapped for slot pools (:mod:`retrain.engine.lora`) and a batch carries one slot
number per row. A thread tokenizes the next rows while batches run. The model runs over each
batch's real tokens only (:mod:`retrain.engine.packed`): rows of a server's batch differ in length,
and padding them to the longest row cost 10-20% more work.

On a CPU, batches run on two scoring workers at once, each on its share of the cores: small
matrix products scale poorly across threads, and one op's threads all wait for the slowest, so a
core taken by anything else (a server's event loop, the tokenizer) stalls a whole op. Two
independent batches keep both cores busy. A GPU runs one batch at a time.

Used by Spark scoring (one engine per Python worker) and by ``retrain serve`` (one per server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrain.adapters.model import load_base, pick_device, resolve_base_model
from retrain.engine.batches import Batch, tokenized_batches
from retrain.engine.cache import AdapterCache, Resident
from retrain.engine.errors import AdapterFileError, EngineError, EngineInputError, UnknownCustomerError
from retrain.engine.prefetch import ahead
from retrain.engine.weights import AdapterLayout, load_into

if TYPE_CHECKING:  # torch is imported when an engine is built, not with this module (DAG parsing imports it)
    from retrain.engine.lora import SlotModel

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
CPU_WORKERS = 2  # batches scored at once on a CPU, the cores shared among them
CHUNK_BATCHES = 8  # batches tokenized in one call; the stream's first chunk is one batch, to start soon


@dataclass(frozen=True)
class RowFeatures:
    """What drift monitoring reads off the scoring pass, per row (:mod:`retrain.drift`)."""

    tokens: np.ndarray  # token count, special tokens included, as truncated for the model
    token_ids: list[np.ndarray]  # each row's token ids, special tokens included
    embeddings: np.ndarray  # [rows, hidden] float32: the mean of the last hidden states over the row's tokens

    def slice(self, start: int, stop: int) -> RowFeatures:
        return RowFeatures(self.tokens[start:stop], self.token_ids[start:stop], self.embeddings[start:stop])

    def take(self, rows: np.ndarray) -> RowFeatures:
        return RowFeatures(self.tokens[rows], [self.token_ids[i] for i in rows], self.embeddings[rows])


@dataclass(frozen=True)
class Predictions:
    """Per row: class probabilities (in that adapter's label order), the argmax label, the adapter
    version; with ``features=True``, what drift monitoring needs of each row."""

    probabilities: list[np.ndarray]
    labels: list[str]
    adapter_versions: list[str]
    features: RowFeatures | None = None

    @property
    def scores(self) -> np.ndarray:
        """Probability of each row's last label in sorted order (``urgent`` for the demo's adapters)."""
        return np.array([p[-1] for p in self.probabilities], dtype=np.float64)


@dataclass
class EngineTimings:
    """Seconds spent per stage since the engine was built; ``tokenize`` runs beside the others."""

    rows: int = 0
    batches: int = 0
    tokenize: float = 0.0  # in the preparing thread
    # No batch of the call running while its next rows were tokenized; summed over concurrent calls.
    wait: float = 0.0
    select: float = 0.0  # adapters to slots (loads included) and the slot vector, summed over workers
    forward: float = 0.0  # the model, from token ids to probabilities on the host, summed over workers
    finish: float = 0.0  # each row's labels and probabilities, summed over workers


@dataclass
class _Pending:
    """One request's rows being scored: its batches, submitted to the workers as they are tokenized."""

    customers: Sequence[str]
    scores: _Scores
    batches: list[Future[None]] = field(default_factory=list)
    complete: bool = False  # every batch of the request is submitted

    @property
    def done(self) -> bool:
        return self.complete and all(batch.done() for batch in self.batches)


@dataclass(frozen=True)
class _Chunk:
    """Rows ``start:stop`` of request ``texts``; ``last`` closes the request."""

    texts: Sequence[str]
    customers: Sequence[str]
    start: int
    stop: int
    last: bool


class AdapterEngine:
    """The adapters of one release over one shared base model.

    :param adapters: customer -> (adapter directory, model version).
    :param cache_bytes: memory for adapters' slots; beyond it the least recently used adapter gives
        its slot up, and is copied back in from disk when next needed. Default: room for every
        adapter of the release (the pools still grow only as adapters are used).
    :param device: ``cuda`` (bf16) or ``cpu`` (fp32); default CUDA when present.
    :param workers: batches scored at once; default :data:`CPU_WORKERS` on a CPU (at most one per
        torch thread, each with its share of them), one on a GPU. ``predict`` may be called from
        several threads.
    """

    def __init__(
        self,
        release_id: str,
        adapters: dict[str, tuple[Path, str]],
        *,
        base_model: str | None = None,
        cache_bytes: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        workers: int | None = None,
    ) -> None:
        import torch

        from retrain.engine.lora import SlotModel
        from retrain.engine.packed import check_packable

        if batch_size < 1:
            raise EngineError(f"batch size must be at least 1, got {batch_size}")
        if workers is not None and workers < 1:
            raise EngineError(f"the engine needs at least 1 scoring worker, got {workers}")
        self.release_id = release_id
        self.batch_size = batch_size
        self._adapters = adapters
        self.base_model = str(resolve_base_model(override=base_model))
        self.device, self.dtype = pick_device() if device is None else (device, _dtype_for(device))
        started = time.perf_counter()
        self._tokenizer, model, _ = load_base(self.base_model, num_labels=2)
        model = model.to(device=self.device, dtype=self.dtype).eval()
        check_packable(model, self.base_model)
        targets, rank, labels = _plan(model, adapters)
        self._pools: SlotModel = SlotModel.build(model, targets, slots=1, rank=rank, labels=labels)
        self._cache = AdapterCache(
            cache_bytes if cache_bytes is not None else self._pools.slot_bytes * max(len(adapters), 1),
            self._pools.slot_bytes,
            adapters=len(adapters),
            slots=1,
            load=self._load,
            grow=self._pools.resize,
        )
        self.timings = EngineTimings()
        self._timings_lock = threading.Lock()
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        on_gpu, threads = self.device.startswith("cuda"), torch.get_num_threads()
        self.workers = workers or (1 if on_gpu else max(1, min(CPU_WORKERS, threads)))
        self._scorers = ThreadPoolExecutor(
            max_workers=self.workers,
            thread_name_prefix="score",
            # Each worker's share. Torch also keeps it as the default of threads that start torch work
            # later; threads already working (the caller's) keep theirs.
            initializer=torch.set_num_threads,
            initargs=(threads if on_gpu else max(1, threads // self.workers),),
        )
        log.info(
            "engine for release %s: %d adapters over %s on %s, %d target layers, rank %d, %d scoring "
            "workers (%.1fs to load)",
            release_id,
            len(adapters),
            Path(self.base_model).name,
            self.device,
            len(targets),
            rank,
            self.workers,
            time.perf_counter() - started,
        )

    @classmethod
    def from_release_dir(cls, release_dir: str | Path, **options: Any) -> AdapterEngine:
        """An engine over a release context (``retrain release context``, or what Spark ships)."""
        # Here, not at the top: the release modules bring MLflow, which a GPU box scoring need not have.
        from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE
        from retrain.release.manifest import Manifest
        from retrain.release.store import MANIFEST_FILE

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
    def vocabulary_size(self) -> int:
        """Token ids run from 0 to this size (the tokenizer's vocabulary with added tokens)."""
        return len(self._tokenizer)

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

    def predict(
        self, texts: Sequence[str], customers: Sequence[str], *, features: bool = False
    ) -> Predictions:
        """Score ``texts[i]`` with ``customers[i]``'s adapter; customers may differ from row to row.

        :param features: also return each row's :class:`RowFeatures` (drift monitoring).
        """
        (predictions,) = self.predict_each([(texts, customers)], features=features)
        return predictions

    def predict_each(
        self, requests: Iterable[tuple[Sequence[str], Sequence[str]]], *, features: bool = False
    ) -> Iterator[Predictions]:
        """:meth:`predict` for each ``(texts, customers)`` in turn, as a stream: the next rows, of this
        request or the next one, are tokenized while the workers score the current ones."""
        pending: deque[_Pending] = deque()  # requests in order, the oldest first
        running: deque[Future[None]] = deque()  # batches submitted, the oldest first
        try:
            for chunk, batches in self._tokenized(self._chunks(requests), running):
                if not pending or pending[-1].complete:
                    pending.append(_Pending(chunk.customers, _Scores(len(chunk.texts), features)))
                request = pending[-1]
                for batch in batches:
                    while len(running) >= 2 * self.workers:  # a bounded lead: memory, and a fair share
                        running.popleft().result()
                    running.append(self._scorers.submit(self._score, batch, chunk.customers, request.scores))
                    request.batches.append(running[-1])
                request.complete = chunk.last
                while pending and pending[0].done:
                    yield _finished(pending.popleft(), self._adapters)
            while pending:
                yield _finished(pending.popleft(), self._adapters)
        finally:  # an error, or the caller stopped reading: no batch of this call runs on afterwards
            for submitted in running:
                submitted.cancel()
            for submitted in running:
                if not submitted.cancelled():
                    submitted.exception()

    def _tokenized(
        self, chunks: Iterator[_Chunk], running: deque[Future[None]]
    ) -> Iterator[tuple[_Chunk, list[Batch]]]:
        """The chunks' batches, tokenized one chunk ahead; counts the time no batch ran meanwhile."""
        tokenized = ahead(chunks, self._tokenize, self._preparer)
        while True:
            idle = time.perf_counter() if all(batch.done() for batch in running) else None
            item = next(tokenized, None)
            if idle is not None:
                with self._timings_lock:
                    self.timings.wait += time.perf_counter() - idle
            if item is None:
                return
            yield item

    def _chunks(self, requests: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Iterator[_Chunk]:
        size = self.batch_size  # the first chunk: one batch, so scoring starts soon
        for texts, customers in requests:
            self._check(texts, customers)
            start = 0
            while True:
                stop = min(len(texts), start + size)
                yield _Chunk(texts, customers, start, stop, stop == len(texts))
                size = CHUNK_BATCHES * self.batch_size
                if stop == len(texts):
                    break
                start = stop

    def _check(self, texts: Sequence[str], customers: Sequence[str]) -> None:
        if len(texts) != len(customers):
            raise EngineInputError(
                f"{len(texts)} texts but {len(customers)} customers: one customer per text"
            )
        unknown = {c for c in customers if c not in self._adapters}
        if unknown:
            raise UnknownCustomerError(unknown, self.release_id)

    def _tokenize(self, chunk: _Chunk) -> tuple[_Chunk, list[Batch]]:
        """In the preparing thread: the chunk's rows as length-sorted batches of token ids."""
        started = time.perf_counter()
        batches = tokenized_batches(
            self._tokenizer,
            chunk.texts[chunk.start : chunk.stop],
            first_row=chunk.start,
            batch_size=self.batch_size,
            pin=self.device.startswith("cuda"),
        )
        self.timings.tokenize += time.perf_counter() - started
        return chunk, batches

    def _score(self, batch: Batch, request_customers: Sequence[str], scores: _Scores) -> None:
        """In a scoring worker: one forward pass over ``batch`` (or several, if its adapters outnumber
        this worker's share of the pools' slots)."""
        import torch

        from retrain.engine.packed import packed_forward

        started = time.perf_counter()
        customers = [request_customers[row] for row in batch.rows]
        distinct = list(dict.fromkeys(customers))
        limit = self._cache.max_slots
        if limit < len(self._adapters):  # a capped budget: every worker's batch must fit at once
            limit = max(1, limit // self.workers)
        if len(distinct) > limit:  # a budget below one batch's adapters: score it in parts that fit
            for part in (set(distinct[i : i + limit]) for i in range(0, len(distinct), limit)):
                self._score(
                    batch.take([i for i, c in enumerate(customers) if c in part]), request_customers, scores
                )
            return
        with self._cache.holding(distinct) as residents:
            slots = torch.tensor([residents[c].slot for c in customers])
            if self.device.startswith("cuda"):
                slots = slots.pin_memory()
            slots = slots.to(self.device, non_blocking=True)  # the batch's one copy of its slot vector
            selected = time.perf_counter()
            inputs = batch.to(self.device)
            with torch.inference_mode():
                logits, hidden = packed_forward(self._pools, inputs, slots)
                embeddings = _mean_pooled(hidden, inputs) if scores.features else None
                # On the host before the slots are let go: a GPU runs behind the host.
                probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        scored = time.perf_counter()
        scores.add(batch.rows, probabilities, [residents[c] for c in customers])
        if embeddings is not None:
            scores.add_features(batch, embeddings)
        finished = time.perf_counter()
        with self._timings_lock:
            timings = self.timings
            timings.select += selected - started
            timings.forward += scored - selected
            timings.finish += finished - scored
            timings.rows += len(customers)
            timings.batches += 1

    def _load(self, customer: str, slot: int) -> list[str]:
        return load_into(self._pools, slot, self._adapters[customer][0], customer)


def _finished(request: _Pending, adapters: dict[str, tuple[Path, str]]) -> Predictions:
    """A request whose batches are all done; a batch's error is raised here."""
    for batch in request.batches:
        batch.result()
    return request.scores.predictions([adapters[c][1] for c in request.customers])


def _mean_pooled(hidden: Any, batch: Batch) -> np.ndarray:
    """The mean of each row's last hidden states over its tokens (the base model's sentence embedding)."""
    # In fp32: bf16 sums of up to 64 tokens would round at every step. The grid is zero past a row.
    sums = batch.grid().place(hidden.float()).sum(dim=1)
    return np.asarray((sums / batch.key_mask.sum(dim=1, keepdim=True)).cpu().numpy(), dtype=np.float32)


class _Scores:
    """One request's results, filled batch by batch in whatever order its rows are scored."""

    def __init__(self, rows: int, features: bool = False) -> None:
        self.probabilities: list[np.ndarray] = [np.empty(0)] * rows
        self.labels = [""] * rows
        self.features = features
        # Only a request that asked for features pays for their per-row lists.
        self.token_ids: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * rows if features else []
        self.embeddings: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * rows if features else []

    def add(self, rows: np.ndarray, probabilities: np.ndarray, residents: list[Resident]) -> None:
        best = probabilities.argmax(axis=1)  # labels past an adapter's own have probability 0
        for i, (row, resident) in enumerate(zip(rows.tolist(), residents, strict=True)):
            self.probabilities[row] = probabilities[i, : len(resident.labels)]
            self.labels[row] = resident.labels[best[i]]

    def add_features(self, batch: Batch, embeddings: np.ndarray) -> None:
        for i, (row, ids) in enumerate(zip(batch.rows.tolist(), batch.row_token_ids(), strict=True)):
            self.token_ids[row] = ids
            self.embeddings[row] = embeddings[i]

    def predictions(self, versions: list[str]) -> Predictions:
        if not self.features:
            return Predictions(self.probabilities, self.labels, versions)
        hidden = self.embeddings[0].shape[0] if self.embeddings else 0
        features = RowFeatures(
            tokens=np.array([len(ids) for ids in self.token_ids], dtype=np.int64),
            token_ids=self.token_ids,
            embeddings=np.stack(self.embeddings) if self.embeddings else np.empty((0, hidden), np.float32),
        )
        return Predictions(self.probabilities, self.labels, versions, features)


def _plan(model: Any, adapters: dict[str, tuple[Path, str]]) -> tuple[list[str], int, int]:
    """The target layers, rank and label count the pools need for every adapter that fits the base.

    Read from the adapters' file headers, once. An adapter that is unreadable or does not fit is
    left out here and refused, naming its file, when its rows are scored.
    """
    import torch

    targets: set[str] = set()
    rank, labels = 1, 2
    for customer, (adapter_dir, _) in adapters.items():
        try:
            layout = AdapterLayout.read(adapter_dir, customer)
        except AdapterFileError as error:
            log.warning("%s; its rows will be refused", error)
            continue
        fits = True
        for path, shape in layout.layers.items():
            try:
                layer = model.get_submodule(path)
            except AttributeError:
                layer = None
            fits &= isinstance(layer, torch.nn.Linear) and (layer.in_features, layer.out_features) == shape
        if fits and layout.hidden == model.classifier.in_features:
            targets.update(layout.layers)
            rank, labels = max(rank, layout.rank), max(labels, layout.labels)
        else:
            log.warning(
                "customer %r: adapter %s does not fit the base model; its rows will be refused",
                customer,
                adapter_dir,
            )
    return sorted(targets), rank, labels


def _dtype_for(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16
    if device == "cpu":
        return torch.float32
    raise EngineError(f"device {device!r} is not supported (use cpu or cuda)")
