"""Suite files: GX's own form, the old form's migration, and every way a file can be unusable
(a one-line SuiteError naming the file and the problem)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import great_expectations as gx
import pytest

from retrain.cli import main
from retrain.validation.suite import PACKAGED_SUITE, SuiteError, SuiteFile, load_suite

from ..sockets import Elapsed

# The shipped suite as it was before settings moved under meta (byte for byte).
OLD_FORM = Path(__file__).resolve().parent / "old_form_examples.json"
RETRAIN = {"key_column": "customer_id", "label_column": "label"}


def write(tmp_path: Path, content: object, name: str = "suite.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def minimal(**overrides: object) -> dict[str, object]:
    return {"name": "s", "expectations": [], "meta": {"retrain": RETRAIN}, **overrides}


def old_minimal(**overrides: object) -> dict[str, object]:
    return {"name": "s", **RETRAIN, "expectations": [], **overrides}


def configurations(suite: SuiteFile) -> list[dict[str, Any]]:
    """The suite's expectations as GX writes them."""
    return [e.configuration.to_json_dict() for e in suite.suite.expectations]


def deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deprecated suite form" in r.getMessage()]


def test_shipped_suite_loads_with_thresholds_from_the_file() -> None:
    suite = load_suite(PACKAGED_SUITE)
    types = [e.expectation_type for e in suite.suite.expectations]
    assert types.count("expect_column_values_to_not_be_null") == 3
    assert "expect_column_values_to_be_unique" in types
    assert suite.labels == ["routine", "urgent"]
    assert (suite.key_column, suite.label_column, suite.id_column) == ("customer_id", "label", "example_id")
    between = [
        e.configuration.kwargs
        for e in suite.suite.expectations
        if e.configuration.kwargs.get("column") == "customer_examples"
    ]
    assert between == [{"column": "customer_examples", "min_value": 20}]


def test_shipped_suite_is_great_expectations_own_form() -> None:
    native = gx.ExpectationSuite(**json.loads(PACKAGED_SUITE.read_text()))
    assert native.meta["retrain"] == {
        "key_column": "customer_id",
        "label_column": "label",
        "id_column": "example_id",
    }
    assert [e.configuration.to_json_dict() for e in native.expectations] == configurations(
        load_suite(PACKAGED_SUITE)
    )


def test_old_form_is_rejected_by_gx_itself() -> None:
    with pytest.raises(TypeError, match="key_column"):
        gx.ExpectationSuite(**json.loads(OLD_FORM.read_text()))


def test_old_form_loads_the_same_suite_with_one_deprecation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.json"
    path.write_bytes(OLD_FORM.read_bytes())
    with caplog.at_level(logging.WARNING, logger="retrain.validation.suite"):
        first, again = load_suite(path), load_suite(path)
        load_suite(PACKAGED_SUITE)
    assert deprecations(caplog) == [
        f"{path} uses the deprecated suite form (top-level key_column, label_column, id_column, "
        f"per_customer); run `retrain migrate-suite {path}` to move them under meta.retrain"
    ]
    shipped = load_suite(PACKAGED_SUITE)
    for loaded in (first, again):
        assert (loaded.name, loaded.key_column, loaded.label_column, loaded.id_column, loaded.labels) == (
            shipped.name,
            shipped.key_column,
            shipped.label_column,
            shipped.id_column,
            shipped.labels,
        )
        assert configurations(loaded) == configurations(shipped)


def migrate(*argv: str) -> int:
    return main(["migrate-suite", *argv])


