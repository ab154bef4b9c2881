"""The "Releases" view: a FastAPI app the Airflow API server mounts (see ``plugins/retrain_plugin.py``).

Pages: the release history (production first), one release's adapters with their versions,
metrics and Dolt commits, the diff between two releases as a table, and the Health page (each
customer's drift over the last monitored days, :mod:`retrain_airflow.health_pages`); JSON twins
under ``api/``. Both tables page, sort and filter on the server (``releases_pages``), and parsed
manifests are cached per release id (the id is the manifest's MD5, so an id's manifest never
changes): a page of a 1,000-adapter release costs a few MLflow round trips, whatever N is.
Rolling back changes what production serves, so it needs the Op role or above: the app asks
Airflow's auth manager whether the user may edit Variables, the permission Op is the first role
to hold in both the simple and the FAB auth managers.

Airflow does not authenticate plugin apps; every route here depends on
Airflow's ``get_user``, which validates the session (the UI's cookie, or ``Authorization: Bearer``).
Rollback takes a JSON body, which a cross-site form cannot send, so a page elsewhere cannot
trigger it with the user's cookie.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from airflow.sdk.exceptions import AirflowNotFoundException
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import Markup
from pydantic import BaseModel

from retrain.drift.health import PLOTTED, CustomerHealth, customer_health
from retrain.drift.history import DriftDay, DriftHistory
from retrain.errors import RetrainError
from retrain.identifiers import RELEASE_ID_RULE, is_release_id
from retrain.release.manifest import AdapterEntry, Manifest, ManifestDiff, diff
from retrain.release.store import (
    SERVING_EVENTS,
    ReleaseEvent,
    ReleaseStore,
)
from retrain.tracking import model_version_url
from retrain_airflow.health_pages import DAYS, MAX_DAYS, health_body, health_page, health_table
from retrain_airflow.hooks.dolt import DoltHook
from retrain_airflow.releases_pages import (
    DIFF_KINDS,
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    CommitUrl,
    DiffRow,
    Order,
    QueryError,
    ReleaseRow,
    TablePage,
    TableQuery,
    detail,
    diff_page,
    diff_rows,
    diff_summary,
    diff_table,
    filters,
    history,
    metric_names,
    page,
    release_page,
    release_rows,
    release_table,
)

CACHED_RELEASES = 16  # parsed manifests (and failures) kept per app: ~1 MB per 1,000 adapters
CACHED_HEALTH = 4  # customers' drift series per window of days: ~10 MB per 1,000 customers x 14 days


# Airflow's own dependency: the UI's session cookie or a bearer token, else 401/403.
User = Annotated[BaseUser, Depends(get_user)]


def may_roll_back(user: User) -> bool:
    return bool(get_auth_manager().is_authorized_variable(method="PUT", user=user))


CanRollBack = Annotated[bool, Depends(may_roll_back)]


def table_query(
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    sort: Annotated[str, Query(max_length=100)] = "customer",
    order: Order = "asc",
    q: Annotated[str, Query(max_length=200)] = "",
    changed: bool = False,
    failed: bool = False,
    kind: Annotated[str, Query(max_length=20)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> TableQuery:
    """The table parameters of a page; types and ranges are checked here (422), columns per table."""
    return TableQuery(page, per_page, sort, order, q.strip(), changed, failed, kind, status)


Table = Annotated[TableQuery, Depends(table_query)]
Release = Annotated[str | None, Query(max_length=100)]  # the Health page: only this release's rows
Days = Annotated[int, Query(ge=1, le=MAX_DAYS)]  # the Health page: the last N monitored days


def dolt_web_url() -> str | None:
    """The Dolt repository's web UI (DoltHub, DoltLab): the ``web_url`` extra of ``dolt_default``,
    the setting the operators' Dolt commit links use too."""
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(DoltHook.default_conn_name)
    except AirflowNotFoundException:
        return None
    web_url = connection.extra_dejson.get("web_url")
    return str(web_url).rstrip("/") if web_url else None


@dataclass(frozen=True)
class ReleaseView:
    """One release with what the history says about it."""

    rows: list[ReleaseRow]
    metrics: list[str]
    in_production: bool
    previous: str | None  # the release it replaced ("only changed" compares with it)


@dataclass(frozen=True)
class DriftWindow:
    """Recorded days, oldest first; equal to another window of the same runs (a rerun day is a new run)."""

    run_ids: tuple[str, ...]
    days: tuple[DriftDay, ...] = field(compare=False)


class RollbackRequest(BaseModel):
    confirm: str  # the release id again, so a stray request cannot roll back by accident


