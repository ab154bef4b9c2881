"""Work on the next item in a background thread while the caller uses the current one's result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ahead(items: Iterable[Item], work: Callable[[Item], Result], executor: Executor) -> Iterator[Result]:
    """``work(item)`` for each item in order, each computed in ``executor`` one item ahead.

    Item ``k + 1`` is taken and submitted before item ``k``'s result is handed out, so the two
    overlap; an error in ``work`` is raised where its result would have been.
    """
    pending: Future[Result] | None = None
    for item in items:
        submitted = executor.submit(work, item)
        if pending is not None:
            yield pending.result()
        pending = submitted
    if pending is not None:
        yield pending.result()
