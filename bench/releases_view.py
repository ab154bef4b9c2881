"""Benchmark: the Releases view's pages at 1,000 adapters, through the real app (target: < 1 s each).

Prints the server time and the MLflow round trips of each page: a release's first page (a fresh
app: nothing cached yet, then cached), a search, a sort by a metric, "only failed", the diff of
two releases of 1,000 adapters (fresh app, then cached, sorted by a metric's delta) and the history.

Setup (not timed): ``bench/release.py``'s ``populate`` (one adapter really trained, N registered
versions pointing at its artifacts) gives release 1; release 2 retrains every customer (each
entry a new version, commit and metrics) except 20 whose training failed: 10 keep their adapter
of release 1, 10 have none; then ``--pins`` pin events lengthen the history.

Auth is Airflow's in production (``get_user``); here it is stubbed, the pages are the same code.

Run: ``.venv/bin/python bench/releases_view.py [--adapters 1000] [--pins 100]``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from release import CountingClient, populate

from retrain.release.manifest import Manifest
from retrain.release.store import ReleaseStore
from retrain_airflow.releases_app import create_app, may_roll_back

TARGET_S = 1.0
FAILED = 20


def second_release(first: Manifest) -> tuple[Manifest, dict[str, str]]:
    """Every customer retrained (new version, commit, metrics) but ``FAILED``: half keep v1, half none."""
    failed = [entry.customer for entry in first.adapters[:FAILED]]
    entries = list(first.adapters[FAILED // 2 : FAILED])  # failed, serving their release-1 adapter
    for i, entry in enumerate(first.adapters[FAILED:]):
        commit = hashlib.sha1(f"commit-{i % 7}".encode()).hexdigest()
        metrics = {
            "accuracy": 0.8 + (i % 17) / 100,
            "f1": 0.7 + (i % 13) / 100,
            "roc_auc": 0.85 + (i % 11) / 100,
        }
        entries.append(
            dataclasses.replace(entry, version=str(int(entry.version) + 1), commit=commit, metrics=metrics)
        )
    failures = {customer: f"CUDA out of memory (attempt {n % 3 + 1})" for n, customer in enumerate(failed)}
    return Manifest(tuple(entries)), failures


def build(workdir: Path, adapters: int, pins: int) -> tuple[ReleaseStore, CountingClient, str, str]:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    populate(uri, workdir, adapters)
    client = CountingClient(MlflowClient(uri))
    store = ReleaseStore(client, uri)
    started = time.perf_counter()
    first = store.register(store.production_manifest())
    manifest, failures = second_release(store.manifest(first.release_id))
    second = store.register(manifest, failures=failures)
    day = dt.date(2026, 1, 1)
    for n in range(pins):
        store.pin(first.release_id, day + dt.timedelta(days=n), day + dt.timedelta(days=n))
    print(f"  setup: 2 releases and {pins} pins in {time.perf_counter() - started:.0f}s (not timed below)")
    return store, client, first.release_id, second.release_id


def app_for(store: ReleaseStore) -> FastAPI:
    app = create_app(lambda: store, dolt_url=lambda: "https://www.dolthub.com/repositories/acme/training")
    stub: dict[Any, Any] = {get_user: lambda: object(), may_roll_back: lambda: True}
    app.dependency_overrides.update(stub)
    return app


def timed(http: TestClient, calls: CountingClient, url: str, expect: str) -> tuple[float, int]:
    """Seconds and MLflow round trips of one request (the app runs in this process)."""
    before = sum(calls.calls.values())
    started = time.perf_counter()
    response = http.get(url)
    seconds = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    assert expect in response.text, (url, expect)
    return seconds, sum(calls.calls.values()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--pins", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    with tempfile.TemporaryDirectory() as tmp:
        print(f"N = {args.adapters:,} adapters")
        store, calls, first, second = build(Path(tmp), args.adapters, args.pins)
        diff = f"/diff?base={first}&head={second}"
        pages = [
            ("release page 1 (fresh app)", f"/release/{second}", "customer_00019"),
            ("release page 1 (cached)", f"/release/{second}", "customer_00019"),
            ("release page 12 of 20", f"/release/{second}?page=12", "551&ndash;600 of 1000"),
            ("search 'CUSTOMER_0040'", f"/release/{second}?q=CUSTOMER_0040", "of 10 matching"),
            ("sort roc_auc desc, page 3", f"/release/{second}?sort=roc_auc&order=desc&page=3", "roc_auc"),
            ("only failed", f"/release/{second}?failed=true", f"of {FAILED} matching"),
            ("only changed, by version", f"/release/{second}?changed=true&sort=version", "changed from v1"),
            ("older release (first)", f"/release/{first}", "No earlier release"),
            ("diff (fresh app)", diff, "changed"),
            ("diff (cached)", diff, "changed"),
            ("diff by f1 delta, page 5", f"{diff}&sort=f1&order=desc&page=5", "&Delta; f1"),
            ("diff removed only", f"{diff}&kind=removed", "of 10 matching"),
            ("history", "/", "(production)"),
            ("api: adapters page", f"/api/releases/{second}/adapters?per_page=100", '"total":1000'),
        ]
        print(f"  {'page':<28}{'server s':>9}{'MLflow calls':>14}  < {TARGET_S:.0f} s")
        http = TestClient(app_for(store))
        for name, url, expect in pages:
            if "fresh" in name:  # nothing cached: what the first visitor after a restart waits
                http = TestClient(app_for(store))
            seconds, trips = timed(http, calls, url, expect)
            verdict = "yes" if seconds < TARGET_S else "NO"
            print(f"  {name:<28}{seconds:>9.3f}{trips:>14}  {verdict}")


if __name__ == "__main__":
    main()
