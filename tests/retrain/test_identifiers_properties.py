"""Property-based tests of every name that comes from people or the network.

Valid names are accepted unchanged; everything else is refused with an error naming the rule, and a
refused name never reaches SQL: the repository answers with the suite's own error, not the
backend's (a backend error would mean the text was spliced into a statement).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retrain.demo.seed import seed_training_repo
from retrain.dolt import DoltRepository
from retrain.errors import RetrainError
from retrain.identifiers import (
    CUSTOMER_ID_PATTERN,
    CUSTOMER_ID_RULE,
    RELEASE_ID_PATTERN,
    RELEASE_ID_RULE,
    SQL_IDENTIFIER_PATTERN,
    branch_name,
    customer_id,
    release_id,
    sql_identifier,
)

# Text that attacks each context: SQL quoting, MLflow filter quoting, paths, HTML, control bytes.
HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "../x",
            "a/../../etc",
            "a'b",
            'a"b',
            "a`b",
            "a;drop table x",
            "a b",
            "<script>",
            "a\nb",
            "a\x00b",
            "é",
            "x" * 129,
            "main' OR '1'='1",
            "a..b/..",
            "a//b",
        ]
    ),
)
SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RELEASE_ID = re.compile(r"[0-9a-f]{32}")


def refusal(check: Callable[[str], object], value: str) -> str | None:
    """The message of the suite's error refusing ``value``, or None when ``check`` accepts it."""
    try:
        check(value)
    except RetrainError as error:
        return str(error)
    return None


def outcome(check: Callable[[str], str], value: str) -> bool:
    """True when ``check`` accepts ``value`` unchanged; False when it refuses it naming the value."""
    message = refusal(check, value)
    if message is not None:
        assert repr(value) in message
        return False
    assert check(value) == value
    return True


@given(st.from_regex(SQL_IDENTIFIER, fullmatch=True))
def test_plain_sql_identifiers_are_accepted(name: str) -> None:
    assert outcome(sql_identifier, name)


@given(HOSTILE)
@example("x; DROP TABLE examples")
def test_sql_identifiers_are_exactly_the_safe_alphabet(name: str) -> None:
    assert outcome(sql_identifier, name) == bool(SQL_IDENTIFIER.fullmatch(name))


@given(st.from_regex(CUSTOMER_ID, fullmatch=True))
def test_customer_ids_by_the_rule_are_accepted(name: str) -> None:
    assert outcome(customer_id, name)


@given(HOSTILE)
@example("acme_air' OR tags.x != '")
@example("../../etc")
def test_customer_ids_never_leave_their_directory_or_quote(name: str) -> None:
    """An accepted id is a single path component: ``adapters/<id>`` stays inside ``adapters/``."""
    message = refusal(customer_id, name)
    if message is not None:
        assert CUSTOMER_ID_RULE in message
        return
    assert not set(name) & set("'\"`/\\ \n\t<>;")
    assert PurePosixPath(name).name == name
    assert name not in (".", "..")
    root = Path("/srv/release/adapters")
    assert (root / name).resolve().parent == root


@given(st.one_of(HOSTILE, st.from_regex(CUSTOMER_ID, fullmatch=True), st.from_regex(SQL_IDENTIFIER)))
@example("-acme")
@example("acme\n")
def test_json_schema_patterns_accept_what_the_checks_accept(value: str) -> None:
    """DAG params validate with JSON Schema (as Airflow's Params do): the same rule as the tasks'."""
    for pattern, check in (
        (CUSTOMER_ID_PATTERN, customer_id),
        (SQL_IDENTIFIER_PATTERN, sql_identifier),
        (RELEASE_ID_PATTERN, release_id),
    ):
        by_schema = jsonschema.Draft7Validator({"type": "string", "pattern": pattern}).is_valid(value)
        assert by_schema == (refusal(check, value) is None), (pattern, value)


@given(st.from_regex(RELEASE_ID, fullmatch=True))
def test_release_ids_are_accepted(value: str) -> None:
    assert outcome(release_id, value)


@given(st.one_of(HOSTILE, st.from_regex(r"[0-9a-fA-F]{31,33}", fullmatch=True)))
@example("0" * 32 + "' and tags.`retrain.event` != 'pin")
@example("A" * 32)
def test_release_ids_are_exactly_32_lowercase_hex(value: str) -> None:
    message = refusal(release_id, value)
    assert (message is None) == bool(RELEASE_ID.fullmatch(value))
    if message is not None:
        assert RELEASE_ID_RULE in message


@given(HOSTILE)
def test_branch_names_have_no_traversal_or_quotes(name: str) -> None:
    if outcome(branch_name, name):
        assert ".." not in name
        assert "//" not in name
        assert not set(name) & set("'\"`\\ \n\t;")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoltRepository]:
    seeded = seed_training_repo(tmp_path_factory.mktemp("props") / "training.db", customers=2, examples=4)
    with DoltRepository.open(str(seeded.path)) as repo:
        yield repo


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(HOSTILE)
@example("main' OR '1'='1")
@example("HEAD~1")
def test_revisions_resolve_or_are_refused_before_sql(repository: DoltRepository, revision: str) -> None:
    """Commit hashes and branch names: a known one resolves, anything else is an unknown commit."""
    commits = {c.commit_hash for c in repository.log()}
    message = refusal(repository.resolve, revision)
    if message is not None:
        assert message.startswith(f"unknown commit {revision!r}")
        return
    assert repository.resolve(revision) in commits


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(HOSTILE)
@example("examples; DROP TABLE examples")
def test_tables_are_checked_before_sql(repository: DoltRepository, table: str) -> None:
    head = repository.head()
    message = refusal(lambda name: repository.read_table(name, head), table)
    if message is None:
        assert table == "examples"
    else:
        assert repr(table) in message
        # The suite's own refusals; a backend error (the text spliced into SQL) reads otherwise.
        assert message.startswith(("invalid table name", f"table {table!r} does not exist"))
