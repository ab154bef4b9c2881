"""The Releases view inside Airflow's real API server app: Airflow's auth, real MLflow releases.

Besides two really trained releases, two of 1,000 adapters (entries pointing at one trained
adapter's artifacts, registered through the store like any release) check paging, sorting,
filtering, escaping and the time of each page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.drift.history import DriftHistory, DriftRow
from retrain.drift.metrics import DEFAULT_THRESHOLDS, METRICS, ROWS
from retrain.release.manifest import AdapterEntry, Manifest
from retrain.release.promotion import promote
from retrain.release.store import ReleaseStore

BIG = 1000
# Customer ids cannot hold markup (retrain.identifiers); every character they may hold is here.
ODD = "a-0.odd_but.valid"
HOSTILE_REASON = "<img src=x onerror=alert('reason')>"
FLOOR_REASON = "no production adapter: ROC AUC 0.41 < floor 0.6"  # promotion.floor_failures
DOLT_WEB = "https://www.dolthub.com/repositories/acme/training"
PAGE_BOUND_S = 3.0  # the target is 1 s; a loaded 2-core CI machine gets slack


@dataclasses.dataclass(frozen=True)
class BigReleases:
    """``old``: customer_0000..0999 at v1. ``new``: 0000-0009 failed and kept v1, 0010-0014 failed
    and have no adapter, 0015-0399 retrained (v2), 0400-0999 unchanged, 5 customers added."""

    old: str
    new: str
    manifest: Manifest  # of ``new``


def big_entry(template: AdapterEntry, i: int, version: int) -> AdapterEntry:
    """Customer ``i`` at ``version``; roc_auc is a permutation of i, so sorting by it has one answer."""
    return dataclasses.replace(
        template,
        customer=f"customer_{i:04d}",
        model_name=f"adapter-customer_{i:04d}",
        version=str(version),
        commit=hashlib.sha1(f"{i % 3}-{version}".encode()).hexdigest(),
        metrics={"accuracy": 0.5 + (i % 10) / 100 + version / 100, "roc_auc": ((i * 37) % BIG) / BIG},
    )


def register_big_releases(store: ReleaseStore, template: AdapterEntry) -> BigReleases:
    old = Manifest(tuple(big_entry(template, i, 1) for i in range(BIG)))
    kept = [big_entry(template, i, 1) for i in (*range(10), *range(400, BIG))]
    changed = [big_entry(template, i, 2) for i in range(15, 400)]
    added = [big_entry(template, i, 1) for i in range(BIG, BIG + 4)]
    added.append(dataclasses.replace(added[0], customer=ODD, model_name=f"adapter-{ODD}"))
    new = Manifest((*kept, *changed, *added))
    failures = {f"customer_{i:04d}": f"out of memory #{i}" for i in range(15)}
    failures["customer_0010"] = HOSTILE_REASON
    failures["customer_0011"] = FLOOR_REASON
    store.register(old)
    return BigReleases(old.release_id, store.register(new, failures=failures).release_id, new)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReleaseStore, str, str, BigReleases]:
    """The two releases of :func:`two_releases`, cut after the two of 1,000 adapters."""
    from retrain.demo.seed import seed_training_repo

    tmp = tmp_path_factory.mktemp("releases")
    seeded: SeededRepository = seed_training_repo(tmp / "training.db", customers=4, examples=20)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    params = TrainingParams(epochs=1, min_examples=10)
    with DoltRepository.open(str(seeded.path)) as repo:
        for customer in ("acme_air", "globex_bank"):
            adapter = train_and_register(
                repo,
                table="examples",
                commit=seeded.commits[0],
                customer=customer,
                mlflow_uri=uri,
                params=params,
            )
            promote(store.client, customer, adapter.version)
        big = register_big_releases(store, store.production_manifest().adapters[0])
        first = store.register(store.production_manifest()).release_id
        adapter = train_and_register(
            repo, table="examples", commit="main", customer="globex_bank", mlflow_uri=uri, params=params
        )
        promote(store.client, "globex_bank", adapter.version, tolerance=1.0)
        second = store.register(store.production_manifest()).release_id
    assert first != second
    return store, first, second, big


@pytest.fixture(scope="module")
def two_releases(releases: tuple[ReleaseStore, str, str, BigReleases]) -> tuple[ReleaseStore, str, str]:
    """Release 1: acme_air and globex_bank at the first commit; release 2: globex_bank retrained at main."""
    store, first, second, _ = releases
    return store, first, second


@pytest.fixture(scope="module")
def big(releases: tuple[ReleaseStore, str, str, BigReleases]) -> BigReleases:
    return releases[3]


@pytest.fixture(scope="module")
def api(two_releases: tuple[ReleaseStore, str, str], airflow_db: Path) -> Iterator[TestClient]:
    """Airflow's own API server app, with the simple auth manager's admin and viewer users."""
    store, _, _ = two_releases
    saved = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = store.tracking_uri
    os.environ["AIRFLOW_CONN_DOLT_DEFAULT"] = json.dumps(
        {"conn_type": "dolt", "extra": {"web_url": DOLT_WEB}}
    )
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,operator:op,viewer:viewer"
    # The execution API refuses to start without a signing key (standalone generates one).
    # 64 bytes at least: PyJWT warns of shorter HMAC keys for the SHA-512 Airflow signs with.
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = secrets.token_urlsafe(64)
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    try:
        with TestClient(create_app()) as client:
            yield client
    finally:
        purge_cached_app()
        os.environ.clear()
        os.environ.update(saved)


def login(api: TestClient, user: str) -> dict[str, str]:
    generated = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    passwords = json.loads(generated.read_text())
    response = api.post("/auth/token", json={"username": user, "password": passwords[user]})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.slow
def test_anonymous_callers_get_nothing(api: TestClient, two_releases: tuple[Any, str, str]) -> None:
    _, first, _ = two_releases
    assert api.get("/releases/").status_code == 401
    assert api.get("/releases/api/releases").status_code == 401
    assert api.post(f"/releases/api/releases/{first}/rollback", json={"confirm": first}).status_code == 401


@pytest.mark.slow
def test_viewer_sees_releases_but_cannot_roll_back(
    api: TestClient, two_releases: tuple[Any, str, str]
) -> None:
    store, first, second = two_releases
    viewer = login(api, "viewer")
    page = api.get("/releases/", headers=viewer)
    assert page.status_code == 200
    assert first in page.text
    assert second in page.text
    assert "(production)" in page.text
    detail = api.get(f"/releases/release/{first}", headers=viewer)
    assert "globex_bank" in detail.text
    assert "acme_air" in detail.text
    assert "not in production" in detail.text
    assert 'id="rollback"' not in detail.text  # no button for a viewer
    diff = api.get("/releases/diff", params={"base": first, "head": second}, headers=viewer)
    assert "globex_bank" in diff.text
    assert "acme_air" not in diff.text
    refused = api.post(f"/releases/api/releases/{first}/rollback", json={"confirm": first}, headers=viewer)
    assert refused.status_code == 403
    assert store.latest().release_id == second  # type: ignore[union-attr]
    assert api.get("/releases/release/" + "0" * 32, headers=viewer).status_code == 404
    assert api.get("/releases/release/not-a-release", headers=viewer).status_code == 404


@pytest.mark.slow
def test_op_rolls_production_back(api: TestClient, two_releases: tuple[Any, str, str]) -> None:
    store, first, second = two_releases
    operator = login(api, "operator")
    assert 'id="rollback"' in api.get(f"/releases/release/{first}", headers=operator).text
    rollback = f"/releases/api/releases/{first}/rollback"
    unconfirmed = api.post(rollback, json={"confirm": second}, headers=operator)
    assert unconfirmed.status_code == 422
    unknown = "0" * 32
    unknown_rollback = f"/releases/api/releases/{unknown}/rollback"
    missing = api.post(unknown_rollback, json={"confirm": unknown}, headers=operator)
    assert missing.status_code == 404
    assert unknown in missing.json()["detail"]
    done = api.post(rollback, json={"confirm": first}, headers=operator)
    assert done.status_code == 200, done.text
    assert done.json()["event"] == "rollback"
    assert store.latest().release_id == first  # type: ignore[union-attr]
    listed = api.get("/releases/api/releases", headers=operator).json()
    assert next((e["release_id"], e["event"]) for e in listed) == (first, "rollback")


@pytest.mark.slow
def test_each_page_at_1000_adapters_answers_in_time(api: TestClient, big: BigReleases) -> None:
    """First of the big releases' tests, so the first pages parse their manifests (not cached yet)."""
    viewer = login(api, "viewer")
    detail, diff = f"/releases/release/{big.new}", f"/releases/diff?base={big.old}&head={big.new}"
    pages = [
        detail,
        f"{detail}?page=12",
        f"{detail}?q=customer_07&changed=true",
        f"{detail}?failed=true",
        f"{detail}?sort=accuracy&order=desc",
        f"/releases/release/{big.old}",
        diff,
        f"{diff}&sort=roc_auc&order=desc&page=3",
        "/releases/",
        f"/releases/api/releases/{big.new}/adapters?per_page=500",
    ]
    for url in pages:
        started = time.perf_counter()
        response = api.get(url, headers=viewer)
        seconds = time.perf_counter() - started
        assert response.status_code == 200, (url, response.text[:300])
        assert seconds < PAGE_BOUND_S, f"{url} took {seconds:.2f}s"


