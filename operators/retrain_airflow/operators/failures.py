"""The suite's error taxonomy told to Airflow: what trying again cannot fix fails the task at once.

Every operator method that calls into ``retrain`` (``execute``, ``execute_complete``) is wrapped by
:func:`fails_fast`. A :class:`~retrain.errors.RetrainError` whose ``retryable`` is False (bad input,
a missing release, a conflict) becomes an ``AirflowFailException`` with the same message, so it does
not burn the task's retries; a retryable one (a service that did not answer in time) is raised
unchanged for Airflow's retries, as is anything else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from retrain.errors import RetrainError

P = ParamSpec("P")
R = TypeVar("R")


def fails_fast(method: Callable[P, R]) -> Callable[P, R]:
    """``method``, with a non-retryable :class:`~retrain.errors.RetrainError` failing the task at once."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RetrainError as error:
            if error.retryable:
                raise
            raise AirflowFailException(str(error)) from error

    return run
