"""Services that are down, for time-bound tests: a closed port, and a port that accepts but never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOUND = 2.0  # the connect timeout the tests configure ($RETRAIN_CONNECT_TIMEOUT)
MARGIN = 3.0  # start-up and scheduling slack on a shared 2-core machine


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections, reads nothing and never answers, until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open: the client waits for an answer
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


class Elapsed:
    """Seconds since the ``with`` started, read after it ends (``timer.seconds``)."""

    def __enter__(self) -> Elapsed:
        self.started = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


@contextmanager
def health_only_port() -> Iterator[int]:
    """A loopback HTTP server whose ``/health`` answers 200 and every other path 503 (a sick MLflow)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # http.server calls it by this name
            healthy = self.path.split("?")[0] == "/health"
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK" if healthy else b"no")

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
