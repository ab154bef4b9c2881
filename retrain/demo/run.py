"""``make demo``: the suite's main job on embedded defaults, narrated step by step.

Today it covers the Dolt and validation stages: seed the training repo and the Hive warehouse,
show which customers a commit changed, sense new commits against a persisted watermark and
validate the changed customers' rows with Great Expectations, the way ``retrain_on_commit`` does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from retrain.demo.seed import EXAMPLES_TABLE, seed_training_repo, seed_warehouse
from retrain.dolt import DoltRepository
from retrain.dolt.dialects import Statement
from retrain.dolt.watermark import CommitWatermark
from retrain.validation.gate import validate_commit
from retrain.validation.suite import load_suite

CONSUMER = "demo"
SUITE = Path(__file__).resolve().parents[2] / "expectations" / "examples.json"


def step(title: str) -> None:
    print(f"\n== {title}")


def run(workdir: Path, customers: int, examples: int) -> None:
    started = time.perf_counter()
    repo_path, warehouse, docs = workdir / "training.db", workdir / "warehouse", workdir / "data_docs"
    suite = load_suite(SUITE)

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

        step("Validate the whole table at head with Great Expectations")
        report = validate_commit(repo, EXAMPLES_TABLE, "main", suite, docs_dir=docs)
        print(report.summary())

        step(f"Sense against watermark '{CONSUMER}' (as if the first commit was already trained)")
        watermark = CommitWatermark(repo, CONSUMER)
        watermark.advance(seeded.commits[0])
        found = watermark.sense(EXAMPLES_TABLE, "customer_id")
        assert found is not None
        retrain = sorted(found.changed.keys)
        print(f"new head {found.commit[:12]}: {found.commit_count} commit(s), retrain {retrain}")
        print(f"sensing again before the run finishes: {watermark.sense(EXAMPLES_TABLE, 'customer_id')}")
        watermark.advance(found.commit)
        print(f"run finished: watermark {watermark.done_branch} -> {found.commit[:12]}")

        step("Analysts edit two customers' sheets; one types a label the suite does not allow")
        customer, careless = seeded.customers[-1], seeded.customers[0]
        repo.execute(
            Statement("UPDATE examples SET text = text || ' (reviewed)' WHERE customer_id = ?", (customer,))
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
        report = validate_commit(
            repo, EXAMPLES_TABLE, edit, suite, customers=found.changed.keys, docs_dir=docs
        )
        print(report.summary())
        print(f"quarantined (not retrained): {report.quarantined}")
        print(f"retrain only: {report.healthy_customers}")
        watermark.advance(edit)

        step("Summary")
        rows = [
            ("customers", str(len(seeded.customers))),
            (
                "training rows at head",
                str(len(repo.read_table(EXAMPLES_TABLE, "main", columns=["example_id"]))),
            ),
            ("commits", str(len(repo.log()))),
            ("watermark", f"{watermark.done_branch} = {str(watermark.done())[:12]}"),
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
    run(args.workdir, args.customers, args.examples)


if __name__ == "__main__":
    main()