def customers_shown(page: str) -> list[str]:
    """The customer cell of each row of a page's table, unescaped."""
    return [html.unescape(cell) for cell in re.findall(r"<tr><td>(.*?)</td>", page)]


@pytest.mark.slow
def test_release_of_1000_adapters_pages_sorts_and_filters(api: TestClient, big: BigReleases) -> None:
    viewer = login(api, "viewer")
    adapters = f"/releases/api/releases/{big.new}/adapters"

    def customers(**params: Any) -> tuple[int, list[str]]:
        found = api.get(adapters, params=params, headers=viewer)
        assert found.status_code == 200, found.text
        return found.json()["total"], [row["customer"] for row in found.json()["rows"]]

    everyone = [ODD, *(f"customer_{i:04d}" for i in range(BIG + 4))]  # "a" sorts before "c"
    assert customers(page=3) == (1005, everyone[100:150])  # the 5 failed without an adapter too
    ranked = [a.customer for a in sorted(big.manifest.adapters, key=lambda a: -a.metrics["roc_auc"])]
    assert customers(sort="roc_auc", order="desc", page=2) == (1005, ranked[50:100])
    assert (
        customers(sort="roc_auc", order="asc", per_page=500, page=3)[1][-5:] == everyone[11:16]
    )  # none last
    assert customers(q="CUSTOMER_00", changed="true", per_page=100) == (
        85,
        [f"customer_{i:04d}" for i in range(15, 100)],
    )
    assert customers(changed="true")[0] == 385 + 5
    failed = api.get(adapters, params={"failed": "true"}, headers=viewer).json()
    assert [(r["customer"], r["adapter"] is None) for r in failed["rows"]] == [
        (f"customer_{i:04d}", i >= 10) for i in range(15)
    ]
    assert failed["previous_release"] == big.old

    page = api.get(
        f"/releases/release/{big.new}", params={"sort": "roc_auc", "order": "desc", "page": 2}, headers=viewer
    ).text
    assert customers_shown(page) == ranked[50:100]
    assert 'rel="next"' in page
    assert 'rel="prev"' in page
    assert "51&ndash;100 of 1005 matching rows" in page
    assert f'href="{DOLT_WEB}/commits/main/' in page
    assert f'href="../diff?base={big.old}&amp;head={big.new}"' in page  # the changes, as a table


