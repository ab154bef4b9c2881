"""DoltRepository against real doltlite files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from retrain.demo.seed import SeededRepository
from retrain.dolt import (
    DoltConnectionError,
    DoltQueryError,
    DoltRepository,
    NotADoltDatabaseError,
    UnknownBranchError,
    UnknownColumnError,
    UnknownCommitError,
    UnknownTableError,
)
from retrain.dolt.dialects import Statement
from retrain.identifiers import InvalidIdentifierError


def test_head_and_log_follow_commits(repo: DoltRepository, seeded: SeededRepository) -> None:
    assert repo.head("main") == seeded.commits[-1]
    log = repo.log()
    assert [c.commit_hash for c in log[:2]] == seeded.commits[::-1]
    assert log[0].message.startswith("update:")
    assert [c.commit_hash for c in repo.log(since=seeded.commits[0])] == [seeded.commits[1]]


def test_changed_keys_names_exactly_the_changed_customers(
    repo: DoltRepository, seeded: SeededRepository
) -> None:
    changed = repo.changed_keys("examples", "customer_id", *seeded.commits)
    assert not changed.all_changed
    assert changed.keys == frozenset(seeded.changed_in_last_commit)
    assert changed.to_json() == {"keys": sorted(seeded.changed_in_last_commit)}


def test_changed_keys_covers_inserts_updates_and_deletes(repo: DoltRepository) -> None:
    before = repo.head()
    repo.execute(Statement("DELETE FROM examples WHERE customer_id = 'acme_air' AND example_id = 1"))
    repo.execute(Statement("UPDATE examples SET text = 'edited' WHERE customer_id = 'initech_saas'"))
    repo.insert_rows(
        "examples", ["example_id", "customer_id", "text", "label"], [(9999, "new_co", "hi", "urgent")]
    )
    after = repo.commit("mixed change")
    assert repo.changed_keys("examples", "customer_id", before, after).keys == {
        "acme_air",
        "initech_saas",
        "new_co",
    }
    assert repo.changed_keys("examples", "customer_id", after, after).keys == frozenset()


def test_changed_keys_reports_both_owners_of_a_moved_row(repo: DoltRepository) -> None:
    """A row moved between customers changes the customer that lost it as much as the one that
    gained it: both must retrain (the old owner no longer has that example)."""
    before = repo.head()
    repo.execute(Statement("UPDATE examples SET customer_id = 'globex_bank' WHERE example_id = 1"))
    moved = repo.commit("move one acme_air row to globex_bank")
    assert repo.changed_keys("examples", "customer_id", before, moved).keys == {"acme_air", "globex_bank"}
    repo.execute(Statement("UPDATE examples SET customer_id = 'brand_new' WHERE example_id = 41"))
    to_new = repo.commit("move one initech_saas row to a new customer")
    assert repo.changed_keys("examples", "customer_id", moved, to_new).keys == {"initech_saas", "brand_new"}
    # Over the whole range: moves, plus a delete-only and an insert-only customer.
    repo.execute(Statement("DELETE FROM examples WHERE customer_id = 'umbrella_health' AND example_id = 61"))
    repo.insert_rows("examples", ["example_id", "customer_id", "text", "label"], [(9998, "solo", "hi", "x")])
    after = repo.commit("delete and insert")
    assert repo.changed_keys("examples", "customer_id", before, after).keys == {
        "acme_air",
        "globex_bank",
        "initech_saas",
        "brand_new",
        "umbrella_health",
        "solo",
    }
    # Moved back: over the whole range that row is unchanged, so neither owner is reported for it.
    repo.execute(Statement("UPDATE examples SET customer_id = 'acme_air' WHERE example_id = 1"))
    back = repo.commit("move it back")
    assert repo.changed_keys("examples", "customer_id", after, back).keys == {"acme_air", "globex_bank"}
    assert repo.changed_keys("examples", "customer_id", before, back).keys == {
        "initech_saas",
        "brand_new",
        "umbrella_health",
        "solo",
    }


def test_read_table_as_of_commit_and_filtered(repo: DoltRepository, seeded: SeededRepository) -> None:
    first, second = seeded.commits
    old = repo.read_table("examples", first)
    new = repo.read_table("examples", second)
    assert len(old) == 80
    assert len(new) > len(old)
    assert list(new.columns) == ["example_id", "customer_id", "text", "label"]
    one = repo.read_table(
        "examples", "main", where={"customer_id": "acme_air"}, columns=["example_id", "label"]
    )
    assert list(one.columns) == ["example_id", "label"]
    assert len(one) == 20
    two = repo.read_table("examples", first, where={"customer_id": ["acme_air", "globex_bank"]})
    assert set(two["customer_id"]) == {"acme_air", "globex_bank"}
    assert repo.read_table("examples", first, where={"customer_id": []}).empty


def test_where_values_are_bound_not_spliced(repo: DoltRepository) -> None:
    hostile = "x' OR '1'='1"
    assert repo.read_table("examples", "main", where={"customer_id": hostile}).empty


def test_schema_change_reports_everything_changed(repo: DoltRepository) -> None:
    before = repo.head()
    repo.execute(Statement("ALTER TABLE examples ADD COLUMN source TEXT"))
    after = repo.commit("add a column")
    changed = repo.changed_keys("examples", "customer_id", before, after)
    assert changed.all_changed
    assert "schema of table examples changed" in str(changed.reason)
    assert changed.to_json()["all"] is True


def test_table_added_or_dropped_reports_everything_changed(repo: DoltRepository) -> None:
    before = repo.head()
    repo.execute(Statement("CREATE TABLE extra_examples (id INTEGER PRIMARY KEY, customer_id TEXT)"))
    added = repo.commit("add a table")
    assert "was added" in str(repo.changed_keys("extra_examples", "customer_id", before, added).reason)
    repo.execute(Statement("DROP TABLE extra_examples"))
    dropped = repo.commit("drop it")
    assert "was dropped" in str(repo.changed_keys("extra_examples", "customer_id", added, dropped).reason)


def test_unknown_things_are_named(repo: DoltRepository) -> None:
    head = repo.head()
    with pytest.raises(UnknownBranchError, match=r"'nope'.*branches: main"):
        repo.head("nope")
    with pytest.raises(UnknownTableError, match="'no_table' does not exist at commit"):
        repo.read_table("no_table", head)
    with pytest.raises(UnknownTableError, match="'no_table'"):
        repo.changed_keys("no_table", "customer_id", head, head)
    with pytest.raises(UnknownColumnError, match=r"'tenant'.*columns: example_id, customer_id"):
        repo.read_table("examples", head, where={"tenant": "x"})
    with pytest.raises(UnknownColumnError, match="'tenant'"):
        repo.changed_keys("examples", "tenant", head, head)


@pytest.mark.parametrize(
    ("commit", "message"),
    [
        ("0" * 40, "not found in the repository"),
        ("abc123", "no such branch"),
        ("HEAD~1", "neither a commit hash"),
        ("x' OR 1=1 --", "neither a commit hash"),
    ],
)
def test_bad_commits_are_rejected_with_the_hash(repo: DoltRepository, commit: str, message: str) -> None:
    with pytest.raises(UnknownCommitError, match=message) as raised:
        repo.read_table("examples", commit)
    assert commit in str(raised.value)


@pytest.mark.parametrize("name", ["examples; DROP TABLE examples", "1table", "ex-amples", ""])
def test_identifiers_are_validated(repo: DoltRepository, name: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid table name"):
        repo.read_table(name, "main")


def test_commit_on_clean_tree_is_a_clear_error(repo: DoltRepository) -> None:
    with pytest.raises(DoltQueryError, match="nothing to commit"):
        repo.commit("no changes")
    assert repo.commit("no changes", allow_empty=True) == repo.head()


def test_stock_sqlite_file_is_refused_without_crashing(tmp_path: Path) -> None:
    stock = tmp_path / "airflow.db"
    with sqlite3.connect(stock) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(NotADoltDatabaseError, match="plain SQLite database"):
        DoltRepository.open(str(stock))


def test_missing_file_directory_and_garbage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DoltConnectionError, match="does not exist"):
        DoltRepository.open(str(tmp_path / "missing.db"))
    with pytest.raises(NotADoltDatabaseError, match="is a directory"):
        DoltRepository.open(str(tmp_path))
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello")
    with pytest.raises(NotADoltDatabaseError, match="not a doltlite"):
        DoltRepository.open(f"doltlite://{garbage}")
    with pytest.raises(DoltConnectionError, match="unsupported Dolt repository scheme 'postgres'"):
        DoltRepository.open("postgres://host/db")


def test_this_process_keeps_stock_sqlite(repo: DoltRepository, tmp_path: Path) -> None:
    """Airflow's and MLflow's SQLite files must stay stock SQLite while Dolt is in use."""
    repo.head()
    created = tmp_path / "mlflow.db"
    with sqlite3.connect(created) as connection:
        connection.execute("CREATE TABLE runs (id TEXT)")
    assert created.read_bytes()[:16] == b"SQLite format 3\x00"
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE dag (id TEXT)")
    assert (tmp_path / "airflow.db").read_bytes()[:16] == b"SQLite format 3\x00"


def test_reader_sees_commits_of_another_process(repo: DoltRepository, seeded: SeededRepository) -> None:
    """A polling reader keeps its connection open while another process writes and commits."""
    before = repo.head()
    writer = textwrap.dedent(
        f"""
        from retrain.dolt import DoltRepository
        from retrain.dolt.dialects import Statement
        with DoltRepository.open({str(seeded.path)!r}) as repo:
            repo.execute(Statement("UPDATE examples SET text = 'edited' WHERE customer_id = 'initech_saas'"))
            repo.execute(Statement("UPDATE examples SET text = 'edited' WHERE customer_id = 'acme_air'"))
            print(repo.commit("from another process"))
        """
    )
    new_head = subprocess.run(
        [sys.executable, "-c", writer], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert repo.head() == new_head != before
    assert repo.changed_keys("examples", "customer_id", before, new_head).keys == {"acme_air", "initech_saas"}


def test_dead_engine_is_reported_not_hung(seeded: SeededRepository) -> None:
    repo = DoltRepository.open(str(seeded.path))
    repo.connection._process.kill()  # type: ignore[attr-defined]
    with pytest.raises(DoltConnectionError, match=r"doltlite engine for .* exited"):
        repo.head()
    repo.close()


def test_iter_table_pages_through_one_commit_without_gaps_or_repeats(repo: DoltRepository) -> None:
    head = repo.head()
    whole = repo.read_table("examples", head).sort_values("example_id").reset_index(drop=True)
    batches = list(repo.iter_table("examples", head, key_column="example_id", batch_size=7))
    assert max(len(b) for b in batches) == 7
    paged = pd.concat(batches).reset_index(drop=True)
    assert paged.equals(whole)
    one = list(repo.iter_table("examples", head, key_column="example_id", where={"customer_id": "acme_air"}))
    assert len(one) == 1
    assert set(one[0]["customer_id"]) == {"acme_air"}
    with pytest.raises(UnknownColumnError, match="'id'"):
        list(repo.iter_table("examples", head, key_column="id"))
