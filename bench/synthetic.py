"""Synthetic doltlite training repositories for the benchmarks (shared by every bench script)."""

from __future__ import annotations

import time
from pathlib import Path

from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement

CUSTOMERS = 1000
CHANGED_CUSTOMERS = ("customer_0007", "customer_0421", "customer_0999")


def build_repo(path: Path, rows: int) -> tuple[DoltRepository, str, str]:
    """A repo with ``rows`` examples; a second commit edits 100 rows of 3 customers."""
    repo = DoltRepository.open(str(path), create=True)
    repo.execute(
        Statement(
            "CREATE TABLE examples (example_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, "
            "text TEXT NOT NULL, label TEXT NOT NULL)"
        )
    )
    started = time.perf_counter()
    batch = 200_000
    for start in range(0, rows, batch):
        repo.insert_rows(
            "examples",
            ("example_id", "customer_id", "text", "label"),
            [
                (
                    i,
                    f"customer_{i % CUSTOMERS:04d}",
                    f"support request number {i}",
                    ("routine", "urgent")[(i // CUSTOMERS) % 2],
                )
                for i in range(start, min(rows, start + batch))
            ],
        )
    before = repo.commit(f"{rows} examples")
    elapsed = time.perf_counter() - started
    print(f"  built {rows:,} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)")
    ids = [i for i in range(rows) if f"customer_{i % CUSTOMERS:04d}" in CHANGED_CUSTOMERS][:100]
    repo.execute(
        Statement(
            f"UPDATE examples SET label = 'urgent', text = text || ' (edited)' "  # noqa: S608
            f"WHERE example_id IN ({', '.join('?' * len(ids))})",
            tuple(ids),
        )
    )
    after = repo.commit("edit 100 rows of 3 customers")
    return repo, before, after