@pytest.mark.slow
def test_user_values_are_escaped_and_bad_parameters_refused(api: TestClient, big: BigReleases) -> None:
    viewer = login(api, "viewer")
    detail = f"/releases/release/{big.new}"
    failed = api.get(detail, params={"failed": "true"}, headers=viewer).text
    assert escape(HOSTILE_REASON) in failed
    assert HOSTILE_REASON not in failed
    assert "training failed: out of memory #12, no adapter" in failed
    assert f'<span class="failed">{escape(FLOOR_REASON)}</span>' in failed  # trained, not failed
    odd = api.get(detail, params={"q": "odd_but"}, headers=viewer).text
    assert customers_shown(odd) == [ODD]
    echoed = api.get(detail, params={"q": '"><script>x()</script>'}, headers=viewer).text
    assert "<script>x()" not in echoed
    assert "none of 0 matching rows" in echoed
    history = api.get("/releases/", headers=viewer).text
    assert '<td class="failed">15</td>' in history

    for params, message in [
        ({"sort": "bogus"}, "sort must be one of customer, version, commit, accuracy, roc_auc"),
        ({"page": "22"}, "page 22 is past the last page (21)"),
        ({"page": "0"}, ""),
        ({"page": "x"}, ""),
        ({"order": "sideways"}, ""),
        ({"per_page": "100000"}, ""),
    ]:
        refused = api.get(detail, params=params, headers=viewer)
        assert refused.status_code == 422, (params, refused.status_code)
        assert message in refused.text
    diff = api.get(
        "/releases/diff", params={"base": big.old, "head": big.new, "kind": "bogus"}, headers=viewer
    )
    assert diff.status_code == 422
    assert "kind must be one of added, changed, removed" in diff.text


