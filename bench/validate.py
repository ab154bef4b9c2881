"""Benchmark: validating only the changed customers' rows against validating the whole table.

On an ``examples`` table of 1,000,000 rows after a commit touching 3 customers, prints side by side:
the time to validate the changed customers' rows and the whole table with the shipped suite
(target: changed-only <= 1/10 of full), and rows/s of the full validation.

Run: ``.venv/bin/python bench/validate.py [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from synthetic import CHANGED_CUSTOMERS, build_repo

from retrain.validation.gate import validate_commit
from retrain.validation.suite import PACKAGED_SUITE, load_suite


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    suite = load_suite(PACKAGED_SUITE)
    with tempfile.TemporaryDirectory() as workdir:
        print(f"examples table of {args.rows:,} rows")
        repo, before, after = build_repo(Path(workdir) / "bench.db", args.rows)
        with repo:
            changed = repo.changed_keys("examples", "customer_id", before, after).keys
            assert changed == set(CHANGED_CUSTOMERS)
            validate_commit(repo, "examples", after, suite, customers=changed)  # warm GX's imports and caches
            started = time.perf_counter()
            partial = validate_commit(repo, "examples", after, suite, customers=changed)
            changed_only = time.perf_counter() - started
            started = time.perf_counter()
            full = validate_commit(repo, "examples", after, suite)
            whole = time.perf_counter() - started
    assert partial.success, partial.summary()
    assert full.success, full.summary()
    rate = full.rows_validated / whole
    print(f"  changed customers only: {changed_only:7.2f} s  ({partial.rows_validated:,} rows)")
    print(f"  whole table:            {whole:7.2f} s  ({full.rows_validated:,} rows, {rate:,.0f} rows/s)")
    print(f"  ratio changed-only/full = 1/{whole / changed_only:.1f}  (target <= 1/10)")


if __name__ == "__main__":
    main()
