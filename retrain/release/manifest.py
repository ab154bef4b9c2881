"""Release manifests: the set of adapter versions that serve together, as canonical JSON.

The same set always gives the same bytes (sorted keys, fixed separators, entries sorted by
customer, metrics rounded), so its MD5 hex digest identifies the release: it is the release id
and the serving image tag.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

METRIC_DIGITS = 6


@dataclass(frozen=True)
class AdapterEntry:
    customer: str
    model_name: str
    version: str
    run_id: str
    commit: str
    artifact_uri: str  # where the logged model (MLmodel, adapter weights) lives
    metrics: dict[str, float] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {k: round(float(v), METRIC_DIGITS) for k, v in sorted(self.metrics.items())}
        return data


@dataclass(frozen=True)
class Manifest:
    adapters: tuple[AdapterEntry, ...]

    def __post_init__(self) -> None:
        counts = Counter(a.customer for a in self.adapters)
        duplicated = sorted(c for c, n in counts.items() if n > 1)
        if duplicated:
            raise ValueError(f"a manifest holds one adapter per customer; repeated: {', '.join(duplicated)}")
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
    def from_json(cls, text: str) -> Manifest:
        document = json.loads(text)
        return cls(tuple(AdapterEntry(**entry) for entry in document["adapters"]))

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