@pytest.mark.slow
def test_diff_of_1000_adapters_is_a_table(api: TestClient, big: BigReleases) -> None:
    viewer = login(api, "viewer")
    pair = {"base": big.old, "head": big.new}
    found = api.get("/releases/api/diff", params={**pair, "kind": "removed"}, headers=viewer).json()
    assert (found["total"], [r["customer"] for r in found["rows"]]) == (
        5,
        [f"customer_{i:04d}" for i in range(10, 15)],
    )
    changed = api.get(
        "/releases/api/diff", params={**pair, "kind": "changed", "per_page": 500}, headers=viewer
    ).json()
    assert changed["total"] == 385
    assert {round(r["deltas"]["accuracy"], 6) for r in changed["rows"]} == {0.01}
    page = api.get("/releases/diff", params={**pair, "sort": "kind", "page": 8}, headers=viewer).text
    assert "added, 385 changed, 5 removed" in page
    assert '<span class="better">+0.010</span>' in page  # accuracy went up: better, green
    assert "v1 &rarr; v2" in page
    assert f'href="{DOLT_WEB}/commits/main/' in page
    assert f'name="base" value="{big.old}"' in page  # the filter form keeps the pair
    assert f"base={big.old}" in page  # so do the sort and page links


def test_history_escapes_ids_read_back_from_mlflow() -> None:
    """Release ids are MLflow tags anyone with MLflow access can write: a crafted one stays text."""
    from retrain.release.store import ReleaseEvent
    from retrain_airflow.releases_pages import history

    crafted = '"><script>steal()</script>'
    event = ReleaseEvent(crafted, "pin", "run", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), 1, "", "")
    page = history([event])
    assert "<script>" not in page
    assert escape(crafted) in page
    assert 'href="release/%22%3E%3Cscript%3Esteal%28%29%3C/script%3E"' in page


# -- the Health page ----------------------------------------------------------------------------

HEALTH_DAYS = [(dt.date(2026, 11, 1) + dt.timedelta(days=i)).isoformat() for i in range(14)]
ELSEWHERE = "f" * 32  # a release no one registered: its rows are shown, but not under big.new's filter


def drift_rows(ds: str, release: str, customer: str, index: int, last: bool) -> list[DriftRow]:
    """Every metric of one customer's day: ok at half its threshold, except on the last day the
    customers whose index is a multiple of 100 drift on score_js (the later, the worse) and those
    at 50 past one have too few rows."""
    rows = []
    for metric in METRICS:
        threshold = 100.0 if metric == ROWS else DEFAULT_THRESHOLDS[metric]
        value, status = (150.0 if metric == ROWS else threshold / 2), "ok"
        if last and index % 100 == 0 and metric == "score_js":
            value, status = threshold * (1.5 + index / 1000), "drift"
        if last and index % 100 == 50:
            value, status = (12.0 if metric == ROWS else threshold / 2), "insufficient"
        rows.append(DriftRow(ds, release, customer, "1", metric, value, threshold, status))  # type: ignore[arg-type]
    return rows


@pytest.fixture(scope="module")
def health_days(releases: tuple[ReleaseStore, str, str, BigReleases]) -> list[str]:
    """14 days of drift of big.new's 1,000 adapters' customers, and on the last a customer of another release
    whose id holds markup (ids in a run's drift.json are anyone's with MLflow access)."""
    store, _, _, big = releases
    history = DriftHistory(store.tracking_uri)
    customers = [a.customer for a in big.manifest.adapters]
    for ds in HEALTH_DAYS:
        last = ds == HEALTH_DAYS[-1]
        rows = [r for i, c in enumerate(customers) for r in drift_rows(ds, big.new, c, i, last)]
        if last:
            rows += drift_rows(ds, ELSEWHERE, HOSTILE_REASON, 0, last=True)
        history.record(ds, big.new, rows)
    return customers


