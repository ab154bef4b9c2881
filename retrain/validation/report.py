"""The structured result of validating a table as of a commit, and its human summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SUMMARY_CUSTOMERS = 10  # the summary names this many customers per failure; the JSON has them all


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation: what, where, how much, and whose rows."""

    expectation: str
    column: str | None
    unexpected_count: int  # rows, or customers for per-customer expectations
    sample_values: list[str]
    customers: list[str]  # empty when the failure cannot be attributed to customers
    per_customer: bool = False
    notes: str | None = None

    def describe(self) -> str:
        unit = "customer(s)" if self.per_customer else "row(s)"
        where = f" on column {self.column}" if self.column else ""
        samples = (
            f"; e.g. {', '.join(self.sample_values)}" if self.sample_values and not self.per_customer else ""
        )
        named = ", ".join(self.customers[:SUMMARY_CUSTOMERS])
        hidden = len(self.customers) - SUMMARY_CUSTOMERS
        whose = f"; customers: {named}{f' and {hidden} more' if hidden > 0 else ''}" if self.customers else ""
        why = f" ({self.notes})" if self.notes else ""
        return f"{self.expectation}{where}: {self.unexpected_count} unexpected {unit}{samples}{whose}{why}"


@dataclass(frozen=True)
class ValidationReport:
    table: str
    commit: str
    suite: str
    rows_validated: int
    customers_validated: list[str]
    expectations_evaluated: int
    failures: list[ExpectationFailure] = field(default_factory=list)
    docs_page: str | None = None

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def quarantined(self) -> dict[str, list[str]]:
        """Customer -> the failed expectations that name its rows."""
        reasons: dict[str, list[str]] = {}
        for failure in self.failures:
            for customer in failure.customers:
                reasons.setdefault(customer, []).append(
                    f"{failure.expectation}" + (f" on {failure.column}" if failure.column else "")
                )
        return dict(sorted(reasons.items()))

    @property
    def healthy_customers(self) -> list[str]:
        return [c for c in self.customers_validated if c not in self.quarantined]

    @property
    def unattributed_failures(self) -> list[ExpectationFailure]:
        """Failures no customer can be blamed for (a table-level check, rows with a null key)."""
        return [f for f in self.failures if not f.customers]

    def passes(self, *, quarantine: bool = False) -> bool:
        """Strict: nothing failed. Quarantine: every failure names customers and some are healthy."""
        if not quarantine:
            return self.success
        return not self.unattributed_failures and bool(self.healthy_customers)

    def summary(self) -> str:
        head = (
            f"validation of {self.table} at {self.commit} with suite {self.suite}: "
            f"{self.rows_validated} rows, {len(self.customers_validated)} customers, "
            f"{self.expectations_evaluated} expectations, {len(self.failures)} failed"
        )
        lines = [head, *(f"  FAILED {failure.describe()}" for failure in self.failures)]
        if self.docs_page:
            lines.append(f"  Data Docs: {self.docs_page}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "success": self.success,
            "quarantined": self.quarantined,
            "healthy_customers": self.healthy_customers,
        }
