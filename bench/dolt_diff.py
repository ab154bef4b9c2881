"""Benchmark: ``changed_keys`` against the naive approach (read both snapshots and compare).

Builds doltlite repositories of N rows (default 100,000 and 1,000,000) where one commit changes
100 rows of 3 customers, then prints, side by side in one run:
  - ``changed_keys`` time (median of repeats) and the naive time, and their ratio (target <= 1/100);
  - ``changed_keys`` time at 1M rows over its time at 100k (target <= 3: cost follows the change).

Run: ``.venv/bin/python bench/dolt_diff.py [--rows 100000 1000000]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from synthetic import CHANGED_CUSTOMERS, build_repo

from retrain.dolt import ChangedKeys, DoltRepository


def naive_changed_keys(repo: DoltRepository, table: str, key: str, before: str, after: str) -> set[str]:
    """Read both snapshots in full and compare them row by row."""
    old, new = repo.read_table(table, before), repo.read_table(table, after)
    merged = old.merge(new, on="example_id", how="outer", suffixes=("_old", "_new"), indicator=True)
    value_columns = [c for c in old.columns if c != "example_id"]
    differs = merged["_merge"] != "both"
    for column in value_columns:
        differs |= merged[f"{column}_old"].ne(merged[f"{column}_new"])
    changed = merged[differs]
    return set(pd.concat([changed[f"{key}_old"], changed[f"{key}_new"]]).dropna().astype(str))


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    fast_times: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for rows in args.rows:
            print(f"examples table of {rows:,} rows")
            repo, before, after = build_repo(Path(workdir) / f"bench_{rows}.db", rows)
            with repo:
                fast, keys = timed(
                    functools.partial(repo.changed_keys, "examples", "customer_id", before, after),
                    args.repeats,
                )
                naive, naive_keys = timed(
                    functools.partial(naive_changed_keys, repo, "examples", "customer_id", before, after), 1
                )
            assert isinstance(keys, ChangedKeys)
            assert keys.keys == naive_keys == set(CHANGED_CUSTOMERS), (keys, naive_keys)
            fast_times[rows] = fast
            print(f"  changed_keys: {fast * 1000:8.1f} ms  (median of {args.repeats})")
            print(f"  naive:        {naive * 1000:8.1f} ms  (read both snapshots, compare)")
            print(f"  ratio changed_keys/naive = 1/{naive / fast:,.0f}  (target <= 1/100)")
    if len(fast_times) >= 2:
        small, large = min(fast_times), max(fast_times)
        print(
            f"scaling: changed_keys at {large:,} rows / at {small:,} rows = "
            f"{fast_times[large] / fast_times[small]:.2f}x  (target <= 3x)"
        )


if __name__ == "__main__":
    main()
