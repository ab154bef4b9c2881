"""Property-based test of the V2 request parser, through the real model server.

Whatever JSON a client sends to ``/v2/models/<name>/infer``, the server answers 200 with one score
per text or 400 with a V2 error body naming the problem (a body outside the protocol's request
schema too, where FastAPI would answer 422); never a 500, and never a hang.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import MODEL_NAME, ServedRelease
from .v2 import outputs

pytestmark = pytest.mark.serving

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@st.composite
def tensors(draw: st.DrawFn, customers: list[str]) -> dict[str, Any]:
    """One input tensor: mostly well-formed names, datatypes and shapes, sometimes anything."""
    rows = draw(st.integers(min_value=0, max_value=4))
    name = draw(st.sampled_from(["text", "customer_id", "texts", ""]))
    strings = st.text(max_size=60) if name != "customer_id" else st.sampled_from([*customers, "nobody", ""])
    return {
        "name": name,
        "datatype": draw(st.sampled_from(["BYTES", "BYTES", "FP32", "INT64", "bytes", ""])),
        "shape": draw(st.one_of(st.just([rows]), st.lists(st.integers(-2, 5), max_size=3))),
        "data": draw(st.one_of(st.lists(strings, min_size=rows, max_size=rows), JSON_VALUES)),
    }


@st.composite
def bodies(draw: st.DrawFn, customers: list[str]) -> Any:
    inputs = draw(st.lists(tensors(customers), max_size=3))
    return draw(st.one_of(st.just({"inputs": inputs}), st.just({"inputs": inputs, "id": "x"}), JSON_VALUES))


def test_any_request_body_gets_a_score_per_text_or_a_400(
    served_release: ServedRelease, trained_release: Any
) -> None:
    url = f"{served_release.base_url}/v2/models/{MODEL_NAME}/infer"

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies(list(trained_release.customers)))
    def answers(body: Any) -> None:
        response = requests.post(url, json=body, timeout=30)
        assert response.status_code in (200, 400), (body, response.status_code, response.text)
        answer = response.json()
        if response.status_code == 400:
            assert answer["error"], answer
            return
        texts = next(i["data"] for i in body["inputs"] if i["name"] == "text")
        scores = outputs(answer)["score"]
        assert len(scores) == len(texts)
        assert all(0.0 <= s <= 1.0 for s in scores)

    answers()
