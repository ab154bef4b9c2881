"""A real browser in the real Airflow UI: Debian's Chromium, driven headless by Playwright.

Logs in as admin and as viewer, finds the four DAGs, the Releases view and the Add Connection form
for ``dolt`` with its fields, and saves screenshots under ``var/test-artifacts/screenshots`` (kept
as test artifacts); the viewer sees no rollback
button and the rollback endpoint answers 403. A release of 1,000 adapters (entries pointing at one
trained adapter's artifacts) is searched, sorted and paged in the browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.demo.seed import seed_training_repo
from retrain.demo.up import PASSWORDS_FILE, prepare_airflow, service_env, start_airflow, start_mlflow, stop
from retrain.dolt import DoltRepository
from retrain.release.manifest import AdapterEntry, Manifest
from retrain.release.promotion import promote
from retrain.release.store import ReleaseStore

from ..dags.test_retrain_on_commit_e2e import free_port
from ..operators.test_releases_app import BIG, big_entry

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "screenshots"
DAG_IDS = ("retrain_on_commit", "retrain_scheduled", "score_daily", "partner_retro_test")
# Chromium on a closed network: no background connections, no sandbox as root (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (make browser installs it)"
    ),
]


def register_big_release(store: ReleaseStore, template: AdapterEntry) -> str:
    """customer_0000..0999, the first three of which failed to retrain (kept their adapter)."""
    manifest = Manifest(tuple(big_entry(template, i, 1) for i in range(BIG)))
    failures = {f"customer_{i:04d}": "out of memory" for i in range(3)}
    return store.register(manifest, failures=failures).release_id


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Airflow standalone and an MLflow server with a release of 1,000 adapters, then two releases."""
    home = tmp_path_factory.mktemp("ui")
    mlflow_port, airflow_port = free_port(), free_port()
    env = service_env(home, mlflow_port=mlflow_port, airflow_port=airflow_port)
    with ExitStack() as services:  # each service stopped, with all it started, however the tests end
        services.callback(stop, start_mlflow(home, env, mlflow_port))
        uri = env["MLFLOW_TRACKING_URI"]
        store = ReleaseStore(MlflowClient(uri), uri)
        seeded = seed_training_repo(home / "training.db", customers=2, examples=30)
        releases = []
        with DoltRepository.open(str(seeded.path)) as repo:
            for commit in seeded.commits:
                for customer in seeded.customers:
                    adapter = train_and_register(
                        repo,
                        table="examples",
                        commit=commit,
                        customer=customer,
                        mlflow_uri=uri,
                        params=TrainingParams(epochs=1, min_examples=10),
                    )
                    promote(store.client, customer, adapter.version, tolerance=1.0)
                if not releases:  # before release 1, so that the trained releases stay the newest two
                    big = register_big_release(store, store.production_manifest().adapters[0])
                releases.append(store.register(store.production_manifest()).release_id)
        prepare_airflow(env)
        services.callback(stop, start_airflow(home, env, airflow_port))
        passwords = json.loads((home / "airflow" / PASSWORDS_FILE).read_text())
        yield {
            "base": f"http://127.0.0.1:{airflow_port}",
            "passwords": passwords,
            "releases": releases,
            "big": big,
        }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def logged_in(browser: Any, ui: dict[str, Any], user: str) -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(ui["base"] + "/")
    page.fill('input[name="username"]', user)
    page.fill('input[name="password"]', ui["passwords"][user])
    page.click('button[type="submit"]')
    page.wait_for_url(lambda url: "/auth/" not in url, timeout=60_000)
    return page


