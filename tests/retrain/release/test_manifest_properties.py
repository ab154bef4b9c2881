"""Property-based tests of the canonical manifest: its MD5 is the release id and the image tag.

The same set of adapter versions gives the same id whatever order the entries and metrics come
in; any change of a version, commit or metric gives another id.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given
from hypothesis import strategies as st

from retrain.release.manifest import AdapterEntry, Manifest

CUSTOMERS = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
METRICS = st.dictionaries(
    st.sampled_from(["accuracy", "roc_auc", "f1", "precision", "recall"]),
    st.floats(min_value=0, max_value=1, allow_nan=False),
    max_size=5,
)


@st.composite
def entries(draw: st.DrawFn) -> list[AdapterEntry]:
    customers = draw(st.lists(CUSTOMERS, min_size=1, max_size=12, unique=True))
    return [
        AdapterEntry(
            customer=customer,
            model_name=f"retrain-{customer}",
            version=str(draw(st.integers(min_value=1, max_value=10_000))),
            run_id=draw(st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
            commit=draw(st.from_regex(r"[0-9a-v]{32}", fullmatch=True)),
            artifact_uri=f"mlflow-artifacts:/1/{customer}/artifacts/model",
            metrics=draw(METRICS),
        )
        for customer in customers
    ]


@given(entries(), st.randoms(use_true_random=False))
def test_release_id_ignores_entry_and_metric_order(adapters: list[AdapterEntry], rng: random.Random) -> None:
    shuffled = [
        dataclasses.replace(a, metrics=dict(rng.sample(list(a.metrics.items()), len(a.metrics))))
        for a in rng.sample(adapters, len(adapters))
    ]
    assert Manifest(tuple(shuffled)).release_id == Manifest(tuple(adapters)).release_id
    assert Manifest(tuple(shuffled)).canonical_json() == Manifest(tuple(adapters)).canonical_json()


@given(entries(), st.data())
def test_any_changed_field_changes_the_release_id(adapters: list[AdapterEntry], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(adapters) - 1))
    entry = adapters[index]
    field = data.draw(st.sampled_from(["version", "commit", "run_id", "artifact_uri", "metrics"]))
    if field == "version":
        changed = dataclasses.replace(entry, version=str(int(entry.version) + 1))
    elif field == "metrics":
        value = entry.metrics.get("accuracy", 0.5)
        moved = value + 0.01 if value < 0.5 else value - 0.01  # far above the rounding of canonical JSON
        changed = dataclasses.replace(entry, metrics={**entry.metrics, "accuracy": moved})
    else:
        changed = dataclasses.replace(entry, **{field: getattr(entry, field) + "x"})
    other = [*adapters[:index], changed, *adapters[index + 1 :]]
    assert Manifest(tuple(other)).release_id != Manifest(tuple(adapters)).release_id


@given(entries())
def test_canonical_json_round_trips_to_the_same_id(adapters: list[AdapterEntry]) -> None:
    manifest = Manifest(tuple(adapters))
    assert Manifest.from_json(manifest.canonical_json()).release_id == manifest.release_id
