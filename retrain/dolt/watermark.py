"""Persisted commit watermarks, kept in the Dolt repository itself as two branches per consumer.

``retrain/<consumer>/done``   the last commit whose work finished; moved only by :meth:`advance`,
                              after the downstream run succeeded, and never backwards.
``retrain/<consumer>/sensed`` the last head an event was emitted for, so a restarted sensor or
                              triggerer does not emit the same head twice.

Keeping them as branches makes them survive scheduler and triggerer restarts, visible to every
Dolt tool (``dolt_branches``), and usable from the CLI, Argo pods and Airflow alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from retrain.dolt.errors import WatermarkError
from retrain.dolt.repository import ChangedKeys, DoltRepository
from retrain.identifiers import branch_name

log = logging.getLogger(__name__)

FIRST_RUN_REASON = "no watermark yet: the first run covers every customer"
# Event payloads land in Airflow's database: list at most this many commit hashes (the count is exact).
MAX_LISTED_COMMITS = 100


@dataclass(frozen=True)
class CommitRange:
    """New commits on a branch since the watermark, and which keys they changed."""

    commit: str
    previous_commit: str | None
    changed: ChangedKeys
    commit_count: int
    commits: list[str] = field(default_factory=list)  # newest first, at most MAX_LISTED_COMMITS

    def to_payload(self) -> dict[str, object]:
        """A JSON-safe dict (trigger events, XCom, CLI output)."""
        return {
            "commit": self.commit,
            "previous_commit": self.previous_commit,
            "changed_keys": None if self.changed.all_changed else sorted(self.changed.keys),
            "all_changed": self.changed.all_changed,
            "reason": self.changed.reason,
            "commit_count": self.commit_count,
            "commits": self.commits,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, object]) -> CommitRange:
        keys = payload.get("changed_keys")
        changed = (
            ChangedKeys.everything(str(payload.get("reason")))
            if payload.get("all_changed")
            else ChangedKeys(keys=frozenset(str(k) for k in keys or []))  # type: ignore[attr-defined]
        )
        previous = payload.get("previous_commit")
        commits = payload.get("commits") or []
        assert isinstance(commits, list)
        return cls(
            commit=str(payload["commit"]),
            previous_commit=str(previous) if previous else None,
            changed=changed,
            commit_count=int(str(payload.get("commit_count", len(commits)))),
            commits=[str(c) for c in commits],
        )


class CommitWatermark:
    """The watermark of one consumer (say, a DAG) on one branch of a repository."""

    def __init__(self, repo: DoltRepository, consumer: str, branch: str = "main") -> None:
        self.repo = repo
        self.consumer = branch_name(consumer)
        self.branch = branch_name(branch)
        self.done_branch = f"retrain/{consumer}/done"
        self.sensed_branch = f"retrain/{consumer}/sensed"

    def done(self) -> str | None:
        return self.repo.branch_head(self.done_branch)

    def sensed(self) -> str | None:
        return self.repo.branch_head(self.sensed_branch)

    def advance(self, commit: str) -> str:
        """Record that the work up to ``commit`` finished; returns its hash.

        ``commit`` must be on the watched branch (its head or an ancestor). The move is a
        compare-and-set under :meth:`DoltRepository.exclusive`: the current value is read, checked
        and replaced while no other advance of this watermark can run, so concurrent advances
        serialize. Advancing to the current value is a no-op; to anything that does not descend
        from it (an older commit, or one a concurrent advance already passed) raises
        :class:`WatermarkError` and leaves the watermark where it is.
        """
        target = self.repo.resolve(commit)
        head = self.repo.head(self.branch)
        if not self.repo.is_ancestor(target, head):
            raise WatermarkError(
                f"refusing to move watermark {self.done_branch} to {target}: it is not on branch "
                f"{self.branch} (head {head}), so later advances along {self.branch} would all fail"
            )
        with self.repo.exclusive(self.done_branch):
            current = self.done()
            if current == target:
                return target
            if current is not None and not self.repo.is_ancestor(current, target):
                raise WatermarkError(
                    f"refusing to move watermark {self.done_branch} from {current} to {target}: "
                    f"{target} does not descend from it (work would be lost or replayed)"
                )
            self.repo.force_branch(self.done_branch, target)  # the last statement: see exclusive()
        log.info("watermark %s advanced %s -> %s", self.done_branch, current, target)
        return target

    def sense(self, table: str, key_column: str) -> CommitRange | None:
        """The commits since the ``done`` watermark, once per new head; None if nothing is new.

        Every new head yields one range from the ``done`` watermark (not from the last sensed
        head), so commits whose run failed are covered again by the next range, and several
        commits landing between two polls form one range. The head is marked sensed before it
        is returned: a crash right after loses no work, because ``done`` has not moved.
        """
        head = self.repo.head(self.branch)
        done = self.done()
        if head == done or head == self.sensed():
            return None
        if done is None:
            changed = ChangedKeys.everything(FIRST_RUN_REASON)
            commits = [c.commit_hash for c in self.repo.log(until=head)]
        else:
            changed = self.repo.changed_keys(table, key_column, done, head)
            commits = [c.commit_hash for c in self.repo.log(since=done, until=head)]
        self.repo.force_branch(self.sensed_branch, head)
        return CommitRange(
            commit=head,
            previous_commit=done,
            changed=changed,
            commit_count=len(commits),
            commits=commits[:MAX_LISTED_COMMITS],
        )
