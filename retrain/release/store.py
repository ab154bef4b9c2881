"""Releases stored in MLflow, without a second database.

- Each customer's serving version is the ``production`` alias of its registered model
  (``adapter-<customer>``), moved only by the promotion gate and by rollbacks.
- Each release event is a run in the ``retrain-releases`` experiment: tags ``retrain.release_id``
  (the manifest MD5), ``retrain.event`` (``register``, ``rollback``, ``pin``), counts, commits and
  the change summary; the manifest itself is the run's ``manifest.json`` artifact. A run becomes
  visible (FINISHED) only after its manifest is stored: no half-registered release. A manifest
  read back must hash to the release id it is stored under; runs without valid release tags are
  skipped with a warning.
- Each manifest entry records the SHA-256 of its logged model's files, computed when the release
  is built; rollbacks and release contexts check the files against them.
- "Which release was in production at time T" is the newest register or rollback event at or
  before T; pins (event ``pin`` with a date range) override that for retro-tests.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from retrain import identifiers
from retrain.adapters.registry import (
    MODEL_PREFIX,
    TAG_PREFIX,
    filter_value,
    mlflow_errors,
    model_name,
    version_metrics,
)
from retrain.errors import ConflictError, NotFoundError
from retrain.release.manifest import AdapterEntry, InvalidManifestError, Manifest, diff, file_digests
from retrain.tracking import ensure_experiment, tracking_uri

log = logging.getLogger(__name__)

RELEASES_EXPERIMENT = "retrain-releases"
PRODUCTION_ALIAS = "production"
MANIFEST_FILE = "manifest.json"
# Customers whose training failed when the release was cut (``allow_partial``): they keep their
# previous production adapter, or have none. Beside the manifest, not in it: not part of the MD5.
FAILURES_FILE = "failures.json"
SERVING_EVENTS = ("register", "rollback")
EVENTS = (*SERVING_EVENTS, "pin")
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
        """The event a run records; ``ValueError`` when its tags are not a release event's."""
        tags = run.data.tags
        release_id, event = tags.get(f"{TAG_PREFIX}release_id"), tags.get(f"{TAG_PREFIX}event")
        if not identifiers.is_release_id(release_id) or event not in EVENTS:
            raise ValueError(f"retrain.release_id {release_id!r}, retrain.event {event!r}")
        return cls(
            release_id=release_id,
            event=event,
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


_Store = TypeVar("_Store", bound=type)


def _mlflow_boundary(cls: _Store) -> _Store:
    """Every public method turns MLflow's failures into one-line errors (:func:`mlflow_errors`)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and callable(member):
            setattr(cls, name, mlflow_errors(member))
    return cls


@_mlflow_boundary
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
        current = self.latest()
        released = self.manifest(current.release_id) if current is not None else None
        if released is not None and changed is not None and len(changed) <= INCREMENTAL_LIMIT:
            return self._with_digests(self._updated(released, changed), released)
        models = _all_pages(self.client.search_registered_models, f"name LIKE {_ADAPTER_MODELS}", 1000)
        serving = {m.name: str(m.aliases[PRODUCTION_ALIAS]) for m in models if PRODUCTION_ALIAS in m.aliases}
        versions = _all_pages(self.client.search_model_versions, f"name LIKE {_ADAPTER_MODELS}", 10000)
        entries = [_entry(v) for v in versions if serving.get(v.name) == str(v.version)]
        return self._with_digests(Manifest(tuple(entries)), released)

    def _with_digests(self, manifest: Manifest, released: Manifest | None) -> Manifest:
        """``manifest`` with each adapter's file digests: those of the release in production for
        the versions it holds, else read from the artifact store (only new versions are read)."""
        known = {_key(a): a.sha256 for a in released.adapters if a.sha256} if released is not None else {}
        entries = [
            replace(a, sha256=known.get(_key(a)) or _digests(a.artifact_uri)) for a in manifest.adapters
        ]
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
        models = _all_pages(self.client.search_registered_models, f"name LIKE {_ADAPTER_MODELS}", 1000)
        serving = {m.name: int(m.aliases[PRODUCTION_ALIAS]) for m in models if PRODUCTION_ALIAS in m.aliases}
        newest: dict[str, Any] = {}
        for version in _all_pages(self.client.search_model_versions, f"name LIKE {_ADAPTER_MODELS}", 10000):
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
            self.verify_artifacts(manifest.adapters)  # still all there since it was registered?
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

    def verify_files(self, adapters: Iterable[AdapterEntry]) -> None:
        """Each adapter's files must hash to the SHA-256 digests in its manifest entry (when it has
        them: manifests from before digests have none). Reads every file: a download for a remote
        artifact store."""
        for entry in adapters:
            if entry.sha256:
                with _local_artifacts(entry.artifact_uri) as root:
                    entry.check_files(root)

    # -- reading ------------------------------------------------------------------------------

    def events(
        self, events: tuple[str, ...] = EVENTS, before: dt.datetime | None = None, max_results: int = 1000
    ) -> list[ReleaseEvent]:
        """Release events, newest first."""
        filters = ["attributes.status = 'FINISHED'"]
        if before is not None:
            filters.append(f"attributes.start_time <= {int(before.timestamp() * 1000)}")
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=" and ".join(filters),
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [e for e in _release_events(runs) if e.event in events]

    def find(self, release_id: str, events: tuple[str, ...] = SERVING_EVENTS) -> ReleaseEvent | None:
        wanted = filter_value(identifiers.release_id(release_id))
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_PREFIX}release_id` = {wanted} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"],
        )
        matching = [e for e in _release_events(runs) if e.event in events]
        return matching[0] if matching else None

    def latest(self) -> ReleaseEvent | None:
        serving = self.events(SERVING_EVENTS, max_results=50)
        return serving[0] if serving else None

    def manifest(self, release_id: str) -> Manifest:
        """The manifest stored for ``release_id``; it must hash to that id (else :class:`ReleaseError`)."""
        event = self._registered(release_id)
        stored = f"release {release_id}'s stored manifest (run {event.run_id})"
        try:
            manifest = Manifest.from_json(self._stored_file(event, MANIFEST_FILE))
        except InvalidManifestError as error:
            raise ReleaseError(f"{stored} is unreadable: {error}") from None
        if manifest.release_id != release_id:
            raise ReleaseError(f"{stored} hashes to {manifest.release_id}: altered after it was registered")
        return manifest

    def failures(self, release_id: str) -> dict[str, str]:
        """Customer -> reason for the customers whose training failed when ``release_id`` was cut."""
        event = self._registered(release_id)
        if not event.failed_count:
            return {}
        try:
            failures = json.loads(self._stored_file(event, FAILURES_FILE))
        except ValueError:
            failures = None
        if not isinstance(failures, dict) or not all(isinstance(v, str) for v in failures.values()):
            raise ReleaseError(f"release {release_id}'s {FAILURES_FILE} (run {event.run_id}) is unreadable")
        return failures

    def _registered(self, release_id: str) -> ReleaseEvent:
        event = self.find(release_id)
        if event is None:
            raise UnknownReleaseError(f"unknown release {release_id!r}")
        return event

    def _stored_file(self, event: ReleaseEvent, name: str) -> bytes:
        # Through this store's client: mlflow.artifacts would resolve runs:/ against the global URI.
        with tempfile.TemporaryDirectory() as scratch:
            return Path(self.client.download_artifacts(event.run_id, name, scratch)).read_bytes()

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
        self.verify_files(manifest.adapters)
        for entry in manifest.adapters:
            self.client.set_registered_model_alias(entry.model_name, PRODUCTION_ALIAS, entry.version)
        current = {m.customer for m in self.production_manifest().adapters}
        for customer in sorted(current - {a.customer for a in manifest.adapters}):
            self.client.delete_registered_model_alias(model_name(customer), PRODUCTION_ALIAS)
        return self.register(manifest, event="rollback", note=f"rollback to {release_id}")

    def rollback_customer(self, customer: str) -> ReleaseEvent:
        """Re-point one customer to its last version before the current one in the release history,
        then cut a new release."""
        identifiers.customer_id(customer)
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


_ADAPTER_MODELS = filter_value(f"{MODEL_PREFIX}%")


def _release_events(runs: Iterable[Any]) -> list[ReleaseEvent]:
    """The release events of ``runs``; a stray run in the experiment is skipped with a warning."""
    events = []
    for run in runs:
        try:
            events.append(ReleaseEvent.from_run(run))
        except ValueError as error:
            log.warning(
                "run %s in %s is not a release event, skipped: %s",
                run.info.run_id,
                RELEASES_EXPERIMENT,
                error,
            )
    return events


def _local_path(artifact_uri: str) -> Path | None:
    """The folder of a ``file:`` (or plain path) artifact location; ``None`` for a remote store."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(artifact_uri)
    return Path(unquote(parts.path)) if parts.scheme in ("", "file") else None


@contextmanager
def _local_artifacts(artifact_uri: str) -> Iterator[Path]:
    """A local folder holding the logged model at ``artifact_uri`` (downloaded when remote)."""
    local = _local_path(artifact_uri)
    if local is not None:
        yield local
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with tempfile.TemporaryDirectory() as scratch:
        repository = get_artifact_repository(artifact_uri)
        yield Path(repository.download_artifacts("", scratch))  # type: ignore[no-untyped-call]


def _digests(artifact_uri: str) -> dict[str, str]:
    with _local_artifacts(artifact_uri) as root:
        return file_digests(root)


def _key(entry: AdapterEntry) -> tuple[str, str, str]:
    return (entry.model_name, entry.version, entry.artifact_uri)


def _artifact_sizes(artifact_uri: str) -> dict[str, int]:
    """Size of each required artifact under a logged model's location (0 or absent when missing)."""
    root = _local_path(artifact_uri)
    if root is not None:
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
