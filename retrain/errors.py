"""The one root of the suite's expected errors, and what each kind means to its callers.

Every failure a user can cause or meet (bad input, an unreachable service, a stale release) is a
:class:`RetrainError`. Its class says how each entry point reacts, as Hera's ``HeraException``
classes and MLflow's ``ERROR_CODE_TO_HTTP_STATUS`` do:

- ``exit_code``: what the ``retrain`` CLI returns after printing the message as one line;
- ``http_status``: what the Releases app and the model server answer;
- ``retryable``: whether trying the same work again can succeed (the local fan-out and Airflow's
  retries ask this, never the exception's type).

These three are data, never an accident of base-class order: a class whose bases disagree on one
of them (``X(ArgoError, ConflictError)``: 502 or 409?) must state its own, else defining it raises.

Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

OUTCOMES = ("exit_code", "http_status", "retryable")


def _stated(cls: type[RetrainError], name: str) -> object:
    """``cls``'s ``name`` where a class below the root states it, else None (the root's default)."""
    owner = next(c for c in cls.__mro__ if name in vars(c))
    return None if owner is RetrainError else getattr(cls, name)


class RetrainError(Exception):
    """Base of every expected failure; the message names what was wrong (commit, table, customer, file)."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in OUTCOMES:
            stated = {_stated(base, name) for base in cls.__bases__ if issubclass(base, RetrainError)}
            stated.discard(None)  # a base that only inherits the root's default yields to the others
            if len(stated) > 1 and name not in vars(cls):
                raise TypeError(
                    f"{cls.__qualname__} inherits {name} {sorted(stated, key=str)} from its bases "
                    f"{', '.join(b.__name__ for b in cls.__bases__)}: state its own {name}"
                )


class InputError(RetrainError, ValueError):
    """Bad input the user must fix: an invalid name, an unusable suite file, nothing to validate."""

    http_status = 400


class NotFoundError(RetrainError):
    """A named thing (release, version, partition, file) does not exist."""

    http_status = 404


class ConflictError(RetrainError):
    """The state does not allow the request: a stale release, a reference that no longer matches."""

    http_status = 409


class ServiceUnreachableError(RetrainError):
    """A service (MLflow, the Argo Server, Dolt, the Hive metastore, a model server) did not answer in time.

    The message names the service and its URI with any password hidden.
    """

    http_status = 503
    retryable = True
