"""The Releases view inside Airflow's real API server app: Airflow's auth, real MLflow releases."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.release.promotion import promote
from retrain.release.store import ReleaseStore


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReleaseStore, str, str]:
    """Release 1: acme_air and globex_bank at the first commit; release 2: globex_bank retrained at main."""
    from retrain.demo.seed import seed_training_repo

    tmp = tmp_path_factory.mktemp("releases")
    seeded: SeededRepository = seed_training_repo(tmp / "training.db", customers=4, examples=20)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    store = ReleaseStore(MlflowClient(uri), uri)
    params = TrainingParams(epochs=1, min_examples=10)
    with DoltRepository.open(str(seeded.path)) as repo:
        for customer in ("acme_air", "globex_bank"):
            adapter = train_and_register(repo, table="examples", commit=seeded.commits[0], customer=customer,
                                         mlflow_uri=uri, params=params)  # fmt: skip
            promote(store.client, customer, adapter.version)
        first = store.register(store.production_manifest()).release_id
        adapter = train_and_register(repo, table="examples", commit="main", customer="globex_bank",
                                     mlflow_uri=uri, params=params)  # fmt: skip
        promote(store.client, "globex_bank", adapter.version, tolerance=1.0)
        second = store.register(store.production_manifest()).release_id
    assert first != second
    return store, first, second


@pytest.fixture(scope="module")
def api(two_releases: tuple[ReleaseStore, str, str], airflow_db: Path) -> Iterator[TestClient]:
    """Airflow's own API server app, with the simple auth manager's admin and viewer users."""
    store, _, _ = two_releases
    saved = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = store.tracking_uri
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,operator:op,viewer:viewer"
    # The execution API refuses to start without a signing key (standalone generates one).
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = secrets.token_urlsafe(32)
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
