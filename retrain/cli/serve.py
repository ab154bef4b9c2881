"""``retrain serve``: a release behind KServe's model server (V2 REST and gRPC).

It runs in its own venv (.venv-serve: no Airflow, no Spark), so KServe is imported only by the handler.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.errors import InputError
from retrain.serving.batcher import (
    DEFAULT_MAX_QUEUE_MS,
    DEFAULT_MAX_QUEUE_ROWS,
    DEFAULT_MAX_WAIT_MS,
)
from retrain.serving.guard import DEFAULT_MAX_BODY_BYTES
from retrain.serving.protocol import DEFAULT_MODEL_NAME, model_name
from retrain.serving.server import DEFAULT_HOST

MAX_PORT = 65535

if TYPE_CHECKING:
    from retrain.cli.common import Commands


def _serve(args: argparse.Namespace) -> int:
    """The model server; KServe is imported only here (it lives in its own venv, .venv-serve)."""
    from retrain.serving.server import ServeSettings, import_kserve, serve

    if args.http_port == args.grpc_port:
        raise InputError(
            f"--http-port and --grpc-port are both {args.http_port}: REST and gRPC need two ports"
        )
    import_kserve()  # before any download: without the serve extra, say so at once
    if args.release:  # wins over $RETRAIN_RELEASE_DIR, the --release-dir default
        from retrain.scoring.job import ReleaseFiles

        release_dir = ReleaseFiles.fetch(
            common.release_store(args, create=False), args.release, Path(args.workdir)
        ).context
    elif args.release_dir:
        release_dir = Path(args.release_dir)
    else:
        raise InputError("retrain serve needs --release MD5 or --release-dir DIR (or $RETRAIN_RELEASE_DIR)")
    settings = ServeSettings(
        release_dir,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue_rows=args.max_queue_rows,
        max_queue_ms=args.max_queue_ms,
        cache_bytes=args.adapter_cache_mb * 1024 * 1024 if args.adapter_cache_mb else None,
        engine_workers=args.engine_workers,
        base_model=args.base_model,
        max_body_bytes=args.max_body_mb * 1024 * 1024,
    )
    return serve(settings)


def _port(text: str) -> int:
    """An argparse ``type=``: a TCP port number."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to {MAX_PORT}, got {text!r}")
    return int(text)


def _model_name(text: str) -> str:
    try:
        return model_name(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(commands: Commands) -> None:
    """Add ``retrain serve``."""
    serve = commands.add_parser("serve", help="serve a release: KServe model server, V2 REST and gRPC")
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--release", type=common.release, help="release id (manifest MD5): fetched from MLflow into --workdir"
    )
    source.add_argument(
        "--release-dir",
        default=os.environ.get("RETRAIN_RELEASE_DIR"),
        help="a release context folder; default $RETRAIN_RELEASE_DIR",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all)"
    )
    serve.add_argument(
        "--http-port", type=_port, default=8080, help="REST: V2 and /invocations (default 8080)"
    )
    serve.add_argument("--grpc-port", type=_port, default=8081, help="gRPC V2 (default 8081)")
    serve.add_argument(
        "--model-name",
        type=_model_name,
        default=DEFAULT_MODEL_NAME,
        help="V2 model name in /v2/models/<name>",
    )
    serve.add_argument(
        "--max-body-mb",
        type=common.at_least(1),
        default=DEFAULT_MAX_BODY_BYTES >> 20,
        help=f"largest REST request body; larger ones get 413 (default {DEFAULT_MAX_BODY_BYTES >> 20})",
    )
    serve.add_argument(
        "--max-batch-size",
        type=common.at_least(1),
        help="rows per batch (default 64 shared among the engine's workers: 32 on a CPU, 64 on a GPU)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help="how long the first request at a free worker waits for company, unless every worker was busy "
        f"when it came or a worker's share of the rows is queued (default {DEFAULT_MAX_WAIT_MS:g})",
    )
    serve.add_argument(
        "--max-queue-rows",
        type=int,
        default=DEFAULT_MAX_QUEUE_ROWS,
        help=f"rows waiting for a batch; past them, 503 with Retry-After (default {DEFAULT_MAX_QUEUE_ROWS})",
    )
    serve.add_argument(
        "--max-queue-ms",
        type=float,
        default=DEFAULT_MAX_QUEUE_MS,
        help=f"requests waiting longer for the engine: 503 (default {DEFAULT_MAX_QUEUE_MS:.0f})",
    )
    serve.add_argument(
        "--adapter-cache-mb",
        type=common.at_least(1),
        help="adapter slots' memory, an LRU past it (default: room for every adapter of the release)",
    )
    serve.add_argument(
        "--engine-workers",
        type=common.at_least(1),
        help="batches scored at once (default 2 on a CPU of 2 or more threads, sharing them; 1 on a GPU)",
    )
    serve.add_argument("--base-model", help="base model folder or package==version (default packaged)")
    common.add_mlflow_uri(serve)
    serve.add_argument("--workdir", default="var/serving", help="where --release is downloaded")
    serve.set_defaults(handler=_serve)
