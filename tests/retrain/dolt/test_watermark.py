"""Watermark semantics: once per head, ranges from the last finished commit, never backwards."""

from __future__ import annotations

import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository, WatermarkError
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import FIRST_RUN_REASON, CommitRange, CommitWatermark


def _touch(repo: DoltRepository, customer: str, message: str) -> str:
    repo.execute(Statement("UPDATE examples SET text = text || '!' WHERE customer_id = ?", (customer,)))
    return repo.commit(message)


def test_first_run_covers_everyone_then_fires_once_per_head(repo: DoltRepository) -> None:
    watermark = CommitWatermark(repo, "retrain_on_commit")
    first = watermark.sense("examples", "customer_id")
    assert first is not None
    assert first.previous_commit is None
    assert first.changed.all_changed
    assert first.changed.reason == FIRST_RUN_REASON
    assert watermark.sense("examples", "customer_id") is None  # same head: no second event
    assert watermark.done() is None  # sensing never advances the watermark


def test_range_since_done_merges_commits_and_survives_a_failed_run(
    repo: DoltRepository, seeded: SeededRepository
) -> None:
    watermark = CommitWatermark(repo, "dag")
    watermark.advance(seeded.commits[-1])
    c1 = _touch(repo, "acme_air", "one")
    c2 = _touch(repo, "initech_saas", "two")  # two commits land between polls
    found = watermark.sense("examples", "customer_id")
    assert found is not None
    assert (found.commit, found.previous_commit, found.commit_count) == (c2, seeded.commits[-1], 2)
    assert found.commits == [c2, c1]
    assert found.changed.keys == {"acme_air", "initech_saas"}
    # The run for c2 fails: done stays; the next commit's range still covers acme_air and initech_saas.
    c3 = _touch(repo, "globex_bank", "three")
    again = watermark.sense("examples", "customer_id")
    assert again is not None
    assert again.commit == c3
    assert again.changed.keys == {"acme_air", "initech_saas", "globex_bank"}
    assert watermark.advance(c3) == c3
    assert watermark.done() == c3
    assert watermark.sense("examples", "customer_id") is None


def test_a_new_watermark_object_does_not_refire(repo: DoltRepository, seeded: SeededRepository) -> None:
    """State lives in Dolt branches, so a restarted triggerer sees what was already sensed."""
    CommitWatermark(repo, "dag").advance(seeded.commits[0])
    assert CommitWatermark(repo, "dag").sense("examples", "customer_id") is not None
    with DoltRepository.open(str(seeded.path)) as other_process_view:
        assert CommitWatermark(other_process_view, "dag").sense("examples", "customer_id") is None


def test_advance_is_idempotent_and_refuses_to_go_backwards(
    repo: DoltRepository, seeded: SeededRepository
) -> None:
    watermark = CommitWatermark(repo, "dag")
    first, second = seeded.commits
    assert watermark.advance(second) == second
    assert watermark.advance(second) == second
    with pytest.raises(WatermarkError, match="refusing to move watermark retrain/dag/done"):
        watermark.advance(first)
    assert watermark.done() == second


def test_payload_round_trip(repo: DoltRepository, seeded: SeededRepository) -> None:
    watermark = CommitWatermark(repo, "dag")
    watermark.advance(seeded.commits[0])
    found = watermark.sense("examples", "customer_id")
    assert found is not None
    payload = found.to_payload()
    assert payload["changed_keys"] == sorted(seeded.changed_in_last_commit)
    assert CommitRange.from_payload(payload) == found
