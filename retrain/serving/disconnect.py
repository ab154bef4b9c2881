"""Cancel a request's handler when its client disconnects, so its rows leave the queue unscored.

An ASGI server does not stop a handler whose client has gone: left alone, a queue of abandoned
requests would keep the engine busy long after their clients timed out. Once a POST's body has
been read, this middleware listens for ``http.disconnect`` beside the handler and cancels it;
the batcher then drops the request (:meth:`DynamicBatcher.predict` handles the cancellation).
gRPC needs nothing of the kind: grpc.aio cancels the handler of a cancelled or expired call.
"""

from __future__ import annotations

import asyncio
import contextlib

from retrain.serving.asgi import App, Message, Receive, Scope, Send


class CancelOnDisconnect:
    """ASGI middleware: a POST handler is cancelled once its client has disconnected."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()

        async def receive_body() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def client_gone() -> None:
            await body_read.wait()  # the handler reads the body itself; only then listen
            while (await receive())["type"] != "http.disconnect":
                pass

        handler = asyncio.ensure_future(self.app(scope, receive_body, send))
        watcher = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait([handler, watcher], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not handler.done():  # the client left first: nobody reads the answer
                handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler  # re-raises the handler's own error, if it had one
