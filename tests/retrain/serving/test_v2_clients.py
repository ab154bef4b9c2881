"""Real V2 clients: NVIDIA's tritonclient over REST (JSON and binary tensors), KServe's gRPC client."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from retrain.engine import AdapterEngine

from .conftest import MODEL_NAME, RunningServer

pytestmark = pytest.mark.serving


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_http(
    serving_process: RunningServer, engine: AdapterEngine, trained_release: Any, binary: bool
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=f"127.0.0.1:{serving_process.http_port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL_NAME)
        metadata = client.get_model_metadata(MODEL_NAME)
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            ("text", "BYTES"),
            ("customer_id", "BYTES"),
        ]
        texts, customers = trained_release.texts[:10], trained_release.text_customers[:10]
        inputs = [triton.InferInput("text", [10], "BYTES"), triton.InferInput("customer_id", [10], "BYTES")]
        inputs[0].set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
        inputs[1].set_data_from_numpy(np.array(customers, dtype=object), binary_data=binary)
        wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("score", "label")]
        # Without binary tensors tritonclient sends no Content-Type; KServe then reads the body as
        # binary and asks for Inference-Header-Content-Length. Saying it is JSON is enough.
        json_header = {} if binary else {"Content-Type": "application/json"}
        result = client.infer(MODEL_NAME, inputs, outputs=wanted, request_id="triton-1", headers=json_header)
        expected = engine.predict(texts, customers)
        np.testing.assert_allclose(result.as_numpy("score"), expected.scores, atol=1e-5)
        assert [
            v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")
        ] == expected.labels
        response = result.get_response()
        assert response["model_version"] == trained_release.release_id
        assert response["id"] == "triton-1"

        bad = [triton.InferInput("text", [1], "BYTES"), triton.InferInput("customer_id", [1], "BYTES")]
        bad[0].set_data_from_numpy(np.array(["x"], dtype=object), binary_data=binary)
        bad[1].set_data_from_numpy(np.array(["no_such_customer"], dtype=object), binary_data=binary)
        with pytest.raises(InferenceServerException, match="no_such_customer"):
            client.infer(MODEL_NAME, bad, headers=json_header)
    finally:
        client.close()


def test_grpc(serving_process: RunningServer, engine: AdapterEngine, trained_release: Any) -> None:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    texts, customers = trained_release.texts[:8], trained_release.text_customers[:8]

    def request(texts: list[str], customers: list[str]) -> Any:
        inputs = [
            InferInput("text", [len(texts)], "BYTES", data=[t.encode() for t in texts]),
            InferInput("customer_id", [len(customers)], "BYTES", data=[c.encode() for c in customers]),
        ]
        return InferRequest(model_name=MODEL_NAME, infer_inputs=inputs, request_id="grpc-1")

    async def run() -> tuple[Any, BaseException | None]:
        client = InferenceGRPCClient(serving_process.grpc_url, timeout=60)
        try:
            assert await client.is_server_ready()
            response = await client.infer(request(texts, customers))
            try:
                await client.infer(request(["x"], ["no_such_customer"]))
                error = None
            except Exception as raised:  # grpc.aio.AioRpcError
                error = raised
            return response, error
        finally:
            await client.close()

    response, error = asyncio.run(run())
    assert response.model_version == trained_release.release_id
    scores = next(o for o in response.outputs if o.name == "score").as_numpy()
    np.testing.assert_allclose(scores, engine.predict(texts, customers).scores, atol=1e-5)
    assert error is not None
    assert "no_such_customer" in str(error)
    assert "INVALID_ARGUMENT" in str(error)


def test_grpc_refuses_other_versions_unloading_and_bad_tensors(
    serving_process: RunningServer, trained_release: Any
) -> None:
    """Raw V2 gRPC calls, as any client may send them: every refusal names its reason."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    from .v2 import elements

    customer = trained_release.customers[0].encode()

    def request(version: str = "", shape: int = 1, raw: list[bytes] | None = None) -> Any:
        inputs = [
            pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[shape])
            for name in ("text", "customer_id")
        ]
        if raw is None:
            inputs[0].contents.bytes_contents.append(b"a text")
            inputs[1].contents.bytes_contents.append(customer)
        return pb.ModelInferRequest(
            model_name=MODEL_NAME, model_version=version, inputs=inputs, raw_input_contents=raw or []
        )

    async def run() -> list[Any]:
        async with grpc.aio.insecure_channel(serving_process.grpc_url) as channel:
            stub = GRPCInferenceServiceStub(channel)
            calls = [
                stub.ModelInfer(request(trained_release.release_id)),
                stub.ModelInfer(request("nope")),
                stub.ModelInfer(request(shape=-1)),
                stub.ModelInfer(request(raw=[b"\x05\x00", elements(customer)])),
                stub.ModelInfer(request(raw=[elements(b"a text")[:-2], elements(customer)])),
                stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)),
                stub.ServerReady(pb.ServerReadyRequest()),
            ]
            return [await _outcome(call) for call in calls]

    served, other, negative, short, lying, unload, ready = asyncio.run(run())
    assert served.model_version == trained_release.release_id
    assert other == (
        grpc.StatusCode.NOT_FOUND,
        f"model {MODEL_NAME} has one version, {trained_release.release_id} (the release id), not 'nope'",
    )
    assert negative == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'text' has shape [-1]; expected [N], one row per text",
    )
    for code, message in (short, lying):
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert message.startswith("input 'text': its data does not fit its shape [1]")
    assert unload[0] == grpc.StatusCode.UNIMPLEMENTED
    assert f"serves release {trained_release.release_id} only" in unload[1]
    assert ready.ready


async def _outcome(call: Any) -> Any:
    """The call's response, or (status code, details) of the error it ended with."""
    import grpc

    try:
        return await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details()
