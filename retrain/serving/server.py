"""``retrain serve``: one release behind KServe's ModelServer (REST and gRPC), plus ``/invocations``.

The engine is loaded and warmed up before the ports open, so a listening server is a ready one
(the image's HEALTHCHECK and Kubernetes' readinessProbe ask ``/v2/health/ready``). One worker
process: the engine holds the base model once and batches across requests; more processes would
each hold a copy and split the batches.

``/invocations`` (MLflow's scoring format) is a route added to the FastAPI app KServe serves: it
shares the port, the event loop, KServe's error handlers and the model's batcher. Every REST request
passes :class:`~retrain.serving.guard.RestGuard` first (body-size limit, V2 envelope, versions), and
the server itself is :class:`~retrain.serving.kserve_server.ReleaseServer` (``--host``, ports bound
before it says it serves, no model unloading). The served model's V2 inference requests are answered
by :class:`~retrain.serving.rest_infer.RestInfer` with KServe's data plane, in front of FastAPI's
routing, which cost the event loop (and the GIL the engine needs) more than the rest of a request.

Under load the app refuses what the batcher cannot take (503 with ``Retry-After``) and cancels
the handlers of clients that disconnected, so their rows are never scored.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from retrain.engine import EngineError
from retrain.serving.batcher import (
    DEFAULT_MAX_QUEUE_MS,
    DEFAULT_MAX_QUEUE_ROWS,
    DEFAULT_MAX_WAIT_MS,
    UnavailableError,
)
from retrain.serving.disconnect import CancelOnDisconnect
from retrain.serving.guard import DEFAULT_MAX_BODY_BYTES, RestGuard
from retrain.serving.invocations import answer, parse
from retrain.serving.protocol import DEFAULT_MODEL_NAME
from retrain.serving.v2_body import parse_json

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

    from retrain.serving.model import ReleaseModel

log = logging.getLogger(__name__)

SERVE_EXTRA_MISSING = "retrain serve needs the serve extra: pip install 'retrain-suite[serve]'"
GRACE_SECONDS = 10  # in-flight requests get this long to finish after SIGTERM
DEFAULT_HOST = "127.0.0.1"  # loopback unless told: a container or pod passes --host 0.0.0.0


@dataclass(frozen=True)
class ServeSettings:
    release_dir: Path
    host: str = DEFAULT_HOST
    http_port: int = 8080
    grpc_port: int = 8081
    model_name: str = DEFAULT_MODEL_NAME
    max_batch_size: int | None = None  # default: 64 rows shared among the engine's workers
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS
    max_queue_ms: float = DEFAULT_MAX_QUEUE_MS
    cache_bytes: int | None = None  # default: every adapter of the release
    engine_workers: int | None = None  # default: the engine's (two on a CPU, one on a GPU)
    base_model: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class ServeExtraMissing(EngineError):
    """KServe is not installed in this environment (it cannot share one with Airflow)."""


def import_kserve() -> Any:
    """Import KServe without letting it read our command line.

    ``kserve.model_server`` parses ``sys.argv`` when first imported (its own flags, unknown ones
    ignored) and configures logging from it; it sees only the flags set here: no logging set-up of
    its own (ours stays in charge, quiet), no per-request latency lines.
    """
    saved = sys.argv
    sys.argv = [saved[0], "--configure_logging", "false", "--enable_latency_logging", "false"]
    try:
        import kserve
        import kserve.model_server  # parses the argv above, once
    except ImportError as error:
        raise ServeExtraMissing(SERVE_EXTRA_MISSING) from error
    finally:
        sys.argv = saved
    return kserve


class _DropClientErrors(logging.Filter):
    """KServe logs each 400, 404 and 501 with a traceback: a client's bad request is no server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput, ModelNotFound

        from retrain.serving.kserve_server import RepositoryExtensionOff

        refused = InvalidInput | ModelNotFound | RepositoryExtensionOff
        return not (record.exc_info and isinstance(record.exc_info[1], refused))


