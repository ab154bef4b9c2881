"""Releases stored in MLflow, without a second database.

- Each customer's serving version is the ``production`` alias of its registered model
  (``adapter-<customer>``), moved only by the promotion gate and by rollbacks.
- Each release event is a run in the ``retrain-releases`` experiment: tags ``retrain.release_id``
  (the manifest MD5), ``retrain.event`` (``register``, ``rollback``, ``pin``), counts, commits and
  the change summary; the manifest itself is the run's ``manifest.json`` artifact. A run becomes
  visible (FINISHED) only after its manifest is stored: no half-registered release.
- "Which release was in production at time T" is the newest register or rollback event at or
  before T; pins (event ``pin`` with a date range) override that for retro-tests.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain.adapters.registry import MODEL_PREFIX, TAG_PREFIX, model_name, version_metrics
from retrain.errors import ConflictError, NotFoundError
from retrain.release.manifest import AdapterEntry, Manifest, diff
from retrain.tracking import ensure_experiment, tracking_uri

log = logging.getLogger(__name__)

RELEASES_EXPERIMENT = "retrain-releases"
PRODUCTION_ALIAS = "production"
MANIFEST_FILE = "manifest.json"
# Customers whose training failed when the release was cut (``allow_partial``): they keep their
# previous production adapter, or have none. Beside the manifest, not in it: not part of the MD5.
FAILURES_FILE = "failures.json"
SERVING_EVENTS = ("register", "rollback")
# Changed customers up to which a release is built from the one in production (two registry calls
# each) rather than from two paged searches of the whole registry (~2 s at 1,000, ~15 ms a call).
INCREMENTAL_LIMIT = 100
REQUIRED_ARTIFACTS = ("MLmodel", "artifacts/adapter/adapter_model.safetensors")


class ReleaseError(ConflictError):
    """A release cannot be built or changed; the message names the release, customer or artifact."""


class UnknownReleaseError(ReleaseError, NotFoundError):
    """No release with this id was ever registered."""

    http_status = 404


@dataclass(frozen=True)
class ReleaseEvent:
    release_id: str
    event: str
    run_id: str
    time: dt.datetime
    adapter_count: int
    commits: str
    changes: str
    note: str = ""
    pinned_from: str = ""
    pinned_to: str = ""
    failed_count: int = 0

    @classmethod
    def from_run(cls, run: Any) -> ReleaseEvent:
        tags = run.data.tags
        return cls(
            release_id=tags[f"{TAG_PREFIX}release_id"],
            event=tags[f"{TAG_PREFIX}event"],
            run_id=run.info.run_id,
            time=dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC),
            adapter_count=int(tags.get(f"{TAG_PREFIX}adapter_count", 0)),
            commits=tags.get(f"{TAG_PREFIX}commits", ""),
            changes=tags.get(f"{TAG_PREFIX}changes", ""),
            note=tags.get(f"{TAG_PREFIX}note", ""),
            pinned_from=tags.get(f"{TAG_PREFIX}pinned_from", ""),
            pinned_to=tags.get(f"{TAG_PREFIX}pinned_to", ""),
            failed_count=int(tags.get(f"{TAG_PREFIX}failed_count", 0)),
        )


class ReleaseStore:
    """Release operations over one MLflow tracking store. Every registry call goes through ``client``."""

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self._experiment_id: str | None = None

    @classmethod
    def open(cls, mlflow_uri: str | None = None) -> ReleaseStore:
        """The store at ``mlflow_uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded one."""
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(mlflow_uri)
        return cls(MlflowClient(uri), uri)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = ensure_experiment(RELEASES_EXPERIMENT, self.tracking_uri)
        return self._experiment_id

    # -- building -----------------------------------------------------------------------------

    def production_manifest(self, *, changed: Collection[str] | None = None) -> Manifest:
        """Every customer's ``production`` version.

        :param changed: the customers whose ``production`` alias this run may have moved (a
            commit's promoted candidates). The release in production then stands for every other
            customer and only these are read from the registry, two calls each, so a one-customer
            release costs the same at 1,000 customers as at 10. ``None``, or more than
            :data:`INCREMENTAL_LIMIT` customers, or no release yet: the whole registry is read in
            two paged searches, which also picks up aliases moved outside the suite (about 2 s at
            1,000 customers against an MLflow server).
        """
        if changed is not None and len(changed) <= INCREMENTAL_LIMIT:
            current = self.latest()
            if current is not None:
                return self._updated(self.manifest(current.release_id), changed)
        models = _all_pages(self.client.search_registered_models, f"name LIKE '{MODEL_PREFIX}%'", 1000)
        serving = {m.name: str(m.aliases[PRODUCTION_ALIAS]) for m in models if PRODUCTION_ALIAS in m.aliases}
        versions = _all_pages(self.client.search_model_versions, f"name LIKE '{MODEL_PREFIX}%'", 10000)
        entries = [_entry(v) for v in versions if serving.get(v.name) == str(v.version)]
        return Manifest(tuple(entries))

    def _updated(self, manifest: Manifest, changed: Collection[str]) -> Manifest:
        """``manifest`` with each changed customer's entry read from its ``production`` alias
        (dropped when the customer has none)."""
        from mlflow.exceptions import MlflowException

        entries = manifest.by_customer()
        for customer in sorted(set(changed)):
            try:
                model = self.client.get_registered_model(model_name(customer))
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                model = None
            if model is None or PRODUCTION_ALIAS not in model.aliases:
                entries.pop(customer, None)
                continue
            version = self.client.get_model_version(model.name, str(model.aliases[PRODUCTION_ALIAS]))
            entries[customer] = _entry(version)
        return Manifest(tuple(entries.values()))

    def challengers(self) -> dict[str, str]:
        """Customer -> its newest version when that is newer than its production version (or it has none)."""
        models = _all_pages(self.client.search_registered_models, f"name LIKE '{MODEL_PREFIX}%'", 1000)
        serving = {m.name: int(m.aliases[PRODUCTION_ALIAS]) for m in models if PRODUCTION_ALIAS in m.aliases}
        newest: dict[str, Any] = {}
        for version in _all_pages(self.client.search_model_versions, f"name LIKE '{MODEL_PREFIX}%'", 10000):
            if version.name not in newest or int(version.version) > int(newest[version.name].version):
                newest[version.name] = version
        return {
            _entry(v).customer: str(v.version)
            for name, v in sorted(newest.items())
            if int(v.version) > serving.get(name, 0)
        }

    def register(
        self,
        manifest: Manifest,
        *,
        event: str = "register",
        note: str = "",
        failures: Mapping[str, str] | None = None,
    ) -> ReleaseEvent:
        """Record ``manifest`` as the release in production.

        ``failures`` (customer -> reason) names the customers whose training failed when a
        partial release is cut; they are stored beside the manifest (:meth:`failures`).

        Registering the release already in production records nothing and returns it. An MD5
        registered before but not in production now is recorded as a ``rollback`` to it, so
        :meth:`as_of` stays true to what served when.
        """
        if not manifest.adapters:
            raise ReleaseError("refusing to register an empty release: no customer has a production adapter")
        previous = self.latest()
        if previous is not None and previous.release_id == manifest.release_id and event == "register":
            log.info(
                "release %s is already in production (%s)", manifest.release_id, previous.time.isoformat()
            )
            return previous
        if event == "register" and self.find(manifest.release_id) is not None:
            event = "rollback"
        before = self.manifest(previous.release_id) if previous is not None else None
        # Adapters already in the release in production were verified when it was registered:
        # checking only the new ones keeps a one-customer release flat in N (remote artifact
        # stores answer one listing per adapter). A rollback verifies its whole manifest.
        known = {(a.model_name, a.version) for a in before.adapters} if before is not None else set()
        self.verify_artifacts([a for a in manifest.adapters if (a.model_name, a.version) not in known])
        changes = "first release"
        if before is not None:
            changed = diff(before, manifest)
            changes = f"+{len(changed.added)} ~{len(changed.changed)} -{len(changed.removed)}"
        tags = {
            f"{TAG_PREFIX}release_id": manifest.release_id,
            f"{TAG_PREFIX}event": event,
            f"{TAG_PREFIX}adapter_count": str(len(manifest.adapters)),
            f"{TAG_PREFIX}commits": ",".join(c[:12] for c in manifest.commits)[:4000],
            f"{TAG_PREFIX}changes": changes,
            f"{TAG_PREFIX}note": note,
            f"{TAG_PREFIX}previous_release": previous.release_id if previous else "",
            f"{TAG_PREFIX}failed_count": str(len(failures or {})),
        }
        extra = {FAILURES_FILE: json.dumps(dict(sorted(failures.items())), indent=1)} if failures else {}
        return self._record(manifest, tags, run_name=f"{event}-{manifest.release_id[:12]}", extra=extra)

    def verify_artifacts(self, adapters: Iterable[AdapterEntry]) -> None:
        """Each adapter's logged model must hold its MLmodel file and non-empty adapter weights.

        Reads the artifact store (the file system for a local store), never the registry.
        """
        for entry in adapters:
            sizes = _artifact_sizes(entry.artifact_uri)
            for required in REQUIRED_ARTIFACTS:
                if not sizes.get(required):
                    raise ReleaseError(
                        f"adapter of customer {entry.customer} ({entry.model_name} v{entry.version}) has no "
                        f"(or an empty) {required} in {entry.artifact_uri}: no release registered"
                    )

    # -- reading ------------------------------------------------------------------------------

    def events(self, events: tuple[str, ...] = (*SERVING_EVENTS, "pin"), before: dt.datetime | None = None,
               max_results: int = 1000) -> list[ReleaseEvent]:  # fmt: skip
        """Release events, newest first."""
        filters = ["attributes.status = 'FINISHED'"]
        if before is not None:
            filters.append(f"attributes.start_time <= {int(before.timestamp() * 1000)}")
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=" and ".join(filters), max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        found = [ReleaseEvent.from_run(r) for r in runs]
        return [e for e in found if e.event in events]

    def find(self, release_id: str, events: tuple[str, ...] = SERVING_EVENTS) -> ReleaseEvent | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_PREFIX}release_id` = '{release_id}' and attributes.status = 'FINISHED'",  # noqa: E501
            order_by=["attributes.start_time ASC"],
        )
        found = [ReleaseEvent.from_run(r) for r in runs]
        matching = [e for e in found if e.event in events]
        return matching[0] if matching else None

    def latest(self) -> ReleaseEvent | None:
        serving = self.events(SERVING_EVENTS, max_results=50)
        return serving[0] if serving else None

    def manifest(self, release_id: str) -> Manifest:
        event = self.find(release_id)
        if event is None:
            raise UnknownReleaseError(f"unknown release {release_id!r}")
        # Through this store's client: mlflow.artifacts would resolve runs:/ against the global URI.
        with tempfile.TemporaryDirectory() as scratch:
            local = self.client.download_artifacts(event.run_id, MANIFEST_FILE, scratch)
            return Manifest.from_json(Path(local).read_text())

    def failures(self, release_id: str) -> dict[str, str]:
        """Customer -> reason for the customers whose training failed when ``release_id`` was cut."""
        event = self.find(release_id)
        if event is None:
            raise UnknownReleaseError(f"unknown release {release_id!r}")
        if not event.failed_count:
            return {}
        with tempfile.TemporaryDirectory() as scratch:
            local = self.client.download_artifacts(event.run_id, FAILURES_FILE, scratch)
            failures: dict[str, str] = json.loads(Path(local).read_text())
            return failures

    def as_of(self, when: dt.datetime) -> ReleaseEvent | None:
        """The release in production at ``when``: the newest register or rollback event by then."""
        serving = self.events(SERVING_EVENTS, before=when, max_results=50)
        return serving[0] if serving else None

    def for_day(self, day: dt.date) -> ReleaseEvent | None:
        """The release to score ``day`` with: a pin covering it, else the one in production that day."""
        for pin in self.events(("pin",)):
            if pin.pinned_from <= day.isoformat() <= pin.pinned_to:
                return pin
        end_of_day = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        return self.as_of(end_of_day)

    # -- changing production ------------------------------------------------------------------

    def rollback(self, release_id: str) -> ReleaseEvent:
        """Point every customer of ``release_id`` back at its version; records a rollback event."""
        manifest = self.manifest(release_id)
        self.verify_artifacts(manifest.adapters)
        for entry in manifest.adapters:
            self.client.set_registered_model_alias(entry.model_name, PRODUCTION_ALIAS, entry.version)
        current = {m.customer for m in self.production_manifest().adapters}
        for customer in sorted(current - {a.customer for a in manifest.adapters}):
            self.client.delete_registered_model_alias(f"{MODEL_PREFIX}{customer}", PRODUCTION_ALIAS)
        return self.register(manifest, event="rollback", note=f"rollback to {release_id}")

    def rollback_customer(self, customer: str) -> ReleaseEvent:
        """Re-point one customer to its last version before the current one in the release history,
        then cut a new release."""
        current = self.production_manifest()
        entry = current.by_customer().get(customer)
        if entry is None:
            raise ReleaseError(f"customer {customer!r} has no production adapter to roll back")
        for event in self.events(SERVING_EVENTS):
            earlier = self.manifest(event.release_id).by_customer().get(customer)
            if earlier is not None and earlier.version != entry.version:
                self.client.set_registered_model_alias(earlier.model_name, PRODUCTION_ALIAS, earlier.version)
                return self.register(
                    current.replace(earlier),
                    note=f"rollback of {customer}: v{entry.version} -> v{earlier.version}",
                )
        raise ReleaseError(f"customer {customer!r} has no earlier released version than v{entry.version}")

    def pin(self, release_id: str, start: dt.date, end: dt.date) -> ReleaseEvent:
        """Pin ``release_id`` to the days ``start``..``end`` (inclusive), for retro-tests."""
        if end < start:
            raise ReleaseError(f"pin range ends ({end}) before it starts ({start})")
        manifest = self.manifest(release_id)
        tags = {
            f"{TAG_PREFIX}release_id": release_id,
            f"{TAG_PREFIX}event": "pin",
            f"{TAG_PREFIX}adapter_count": str(len(manifest.adapters)),
            f"{TAG_PREFIX}pinned_from": start.isoformat(),
            f"{TAG_PREFIX}pinned_to": end.isoformat(),
        }
        return self._record(manifest, tags, run_name=f"pin-{release_id[:12]}")

    # -- internals ----------------------------------------------------------------------------

    def _record(
        self, manifest: Manifest, tags: dict[str, str], run_name: str, extra: Mapping[str, str] | None = None
    ) -> ReleaseEvent:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        try:
            for name, text in (extra or {}).items():
                self.client.log_text(run.info.run_id, text, name)
            self.client.log_text(run.info.run_id, manifest.canonical_json(), MANIFEST_FILE)
        except Exception:
            self.client.delete_run(run.info.run_id)  # never leave a release without its manifest
            raise
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        event = ReleaseEvent.from_run(self.client.get_run(run.info.run_id))
        log.info("release %s: %s (%d adapters)", event.event, event.release_id, event.adapter_count)
        return event


def _artifact_sizes(artifact_uri: str) -> dict[str, int]:
    """Size of each required artifact under a logged model's location (0 or absent when missing)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(artifact_uri)
    if parts.scheme in ("", "file"):
        root = Path(unquote(parts.path))
        return {name: (root / name).stat().st_size for name in REQUIRED_ARTIFACTS if (root / name).is_file()}
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri)
    listed = [*repository.list_artifacts(), *repository.list_artifacts("artifacts/adapter")]
    return {info.path: int(info.file_size or 0) for info in listed if not info.is_dir}


def _entry(version: Any) -> AdapterEntry:
    return AdapterEntry(
        customer=version.tags.get(f"{TAG_PREFIX}customer", version.name.removeprefix(MODEL_PREFIX)),
        model_name=version.name,
        version=str(version.version),
        run_id=str(version.run_id),
        commit=version.tags.get(f"{TAG_PREFIX}commit", ""),
        artifact_uri=version.tags.get(f"{TAG_PREFIX}artifact_uri", ""),
        metrics=version_metrics(version),
    )


def _all_pages(search: Any, filter_string: str, page_size: int) -> list[Any]:
    results: list[Any] = []
    token = None
    while True:
        page = search(filter_string=filter_string, max_results=page_size, page_token=token)
        results.extend(page)
        token = page.token
        if not token:
            return results
