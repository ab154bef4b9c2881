"""Which drifting customers can be retrained: new rows since their adapter's commit (real doltlite)."""

from __future__ import annotations

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository
from retrain.drift.retraining import plan_retraining
from retrain.errors import InputError
from retrain.release.manifest import AdapterEntry, Manifest


def manifest(commits: dict[str, str]) -> Manifest:
    """A release whose adapters were trained on ``commits`` (customer -> commit)."""
    return Manifest(
        tuple(
            AdapterEntry(
                customer, f"adapter-{customer}", "1", f"run-{customer}", commit, f"file:///a/{customer}"
            )
            for customer, commit in commits.items()
        )
    )


def test_only_customers_with_new_rows_are_retrained(seeded: SeededRepository, repo: DoltRepository) -> None:
    first, head = seeded.commits
    changed = seeded.changed_in_last_commit  # new and relabelled rows in the second commit
    unchanged = [c for c in seeded.customers if c not in changed]
    release = manifest({**dict.fromkeys(seeded.customers, first), unchanged[1]: head})
    plan = plan_retraining(
        repo, release, seeded.customers, table="examples", key_column="customer_id", branch="main"
    )
    assert plan.head == head
    assert plan.retrain == sorted(changed)
    # Trained before the second commit, but nothing changed for it; or trained on the head itself.
    assert plan.need_labels == {unchanged[0]: first, unchanged[1]: head}


def test_a_customer_outside_the_release_is_named(seeded: SeededRepository, repo: DoltRepository) -> None:
    release = manifest({seeded.customers[0]: seeded.commits[0]})
    with pytest.raises(InputError, match=rf"no adapter in release {release.release_id} for nobody_inc"):
        plan_retraining(repo, release, ["nobody_inc"], table="examples", key_column="customer_id")