def serve(settings: ServeSettings) -> int:
    """Check the release's files, take the ports, load, serve until SIGTERM or SIGINT: 0 once stopped."""
    kserve = import_kserve()
    from retrain.serving.kserve_server import ReleaseServer
    from retrain.serving.model import ReleaseModel
    from retrain.serving.release_files import check_release_files
    from retrain.serving.rest_infer import RestInfer

    logging.getLogger("retrain.serving").setLevel(logging.INFO)
    logging.getLogger("kserve").addFilter(_DropClientErrors())
    # KServe 0.21's app still defaults to ORJSONResponse, which FastAPI deprecates: nothing to act on here.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    _exit_on_signal_while_loading()
    started = time.perf_counter()
    release_id = check_release_files(settings.release_dir).release_id  # the adapters' bytes as released
    server = ReleaseServer(
        host=settings.host,
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        release_id=release_id,
        grace_period=GRACE_SECONDS,
    )
    server.bind()  # a taken port fails now, not after loading the release
    model = ReleaseModel(
        settings.release_dir,
        name=settings.model_name,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue_rows=settings.max_queue_rows,
        max_queue_ms=settings.max_queue_ms,
        cache_bytes=settings.cache_bytes,
        workers=settings.engine_workers,
        base_model=settings.base_model,
    )
    model.load()
    # Millions of long-lived objects (torch, transformers, KServe) would otherwise be walked by every
    # full collection: pauses of about 250 ms that hold the GIL, in every request's tail.
    gc.collect()
    gc.freeze()
    engine = model.engine_or_fail()
    log.info(
        "release %s: %d adapters (%s), warmed up in %.1fs",
        engine.release_id,
        len(engine.customers),
        ", ".join(engine.customers[:8]) + (", ..." if len(engine.customers) > 8 else ""),
        time.perf_counter() - started,
    )
    app = kserve.model_server.app
    mount_invocations(app, model)
    app.add_middleware(
        RestInfer,
        model_name=settings.model_name,
        dataplane=server.dataplane,
        exception_handlers=app.exception_handlers,
    )
    handle_load(app)
    app.add_middleware(RestGuard, release_id=engine.release_id, max_body_bytes=settings.max_body_bytes)

    def listening() -> None:
        log.info(
            "serving model %r version %s: REST (V2 and /invocations) on %s:%d, gRPC on %s:%d",
            settings.model_name,
            engine.release_id,
            settings.host,
            settings.http_port,
            settings.host,
            settings.grpc_port,
        )

    server.start([model], on_listening=listening)  # returns once SIGTERM or SIGINT stopped both servers
    log.info("stopped serving release %s", engine.release_id)
    return 0


def _exit_on_signal_while_loading() -> None:
    """Until the servers take over the signals (``ModelServer.start``), SIGTERM stops the load, exit 0."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping before the release finished loading (signal %d)", signum)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)


def handle_load(app: FastAPI) -> None:
    """Refusals as 503 with ``Retry-After``; handlers of clients that left are cancelled."""
    from fastapi.responses import JSONResponse

    async def unavailable(request: Request, error: Exception) -> Response:
        retry_after = error.retry_after if isinstance(error, UnavailableError) else 1
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": str(retry_after)})

    app.add_exception_handler(UnavailableError, unavailable)
    app.add_middleware(CancelOnDisconnect)


def mount_invocations(app: FastAPI, model: ReleaseModel) -> None:
    """``POST /invocations`` on KServe's app, answered through the model's batcher."""
    from fastapi.responses import JSONResponse
    from kserve.errors import InvalidInput

    from retrain.errors import InputError
    from retrain.serving.protocol import RELEASE_HEADER

    async def invocations(request: Request) -> Response:
        try:
            texts, customers = parse(parse_json(await request.body(), "the /invocations body"))
        except InputError as error:
            raise InvalidInput(str(error)) from error
        predictions = await model.score(texts, customers)
        return JSONResponse(answer(predictions), headers={RELEASE_HEADER: model.release_id})

    # A plain Starlette route: FastAPI would read the handler's (postponed) annotations as query
    # parameters; KServe's exception handlers apply to it all the same.
    app.add_route("/invocations", invocations, methods=["POST"], include_in_schema=False)