@pytest.mark.slow
def test_health_of_1000_customers_pages_sorts_and_filters(
    api: TestClient, big: BigReleases, health_days: list[str]
) -> None:
    viewer = login(api, "viewer")
    assert api.get("/releases/health").status_code == 401
    assert api.get("/releases/api/health").status_code == 401
    mine = {"release": big.new}

    def health(**params: Any) -> dict[str, Any]:
        started = time.perf_counter()
        found = api.get("/releases/api/health", params=params, headers=viewer)
        seconds = time.perf_counter() - started
        assert found.status_code == 200, found.text
        assert seconds < PAGE_BOUND_S, f"{params} took {seconds:.2f}s"
        return found.json()

    drifting = [health_days[i] for i in range(0, len(health_days), 100)]
    worst = health(**mine, sort="worst", order="desc", per_page=20)
    assert (worst["total"], worst["pages"], worst["days"]) == (1000, 50, HEALTH_DAYS)
    assert [r["customer"] for r in worst["rows"][:10]] == drifting[::-1]  # the later, the worse
    first = worst["rows"][0]
    assert (first["status"], first["release"], first["ds"], first["rows"]) == (
        "drift",
        big.new,
        HEALTH_DAYS[-1],
        150,
    )
    assert first["worst"] == pytest.approx(1.5 + 900 / 1000)  # score_js at 2.4 thresholds
    assert first["metrics"]["score_js"]["statuses"] == ["ok"] * 13 + ["drift"]
    assert len(first["metrics"]["length_psi"]["values"]) == 14

    assert health(**mine, status="drift")["total"] == 10
    insufficient = health(**mine, status="insufficient", per_page=500)
    assert [r["customer"] for r in insufficient["rows"]] == [health_days[i] for i in range(50, 1000, 100)]
    assert all(r["worst"] is None for r in insufficient["rows"])  # nothing of a 12-row day is trusted
    assert health(**mine, q="CUSTOMER_07")["total"] == 100
    assert health(**mine, days=7)["days"] == HEALTH_DAYS[-7:]
    assert health(**mine, until=HEALTH_DAYS[5], status="drift")["days"][-1] == HEALTH_DAYS[5]
    assert health(**mine, until=HEALTH_DAYS[5], status="drift")["total"] == 0  # the drift came later
    assert health(sort="worst", order="desc")["total"] == 1001  # every release's rows

    detail = api.get(f"/releases/release/{big.new}", headers=viewer).text
    link = f'href="../health?release={big.new}&amp;sort=worst&amp;order=desc"'
    assert link in detail  # from the release's page
    page = api.get(
        "/releases/health", params={**mine, "sort": "worst", "order": "desc", "page": 2}, headers=viewer
    )
    assert page.status_code == 200
    assert customers_shown(page.text)[:3] == health_days[41:44]  # the ok ones tie: by customer
    assert "51&ndash;100 of 1000 matching rows" in page.text
    assert page.text.count("<svg ") == 50 * 6
    assert f'name="release" value="{big.new}"' in page.text  # the filter form keeps the release
    assert f"release={big.new}&amp;page=3&amp;sort=worst&amp;order=desc" in page.text  # so does the pager


@pytest.mark.slow
def test_health_escapes_ids_read_back_and_refuses_bad_parameters(
    api: TestClient, health_days: list[str]
) -> None:
    viewer = login(api, "viewer")
    everyone = api.get("/releases/health", params={"sort": "worst", "order": "desc"}, headers=viewer).text
    assert HOSTILE_REASON not in everyone
    assert str(escape(HOSTILE_REASON)) in everyone
    for params, message in [
        ({"status": "bogus"}, "status must be one of ok, drift, insufficient, no_reference"),
        ({"sort": "accuracy"}, "sort must be one of customer, status, worst, rows, day"),
        ({"release": "not-a-release"}, "'not-a-release' is not a release id"),
        ({"days": "0"}, ""),
        ({"days": "91"}, ""),
        ({"until": "2026-13-01"}, ""),
    ]:
        for path in ("/releases/health", "/releases/api/health"):
            refused = api.get(path, params=params, headers=viewer)
            assert refused.status_code == 422, (path, params, refused.status_code)
            assert message in refused.text
