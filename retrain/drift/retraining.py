"""Which drifting customers retraining can help: those with training rows newer than their adapter.

An adapter learned from its training table as of one Dolt commit (its manifest entry's
``commit``). When the table changed for the customer between that commit and the head, retraining
at the head learns something new; when it did not, retraining would relearn the same rows, and the
customer needs new labels first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain.release.manifest import Manifest


@dataclass(frozen=True)
class RetrainPlan:
    head: str
    retrain: list[str]  # rows changed since their adapter's commit: retrain at `head`
    need_labels: dict[str, str]  # customer -> its adapter's commit, the head's data for it


def plan_retraining(
    repo: DoltRepository,
    manifest: Manifest,
    customers: Iterable[str],
    *,
    table: str,
    key_column: str,
    branch: str = "main",
) -> RetrainPlan:
    """Split ``customers`` of the release ``manifest`` by whether ``table`` changed for them since the
    commit their adapter was trained on. One diff per distinct commit, whatever the number of customers."""
    entries = manifest.by_customer()
    missing = sorted(set(customers) - set(entries))
    if missing:
        raise InputError(
            f"no adapter in release {manifest.release_id} for {', '.join(missing[:10])}: cannot tell what "
            "its adapter learned from"
        )
    head = repo.head(branch)
    by_commit: dict[str, list[str]] = {}
    for customer in sorted(set(customers)):
        by_commit.setdefault(entries[customer].commit, []).append(customer)
    retrain: list[str] = []
    need_labels: dict[str, str] = {}
    for commit, group in by_commit.items():
        changed = repo.changed_keys(table, key_column, commit, head)
        for customer in group:
            if changed.all_changed or customer in changed.keys:
                retrain.append(customer)
            else:
                need_labels[customer] = commit
    return RetrainPlan(head, sorted(retrain), dict(sorted(need_labels.items())))
