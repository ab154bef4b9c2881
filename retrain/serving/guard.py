"""What every REST request passes before KServe's app: a body-size limit, the V2 envelope, the version.

A plain ASGI middleware (no KServe import), added to KServe's FastAPI app by ``retrain serve``:

- a body over the limit is refused with 413 naming the limit, before it is read whole;
- a V2 inference body that KServe would answer with a 500 or a vague message gets a 400 naming
  the problem (:mod:`retrain.serving.v2_body`);
- ``/v2/models/<name>/versions/<version>/...`` is served when the version is the release id (the
  manifest's MD5, the ``model_version`` of every answer) and refused with 404 otherwise; KServe
  itself answers 501 to every version.
"""

from __future__ import annotations

import json
import re

from retrain.errors import InputError
from retrain.serving.asgi import App, Message, Receive, Scope, Send
from retrain.serving.protocol import INFER_PATH
from retrain.serving.v2_body import check_infer_body

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # ~50,000 rows of 300-character texts
_VERSIONED = re.compile(r"/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]*)(?P<rest>/ready|/infer)?")


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class RestGuard:
    """ASGI middleware; ``app.add_middleware(RestGuard, release_id=..., max_body_bytes=...)``."""

    def __init__(self, app: App, *, release_id: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.release_id = release_id
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        versioned = _VERSIONED.fullmatch(scope["path"])
        if versioned:
            if versioned["version"] != self.release_id:
                await _answer(
                    send,
                    404,
                    f"model {versioned['name']} has one version, {self.release_id} (the release id), "
                    f"not {versioned['version']!r}",
                )
                return
            path = f"/v2/models/{versioned['name']}{versioned['rest'] or ''}"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read(receive, headers.get("content-length"))
        except _TooLarge:
            await _answer(
                send,
                413,
                f"the request body is over this server's limit of {self.max_body_bytes} bytes "
                f"({self.max_body_bytes / 2**20:g} MiB, retrain serve --max-body-mb): "
                "send fewer rows at a time",
            )
            return
        except _Disconnected:
            return
        if INFER_PATH.fullmatch(scope["path"]):
            try:
                check_infer_body(body, headers)
            except InputError as error:
                await _answer(send, 400, str(error))
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, content_length: str | None) -> bytes:
        """The whole body, or :class:`_TooLarge` as soon as it is known to pass the limit."""
        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self.max_body_bytes
        ):
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then waits on the client as before."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, status: int, error: str) -> None:
    """A V2 error answer, ``{"error": "..."}``, as KServe's own handlers write it."""
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