def wait_for_dags(page: Any, base: str, timeout: float = 240) -> None:
    """Until the DAG processor has stored every DAG (asked with the page's session)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = page.request.get(f"{base}/api/v2/dags").json()
        if {d["dag_id"] for d in found.get("dags", [])} >= set(DAG_IDS):
            return
        time.sleep(3)
    raise AssertionError(f"the DAG processor did not store {DAG_IDS} within {timeout:.0f}s")


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_admin_finds_the_dags_and_the_releases_view(browser: Any, airflow_ui: dict[str, Any]) -> None:
    page = logged_in(browser, airflow_ui, "admin")
    wait_for_dags(page, airflow_ui["base"])  # the list page does not refresh while it has no DAGs
    page.goto(airflow_ui["base"] + "/dags")
    for dag_id in DAG_IDS:
        page.get_by_text(dag_id, exact=True).first.wait_for(timeout=30_000)
    screenshot(page, "dags")

    page.goto(airflow_ui["base"] + "/plugin/releases")
    frame = page.frame_locator("iframe").first
    first, second = airflow_ui["releases"]
    frame.get_by_text(second).first.wait_for(timeout=30_000)
    assert frame.get_by_text("(production)").count() >= 1
    screenshot(page, "releases")
    frame.get_by_role("button", name="Diff").click()  # the previous release against production
    frame.get_by_role("cell", name="acme_air", exact=True).wait_for(timeout=30_000)
    screenshot(page, "release-diff")

    page.goto(f"{airflow_ui['base']}/releases/release/{first}")
    assert page.locator("#rollback").count() == 1  # admin may roll back to the earlier release
    screenshot(page, "release-detail-admin")


def test_viewer_has_no_rollback_button_and_gets_403(browser: Any, airflow_ui: dict[str, Any]) -> None:
    page = logged_in(browser, airflow_ui, "viewer")
    first, _ = airflow_ui["releases"]
    page.goto(f"{airflow_ui['base']}/releases/release/{first}")
    page.get_by_text("not in production").wait_for()
    assert page.locator("#rollback").count() == 0
    screenshot(page, "release-detail-viewer")
    response = page.request.post(
        f"{airflow_ui['base']}/releases/api/releases/{first}/rollback", data={"confirm": first}
    )
    assert response.status == 403


def matching(first: int, last: int, total: int) -> str:
    """The count above a table, as the browser shows it (the page writes an en dash)."""
    return f"{first}\u2013{last} of {total} matching rows."


def shown(page: Any) -> list[str]:
    """The customer column of the rows on screen."""
    return [str(cell) for cell in page.locator("table tr td:first-child").all_inner_texts()]


def test_release_of_1000_adapters_searches_sorts_and_pages(browser: Any, airflow_ui: dict[str, Any]) -> None:
    page = logged_in(browser, airflow_ui, "viewer")
    page.goto(f"{airflow_ui['base']}/releases/release/{airflow_ui['big']}")
    page.get_by_text(matching(1, 50, 1000)).wait_for()
    assert shown(page) == [f"customer_{i:04d}" for i in range(50)]
    screenshot(page, "release-1000-page-1")

    page.get_by_role("link", name="next →").click()
    page.get_by_text(matching(51, 100, 1000)).wait_for()
    assert shown(page)[0] == "customer_0050"
    page.get_by_role("link", name="20", exact=True).click()
    page.get_by_text(matching(951, 1000, 1000)).wait_for()
    assert shown(page)[-1] == "customer_0999"
    screenshot(page, "release-1000-page-20")

    page.fill('input[name="q"]', "Customer_012")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text(matching(1, 10, 10)).wait_for()
    assert shown(page) == [f"customer_{i:04d}" for i in range(120, 130)]
    by_roc_auc = sorted(range(120, 130), key=lambda i: (i * 37) % BIG)
    page.get_by_role("link", name="roc_auc").click()  # ascending
    page.wait_for_url("**sort=roc_auc**")
    page.get_by_role("link", name="roc_auc").click()  # the current column: flips to descending
    page.wait_for_url("**order=desc**")
    assert shown(page) == [f"customer_{i:04d}" for i in reversed(by_roc_auc)]
    assert page.input_value('input[name="q"]') == "Customer_012"  # the search survives sorting
    screenshot(page, "release-1000-search-sorted")

    page.fill('input[name="q"]', "")
    page.check('input[name="failed"]')
    page.get_by_role("button", name="Filter").click()
    page.get_by_text(matching(1, 3, 3)).wait_for()
    assert shown(page) == ["customer_0002", "customer_0001", "customer_0000"]  # still by roc_auc, descending
    assert page.get_by_text("training failed: out of memory").count() == 3
    screenshot(page, "release-1000-failed")


def test_add_connection_form_for_dolt_shows_its_fields(browser: Any, airflow_ui: dict[str, Any]) -> None:
    """The form Airflow builds from the provider info's hook-name, ui-field-behaviour and conn-fields."""
    page = logged_in(browser, airflow_ui, "admin")
    page.goto(airflow_ui["base"] + "/connections")
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_role("dialog").get_by_role("combobox").first.press_sequentially("Dolt")  # react-select
    page.get_by_role("option", name="Dolt", exact=True).click()
    page.get_by_text("Database", exact=True).first.wait_for(timeout=30_000)  # the relabelled schema
    page.get_by_placeholder("dolt sql-server host (leave empty for an embedded doltlite file)").wait_for()
    extras = ("Doltlite file", "Web UI URL", "Connect timeout (s)", "Query timeout (s)")
    page.get_by_text("Extra Fields", exact=True).first.wait_for()
    page.wait_for_timeout(1_000)  # the section renders its fields, open or collapsed
    if not page.get_by_text(extras[0], exact=True).first.is_visible():
        page.get_by_text("Extra Fields", exact=True).first.click()
    for label in extras:
        page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)
    screenshot(page, "connection-form-dolt")