def create_app(
    open_store: Callable[[], ReleaseStore] | None = None, dolt_url: Callable[[], str | None] = dolt_web_url
) -> FastAPI:
    """The app; ``open_store`` defaults to the store at ``$MLFLOW_TRACKING_URI`` (else embedded)."""
    store_of = open_store or functools.cache(ReleaseStore.open)
    app = FastAPI(title="Retrain releases", docs_url=None, redoc_url=None)

    @app.exception_handler(RetrainError)
    async def retrain_error(request: Request, error: RetrainError) -> JSONResponse:
        """Every expected failure answers its class's status with its one-line message."""
        return JSONResponse({"detail": str(error)}, status_code=error.http_status)

    def store() -> ReleaseStore:
        return store_of()

    # Keyed by the store too: one id names the same manifest everywhere, but may be unknown elsewhere.
    @functools.lru_cache(maxsize=CACHED_RELEASES)
    def cached_manifest(tracking_uri: str, release_id: str) -> Manifest:
        return store().manifest(release_id)

    @functools.lru_cache(maxsize=CACHED_RELEASES)
    def cached_failures(tracking_uri: str, release_id: str) -> dict[str, str]:
        return store().failures(release_id)

    def manifest_or_404(release_id: str) -> Manifest:
        _check_id(release_id)
        return cached_manifest(store().tracking_uri, release_id)

    def release_view(release_id: str) -> ReleaseView:
        """Rows of the release against the one it replaced: one history search beyond the caches."""
        manifest = manifest_or_404(release_id)
        serving = [e for e in store().events() if e.event in SERVING_EVENTS]
        previous = _previous_release(serving, release_id)
        rows = release_rows(
            manifest,
            manifest_or_404(previous) if previous else None,
            cached_failures(store().tracking_uri, release_id),
        )
        in_production = bool(serving) and serving[0].release_id == release_id
        return ReleaseView(rows, metric_names(r.entry for r in rows), in_production, previous)

    @functools.cache
    def drift_history(tracking_uri: str) -> DriftHistory:
        return DriftHistory(tracking_uri)  # keeps the days' parsed records

    @functools.lru_cache(maxsize=CACHED_HEALTH)
    def cached_health(window: DriftWindow, release: str | None) -> list[CustomerHealth]:
        return customer_health(window.days, release)

    def health_view(
        release: str | None, days: int, until: dt.date | None
    ) -> tuple[list[str], list[CustomerHealth]]:
        """The days shown and each customer's health over them: one MLflow search beyond the caches."""
        if release is not None and not is_release_id(release):
            raise HTTPException(422, f"release {release!r} is not a release id ({RELEASE_ID_RULE})")
        history = drift_history(store().tracking_uri)
        found = history.days(last=days, until=until.isoformat() if until else None)
        window = DriftWindow(tuple(day.run_id for day in found), tuple(found))
        return [day.ds for day in found], cached_health(window, release)

    def diff_view(base: str, head: str) -> tuple[ManifestDiff, list[DiffRow], list[str]]:
        changes = diff(manifest_or_404(base), manifest_or_404(head))
        rows = diff_rows(changes)
        return changes, rows, metric_names([*(r.old for r in rows), *(r.new for r in rows)])

    def links() -> tuple[Callable[[AdapterEntry], str | None], CommitUrl]:
        uri, web = store().tracking_uri, dolt_url()

        def commit_url(commit: str) -> str | None:
            # The convention of DoltHook.commit_diff_url for one commit.
            return f"{web}/commits/main/{commit}" if web and commit else None

        return (lambda entry: model_version_url(uri, entry.model_name, entry.version)), commit_url

    # Sync routes: FastAPI runs them in its thread pool, so MLflow calls do not block the server.
    @app.get("/", response_class=HTMLResponse)
    def release_list(user: User) -> str:
        return page("Releases", history(store().events()))

    @app.get("/release/{release_id}", response_class=HTMLResponse)
    def release_detail(release_id: str, user: User, can_roll_back: CanRollBack, query: Table) -> str:
        view = release_view(release_id)
        found = _checked(lambda: release_page(view.rows, query, view.metrics))
        table = release_table(found, query, view.metrics, *links())
        body = detail(release_id, view.rows, view.in_production, view.previous, query, table, can_roll_back)
        return page(f"Release {release_id}", body)

    @app.get("/diff", response_class=HTMLResponse)
    def release_diff(
        user: User, base: Annotated[str, Query()], head: Annotated[str, Query()], query: Table
    ) -> str:
        changes, rows, metrics = diff_view(base, head)
        query = replace(query, keep=(("base", base), ("head", head)))
        found = _checked(lambda: diff_page(rows, query, metrics))
        summary = diff_summary(base, head, changes)
        if changes.empty:
            return page("Diff", summary + Markup("<p>(no differences)</p>"))
        table = diff_table(found, query, metrics, *links())
        return page("Diff", summary + filters(query, (), (("kind", "every change", DIFF_KINDS),)) + table)

    @app.get("/health", response_class=HTMLResponse)
    def health(
        user: User, query: Table, release: Release = None, days: Days = DAYS, until: dt.date | None = None
    ) -> str:
        shown, rows = health_view(release, days, until)
        query = replace(query, keep=_health_keep(release, days, until))
        found = _checked(lambda: health_page(rows, query))
        return page("Health", health_body(shown, release, rows, query, health_table(found, query)))

    @app.get("/api/health")
    def api_health(
        user: User, query: Table, release: Release = None, days: Days = DAYS, until: dt.date | None = None
    ) -> dict[str, Any]:
        shown, rows = health_view(release, days, until)
        found = _checked(lambda: health_page(rows, query))
        return {
            "days": shown,
            "release": release,
            **_page_json(found),
            "rows": [_health_json(h) for h in found.rows],
        }

    @app.get("/api/releases")
    def api_releases(user: User) -> list[dict[str, Any]]:
        return [_event_json(e) for e in store().events()]

    @app.get("/api/releases/{release_id}")
    def api_release(release_id: str, user: User) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(manifest_or_404(release_id).canonical_json())
        return manifest

    @app.get("/api/releases/{release_id}/adapters")
    def api_release_adapters(release_id: str, user: User, query: Table) -> dict[str, Any]:
        view = release_view(release_id)
        found = _checked(lambda: release_page(view.rows, query, view.metrics))
        rows = [
            {
                "customer": r.customer,
                "change": r.change,
                "previous_version": r.previous_version,
                "failure": r.failure,
                "adapter": r.entry.canonical() if r.entry else None,
            }
            for r in found.rows
        ]
        return {
            "release_id": release_id,
            "in_production": view.in_production,
            "previous_release": view.previous,
            **_page_json(found),
            "rows": rows,
        }

    @app.get("/api/diff")
    def api_diff(
        user: User, base: Annotated[str, Query()], head: Annotated[str, Query()], query: Table
    ) -> dict[str, Any]:
        _, rows, metrics = diff_view(base, head)
        selected = _checked(lambda: diff_page(rows, query, metrics))
        found = [
            {
                "customer": r.customer,
                "kind": r.kind,
                "old": r.old.canonical() if r.old else None,
                "new": r.new.canonical() if r.new else None,
                "deltas": r.deltas,
            }
            for r in selected.rows
        ]
        return {"base": base, "head": head, **_page_json(selected), "rows": found}

    @app.post("/api/releases/{release_id}/rollback")
    def rollback(
        release_id: str, body: RollbackRequest, user: User, can_roll_back: CanRollBack
    ) -> dict[str, Any]:
        if not can_roll_back:
            raise HTTPException(403, "rolling back a release needs the Op role or above")
        if body.confirm != release_id:
            raise HTTPException(422, "confirm must repeat the release id")
        _check_id(release_id)
        # An unknown release is a 404, one whose artifacts are gone a 409: production unchanged.
        return _event_json(store().rollback(release_id))

    return app


