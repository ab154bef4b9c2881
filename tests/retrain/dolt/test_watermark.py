"""Watermark semantics: once per head, ranges from the last finished commit, never backwards."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from retrain.cli import main
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


RACE_ROUNDS = 20


def _advance_each_round(path: str, target: str, barrier: Any, outcomes: Any) -> None:
    """One contender: in every round, advance that round's fresh watermark to ``target`` at once."""
    with DoltRepository.open(path) as repo:
        for round_ in range(RACE_ROUNDS):
            barrier.wait(timeout=60)
            try:
                outcome = CommitWatermark(repo, f"race{round_}").advance(target)
            except WatermarkError as error:
                outcome = f"WatermarkError: {error}"
            outcomes.put((round_, target, outcome))


def test_concurrent_advances_never_move_the_watermark_backwards(
    repo: DoltRepository, seeded: SeededRepository
) -> None:
    """Two processes advance the same watermark to C2 and to its ancestor C1 at the same moment,
    round after round, on one doltlite file: it always ends at C2, and the loser either went first
    (C1, then overtaken) or got a WatermarkError, never a silent move back."""
    c1 = seeded.commits[-1]
    c2 = _touch(repo, "acme_air", "c2")
    context = multiprocessing.get_context("fork")
    barrier, outcomes = context.Barrier(2), context.Queue()
    contenders = [
        context.Process(target=_advance_each_round, args=(str(seeded.path), target, barrier, outcomes))
        for target in (c2, c1)
    ]
    for process in contenders:
        process.start()
    results = [outcomes.get(timeout=120) for _ in range(2 * RACE_ROUNDS)]
    for process in contenders:
        process.join(timeout=60)
        assert process.exitcode == 0
    for round_ in range(RACE_ROUNDS):
        assert CommitWatermark(repo, f"race{round_}").done() == c2, f"round {round_} moved backwards"
    assert sorted(outcome for _, target, outcome in results if target == c2) == [c2] * RACE_ROUNDS
    for round_, target, outcome in results:
        if target == c1:  # the loser: went first, or refused with the reason
            assert outcome in (
                c1,
                f"WatermarkError: refusing to move watermark retrain/race{round_}/done from {c2} to {c1}: "
                f"{c1} does not descend from it (work would be lost or replayed)",
            )


def _side_commit(repo: DoltRepository, base: str) -> str:
    """A commit on branch ``side`` (from ``base``), leaving the session on main."""
    repo.force_branch("side", base)
    repo.execute(Statement("SELECT dolt_checkout('side')"))
    try:
        return _touch(repo, "globex_bank", "off main")
    finally:
        repo.execute(Statement("SELECT dolt_checkout('main')"))


def test_advance_refuses_a_commit_off_the_watched_branch(
    repo: DoltRepository, seeded: SeededRepository
) -> None:
    side = _side_commit(repo, seeded.commits[0])
    watermark = CommitWatermark(repo, "dag")
    watermark.advance(seeded.commits[0])
    with pytest.raises(WatermarkError) as raised:
        watermark.advance(side)
    assert str(raised.value) == (
        f"refusing to move watermark retrain/dag/done to {side}: it is not on branch main "
        f"(head {seeded.commits[-1]}), so later advances along main would all fail"
    )
    assert watermark.done() == seeded.commits[0]
    assert watermark.advance("main") == seeded.commits[-1]  # main still advances
    # The same commit is fine for a watermark that watches its branch.
    assert CommitWatermark(repo, "side_dag", branch="side").advance(side) == side


def test_cli_advance_honours_branch(
    repo: DoltRepository, seeded: SeededRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    side = _side_commit(repo, seeded.commits[0])
    base = ["dolt", "advance", "--repo", str(seeded.path), "--consumer", "dag", "--commit", side]
    assert main(base) == 1
    assert capsys.readouterr().err == (
        f"retrain: error: refusing to move watermark retrain/dag/done to {side}: it is not on branch main "
        f"(head {seeded.commits[-1]}), so later advances along main would all fail\n"
    )
    assert CommitWatermark(repo, "dag").done() is None
    assert main([*base, "--branch", "side"]) == 0
    assert capsys.readouterr().out == f"{side}\n"
