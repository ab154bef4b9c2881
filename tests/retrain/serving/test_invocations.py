"""MLflow's scoring format on the same server: ``POST /invocations``, both pandas orientations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import requests

from retrain.engine import AdapterEngine
from retrain.serving.protocol import RELEASE_HEADER

from .conftest import ServedRelease

pytestmark = pytest.mark.serving


def invoke(served: ServedRelease, body: Any) -> requests.Response:
    return requests.post(f"{served.base_url}/invocations", json=body, timeout=60)


@pytest.mark.parametrize("orient", ["dataframe_split", "dataframe_records"])
def test_both_formats_score_as_in_process(
    served_release: ServedRelease, engine: AdapterEngine, trained_release: Any, orient: str
) -> None:
    texts, customers = trained_release.texts[:6], trained_release.text_customers[:6]
    rows = list(zip(customers, texts, strict=True))
    body: dict[str, Any] = (
        {"dataframe_split": {"columns": ["customer_id", "text"], "data": [list(r) for r in rows]}}
        if orient == "dataframe_split"
        else {"dataframe_records": [{"customer_id": c, "text": t} for c, t in rows]}
    )
    response = invoke(served_release, body)
    assert response.status_code == 200, response.text
    assert response.headers[RELEASE_HEADER] == served_release.release_id
    predictions = response.json()["predictions"]
    expected = engine.predict(texts, customers)
    np.testing.assert_allclose([p["score"] for p in predictions], expected.scores, atol=1e-5)
    assert [p["label"] for p in predictions] == expected.labels
    assert [p["adapter_version"] for p in predictions] == expected.adapter_versions


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": []}, "exactly one of dataframe_split, dataframe_records"),
        ({"dataframe_split": {"columns": ["text"], "data": [["a"]]}}, "lack 'customer_id'"),
        ({"dataframe_records": [{"text": "a"}]}, "row 0: column 'customer_id' is missing"),
        ({"dataframe_records": [{"text": 1, "customer_id": "x"}]}, "column 'text' is int, not a string"),
        ({"dataframe_records": [{"text": "a", "customer_id": "no_such_customer"}]}, "'no_such_customer'"),
        (
            {"dataframe_records": [{"text": None, "customer_id": "x"}]},
            "row 0: column 'text' is null, not a string",
        ),
        (
            {"dataframe_split": {"columns": ["text", "customer_id", "text"], "data": [["a", "x", "b"]]}},
            "columns ['text', 'customer_id', 'text'] repeat 'text'",
        ),
        (
            {"dataframe_records": [{"text": "\ud800", "customer_id": "x"}]},
            "text of row 0 is not valid Unicode",
        ),
    ],
    ids=[
        "no-format",
        "split-column",
        "records-missing",
        "records-type",
        "unknown-customer",
        "null-text",
        "repeated-column",
        "lone-surrogate",
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    served_release: ServedRelease, body: dict[str, Any], message: str
) -> None:
    response = invoke(served_release, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_deep_nesting_is_400(served_release: ServedRelease) -> None:
    response = requests.post(
        f"{served_release.base_url}/invocations",
        data=b"[" * 100_000,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "the /invocations body is JSON nested too deeply"
