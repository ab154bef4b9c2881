"""One release served as one KServe model: Open Inference Protocol V2 over REST and gRPC.

Inputs ``text`` and ``customer_id`` (BYTES, shape [N]); outputs ``score`` (FP64: probability of the
adapter's last label), ``label`` and ``adapter_version`` (BYTES). The model's version is the
release id (the manifest's MD5): every response carries it as ``model_version`` and, over REST,
as the ``x-retrain-release-id`` header, so a client can tell which release answered.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InferenceError, InvalidInput, ModelNotFound
from kserve.protocol.infer_type import to_http_parameters

from retrain.engine import AdapterEngine, EngineError, EngineInputError, Predictions
from retrain.serving.batcher import (
    DEFAULT_MAX_QUEUE_MS,
    DEFAULT_MAX_QUEUE_ROWS,
    DEFAULT_MAX_WAIT_MS,
    DeadlineExceededError,
    DynamicBatcher,
    UnavailableError,
)
from retrain.serving.metrics import PrometheusMetrics
from retrain.serving.protocol import (
    DEFAULT_MODEL_NAME,
    INPUTS,
    MAX_TEXT_CHARS,
    OUTPUTS,
    RELEASE_HEADER,
    is_unicode,
)

log = logging.getLogger(__name__)


class ReleaseModel(Model):  # type: ignore[misc]  # kserve is untyped (Any) where mypy runs
    """The release's adapters behind KServe's data plane; ready only once the engine has warmed up.

    :param engine_options: passed to :meth:`AdapterEngine.from_release_dir` (``base_model``,
        ``cache_bytes``, ``batch_size``, ``workers``).
    """

    def __init__(
        self,
        release_dir: str | Path,
        *,
        name: str = DEFAULT_MODEL_NAME,
        max_batch_size: int | None = None,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS,
        max_queue_ms: float = DEFAULT_MAX_QUEUE_MS,
        **engine_options: Any,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self.release_dir = Path(release_dir)
        self._engine_options = engine_options
        self._max_batch_size = max_batch_size
        self._max_wait_ms = max_wait_ms
        self._max_queue_rows = max_queue_rows
        self._max_queue_ms = max_queue_ms
        # Not ``self.engine``: KServe's base class uses that name for "has an engine to start".
        self.adapter_engine: AdapterEngine | None = None
        self._batcher: DynamicBatcher | None = None

    @property
    def release_id(self) -> str:
        return self.engine_or_fail().release_id

    @property
    def batcher(self) -> DynamicBatcher:
        if self._batcher is None:
            raise UnavailableError(f"model {self.name} is not loaded yet")
        return self._batcher

    def engine_or_fail(self) -> AdapterEngine:
        if self.adapter_engine is None:
            raise UnavailableError(f"model {self.name} is not loaded yet")
        return self.adapter_engine

    def load(self) -> bool:
        """Load the base and every adapter's metadata, run one forward pass, then report ready."""
        if self.adapter_engine is None:
            engine = AdapterEngine.from_release_dir(self.release_dir, **self._engine_options)
            engine.warm_up()
            self._batcher = DynamicBatcher(
                engine,
                max_batch_size=self._max_batch_size,
                max_wait_ms=self._max_wait_ms,
                max_queue_rows=self._max_queue_rows,
                max_queue_ms=self._max_queue_ms,
                metrics=PrometheusMetrics(self.name),
            )
            self.adapter_engine = engine
        self.ready = True
        return True

    def stop(self) -> None:
        """KServe calls this on SIGTERM: refuse new requests (503), still answer the queued ones."""
        super().stop()
        if self._batcher is not None:
            self._batcher.stop()

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in INPUTS]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in OUTPUTS]

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(
                f"model {self.name} speaks the Open Inference Protocol (V2): POST "
                f"/v2/models/{self.name}/infer with inputs {' and '.join(INPUTS)}"
            )
        if payload.model_version and payload.model_version != self.release_id:  # gRPC names one
            raise VersionNotFound(
                f"model {self.name} has one version, {self.release_id} (the release id), "
                f"not {payload.model_version!r}"
            )
        repeated = sorted(n for n, count in Counter(i.name for i in payload.inputs).items() if count > 1)
        if repeated:
            raise InvalidInput(
                f"inputs {', '.join(map(repr, repeated))} appear more than once; send each once"
            )
        texts, customers = (_strings(payload, name) for name in INPUTS)
        if len(texts) != len(customers):
            raise InvalidInput(
                f"inputs text and customer_id differ in length ({len(texts)} texts, "
                f"{len(customers)} customer ids): one customer_id per text"
            )
        try:
            predictions = await self.score(texts, customers, timeout=_timeout(payload))
        except UnavailableError as error:
            if payload.from_grpc:  # KServe's gRPC layer turns only its own exceptions into statuses
                from grpc_interceptor.exceptions import DeadlineExceeded, Unavailable

                kind = DeadlineExceeded if isinstance(error, DeadlineExceededError) else Unavailable
                raise kind(str(error)) from error
            raise
        n = len(texts)
        columns: dict[str, list[Any]] = {
            "score": [float(s) for s in predictions.scores],
            "label": list(predictions.labels),
            "adapter_version": list(predictions.adapter_versions),
        }
        outputs = [InferOutput(name, [n], datatype, data=columns[name]) for name, datatype in OUTPUTS]
        if response_headers is not None:
            response_headers[RELEASE_HEADER] = self.release_id
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.release_id,
            infer_outputs=outputs,
            from_grpc=payload.from_grpc,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )

    async def score(
        self, texts: Sequence[str], customers: Sequence[str], timeout: float | None = None
    ) -> Predictions:
        """Through the shared batcher; the engine's refusals become KServe's errors (400 or 500).

        Each text is cut to :data:`MAX_TEXT_CHARS` first: the engine keeps only its first 64 tokens.
        :class:`UnavailableError` (queue full, stopping, deadline passed) passes as it is: 503.
        """
        for what, values in (("text", texts), ("customer_id", customers)):
            bad = next((row for row, value in enumerate(values) if not is_unicode(value)), None)
            if bad is not None:
                raise InvalidInput(f"{what} of row {bad} is not valid Unicode (it holds a lone surrogate)")
        try:
            return await self.batcher.predict([t[:MAX_TEXT_CHARS] for t in texts], customers, timeout=timeout)
        except EngineInputError as error:  # unknown customer, lengths: the caller's fault
            raise InvalidInput(str(error)) from error
        except EngineError as error:  # a broken release on disk: the server's fault
            raise InferenceError(str(error)) from error


