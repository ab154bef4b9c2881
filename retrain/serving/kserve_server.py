"""KServe's ModelServer, narrowed to what serving one release needs.

KServe's own server binds every address (``0.0.0.0`` and ``[::]``), lets a second server share a
taken gRPC port (gRPC sets ``SO_REUSEPORT``: calls were split between two releases), reports
start-up failures as tracebacks after saying it serves, answers ready with no model loaded and
lets anyone unload the model. Here:

- both ports are checked on ``--host`` before the release loads (REST's is bound and held, and
  listens once the release is loaded), and a port that cannot be used stops the start with one
  line naming it, before anything is announced;
- the model-repository extension (load and unload, REST and gRPC) is off: 501 and UNIMPLEMENTED;
- the server is ready only while its model is registered and loaded (not while stopping).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from concurrent import futures
from typing import Any

from grpc import aio
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import ModelServer
from kserve.model_server import args as kserve_args  # KServe's defaults (gRPC message sizes)
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from retrain.errors import InputError


class PortUnavailableError(InputError):
    """A port the server was told to listen on is taken or not allowed; the message names it."""


class RepositoryExtensionOff(NotImplementedError):
    """Load and unload are refused: one server serves one release for its whole life."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # what KServe's gRPC interceptor sends as the status details


class _RepositoryOff(ModelRepositoryExtension):  # type: ignore[misc]  # kserve is untyped
    def __init__(self, model_registry: Any, release_id: str) -> None:
        super().__init__(model_registry=model_registry)
        self.refusal = (
            f"this server serves release {release_id} only: loading and unloading models is turned off "
            "(deploy another release to serve another)"
        )

    async def load(self, model_name: str) -> None:
        raise RepositoryExtensionOff(self.refusal)

    async def unload(self, model_name: str) -> None:
        raise RepositoryExtensionOff(self.refusal)


class _ReadyWhenLoaded(DataPlane):  # type: ignore[misc]
    async def ready(self) -> bool:
        models = self.model_registry.get_models()
        return bool(models) and all(model.ready for model in models.values())

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "extensions": []}  # the repository extension is off


class _RestServer(RESTServer):  # type: ignore[misc]
    """KServe's REST server on a socket bound beforehand (as its own ``run(sockets=...)`` does)."""

    def __init__(self, listener: socket.socket, **options: Any) -> None:
        super().__init__(**options)
        self._listener = listener
        self.config.host, self.config.port = listener.getsockname()[:2]  # for uvicorn's own log line

    async def start(self) -> None:
        self.create_application()
        await self._server.serve(sockets=[self._listener])

    def _add_middlewares(self, app: Any) -> None:
        """None of KServe's: its timing middleware measured every request's wall and CPU time only to
        log them at trace level, as the outermost layer of every request."""


class _GrpcServer(GRPCServer):  # type: ignore[misc]
    """KServe's gRPC server on ``host``, bound in :meth:`bind` without ``SO_REUSEPORT``."""

    def __init__(self, host: str, port: int, **options: Any) -> None:
        super().__init__(port=port, **options)
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def bind(self, max_workers: int) -> None:
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
                ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared with another server
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server
        )
        try:
            bound = self._server.add_insecure_port(self._address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise PortUnavailableError(
                f"gRPC port {self._port} on {self._address.rpartition(':')[0]} cannot be used "
                "(in use, or not an address of this machine): choose another with --grpc-port or --host"
            )

    async def start(self, max_workers: int) -> None:
        await self._server.start()
        await self._server.wait_for_termination()


def bind_port(host: str, port: int, what: str, option: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not listening yet), or :class:`PortUnavailableError`."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        raise PortUnavailableError(f"--host {host!r} is not an address to listen on ({error})") from None
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart past TIME_WAIT
    # Accepted connections inherit it. uvicorn writes an answer's head and body apart, and with Nagle's
    # algorithm the body waited for the client's delayed ACK of the head: 40 ms on every answer.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise unavailable(what, host, port, option, error) from None
    return listener


def unavailable(what: str, host: str, port: int, option: str, error: OSError) -> PortUnavailableError:
    return PortUnavailableError(
        f"{what} port {port} on {host} cannot be used ({error.strerror or error}): "
        f"choose another with {option} or --host"
    )


class ReleaseServer(ModelServer):  # type: ignore[misc]
    """One worker, REST and gRPC on ``host``; see the module's docstring for what differs from KServe's."""

    def __init__(
        self, *, host: str, http_port: int, grpc_port: int, release_id: str, grace_period: int
    ) -> None:
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port,
            workers=1,
            enable_grpc=True,
            enable_latency_logging=False,
            grace_period=grace_period,
        )
        self.host = host
        self.model_repository_extension = _RepositoryOff(self.registered_models, release_id)
        self.dataplane = _ReadyWhenLoaded(model_registry=self.registered_models)
        self._listener: socket.socket | None = None

    def bind(self) -> None:
        """Take the REST port and check the gRPC one (gRPC binds its own in :meth:`start`): before the
        release loads, so a taken port fails in seconds."""
        self._listener = bind_port(self.host, self.http_port, "REST", "--http-port")
        bind_port(self.host, self.grpc_port, "gRPC", "--grpc-port").close()

    def start(self, models: list[Any], on_listening: Callable[[], None] = lambda: None) -> None:
        """Serve ``models`` on the ports :meth:`bind` took; call ``on_listening`` once both listen;
        return once SIGTERM or SIGINT stopped both servers."""
        listener = self._listener
        assert listener is not None, "ReleaseServer.bind() comes first"
        self._register_and_check_atleast_one_model_is_ready(models)
        try:
            self._listen(listener)
            self._rest_server = _RestServer(
                listener,
                app=FASTAPI_APP_IMPORT_STRING,
                data_plane=self.dataplane,
                model_repository_extension=self.model_repository_extension,
                http_port=self.http_port,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self._grpc_server = _GrpcServer(
                self.host,
                self.grpc_port,
                data_plane=self.dataplane,
                model_repository_extension=self.model_repository_extension,
                kwargs=vars(kserve_args),
                grace_period=self.grace_period,
            )
            self.register_signal_handler()
            asyncio.run(self._serve_both(on_listening))
        finally:
            listener.close()

    def _listen(self, listener: socket.socket) -> None:
        """Only now: while the release loads, a connection is refused rather than left waiting."""
        try:
            listener.listen(2048)
        except OSError as error:  # another server bound the port too, and listened first
            raise unavailable("REST", self.host, self.http_port, "--http-port", error) from None

    async def _serve_both(self, on_listening: Callable[[], None]) -> None:
        self._grpc_server.bind(self.max_threads)
        on_listening()
        await asyncio.gather(self._rest_server.start(), self._grpc_server.start(self.max_threads))
