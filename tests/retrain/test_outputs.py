"""Output directories: new or marked by the suite are written, anyone else's are left byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from retrain.cli import main
from retrain.demo.seed import SeededRepository
from retrain.errors import InputError
from retrain.outputs import (
    DATA_DOCS,
    MARKER,
    RELEASE_CACHE,
    RELEASE_CONTEXT,
    RETRO_REPORT,
    CorruptMarkerError,
    OutputPathError,
    claim,
    marked_kind,
    output_file,
    replacing,
)
from retrain.validation.suite import PACKAGED_SUITE

from .sockets import Elapsed


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def foreign(folder: Path) -> Path:
    """A user's folder: a few files, one nested, one hidden."""
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (folder / ".hidden").write_text("me too")
    return folder


def write(target: str | Path, kind: str, text: str, *, force: bool = False) -> None:
    with replacing(target, kind, force=force) as staging:
        (staging / "content.txt").write_text(text)


def test_a_new_directory_is_written_with_its_marker_and_missing_parents_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "context"
    write(target, RELEASE_CONTEXT, "one")
    assert (target / "content.txt").read_text() == "one"
    assert marked_kind(target) == RELEASE_CONTEXT
    marker = json.loads((target / MARKER).read_text())
    assert marker["tool"] == "retrain"
    assert marker["created"].endswith("+00:00")
    assert sorted(p.name for p in target.parent.iterdir()) == ["context"]  # no staging left


def test_an_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    write(tmp_path / "out", RETRO_REPORT, "one")
    assert (tmp_path / "out" / "content.txt").read_text() == "one"


@pytest.mark.parametrize("force", [False, True])
def test_a_foreign_directory_is_left_byte_identical_even_with_force(tmp_path: Path, force: bool) -> None:
    target = foreign(tmp_path / "home")
    before = snapshot(target)
    with pytest.raises(OutputPathError) as raised:
        write(target, RELEASE_CONTEXT, "new", force=force)
    assert str(raised.value) == (
        f"refusing to replace {target}: it is not empty and has no {MARKER} marker, so retrain did not "
        "make it; give a new or empty directory"
    )
    assert isinstance(raised.value, InputError)
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no staging left


def test_a_marked_directory_is_replaced_only_with_force(tmp_path: Path) -> None:
    target = tmp_path / "context"
    write(target, RELEASE_CONTEXT, "old")
    (target / "stale.txt").write_text("from the old context")
    before = snapshot(target)
    expected = f"^{re.escape(str(target))} already holds a release context: pass --force to replace it$"
    with pytest.raises(OutputPathError, match=expected):
        write(target, RELEASE_CONTEXT, "new")
    assert snapshot(target) == before
    write(target, RELEASE_CONTEXT, "new", force=True)
    assert (target / "content.txt").read_text() == "new"
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["context"]  # neither staging nor the old one


def test_a_marked_directory_of_another_kind_is_refused_even_with_force(tmp_path: Path) -> None:
    target = claim(tmp_path / "docs", DATA_DOCS)
    (target / "index.html").write_text("docs")
    before = snapshot(target)
    with pytest.raises(OutputPathError, match="it holds a data docs, not a release context"):
        write(target, RELEASE_CONTEXT, "new", force=True)
    assert snapshot(target) == before


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        bytes(50 * 2**20),
        b"[]",
        b'{"tool": "retrain"}',
        b'{"tool": "other", "kind": "release-context"}',
    ],
    ids=["bad-json", "50MB-of-zeros", "array", "no-kind", "other-tool"],
)
def test_a_corrupt_marker_is_named_corrupt_and_the_folder_kept(tmp_path: Path, content: bytes) -> None:
    target = foreign(tmp_path / "home")
    (target / MARKER).write_bytes(content)
    before = snapshot(target)
    with pytest.raises(
        CorruptMarkerError, match=rf"^{re.escape(str(target / MARKER))} is corrupt \(not the JSON"
    ):
        write(target, RELEASE_CONTEXT, "new", force=True)
    assert snapshot(target) == before


def test_a_marker_must_be_a_regular_file_inside_the_folder(tmp_path: Path) -> None:
    """A link to the marker of a folder the suite owns, or a FIFO (it would hang), never makes a
    foreign folder the suite's: ``release context --force`` would replace it."""
    owned = tmp_path / "owned"
    write(owned, RELEASE_CONTEXT, "ours")
    target = foreign(tmp_path / "m")
    (target / MARKER).symlink_to(owned / MARKER)
    with Elapsed() as timer:
        with pytest.raises(CorruptMarkerError, match=r"\.retrain-output is a symbolic link, not a marker"):
            write(target, RELEASE_CONTEXT, "new", force=True)
        (target / MARKER).unlink()
        os.mkfifo(target / MARKER)
        with pytest.raises(CorruptMarkerError, match=r"\.retrain-output is a FIFO, not a marker"):
            write(target, RELEASE_CONTEXT, "new", force=True)
    assert timer.seconds < 5
    assert (target / "notes.txt").read_text() == "keep me"


