"""Seed the demo: a doltlite training repository and a local Hive warehouse to score."""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from retrain.demo.corpus import CustomerProfile, customer_profiles, generate_examples, shifted
from retrain.dolt.dialects import Statement
from retrain.dolt.repository import DoltRepository
from retrain.errors import InputError

log = logging.getLogger(__name__)

EXAMPLES_TABLE = "examples"
EXAMPLES_COLUMNS = ("example_id", "customer_id", "text", "label")
EXAMPLES_DDL = (
    "CREATE TABLE examples (example_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, "
    "text TEXT NOT NULL, label TEXT NOT NULL)"
)


@dataclass(frozen=True)
class SeededRepository:
    path: Path
    customers: list[str]
    commits: list[str]  # oldest first
    changed_in_last_commit: list[str]
    rows: int


def seed_training_repo(
    path: str | Path,
    *,
    customers: int = 8,
    examples: int = 200,
    seed: int = 7,
    force: bool = False,
) -> SeededRepository:
    """Create ``path`` with an ``examples`` table committed twice.

    The first commit holds ``examples`` rows per customer; the second adds new rows for two
    customers and relabels a few of theirs, so the diff between the two names exactly those two.
    """
    path = Path(path)
    if path.exists():
        if not force:
            raise InputError(f"{path} already exists; pass force=True (--force) to recreate it")
        path.unlink()
    profiles = customer_profiles(customers, seed)
    with DoltRepository.open(str(path), create=True) as repo:
        repo.execute(Statement(EXAMPLES_DDL))
        rows = _example_rows(profiles, examples, seed, first_id=1)
        repo.insert_rows(EXAMPLES_TABLE, EXAMPLES_COLUMNS, rows)
        first = repo.commit(f"seed: {len(rows)} examples for {customers} customers")
        # The second and fourth customer (the only one when there is one) change in the second commit.
        changed = [p.customer_id for p in profiles[1 : min(customers, 4) : 2]] or [profiles[0].customer_id]
        update = _example_rows(
            [p for p in profiles if p.customer_id in changed], max(1, examples // 10), seed + 1, len(rows) + 1
        )
        repo.insert_rows(EXAMPLES_TABLE, EXAMPLES_COLUMNS, update)
        relabel_ids = [r[0] for r in rows if r[1] in changed][:3]
        placeholders = ", ".join([repo.dialect.placeholder] * len(relabel_ids))
        flip = "UPDATE examples SET label = CASE label WHEN 'urgent' THEN 'routine' ELSE 'urgent' END"
        repo.execute(Statement(f"{flip} WHERE example_id IN ({placeholders})", tuple(relabel_ids)))
        second = repo.commit(f"update: new and relabelled examples for {', '.join(changed)}")
    log.info("seeded %s: %d rows, commits %s, %s", path, len(rows) + len(update), first, second)
    return SeededRepository(
        path=path,
        customers=[p.customer_id for p in profiles],
        commits=[first, second],
        changed_in_last_commit=changed,
        rows=len(rows) + len(update),
    )


def _example_rows(
    profiles: list[CustomerProfile], per_customer: int, seed: int, first_id: int
) -> list[tuple[int, str, str, str]]:
    rows: list[tuple[int, str, str, str]] = []
    for profile in profiles:
        for example in generate_examples(profile, per_customer, seed):
            rows.append((first_id + len(rows), example.customer_id, example.text, example.label))
    return rows


@dataclass(frozen=True)
class SeededWarehouse:
    warehouse: Path
    request_days: list[str]
    history_days: list[str]
    rows_per_partition: int


def seed_warehouse(
    warehouse: str | Path,
    *,
    customers: int = 8,
    start: dt.date = dt.date(2026, 11, 1),
    days: int = 3,
    rows_per_customer: int = 20,
    seed: int = 7,
) -> SeededWarehouse:
    """Hive tables ``requests`` (unlabelled, one partition per day from ``start``) and
    ``labelled_history`` (labelled, the ``days`` days before ``start``, for retro-tests)."""
    from retrain.spark import SparkSettings, spark_session

    profiles = customer_profiles(customers, seed)
    spark = spark_session(SparkSettings(warehouse=str(warehouse)))
    spark.sql(
        "CREATE TABLE IF NOT EXISTS requests (request_id STRING, customer_id STRING, text STRING) "
        "PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    spark.sql(
        "CREATE TABLE IF NOT EXISTS labelled_history (request_id STRING, customer_id STRING, text STRING, "
        "label STRING) PARTITIONED BY (ds STRING) STORED AS PARQUET"
    )
    request_days = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    history_days = [(start - dt.timedelta(days=days - i)).isoformat() for i in range(days)]
    for table, day_list, labelled in (
        ("requests", request_days, False),
        ("labelled_history", history_days, True),
    ):
        rows = []
        for ds in day_list:
            rng = random.Random(f"{seed}:{table}:{ds}")
            for profile in profiles:
                for n in range(rows_per_customer):
                    example = profile.sample(rng)
                    row = [f"{ds}-{profile.customer_id}-{n:05d}", profile.customer_id, example.text]
                    rows.append((*row, example.label, ds) if labelled else (*row, ds))
        columns = ["request_id", "customer_id", "text", *(["label"] if labelled else []), "ds"]
        # Dynamic partition overwrite: re-seeding replaces exactly these days, nothing else.
        spark.createDataFrame(rows, columns).write.insertInto(table, overwrite=True)
    log.info("seeded warehouse %s: requests %s, labelled_history %s", warehouse, request_days, history_days)
    return SeededWarehouse(Path(warehouse), request_days, history_days, rows_per_customer * customers)


def seed_shifted_day(
    warehouse: str | Path,
    ds: str,
    *,
    customers: int = 8,
    shifted_customer: str,
    kind: str = "vocabulary",
    rows_per_customer: int = 150,
    seed: int = 7,
) -> int:
    """A day of ``requests`` in which ``shifted_customer``'s requests have drifted (see
    :func:`~retrain.demo.corpus.shifted`) and every other customer's are as usual; returns the rows."""
    from retrain.spark import SparkSettings, spark_session

    profiles = customer_profiles(customers, seed)
    if shifted_customer not in {p.customer_id for p in profiles}:
        raise InputError(f"no demo customer {shifted_customer!r} to shift")
    live = [shifted(p, kind) if p.customer_id == shifted_customer else p for p in profiles]
    rng = random.Random(f"{seed}:requests:{ds}")
    rows = [
        (f"{ds}-{profile.customer_id}-{n:05d}", profile.customer_id, profile.sample(rng).text, ds)
        for profile in live
        for n in range(rows_per_customer)
    ]
    spark = spark_session(SparkSettings(warehouse=str(warehouse)))
    spark.createDataFrame(rows, ["request_id", "customer_id", "text", "ds"]).write.insertInto(
        "requests", overwrite=True
    )
    log.info("seeded requests ds=%s: %s's requests shifted (%s)", ds, shifted_customer, kind)
    return len(rows)
