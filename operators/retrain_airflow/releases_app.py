"""The "Releases" view: a FastAPI app the Airflow API server mounts (see ``plugins/retrain_plugin.py``).

Pages: the release history (production first), one release's adapters with their versions,
metrics and Dolt commits, and the diff between two releases; JSON twins under ``api/``.
Rolling back changes what production serves, so it needs the Op role or above: the app asks
Airflow's auth manager whether the user may edit Variables, the permission Op is the first role
to hold in both the simple and the FAB auth managers.

Airflow does not authenticate plugin apps; every route here depends on
Airflow's ``get_user``, which validates the session (the UI's cookie, or ``Authorization: Bearer``).
Rollback takes a JSON body, which a cross-site form cannot send, so a page elsewhere cannot
trigger it with the user's cookie.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Callable
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from retrain.release.manifest import Manifest, diff
from retrain.release.store import ReleaseError, ReleaseEvent, ReleaseStore, UnknownReleaseError
from retrain.tracking import model_version_url

RELEASE_ID = re.compile(r"[0-9a-f]{32}")


def may_roll_back(user: BaseUser) -> bool:
    return bool(get_auth_manager().is_authorized_variable(method="PUT", user=user))


# Airflow's own dependency: the UI's session cookie or a bearer token, else 401/403.
User = Annotated[BaseUser, Depends(get_user)]


class RollbackRequest(BaseModel):
    confirm: str  # the release id again, so a stray request cannot roll back by accident


def create_app(open_store: Callable[[], ReleaseStore] | None = None) -> FastAPI:
    """The app; ``open_store`` defaults to the store at ``$MLFLOW_TRACKING_URI`` (else embedded)."""
    store_of = open_store or functools.cache(ReleaseStore.open)
    app = FastAPI(title="Retrain releases", docs_url=None, redoc_url=None)

    def store() -> ReleaseStore:
        return store_of()

    def manifest_or_404(release_id: str) -> Manifest:
        _check_id(release_id)
        try:
            return store().manifest(release_id)
        except UnknownReleaseError as error:
            raise HTTPException(404, str(error)) from None

    # Sync routes: FastAPI runs them in its thread pool, so MLflow calls do not block the server.
    @app.get("/", response_class=HTMLResponse)
    def release_list(user: User) -> str:
        return _page("Releases", _history(store().events()))

    @app.get("/release/{release_id}", response_class=HTMLResponse)
    def release_detail(release_id: str, user: User) -> str:
        manifest = manifest_or_404(release_id)
        latest = store().latest()
        in_production = latest is not None and latest.release_id == release_id
        return _page(f"Release {release_id}", _detail(store(), release_id, manifest, in_production,
                                                       may_roll_back(user)))  # fmt: skip

    @app.get("/diff", response_class=HTMLResponse)
    def release_diff(user: User, base: Annotated[str, Query()], head: Annotated[str, Query()]) -> str:
        changes = diff(manifest_or_404(base), manifest_or_404(head)).lines() or ["(no differences)"]
        body = f"<p>{_link(base)} &rarr; {_link(head)}</p><pre>{html.escape(chr(10).join(changes))}</pre>"
        return _page("Diff", body)

    @app.get("/api/releases")
    def api_releases(user: User) -> list[dict[str, Any]]:
        return [_event_json(e) for e in store().events()]

    @app.get("/api/releases/{release_id}")
    def api_release(release_id: str, user: User) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(manifest_or_404(release_id).canonical_json())
        return manifest

    @app.post("/api/releases/{release_id}/rollback")
    def rollback(release_id: str, body: RollbackRequest, user: User) -> dict[str, Any]:
        if not may_roll_back(user):
            raise HTTPException(403, "rolling back a release needs the Op role or above")
        if body.confirm != release_id:
            raise HTTPException(422, "confirm must repeat the release id")
        _check_id(release_id)
        try:
            return _event_json(store().rollback(release_id))
        except UnknownReleaseError as error:
            raise HTTPException(404, str(error)) from None
        except ReleaseError as error:  # e.g. an adapter's artifacts are gone: production unchanged
            raise HTTPException(409, str(error)) from None

    return app


def _check_id(release_id: str) -> None:
    if not RELEASE_ID.fullmatch(release_id):
        raise HTTPException(404, f"{release_id!r} is not a release id (32 hex characters)")


def _event_json(event: ReleaseEvent) -> dict[str, Any]:
    return {
        "release_id": event.release_id, "event": event.event, "time": event.time.isoformat(),
        "adapters": event.adapter_count, "commits": event.commits, "changes": event.changes,
        "note": event.note,
    }  # fmt: skip


def _link(release_id: str) -> str:
    return f'<a href="release/{release_id}"><code>{release_id}</code></a>'


def _history(events: list[ReleaseEvent]) -> str:
    if not events:
        return "<p>No release registered yet.</p>"
    rows = []
    production = next((e.release_id for e in events if e.event in ("register", "rollback")), None)
    for event in events:
        marker = " <b>(production)</b>" if event.release_id == production and event.event != "pin" else ""
        pinned = f"{event.pinned_from}..{event.pinned_to}" if event.event == "pin" else ""
        rows.append(
            f"<tr><td>{_link(event.release_id)}{marker}</td><td>{html.escape(event.event)}</td>"
            f"<td>{event.time:%Y-%m-%d %H:%M:%S} UTC</td><td>{event.adapter_count}</td>"
            f"<td>{html.escape(event.changes or event.note)}</td><td>{html.escape(pinned)}</td></tr>"
        )
    ids = list(dict.fromkeys(e.release_id for e in events))  # newest first, each once

    def select(name: str, selected: int) -> str:
        options = "".join(
            f'<option value="{r}"{" selected" if i == selected else ""}>{r[:12]}</option>'
            for i, r in enumerate(ids)
        )
        return f'<select name="{name}">{options}</select>'

    return (
        "<table><tr><th>release</th><th>event</th><th>time</th><th>adapters</th><th>changes</th>"
        f"<th>pinned days</th></tr>{''.join(rows)}</table>"
        f'<form action="diff" method="get"><h2>Compare</h2>{select("base", min(1, len(ids) - 1))} &rarr; '
        f'{select("head", 0)} <button type="submit">Diff</button></form>'
    )


def _detail(
    store: ReleaseStore, release_id: str, manifest: Manifest, in_production: bool, can_roll_back: bool
) -> str:
    rows = []
    for entry in manifest.adapters:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(entry.metrics.items()))
        url = model_version_url(store.tracking_uri, entry.model_name, entry.version)
        model = html.escape(entry.model_name)
        model_cell = f'<a href="{html.escape(url)}" target="_blank">{model}</a>' if url else model
        rows.append(
            f"<tr><td>{html.escape(entry.customer)}</td><td>{model_cell}</td>"
            f"<td>v{html.escape(entry.version)}</td><td><code>{html.escape(entry.commit[:12])}</code></td>"
            f"<td>{html.escape(metrics)}</td><td><code>{html.escape(entry.run_id[:12])}</code></td></tr>"
        )
    status = "in production" if in_production else "not in production"
    button = _ROLLBACK_BUTTON.replace("RELEASE_ID", release_id) if can_roll_back and not in_production else ""
    return (
        f"<p><a href='../'>&larr; all releases</a></p><p>{len(manifest.adapters)} adapters, {status}. "
        f"Serving image tag <code>{release_id}</code>.</p>"
        "<table><tr><th>customer</th><th>model</th><th>version</th><th>Dolt commit</th><th>metrics</th>"
        f"<th>MLflow run</th></tr>{''.join(rows)}</table>{button}"
    )


# The release id is 32 hex characters (checked before rendering), safe inside this script.
_ROLLBACK_BUTTON = """<button id="rollback" onclick="rollBack()">Roll production back to this release</button>
<script>
async function rollBack() {
  if (!confirm("Roll production back to release RELEASE_ID?")) return;
  const response = await fetch("../api/releases/RELEASE_ID/rollback", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({confirm: "RELEASE_ID"}),
  });
  document.getElementById("rollback").outerHTML =
    "<p>" + (response.ok ? "Rolled back." : "Refused: " + response.status) + "</p>";
}
</script>"""


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}} button{{margin-top:1em}}</style>
</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"""
