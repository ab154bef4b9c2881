"""Release manifests: the set of adapter versions that serve together, as canonical JSON.

The same set always gives the same bytes (sorted keys, fixed separators, entries sorted by
customer, metrics rounded), so its MD5 hex digest identifies the release: it is the release id
and the serving image tag. Each entry also records the SHA-256 of every file of its logged model,
so a download can be checked against what was released.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from retrain.errors import ConflictError, InputError, RetrainError
from retrain.identifiers import customer_id, sql_identifier

METRIC_DIGITS = 6
_TEXT_FIELDS = ("model_name", "version", "run_id", "commit", "artifact_uri")


class InvalidManifestError(InputError):
    """Text that is not a release manifest (not JSON, wrong shape, an invalid customer or file path)."""


class AdapterFilesError(ConflictError):
    """An adapter's files differ from the SHA-256 digests its release manifest recorded."""


@dataclass(frozen=True)
class AdapterEntry:
    customer: str
    model_name: str
    version: str
    run_id: str
    commit: str
    artifact_uri: str  # where the logged model (MLmodel, adapter weights) lives
    metrics: dict[str, float] = field(default_factory=dict)
    # File path under artifact_uri -> SHA-256 hex digest; empty in manifests from before digests.
    sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        customer_id(self.customer)  # it names a folder of the release context
        where = f"adapter of customer {self.customer}"
        if not all(isinstance(getattr(self, name), str) for name in _TEXT_FIELDS):
            raise InvalidManifestError(f"{where}: {', '.join(_TEXT_FIELDS)} must be text")
        if not isinstance(self.metrics, dict) or not isinstance(self.sha256, dict):
            raise InvalidManifestError(f"{where}: metrics and sha256 must be objects")
        for name in self.metrics:  # they name table columns and sort keys of the Releases view
            try:
                sql_identifier(name, "metric")
            except InputError as error:
                raise InvalidManifestError(f"{where}: {error}") from None
        unsafe = sorted(repr(p) for p in self.sha256 if not _is_relative_path(p))
        if unsafe:
            raise InvalidManifestError(f"{where}: file paths leave the adapter's folder: {', '.join(unsafe)}")

    def canonical(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {k: round(float(v), METRIC_DIGITS) for k, v in sorted(self.metrics.items())}
        if self.sha256:
            data["sha256"] = dict(sorted(self.sha256.items()))
        else:
            del data["sha256"]  # manifests registered before digests keep their MD5, their release id
        return data

    def check_files(self, root: Path) -> None:
        """Every file recorded in :attr:`sha256` must be under ``root`` (a copy of the logged model)
        with that digest, else :class:`AdapterFilesError` naming the customer, version and file."""
        for path, expected in sorted(self.sha256.items()):
            local = root / path
            if not local.is_file():
                problem = "is missing"
            elif file_sha256(local) != expected:
                problem = "does not match the SHA-256 in the release manifest (truncated or altered)"
            else:
                continue
            raise AdapterFilesError(
                f"adapter of customer {self.customer} ({self.model_name} v{self.version}): {path} {problem}"
            )


@dataclass(frozen=True)
class Manifest:
    adapters: tuple[AdapterEntry, ...]

    def __post_init__(self) -> None:
        counts = Counter(a.customer for a in self.adapters)
        duplicated = sorted(c for c, n in counts.items() if n > 1)
        if duplicated:
            raise InvalidManifestError(
                f"a manifest holds one adapter per customer; repeated: {', '.join(duplicated)}"
            )
        object.__setattr__(self, "adapters", tuple(sorted(self.adapters, key=lambda a: a.customer)))

    def canonical_json(self) -> str:
        document = {"adapters": [a.canonical() for a in self.adapters], "format": 1}
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def release_id(self) -> str:
        """MD5 of the canonical JSON: the release id and the serving image tag."""
        return hashlib.md5(self.canonical_json().encode()).hexdigest()

    @property
    def commits(self) -> list[str]:
        return sorted({a.commit for a in self.adapters})

    def by_customer(self) -> dict[str, AdapterEntry]:
        return {a.customer: a for a in self.adapters}

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a stored manifest; anything else raises :class:`InvalidManifestError` (one line)."""
        try:
            document = json.loads(text)
            manifest = cls(tuple(AdapterEntry(**entry) for entry in document["adapters"]))
            manifest.canonical_json()  # metrics must be numbers
        except RetrainError as error:
            raise InvalidManifestError(f"not a release manifest: {error}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise InvalidManifestError(f"not a release manifest: {type(error).__name__}: {error}") from None
        return manifest

    def replace(self, entry: AdapterEntry) -> Manifest:
        """This manifest with ``entry`` standing for its customer."""
        return Manifest((*tuple(a for a in self.adapters if a.customer != entry.customer), entry))


@dataclass(frozen=True)
class ManifestDiff:
    added: list[AdapterEntry]
    removed: list[AdapterEntry]
    changed: list[tuple[AdapterEntry, AdapterEntry]]  # (old, new)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        out = [f"+ {a.customer}: {a.model_name} v{a.version} (commit {a.commit[:12]})" for a in self.added]
        out += [f"- {a.customer}: {a.model_name} v{a.version}" for a in self.removed]
        for old, new in self.changed:
            deltas = ", ".join(
                f"{k} {old.metrics[k]:.3f} -> {new.metrics[k]:.3f} ({new.metrics[k] - old.metrics[k]:+.3f})"
                for k in sorted(set(old.metrics) & set(new.metrics))
            )
            out.append(
                f"~ {new.customer}: v{old.version} -> v{new.version} (commit {new.commit[:12]}); {deltas}"
            )
        return out or ["(no changes)"]

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [a.canonical() for a in self.added],
            "removed": [a.canonical() for a in self.removed],
            "changed": [{"old": o.canonical(), "new": n.canonical()} for o, n in self.changed],
        }


def diff(old: Manifest, new: Manifest) -> ManifestDiff:
    before, after = old.by_customer(), new.by_customer()
    return ManifestDiff(
        added=[after[c] for c in sorted(set(after) - set(before))],
        removed=[before[c] for c in sorted(set(before) - set(after))],
        changed=[
            (before[c], after[c])
            for c in sorted(set(before) & set(after))
            if (before[c].model_name, before[c].version) != (after[c].model_name, after[c].version)
        ],
    )


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def file_digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (a logged model's folder)."""
    return {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _is_relative_path(path: object) -> bool:
    """A non-empty relative POSIX path without ``..``: it stays inside the adapter's folder."""
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts
