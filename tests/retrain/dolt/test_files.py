"""Hostile ``--repo`` files: cut short, special files, and commit messages that forge log lines."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

import pytest

from retrain.cli import main
from retrain.demo.seed import SeededRepository
from retrain.dolt import DoltRepository, NotADoltDatabaseError
from retrain.dolt.connections import check_doltlite_file
from retrain.dolt.dialects import Statement
from retrain.dolt.errors import CorruptDatabaseError


def _commit_boundaries(data: bytes) -> set[int]:
    """Lengths at which a doltlite file ends right after a root record (an older, whole state).

    An independent walk of the log: a 168-byte manifest, then chunk records (tag 1, 20-byte hash,
    4-byte little-endian length, body) and root records (tag 2, 168-byte manifest).
    """
    boundaries, position = set(), 168
    while position < len(data):
        tag = data[position]
        if tag == 1:
            (length,) = struct.unpack_from("<I", data, position + 21)
            position += 25 + length
        else:
            assert tag == 2
            position += 169
            boundaries.add(position)
    assert position == len(data)
    return boundaries


def _largest_chunk(data: bytes) -> tuple[int, int]:
    """(start, length) of the body of the file's largest chunk record (see :func:`_commit_boundaries`)."""
    chunks, position = [], 168
    while position < len(data):
        if data[position] == 1:
            (length,) = struct.unpack_from("<I", data, position + 21)
            chunks.append((length, position + 25))
            position += 25 + length
        else:
            position += 169
    length, start = max(chunks)
    return start, length


def test_a_corrupt_file_is_named_corrupt_not_an_unknown_commit(
    seeded: SeededRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Damaged pages made SQLite say "database disk image is malformed", naming no file, and made
    ``dolt changed`` report its commits as unknown."""
    data = bytearray(seeded.path.read_bytes())
    start, length = _largest_chunk(bytes(data))
    data[start + length // 2 : start + length // 2 + 8] = b"\xde\xad\xbe\xef" * 2
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(bytes(data))
    expected = f"retrain: error: doltlite database {corrupt} is corrupt: database disk image is malformed\n"
    changed = ["--table", "examples", "--key", "customer_id", "--from", seeded.commits[0], "--to", "main"]
    for command in (["head"], ["changed", *changed]):
        assert main(["dolt", *command, "--repo", str(corrupt)]) == 1
        assert capsys.readouterr().err == expected
    with pytest.raises(CorruptDatabaseError), DoltRepository.open(str(corrupt)) as repo:
        repo.resolve(seeded.commits[0])


def test_a_file_cut_short_is_refused_unless_cut_at_a_commit_boundary(
    seeded: SeededRepository, tmp_path: Path
) -> None:
    """doltlite reads a file cut inside a record as its last whole state (an older head) without a
    word; every such cut is refused, naming the file. A cut exactly at a record boundary is
    indistinguishable from an older whole file, and is accepted."""
    data = seeded.path.read_bytes()
    boundaries = _commit_boundaries(data)
    cut = tmp_path / "cut.db"
    refused = 0
    for length in [*range(0, len(data), 41), *boundaries, len(data) - 1]:
        cut.write_bytes(data[:length])
        if length in boundaries:
            check_doltlite_file(cut, settle_s=0)
            continue
        with pytest.raises(NotADoltDatabaseError) as raised:
            check_doltlite_file(cut, settle_s=0)
        message = str(raised.value)
        if length < 4:
            assert message == f"{cut} is not a doltlite (Dolt) database"
        elif length < 168:
            assert message == f"{cut} is truncated: {length} bytes, shorter than a doltlite header (168)"
        else:
            assert message == (
                f"{cut} is truncated or torn: it ends at byte {length} inside a commit record; doltlite "
                "would silently read an older commit (restore the file from a whole copy)"
            )
        refused += 1
    assert refused > 400


def test_cli_on_a_truncated_repo_fails_with_one_line(
    seeded: SeededRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = seeded.path.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: len(data) - 100])  # inside the last commit's records
    assert main(["dolt", "head", "--repo", str(cut)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no head printed: before, the older head came out as if current
    assert captured.err == (
        f"retrain: error: {cut} is truncated or torn: it ends at byte {len(data) - 100} inside a commit "
        "record; doltlite would silently read an older commit (restore the file from a whole copy)\n"
    )


def test_a_writer_mid_append_is_waited_for_not_refused(seeded: SeededRepository, tmp_path: Path) -> None:
    """A torn tail that is still growing is a commit being written: the check waits for it."""
    data = seeded.path.read_bytes()
    growing = tmp_path / "growing.db"
    growing.write_bytes(data[:-100])

    def finish_later() -> None:
        time.sleep(0.3)
        with growing.open("ab") as f:
            f.write(data[-100:-50])
        time.sleep(0.3)
        with growing.open("ab") as f:
            f.write(data[-50:])

    writer = threading.Thread(target=finish_later)
    writer.start()
    check_doltlite_file(growing, settle_s=0.5)  # first torn, then growing, then whole
    writer.join()


@pytest.mark.timeout(30)
def test_a_fifo_repo_is_refused_not_hung(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "training.db"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert main(["dolt", "head", "--repo", str(fifo)]) == 1
    assert capsys.readouterr().err == (
        f"retrain: error: {fifo} is a named pipe (FIFO), not a regular file: not a doltlite database\n"
    )
    with pytest.raises(NotADoltDatabaseError, match="named pipe"):
        DoltRepository.open(f"doltlite://{fifo}", create=True)  # seeding must not open it either
    assert time.monotonic() - started < 5


def test_a_device_repo_is_refused() -> None:
    with pytest.raises(NotADoltDatabaseError) as raised:
        DoltRepository.open("/dev/null")
    assert str(raised.value) == "/dev/null is a character device, not a regular file: not a doltlite database"


def test_log_escapes_newlines_and_terminal_escapes_in_messages(
    repo: DoltRepository, seeded: SeededRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message with a newline would print a second, forged log line; ESC sequences would
    recolour or rewrite the terminal. Each commit stays one line, its message escaped."""
    forged = "0" * 40 + "  2026-01-01  admin  approved release"
    repo.execute(Statement("UPDATE examples SET text = 'x' WHERE example_id = 1"))
    head = repo.commit(f"fix typo\n{forged}\x1b[2K\x1b[31mred\ttab\r")
    assert main(["dolt", "log", "--repo", str(seeded.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(repo.log())
    assert lines[0].startswith(head + "  ")
    assert lines[0].endswith(f"  fix typo\\n{forged}\\x1b[2K\\x1b[31mred\\ttab\\r")
    assert not any(line.startswith("0" * 40) for line in lines)
    assert all(c.isprintable() for line in lines for c in line)
