"""How long the first contact with a service may take: one setting for every service the suite calls.

MLflow's client, Spark's Hive client and plain retry loops would otherwise wait minutes on a server
that is down or accepts connections without answering. Each first contact (the MLflow tracking
server, the Argo Server, the Hive metastore, a model server, a Dolt sql-server unless
``$RETRAIN_DOLT_TIMEOUT`` says otherwise) gives up after ``$RETRAIN_CONNECT_TIMEOUT`` seconds,
retries included, and raises a :class:`~retrain.errors.ServiceUnreachableError` naming the
service and its URI.
"""

from __future__ import annotations

import math
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from retrain.errors import InputError

CONNECT_TIMEOUT_ENV = "RETRAIN_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 15.0
MAX_TIMEOUT_S = 31_536_000  # a year: PyMySQL's own upper bound, and the cap of every timeout setting


def connect_timeout() -> float:
    """Seconds a first contact may take: ``$RETRAIN_CONNECT_TIMEOUT``, else 15."""
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    return timeout_setting(text, f"${CONNECT_TIMEOUT_ENV}")


def timeout_setting(text: str, source: str) -> float:
    """``text`` as a timeout: seconds above 0 and at most :data:`MAX_TIMEOUT_S`, else
    :class:`~retrain.errors.InputError` naming ``source`` (the variable or option)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT_S:  # NaN is neither
        raise InputError(
            f"{source} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S} (a year), got {text!r}"
        )
    return seconds


def root_cause(error: BaseException) -> str:
    """The innermost cause's words (``Connection refused``), without the wrappers that repeat the URL."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def total_timeout(seconds: float) -> Any:
    """A ``timeout=`` for requests that bounds connecting and reading together.

    requests' float or tuple bounds each step separately (a slow connect, then a slow read, take
    twice as long); it passes urllib3's own ``Timeout`` through, whose ``total`` covers both.
    """
    import urllib3

    return urllib3.Timeout(total=seconds)


def redacted_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``, for messages.

    Works on URLs with a bad port; one too malformed to split shows only its scheme, unless it
    has no ``@`` (and so no password).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url if "@" not in url else url.partition("://")[0] + "://***"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}"))
    return url