def _health_keep(release: str | None, days: int, until: dt.date | None) -> tuple[tuple[str, str], ...]:
    """The Health page's own parameters, kept by its sort, page and filter links."""
    keep = [("release", release)] if release else []
    keep += [("days", str(days))] if days != DAYS else []
    return (*keep, *([("until", until.isoformat())] if until else []))


def _health_json(health: CustomerHealth) -> dict[str, Any]:
    metrics = {}
    for metric in PLOTTED:
        series, latest = health.series[metric], health.latest(metric)
        metrics[metric] = {
            "threshold": latest.threshold if latest is not None else None,
            "values": [row.value if row is not None else None for row in series],
            "statuses": [row.status if row is not None else None for row in series],
        }
    return {
        "customer": health.customer,
        "ds": health.ds,
        "release": health.release,
        "adapter_version": health.adapter_version,
        "status": health.status,
        "worst": health.worst,
        "rows": health.rows,
        "metrics": metrics,
    }


def _previous_release(serving: list[ReleaseEvent], release_id: str) -> str | None:
    """The release in production just before ``release_id`` was first cut (what its "changes" count)."""
    first = max((i for i, e in enumerate(serving) if e.release_id == release_id), default=None)
    if first is None:  # older than the history fetched
        return None
    return next((e.release_id for e in serving[first + 1 :] if e.release_id != release_id), None)


def _checked(build: Callable[[], TablePage[Any]]) -> TablePage[Any]:
    try:
        return build()
    except QueryError as error:
        raise HTTPException(422, str(error)) from None


def _page_json(page: TablePage[Any]) -> dict[str, int]:
    return {"page": page.number, "pages": page.pages, "total": page.total}


def _check_id(release_id: str) -> None:
    if not is_release_id(release_id):
        raise HTTPException(404, f"{release_id!r} is not a release id ({RELEASE_ID_RULE})")


def _event_json(event: ReleaseEvent) -> dict[str, Any]:
    return {
        "release_id": event.release_id,
        "event": event.event,
        "time": event.time.isoformat(),
        "adapters": event.adapter_count,
        "commits": event.commits,
        "changes": event.changes,
        "note": event.note,
        "failed": event.failed_count,
    }
