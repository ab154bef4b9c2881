"""The fast V2 inference route answers as KServe's own route does, and leaves every other request to it.

In process: one loaded :class:`ReleaseModel` behind KServe's real data plane, routes and exception
handlers (as ``retrain serve`` sets them up), asked the same requests with and without
:class:`RestInfer` in front.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.serving

MODEL = "fast-route-test"


LOOP = asyncio.new_event_loop()  # the model's batcher serves one event loop: every request runs on it


@pytest.fixture(scope="module")
def apps(trained_release: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(KServe's app alone, the same app behind RestInfer, the model)."""
    pytest.importorskip("kserve", reason="the serving tests run in .venv-serve (make test-serving)")
    from retrain.serving.server import handle_load, import_kserve

    import_kserve()
    from fastapi import FastAPI
    from kserve.model_repository import ModelRepository
    from kserve.protocol.rest.server import RESTServer

    from retrain.serving.kserve_server import _ReadyWhenLoaded
    from retrain.serving.model import ReleaseModel
    from retrain.serving.rest_infer import RestInfer

    model = ReleaseModel(trained_release.release_dir, name=MODEL, workers=1)
    model.load()
    registry = ModelRepository()
    registry.update(model)
    dataplane = _ReadyWhenLoaded(model_registry=registry)
    app = FastAPI()
    rest = RESTServer(app="unused", data_plane=dataplane, model_repository_extension=None, http_port=0)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    handle_load(app)
    fronted = RestInfer(app, model_name=MODEL, dataplane=dataplane, exception_handlers=app.exception_handlers)
    yield app, fronted, model
    LOOP.run_until_complete(model.batcher.close())
    LOOP.close()


def ask(app: Any, body: bytes, headers: dict[str, str], path: str = f"/v2/models/{MODEL}/infer") -> Any:
    import httpx

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=body, headers=headers)

    return LOOP.run_until_complete(post())


def json_request(trained_release: Any, rows: int, **extra: Any) -> bytes:
    texts, customers = trained_release.texts[:rows], trained_release.text_customers[:rows]
    inputs = [("text", texts), ("customer_id", customers)]
    return json.dumps(
        {
            "id": "same-id",
            "inputs": [{"name": n, "shape": [len(v)], "datatype": "BYTES", "data": v} for n, v in inputs],
            **extra,
        }
    ).encode()


def binary_request(trained_release: Any, rows: int) -> tuple[bytes, dict[str, str]]:
    """Inputs as binary BYTES tensors and every output asked in binary (the binary data extension)."""
    columns = [("text", trained_release.texts[:rows]), ("customer_id", trained_release.text_customers[:rows])]
    raw = [b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values) for _, values in columns]
    head = json.dumps(
        {
            "id": "same-id",
            "inputs": [
                {"name": n, "shape": [rows], "datatype": "BYTES", "parameters": {"binary_data_size": len(r)}}
                for (n, _), r in zip(columns, raw, strict=True)
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("score", "label")],
        }
    ).encode()
    return head + b"".join(raw), {"inference-header-content-length": str(len(head))}


JSON = {"content-type": "application/json"}


def test_answers_match_kserves_route(apps: tuple[Any, Any, Any], trained_release: Any) -> None:
    kserve_app, fronted, model = apps
    binary_body, binary_headers = binary_request(trained_release, 5)
    cases = [
        (json_request(trained_release, 6), JSON),
        (json_request(trained_release, 3, outputs=[{"name": "label"}]), JSON),
        (json_request(trained_release, 2, parameters={"timeout": 0}), JSON),  # 400 naming the parameter
        (binary_body, binary_headers),
    ]
    bad_customer = json.loads(json_request(trained_release, 1))
    bad_customer["inputs"][1]["data"] = ["no_such_customer"]
    cases.append((json.dumps(bad_customer).encode(), JSON))
    for body, headers in cases:
        theirs, ours = ask(kserve_app, body, headers), ask(fronted, body, headers)
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content), body[:200]
        for name in ("content-type", "x-retrain-release-id", "inference-header-content-length"):
            assert ours.headers.get(name) == theirs.headers.get(name), name
    assert ask(fronted, *binary_request(trained_release, 5)).headers["inference-header-content-length"]
    answered = ask(fronted, json_request(trained_release, 6), JSON).json()
    expected = model.engine_or_fail().predict(trained_release.texts[:6], trained_release.text_customers[:6])
    assert [o["data"] for o in answered["outputs"] if o["name"] == "label"] == [expected.labels]


def test_refusals_keep_their_status_and_retry_after(apps: tuple[Any, Any, Any], trained_release: Any) -> None:
    kserve_app, fronted, _ = apps
    expired = json_request(trained_release, 1, parameters={"timeout": 1})  # 1 us: over before it is scored
    theirs, ours = ask(kserve_app, expired, JSON), ask(fronted, expired, JSON)
    assert (ours.status_code, ours.headers["retry-after"]) == (theirs.status_code, "1") == (503, "1")
    assert ours.json() == theirs.json()
    assert "deadline" in ours.json()["error"]


def test_a_body_outside_the_schema_is_a_400_naming_the_field(apps: tuple[Any, Any, Any]) -> None:
    kserve_app, fronted, _ = apps
    body = json.dumps(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}], "outputs": "all"}
    ).encode()
    assert ask(kserve_app, body, JSON).status_code == 422  # FastAPI's validation error, unnamed
    ours = ask(fronted, body, JSON)
    assert ours.status_code == 400
    assert ours.json()["error"].startswith("the inference request does not fit the V2 protocol: outputs:")


def test_other_requests_pass_to_kserve(apps: tuple[Any, Any, Any], trained_release: Any) -> None:
    kserve_app, fronted, _ = apps
    other_model = ask(fronted, json_request(trained_release, 1), JSON, path="/v2/models/other/infer")
    assert other_model.status_code == 404
    assert other_model.json() == {"error": "Model with name other does not exist."}

    async def get(app: Any, path: str) -> Any:
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.get(path)

    ready = LOOP.run_until_complete(get(fronted, f"/v2/models/{MODEL}/ready"))
    assert ready.status_code == 200
    assert ready.json() == LOOP.run_until_complete(get(kserve_app, f"/v2/models/{MODEL}/ready")).json()
