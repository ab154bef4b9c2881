"""The one root of the suite's expected errors, and what each kind means to its callers.

Every failure a user can cause or meet (bad input, an unreachable service, a stale release) is a
:class:`RetrainError`. Its class says how each entry point reacts, as Hera's ``HeraException``
classes and MLflow's ``ERROR_CODE_TO_HTTP_STATUS`` do:

- ``exit_code``: what the ``retrain`` CLI returns after printing the message as one line;
- ``http_status``: what the Releases app and the model server answer;
- ``retryable``: whether trying the same work again can succeed (the local fan-out and Airflow's
  retries ask this, never the exception's type).

Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import ClassVar


class RetrainError(Exception):
    """Base of every expected failure; the message names what was wrong (commit, table, customer, file)."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False


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