class VersionNotFound(ModelNotFound):  # type: ignore[misc]  # kserve is untyped
    """A request for another version than the release id: 404 over REST, NOT_FOUND over gRPC."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _timeout(request: InferRequest) -> float | None:
    """The optional ``timeout`` parameter (microseconds, as Triton's clients send it), in seconds."""
    parameters = to_http_parameters(request.parameters) if request.parameters else {}
    value = parameters.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(
            f"parameter 'timeout' is {value!r}; expected a whole number of microseconds above 0"
        )
    return value / 1_000_000


def _strings(request: InferRequest, name: str) -> list[str]:
    """Input ``name`` as a list of strings, or :class:`InvalidInput` saying what is wrong with it."""
    tensor = request.get_input_by_name(name)
    if tensor is None:
        present = ", ".join(repr(i.name) for i in request.inputs) or "none"
        raise InvalidInput(
            f"input {name!r} is missing (the request has {present}); send text and customer_id, "
            "both BYTES of shape [N]"
        )
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input {name!r} has datatype {tensor.datatype}; expected BYTES (strings)")
    if len(tensor.shape) != 1 or tensor.shape[0] < 0:
        raise InvalidInput(f"input {name!r} has shape {list(tensor.shape)}; expected [N], one row per text")
    try:
        values = tensor.as_numpy()
    except (ValueError, TypeError, struct.error) as error:  # struct: a raw BYTES tensor's length prefixes
        raise InvalidInput(
            f"input {name!r}: its data does not fit its shape {list(tensor.shape)} ({error})"
        ) from error
    return [_string(name, i, value) for i, value in enumerate(np.asarray(values).reshape(-1).tolist())]


def _string(name: str, row: int, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"input {name!r} row {row} is not UTF-8 ({error})") from error
    raise InvalidInput(f"input {name!r} row {row} is {type(value).__name__} {value!r}, not a string")
