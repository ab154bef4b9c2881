"""The SQL each dialect builds. No Dolt sql-server can run here, so the server dialect is checked as text."""

from __future__ import annotations

import pytest

from retrain.dolt.dialects import DoltliteDialect, DoltServerDialect, Statement
from retrain.identifiers import InvalidIdentifierError, branch_name

server = DoltServerDialect()
lite = DoltliteDialect()


def test_server_reads_as_of_with_bound_revision_and_values() -> None:
    statement = server.select_at("examples", "main", ["customer_id", "text"], {"customer_id": ["a", "b"]})
    assert statement == Statement(
        "SELECT `customer_id`, `text` FROM `examples` AS OF %s WHERE `customer_id` IN (%s, %s)",
        ("main", "a", "b"),
    )


def test_server_diffs_any_two_commits_with_the_table_function() -> None:
    """Both sides of every changed row: a row moved between customers changes both customers."""
    statement = server.changed_keys("examples", "customer_id", "a" * 32, "b" * 32)
    assert statement.sql == "SELECT DISTINCT from_customer_id, to_customer_id FROM DOLT_DIFF(%s, %s, %s)"
    assert statement.params == ("a" * 32, "b" * 32, "examples")


def test_server_version_control_calls() -> None:
    assert server.commit("seed", allow_empty=False) == Statement("CALL DOLT_COMMIT('-Am', %s)", ("seed",))
    assert server.commit("x", allow_empty=True).sql == "CALL DOLT_COMMIT('--skip-empty', '-Am', %s)"
    assert server.force_branch("retrain/dag/done", "c" * 32) == Statement(
        "CALL DOLT_BRANCH('-f', %s, %s)", ("retrain/dag/done", "c" * 32)
    )
    assert server.merge_base("a", "b") == Statement("SELECT DOLT_MERGE_BASE(%s, %s)", ("a", "b"))
    assert server.log("a..b") == Statement(
        "SELECT commit_hash, committer, email, date, message FROM dolt_log(%s)", ("a..b",)
    )
    assert server.diff_summary("a", "b", "examples").params == ("a", "b", "examples")


def test_server_insert_batches_placeholders() -> None:
    statement = server.insert("examples", ["example_id", "label"], [(1, "x"), (2, "y")])
    assert statement.sql == "INSERT INTO `examples` (`example_id`, `label`) VALUES (%s, %s), (%s, %s)"
    assert statement.params == (1, "x", 2, "y")


def test_doltlite_uses_table_functions() -> None:
    assert lite.select_at("examples", "h", None, None, limit=0) == Statement(
        "SELECT * FROM dolt_at_examples(?) LIMIT 0", ("h",)
    )
    assert lite.changed_keys("examples", "customer_id", "a", "b").sql == (
        "SELECT DISTINCT from_customer_id, to_customer_id FROM dolt_diff_examples(?, ?)"
    )


def test_commit_hash_formats_differ() -> None:
    assert lite.is_commit_hash("0123456789abcdef0123456789abcdef01234567")
    assert not lite.is_commit_hash("t5d5inj4bpc1fltrdm9uoscjdsgebaih")
    assert server.is_commit_hash("t5d5inj4bpc1fltrdm9uoscjdsgebaih")
    assert not server.is_commit_hash("0123456789abcdef0123456789abcdef01234567")


@pytest.mark.parametrize("dialect", [lite, server])
@pytest.mark.parametrize("bad", ["t; DROP TABLE x", "a b", "`x`", "x)--", "é"])
def test_hostile_identifiers_never_reach_sql(dialect: DoltliteDialect | DoltServerDialect, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        dialect.select_at(bad, "main", None, None)
    with pytest.raises(InvalidIdentifierError):
        dialect.select_at("examples", "main", [bad], None)
    with pytest.raises(InvalidIdentifierError):
        dialect.changed_keys("examples", bad, "a", "b")


@pytest.mark.parametrize("bad", ["a..b", "-f", "x//y", "x/", "x.lock", "a b", "x'"])
def test_branch_names_are_validated(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid branch name"):
        branch_name(bad)
    assert branch_name("retrain/retrain_on_commit/done") == "retrain/retrain_on_commit/done"


def test_keyset_pagination_sql() -> None:
    where = {"customer_id": "a"}
    statement = server.select_at("examples", "main", None, where, limit=10, order_by="example_id", after=41)
    assert statement == Statement(
        "SELECT * FROM `examples` AS OF %s WHERE `customer_id` IN (%s) AND `example_id` > %s "
        "ORDER BY `example_id` LIMIT 10",
        ("main", "a", 41),
    )


def test_server_named_lock_statements_keep_names_within_mysqls_limit() -> None:
    """The watermark's compare-and-set on sql-server holds a server-wide named lock."""
    assert server.get_lock("retrain/dag/done", 13) == Statement(
        "SELECT GET_LOCK(%s, %s)", ("retrain/dag/done", 13)
    )
    assert server.release_lock("retrain/dag/done") == Statement(
        "SELECT RELEASE_LOCK(%s)", ("retrain/dag/done",)
    )
    long_a, long_b = "retrain/" + "a" * 70 + "/done", "retrain/" + "a" * 71 + "/done"
    assert len(server.lock_name(long_a)) == 64
    assert server.lock_name(long_a) != server.lock_name(long_b)  # distinct names stay distinct
