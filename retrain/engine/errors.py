"""What the engine refuses: each message names the customer, and the file where one is at fault.

Whose fault decides the status: the caller's (an unknown customer, a malformed request) is an
:class:`EngineInputError` (400); a server that is loading or stopping refuses with the serving
layer's ``UnavailableError`` (503, try again); anything else (a broken release on disk, an
unsupported device, the serve extra missing) is the server's own fault, a plain
:class:`EngineError` (500), never a 400.
"""

from __future__ import annotations

from collections.abc import Iterable

from retrain.errors import InputError, RetrainError


class EngineError(RetrainError):
    """The engine cannot score as asked, through no fault of the request."""


class EngineInputError(EngineError, InputError):
    """The request is at fault: an unknown customer, texts and customers of different lengths."""

    http_status = 400


class UnknownCustomerError(EngineInputError):
    """A row's customer has no adapter in the release: an error, never a fallback to another model."""

    def __init__(self, customers: Iterable[str], release_id: str) -> None:
        self.customers = sorted(set(customers))
        shown = ", ".join(repr(c) for c in self.customers[:10])
        more = f" and {len(self.customers) - 10} more" if len(self.customers) > 10 else ""
        super().__init__(f"no adapter for customer {shown}{more} in release {release_id}")


class AdapterFileError(EngineError):
    """An adapter's files are missing, unreadable or not what the engine can apply."""