def test_migrate_writes_gx_form_that_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "old.json"
    old.write_bytes(OLD_FORM.read_bytes())
    old.chmod(0o640)
    out = tmp_path / "new.json"
    assert migrate(str(old), "--out", str(out)) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert old.read_bytes() == OLD_FORM.read_bytes()  # --out leaves the source alone
    assert out.stat().st_mode & 0o777 == 0o640
    native = json.loads(out.read_text())
    assert set(native) == {"name", "expectations", "meta"}
    assert gx.ExpectationSuite(**native).meta["retrain"]["id_column"] == "example_id"
    with caplog.at_level(logging.WARNING, logger="retrain.validation.suite"):
        migrated = load_suite(out)
    assert deprecations(caplog) == []
    assert configurations(migrated) == configurations(load_suite(old))
    before = out.read_bytes()
    assert migrate(str(out)) == 0  # already migrated: nothing to do, nothing written
    assert capsys.readouterr().out == f"{out} is already in the GX form; nothing written\n"
    assert out.read_bytes() == before
    assert migrate(str(old)) == 0  # in place
    assert old.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json"]  # no staging files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            old_minimal(expectations=[{"type": "expect_the_moon"}]),
            "{path}: expectations[0] (expect_the_moon) is not a valid expectation: ",
        ),
        (old_minimal(per_customer="x"), "{path}: 'per_customer' must be a list of expectations"),
        (
            old_minimal(meta={"retrain": {}}),
            "{path}: mixes the old form (top-level key_column, label_column) ",
        ),
        (old_minimal(colour="blue"), "{path}: unknown top-level field 'colour'"),
    ],
)
def test_migrate_writes_nothing_for_an_unusable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object, message: str
) -> None:
    path = write(tmp_path, content)
    before = path.read_bytes()
    out = tmp_path / "out.json"
    assert migrate(str(path), "--out", str(out)) == 1
    assert migrate(str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"retrain: error: {message.format(path=path)}")
    assert err.count("\n") == 2  # one line per run
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.json"]


def test_migrate_out_never_replaces_a_device_fifo_link_or_a_foreign_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    old.write_bytes(OLD_FORM.read_bytes())
    theirs = tmp_path / "theirs.json"
    theirs.write_text("a user's file")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.json").symlink_to(theirs)
    for out, force, refused in [
        ("/dev/null", ["--force"], "refusing to replace /dev/null: it is a device, not a regular file"),
        (tmp_path / "fifo", ["--force"], f"refusing to replace {tmp_path / 'fifo'}: it is a FIFO"),
        (
            tmp_path / "link.json",
            ["--force"],
            f"refusing to replace {tmp_path / 'link.json'}: it is a symbolic link",
        ),
        (theirs, [], f"{theirs} already exists: pass --force to replace it"),
    ]:
        assert migrate(str(old), "--out", str(out), *force) == 1
        assert capsys.readouterr().err.startswith(f"retrain: error: {refused}")
    assert theirs.read_text() == "a user's file"
    assert Path("/dev/null").is_char_device()
    assert migrate(str(old), "--out", str(theirs), "--force") == 0  # --force replaces a regular file
    assert migrate(str(old), "--out", str(theirs)) == 0  # it holds this very result: nothing to refuse
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.json", "old.json", "theirs.json"]


def test_migrate_in_place_through_a_link_migrates_the_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "suites" / "examples.json"
    real.parent.mkdir()
    real.write_bytes(OLD_FORM.read_bytes())
    link = tmp_path / "suite.json"
    link.symlink_to(real)
    assert migrate(str(link)) == 0
    assert link.is_symlink()
    assert set(json.loads(real.read_text())) == {"name", "expectations", "meta"}


