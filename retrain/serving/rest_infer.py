"""``POST /v2/models/<model>/infer`` answered in front of KServe's FastAPI app, by KServe's own parts.

KServe's route reaches the model through FastAPI's router, dependency solving, its timing
middleware and a response model: about 0.7 ms of the event loop for each request. The event loop
holds the GIL meanwhile, and the engine's scoring threads need the GIL between kernels. With 32
closed-loop clients of one text each, the server answered 270 requests/s on 2 cores through
KServe's route and 340 through this one.

This ASGI middleware takes the served model's inference requests and answers them with what
KServe's route calls:

- the data plane decodes the request (JSON, or binary tensors), calls the model and encodes the
  answer;
- the app's exception handlers turn errors into responses.

Every other request passes on to KServe's app. It sits inside
:class:`~retrain.serving.guard.RestGuard`, which has checked the body's size and envelope and
mapped versioned paths, and inside :class:`~retrain.serving.disconnect.CancelOnDisconnect`, which
cancels it when the client leaves. One difference from KServe: a JSON body that does not fit the
protocol's request schema gets a 400 naming the field, not FastAPI's 422.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from pydantic import ValidationError
from starlette.requests import Request

from retrain.errors import InputError
from retrain.serving.asgi import App, Receive, Scope, Send
from retrain.serving.protocol import INFER_PATH
from retrain.serving.v2_body import JSON_LENGTH_HEADER, parse_json


class RestInfer:
    """ASGI middleware; ``app.add_middleware(RestInfer, model_name=..., dataplane=...,
    exception_handlers=app.exception_handlers)``.

    :param exception_handlers: the app's own mapping, read at each error: KServe adds its handlers
        when the server starts, after this middleware is added.
    """

    def __init__(
        self,
        app: App,
        *,
        model_name: str,
        dataplane: Any,  # kserve.protocol.dataplane.DataPlane (kserve is untyped)
        exception_handlers: Mapping[Any, Callable[..., Any]],
    ) -> None:
        self.app = app
        self.model_name = model_name
        self.dataplane = dataplane
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if found is None or scope["method"] != "POST" or found["name"] != self.model_name:
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self._infer(scope, receive)
        except Exception as error:  # an answer of KServe's handlers (400, 404, 500, 503 ...)
            response = await self._handled(scope, error)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _infer(self, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """What KServe's ``V2Endpoints.infer`` does, without FastAPI around it."""
        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read(receive)
        if not await self.dataplane.model_ready(self.model_name, True):
            raise ModelNotReady(self.model_name)
        payload = body if JSON_LENGTH_HEADER in request_headers else _inference_request(body)
        request, _ = self.dataplane.decode(
            payload, request_headers, protocol_version="v2", model_name=self.model_name
        )
        response, response_headers = await self.dataplane.infer(self.model_name, request, request_headers)
        encoded, encoded_headers = self.dataplane.encode(self.model_name, response, request_headers, {})
        answer_headers = {**response_headers, **encoded_headers}
        answer_headers.pop("content-length", None)
        answer_headers.pop("content-type", None)
        if isinstance(encoded, bytes):  # binary outputs: the JSON part's length is in a header
            answer = encoded
        else:  # as FastAPI renders KServe's InferenceResponse with its ORJSONResponse
            answer = orjson.dumps(InferenceResponse.model_validate(encoded).model_dump(mode="json"))
            answer_headers["content-type"] = "application/json"
        answer_headers["content-length"] = str(len(answer))
        return 200, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()], answer

    async def _handled(self, scope: Scope, error: Exception) -> Any:
        """The response the app's handler for ``error`` (or its nearest base class) gives."""
        for kind in type(error).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                response = handler(Request(scope), error)
                return await response if inspect.isawaitable(response) else response
        raise error


def _inference_request(body: bytes) -> Any:
    """The JSON body as KServe's ``InferenceRequest``, or ``InvalidInput`` naming what does not fit."""
    try:
        return InferenceRequest.model_validate(parse_json(body, "the inference request"))
    except InputError as error:
        raise InvalidInput(str(error)) from error
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the request"
        raise InvalidInput(
            f"the inference request does not fit the V2 protocol: {where}: {first['msg']}"
        ) from None


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
