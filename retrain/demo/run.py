"""``make demo``: the suite's main job on embedded defaults, narrated step by step.

Seed the training repo and the Hive warehouse; on the first run train every customer's adapter
(validate -> train on local processes -> promotion gate -> release); then an analyst commit
changes two customers, one of them badly: only the healthy changed customer retrains and a new
release is cut, its manifest diff printed, the way ``retrain_on_commit`` does it. Finally the
day's Hive partition is scored with the new release.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import time
from pathlib import Path

from retrain.demo.seed import EXAMPLES_TABLE, seed_shifted_day, seed_training_repo, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark
from retrain.drift.job import drift_partition
from retrain.fanout.local import train_customers
from retrain.outputs import DEMO_HOME, OutputPathError, claim
from retrain.quiet import quiet_libraries
from retrain.release.build import promote_all
from retrain.release.manifest import diff
from retrain.release.store import ReleaseStore
from retrain.scoring.job import score_partition
from retrain.spark import SparkSettings, spark_session
from retrain.validation.gate import validate_commit
from retrain.validation.suite import PACKAGED_SUITE, SuiteFile, load_suite

CONSUMER = "demo"


def step(title: str) -> None:
    print(f"\n== {title}")


def cycle(
    repo: DoltRepository, commit: str, customers: list[str] | None, suite: SuiteFile, docs: Path, uri: str
) -> str:
    """Validate -> train the healthy customers -> promotion gate -> release; returns the release id."""
    report = validate_commit(repo, EXAMPLES_TABLE, commit, suite, customers=customers, docs_dir=docs)
    print(report.summary())
    if report.quarantined:
        print(f"quarantined (not retrained): {report.quarantined}")
    print(f"retrain only: {report.healthy_customers}")
    step(f"Train {len(report.healthy_customers)} adapter(s) at {commit[:12]} on local worker processes")
    trained = train_customers(
        repo.location,
        table=EXAMPLES_TABLE,
        commit=commit,
        customers=report.healthy_customers,
        parallelism=2,
        mlflow_uri=uri,
    )
    print(trained.table())
    step("Promotion gate and release")
    built = promote_all(ReleaseStore.open(uri), {a.customer: a.version for a in trained.succeeded})
    for line in built.decision_lines():
        print(line)
    event = built.event
    print(
        f"release {event.release_id} ({event.adapter_count} adapters, {event.changes})"
        # first versions below the quality floor
        + "".join(f"\n  left out {c}: {reason}" for c, reason in built.failures.items())
    )
    return event.release_id


def run(workdir: Path, customers: int, examples: int) -> None:
    started = time.perf_counter()
    repo_path, warehouse, docs = workdir / "training.db", workdir / "warehouse", workdir / "data_docs"
    suite = load_suite(PACKAGED_SUITE)
    claim(workdir, DEMO_HOME)  # what follows replaces files in it: only ever in the demo's own folder
    shutil.rmtree(workdir / "mlflow", ignore_errors=True)  # a fresh store each demo, like the fresh repo
    (workdir / "mlflow").mkdir(parents=True)
    uri = f"sqlite:///{(workdir / 'mlflow' / 'mlflow.db').resolve()}"

    step(f"Seed a doltlite training repo ({customers} customers x {examples} examples) and a Hive warehouse")
    seeded = seed_training_repo(repo_path, customers=customers, examples=examples, force=True)
    hive = seed_warehouse(warehouse, customers=customers)
    print(f"repo      {seeded.path}  ({seeded.rows} rows)")
    print(f"warehouse {hive.warehouse}  requests {hive.request_days}, labelled_history {hive.history_days}")

    with DoltRepository.open(str(repo_path)) as repo:
        step("Commit log")
        for commit in repo.log():
            print(f"{commit.commit_hash[:12]}  {commit.message}")

        step("Customers whose rows changed between the two seed commits")
        changed = repo.changed_keys(EXAMPLES_TABLE, "customer_id", *seeded.commits)
        print(changed.to_json())

        watermark = CommitWatermark(repo, CONSUMER)
        step(f"First run: no watermark '{CONSUMER}' yet, so every customer is in range")
        found = watermark.sense(EXAMPLES_TABLE, "customer_id")
        assert found is not None
        print(f"head {found.commit[:12]}: {found.commit_count} commit(s); {found.changed.reason}")
        print(f"sensing again before the run finishes: {watermark.sense(EXAMPLES_TABLE, 'customer_id')}")
        first = cycle(repo, found.commit, None, suite, docs, uri)
        watermark.advance(found.commit)
        print(f"run finished: watermark {watermark.done_branch} -> {found.commit[:12]}")

        step("Analysts edit two customers' sheets; one types a label the suite does not allow")
        customer, careless = seeded.customers[-1], seeded.customers[0]
        # A tidy-up that keeps the texts' length and words: the requests scored later still look like
        # the training rows (appending a word to every row would be real training/serving skew,
        # and drift monitoring would flag its length).
        repo.execute(
            Statement(
                "UPDATE examples SET text = replace(text, 'hi,', 'hello,') WHERE customer_id = ?", (customer,)
            )
        )
        repo.execute(
            Statement(
                "UPDATE examples SET label = 'Urgent!' WHERE example_id = "
                "(SELECT min(example_id) FROM examples WHERE customer_id = ?)",
                (careless,),
            )
        )
        edit = repo.commit(f"review {customer}'s and {careless}'s examples")
        found = watermark.sense(EXAMPLES_TABLE, "customer_id")
        assert found is not None
        assert found.commit == edit
        print(f"new head {edit[:12]}: changed {sorted(found.changed.keys)}")
        second = cycle(repo, edit, sorted(found.changed.keys), suite, docs, uri)
        watermark.advance(edit)

        step(f"Release diff {first[:12]} -> {second[:12]}")
        store = ReleaseStore.open(uri)
        print("\n".join(diff(store.manifest(first), store.manifest(second)).lines()))

        step(f"Score Hive partition requests ds={hive.request_days[0]} with release {second[:12]}")
        scored = score_partition(
            spark_session(SparkSettings(warehouse=str(warehouse))),
            store,
            release_id=second,
            input_table="requests",
            ds=hive.request_days[0],
            output_table="scores",
            workdir=workdir / "scoring",
        )
        print(scored.summary())

        monitored = (dt.date.fromisoformat(hive.request_days[-1]) + dt.timedelta(days=1)).isoformat()
        drifted = seeded.customers[1]
        step(f"A day later, {drifted}'s requests drift (new product names): score ds={monitored}, then drift")
        spark = spark_session(SparkSettings(warehouse=str(warehouse)))
        seed_shifted_day(warehouse, monitored, customers=customers, shifted_customer=drifted)
        day = score_partition(
            spark,
            store,
            release_id=second,
            input_table="requests",
            ds=monitored,
            output_table="scores",
            workdir=workdir / "scoring",
        )
        print(day.summary())
        drift = drift_partition(spark, store, release_id=second, ds=monitored, workdir=workdir / "scoring")
        print(drift.summary())

        step("Summary")
        rows = [
            ("customers", str(len(seeded.customers))),
            (
                "training rows at head",
                str(len(repo.read_table(EXAMPLES_TABLE, "main", columns=["example_id"]))),
            ),
            ("commits", str(len(repo.log()))),
            ("watermark", f"{watermark.done_branch} = {str(watermark.done())[:12]}"),
            ("releases", f"{first} -> {second} (serving image tags)"),
            ("scores", f"Hive table scores ds={scored.ds} release={second[:12]}: {scored.rows_scored} rows"),
            (
                "drift",
                f"ds={drift.ds}: flagged {', '.join(drift.drifting) or 'none'}; "
                f"{drift.customers - len(drift.drifting)} customers clean (Hive table drift)",
            ),
            ("mlflow", uri),
            ("data docs", str(docs / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html")),
            ("elapsed", f"{time.perf_counter() - started:.1f}s"),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"))
    parser.add_argument("--customers", type=int, default=8)
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet_libraries()
    for noisy in ("retrain.adapters", "retrain.scoring", "retrain.drift"):  # their summaries are printed
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run(args.workdir, args.customers, args.examples)
    except OutputPathError as error:
        raise SystemExit(f"make demo: {error}") from None


if __name__ == "__main__":
    main()