@pytest.mark.parametrize("make", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_suite_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    """Reading one would wait for a writer forever, or read /dev/zero until memory runs out."""
    path = Path(make)
    if make == "fifo":
        path = tmp_path / "suite.json"
        os.mkfifo(path)
    kind = "a FIFO" if make == "fifo" else "a device"
    with Elapsed() as timer:
        with pytest.raises(SuiteError, match=f"^expectation suite file {path} is {kind}, not a JSON file$"):
            load_suite(path)  # what validate --suite reads
        assert migrate(str(path)) == 1
    assert timer.seconds < 5
    assert (
        capsys.readouterr().err
        == f"retrain: error: expectation suite file {path} is {kind}, not a JSON file\n"
    )


def test_migrate_into_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    old.write_bytes(OLD_FORM.read_bytes())
    assert migrate(str(old), "--out", str(tmp_path / "no" / "new.json")) == 1
    assert capsys.readouterr().err == (
        f"retrain: error: cannot write {tmp_path / 'no' / 'new.json'}: No such file or directory\n"
    )
    assert os.listdir(tmp_path) == ["old.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"name": "s", "expectations": []}, "missing required field 'meta'"),
        (minimal(meta=[]), "'meta' must be an object"),
        (minimal(meta={"notes": "x"}), "meta.retrain must be an object with key_column, label_column"),
        (minimal(meta={"retrain": "customer_id"}), "meta.retrain must be an object"),
        (
            minimal(meta={"retrain": {"label_column": "label"}}),
            "missing required field meta.retrain.key_column",
        ),
        (
            minimal(meta={"retrain": {"key_column": "customer_id"}}),
            "missing required field meta.retrain.label_column",
        ),
        (
            minimal(meta={"retrain": {**RETRAIN, "key_column": 5}}),
            "meta.retrain.key_column must be a column name (a non-empty string), not 5",
        ),
        (
            minimal(meta={"retrain": {**RETRAIN, "label_column": ""}}),
            "meta.retrain.label_column must be a column",
        ),
        (
            minimal(meta={"retrain": {**RETRAIN, "id_column": ["example_id"]}}),
            "meta.retrain.id_column must be a column name (a non-empty string), not ['example_id']",
        ),
        (minimal(meta={"retrain": {**RETRAIN, "key_colum": "x"}}), "unknown field meta.retrain.key_colum"),
        (minimal(key_colum="x"), "unknown top-level field 'key_colum'"),
        (minimal(name=7), "'name' must be a non-empty string"),
        (old_minimal(label_column=None), "meta.retrain.label_column must be a column name"),
        (old_minimal(meta="x"), "mixes the old form"),
    ],
)
def test_bad_meta_is_one_line_naming_file_and_key(tmp_path: Path, content: object, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"suite file .*nope.json does not exist"):
        load_suite(tmp_path / "nope.json")


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"name": "s",\n "expectations": [,]}')
    with pytest.raises(SuiteError, match=r"suite.json is not valid JSON: .* at line 2"):
        load_suite(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], "must be a JSON object"),
        ({"name": "s"}, "missing required field 'expectations'"),
        ({"name": "s", "key_column": "k"}, "missing required field 'label_column'"),
        (minimal(expectations={"type": "x"}), "'expectations' must be a list"),
        (minimal(expectations=[{"kwargs": {}}]), r"expectations\[0\] needs a 'type'"),
        (minimal(expectations=[{"type": "expect_the_moon"}]), r"\[0\] \(expect_the_moon\) is not a valid"),
        (
            old_minimal(
                per_customer=[{"type": "expect_column_values_to_be_between", "kwargs": {"colum": "x"}}]
            ),
            r"per_customer\[0\] \(expect_column_values_to_be_between\) is not a valid",
        ),
    ],
)
def test_unusable_files(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, content))


def test_columns_are_checked_against_the_table(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            minimal(
                expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "txt"}}]
            ),
        )
    )
    table = ["example_id", "customer_id", "text", "label"]
    with pytest.raises(
        SuiteError, match=r"expect_column_values_to_not_be_null names column 'txt', which table 'examples'"
    ):
        suite.check_columns(table, "table 'examples' at commit abc")
    with pytest.raises(SuiteError, match=r"meta\.retrain\.key_column 'customer_id' is not a column"):
        suite.check_columns(["text", "label"], "table 'x'")
    with pytest.raises(SuiteError, match="reserved for per-customer checks"):
        suite.check_columns([*table, "customer_examples"], "table 'x'")


# GX explains this one over five lines (one per type it tried for min_value).
BAD_BOUND = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": "a"}}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "expectation suite file {path} is a directory, not a JSON file"),
        (lambda p: p.write_bytes(b'{"name": "caf\xe9"}'), "{path} is not UTF-8 text: byte 0xe9 at offset 13"),
        (
            lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
            "{path} nests JSON too deeply to be an expectation suite",
        ),
        (
            lambda p: p.write_text(json.dumps(minimal(expectations=[BAD_BOUND]))),
            "{path}: expectations[0] (expect_column_values_to_be_between) is not a valid expectation: ",
        ),
    ],
    ids=["directory", "latin-1", "nested-100k", "multi-line-gx-error"],
)
def test_unreadable_files_are_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "suite.json"
    make(path)
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert str(raised.value).startswith(message.format(path=path))
    assert "\n" not in str(raised.value)