def test_an_output_file_is_new_or_a_regular_file_replaced_with_force(tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    assert output_file(new) == new
    new.write_text("{}")
    with pytest.raises(OutputPathError, match=f"^{re.escape(str(new))} already exists: pass --force"):
        output_file(new)
    assert output_file(new, force=True) == new
    (tmp_path / "link").symlink_to(new)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for path, kind in [
        (tmp_path / "link", "a symbolic link"),
        (tmp_path / "fifo", "a FIFO"),
        (tmp_path / "dir", "a directory"),
        (Path("/dev/null"), "a device"),
    ]:
        with pytest.raises(
            OutputPathError, match=f"^refusing to replace {re.escape(str(path))}: it is {kind}"
        ):
            output_file(path, force=True)


def write_then_fail(target: Path) -> None:
    with replacing(target, RELEASE_CONTEXT, force=True) as staging:
        (staging / "content.txt").write_text("half")
        raise RuntimeError("download failed")


def test_a_failed_write_leaves_the_old_output_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "context"
    write(target, RELEASE_CONTEXT, "old")
    before = snapshot(target)
    with pytest.raises(RuntimeError, match="download failed"):
        write_then_fail(target)
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["context"]


def test_bad_output_paths_are_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("a file")
    link = tmp_path / "link"
    link.symlink_to(claim(tmp_path / "real", RELEASE_CONTEXT))
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    cases = {
        str(a_file): f"output directory {a_file} is a file",
        str(a_file / "out"): f"cannot create {a_file / 'out'}: {a_file} is a file, not a directory",
        str(a_file / "deeper" / "out"): f"cannot create {a_file / 'deeper' / 'out'}: {a_file} is a file,",
        ".": f"output directory {here} is the current directory or contains it",
        "..": f"output directory {here.parent} is the current directory or contains it",
        "/": "output directory / is the file system root",
        "": "the output directory is an empty path",
        str(link): f"output directory {link} is a symbolic link",
    }
    for given, message in cases.items():
        with pytest.raises(OutputPathError) as raised:
            write(given, RELEASE_CONTEXT, "new", force=True)
        assert str(raised.value).startswith(message), given
        assert "\n" not in str(raised.value)
    assert a_file.read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "link", "real", "work"]
    assert list(here.iterdir()) == []


def test_claim_creates_marks_and_keeps_its_own_directory(tmp_path: Path) -> None:
    cache = claim(tmp_path / "new" / "cache", RELEASE_CACHE)
    assert marked_kind(cache) == RELEASE_CACHE
    (cache / "kept").write_text("an earlier run's file")
    assert claim(cache, RELEASE_CACHE) == cache
    assert (cache / "kept").read_text() == "an earlier run's file"
    (tmp_path / "empty").mkdir()
    assert marked_kind(claim(tmp_path / "empty", DATA_DOCS)) == DATA_DOCS
    claim(cache, RELEASE_CACHE, fresh=True)
    assert sorted(p.name for p in cache.iterdir()) == [MARKER]


def test_claim_refuses_a_foreign_directory_another_kind_and_a_file(tmp_path: Path) -> None:
    home = foreign(tmp_path / "home")
    before = snapshot(home)
    for fresh in (False, True):
        expected = f"^refusing to write into {re.escape(str(home))}: it is not empty"
        with pytest.raises(OutputPathError, match=expected):
            claim(home, RELEASE_CACHE, fresh=fresh)
    assert snapshot(home) == before
    docs = claim(tmp_path / "docs", DATA_DOCS)
    with pytest.raises(OutputPathError, match="it holds a data docs, not a release cache"):
        claim(docs, RELEASE_CACHE, fresh=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        claim(tmp_path / "file", DATA_DOCS)
    assert (tmp_path / "file").read_text() == "x"


def test_the_cli_names_a_bad_docs_folder_and_a_foreign_scoring_cache(
    capsys: pytest.CaptureFixture[str], seeded: SeededRepository, tmp_path: Path
) -> None:
    a_file = tmp_path / "docs.html"
    a_file.write_text("not a folder")
    validate = ["validate", "--repo", str(seeded.path), "--table", "examples", "--commit", "main"]
    assert main([*validate, "--suite", str(PACKAGED_SUITE), "--docs", str(a_file)]) == 1
    assert capsys.readouterr().err == f"retrain: error: output directory {a_file} is a file\n"
    assert a_file.read_text() == "not a folder"

    home = foreign(tmp_path / "home")
    before = snapshot(home)
    refused = f"retrain: error: refusing to write into {home}: it is not empty"
    (tmp_path / "mlflow.db").touch()  # scoring reads a store, never creates one
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    score = ["score", "--release", "0" * 32, "--check-reference", "--mlflow-uri", uri]
    assert main([*score, "--workdir", str(home)]) == 1
    # The last line: MLflow, first imported here, logs creating its store first (its own logging).
    assert capsys.readouterr().err.splitlines()[-1].startswith(refused)
    assert main([*validate, "--suite", str(PACKAGED_SUITE), "--docs", str(home)]) == 1
    assert capsys.readouterr().err.startswith(refused)
    assert snapshot(home) == before


def test_concurrent_claims_of_a_new_directory_all_succeed(tmp_path: Path) -> None:
    targets = [tmp_path / f"cache-{i}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        claimed = list(pool.map(lambda target: claim(target, RELEASE_CACHE), targets * 8))
    assert claimed == targets * 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(t.name for t in targets)  # no staging left
    assert all(marked_kind(t) == RELEASE_CACHE for t in targets)


def test_outputs_get_the_umask_mode_not_a_private_one(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write(tmp_path / "context", RELEASE_CONTEXT, "one")
        claim(tmp_path / "cache", RELEASE_CACHE)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "context").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o755
