"""What the engine refuses: each message names the customer, and the file where one is at fault."""

from __future__ import annotations

from collections.abc import Iterable

from retrain.errors import InputError


class EngineError(InputError):
    """The engine cannot score as asked."""


class UnknownCustomerError(EngineError):
    """A row's customer has no adapter in the release: an error, never a fallback to another model."""

    def __init__(self, customers: Iterable[str], release_id: str) -> None:
        self.customers = sorted(set(customers))
        shown = ", ".join(repr(c) for c in self.customers[:10])
        more = f" and {len(self.customers) - 10} more" if len(self.customers) > 10 else ""
        super().__init__(f"no adapter for customer {shown}{more} in release {release_id}")


class AdapterFileError(EngineError):
    """An adapter's files are missing, unreadable or not what the engine can apply."""
