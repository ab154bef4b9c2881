"""The directories the suite writes: new ones, or ones it marked as its own, never anyone else's.

Every directory the suite writes carries a marker file, ``.retrain-output`` (JSON: the tool, the
kind of output, when it was made). Two ways to write one:

- :func:`replacing` builds a whole output (a release context, a retro-test report) in a staging
  directory beside the target and renames it into place, so readers see the old output or the
  new one, never half of either. The target must be new, empty, or marked with the same kind;
  a marked one is replaced only with ``force`` (``--force``).
- :func:`claim` makes a directory the suite keeps adding to (a cache of release contexts, Data
  Docs, the demo's home): created when new, marked when empty, checked for its marker otherwise.

An existing non-empty directory without the marker is refused, even with ``force``: a mistyped
``--out`` must not delete a user's files. So is a marked directory of another kind (Data Docs
given as a release context's ``--out``): that is a mistyped path too. Missing parents are created.
The marker itself must be a regular file inside the directory: a symbolic link to another
directory's marker, a FIFO or a corrupt marker never makes a directory the suite's.

A single output file (:func:`output_file`, e.g. ``migrate-suite --out``) is new, or a regular
file replaced only with ``force``; never a symbolic link, directory, FIFO or device. A folder of
generated files with fixed names (:func:`generated_folder`, the templates, which are committed and
so carry no marker) holds nothing else, and is never written through a link.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from retrain.errors import InputError

MARKER = ".retrain-output"
TOOL = "retrain"

# The kinds of output, one per thing the suite writes.
RELEASE_CONTEXT = "release-context"
RELEASE_CACHE = "release-cache"  # contexts of many releases: scoring's and serving's --workdir
DATA_DOCS = "data-docs"
RETRO_REPORT = "retro-report"
DRIFT_REPORT = "drift-report"  # a day's PNGs of flagged customers
DEMO_HOME = "demo-home"
UP_HOME = "up-home"
BENCH_WORK = "bench-work"


MARKER_MAX_BYTES = 4096  # a marker is one short JSON line; more is not one the suite wrote


class OutputPathError(InputError):
    """An output path the suite will not write: someone else's directory, a file, the current directory."""


class CorruptMarkerError(OutputPathError):
    """A ``.retrain-output`` that is not one the suite wrote: a link, a FIFO, bad JSON, no kind."""


def output_file(path: str | Path, *, force: bool = False) -> Path:
    """The absolute path of one output file: new, or an existing regular file when ``force``.

    Never a symbolic link (writing through it would replace someone else's file), a directory, a
    FIFO or a device (``/dev/null`` replaced by a regular file), even with ``force``.
    """
    if not str(path).strip():
        raise OutputPathError("the output file is an empty path")
    target = Path(os.path.abspath(path))
    try:
        found = target.lstat()
    except FileNotFoundError:
        return target
    except OSError as error:
        raise OutputPathError(f"cannot check output file {target}: {error.strerror}") from None
    if not stat.S_ISREG(found.st_mode):
        raise OutputPathError(
            f"refusing to replace {target}: it is {file_kind(found.st_mode)}, not a regular file"
        )
    if not force:
        raise OutputPathError(f"{target} already exists: pass --force to replace it")
    return target


def generated_folder(directory: str | Path, names: Collection[str]) -> Path:
    """``directory`` for the generated files ``names``: created when missing; an existing one must
    be a real directory (not a link) holding nothing but regular files of those names."""
    path = _absolute(directory)
    if path.is_symlink():
        raise OutputPathError(f"output directory {path} is a symbolic link: give the directory it points to")
    _not_a_file(path)
    if not path.exists():
        _make_parent(path)
        path.mkdir(exist_ok=True)
        return path
    foreign = []
    for child in sorted(path.iterdir()):
        mode = child.lstat().st_mode
        if child.name not in names:
            foreign.append(child.name)
        elif not stat.S_ISREG(mode):
            raise OutputPathError(f"refusing to replace {child}: it is {file_kind(mode)}, not a regular file")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputPathError(
            f"refusing to write into {path}: it holds {shown}, which retrain does not write there; "
            "give a new or empty directory"
        )
    return path


def write_generated(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one rename: a link put there meanwhile is replaced, not followed."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    except OSError as error:
        staging.unlink(missing_ok=True)
        raise OutputPathError(f"cannot write {path}: {error.strerror}") from None


def file_kind(mode: int) -> str:
    """What a path of this mode is, in words, for messages: "a FIFO", "a symbolic link"..."""
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def _target(directory: str | Path, kind: str, *, force: bool = False) -> Path:
    """The absolute target of :func:`replacing`, or :class:`OutputPathError` saying why it cannot be."""
    path = _absolute(directory)
    if path.is_symlink():
        raise OutputPathError(f"output directory {path} is a symbolic link: give the directory it points to")
    _not_a_file(path)
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise OutputPathError(
            f"output directory {path} is the current directory or contains it: give a new directory"
        )
    if not path.exists() or _is_empty(path):
        return path
    _same_kind(path, kind, "replace")
    if not force:
        raise OutputPathError(f"{path} already holds a {_words(kind)}: pass --force to replace it")
    return path


@contextmanager
def replacing(directory: str | Path, kind: str, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``directory``; when the block ends without an error,
    mark it and rename it to ``directory``, replacing a marked one (``force``). On an error the
    staging directory goes and ``directory`` stays as it was."""
    target = _target(directory, kind, force=force)
    staging = _staging_beside(target)
    try:
        yield staging
        _mark(staging, kind)
        _swap(staging, _target(target, kind, force=force))  # again: it may have changed meanwhile
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a swap


def claim(directory: str | Path, kind: str, *, fresh: bool = False) -> Path:
    """Make ``directory`` a directory of ``kind`` that the suite writes into and keeps; returns it.

    :param fresh: remove what an earlier run left there first (only ever in a marked directory).
    """
    path = _absolute(directory)
    _not_a_file(path)
    if not path.exists():
        _create_marked(path, kind)
    elif _is_empty(path):
        _mark(path, kind)  # made for the suite by someone else, e.g. a mounted volume
    _same_kind(path, kind, "write into")
    if fresh:
        for child in path.iterdir():
            if child.name != MARKER:
                _remove(child)
    return path


def _create_marked(path: Path, kind: str) -> None:
    """Create ``path`` already marked, in one rename: a process claiming it at the same time sees
    no directory or a marked one, never an unmarked one it would refuse."""
    staging = _staging_beside(path)
    _mark(staging, kind)
    try:
        os.rename(staging, path)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not path.is_dir():  # else another process made it first: checked like any existing one
            raise OutputPathError(f"cannot create output directory {path}: {error.strerror}") from None


def marked_kind(directory: Path) -> str | None:
    """The kind of output in ``directory``'s marker; None when it has no marker.

    A marker that is there but not one the suite wrote raises :class:`CorruptMarkerError` saying
    what it is. It is opened without following links and without waiting (a FIFO would hang).
    """
    marker = directory / MARKER
    try:
        handle = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        kind = "a symbolic link" if marker.is_symlink() else error.strerror
        raise CorruptMarkerError(f"{marker} is {kind}, not a marker the suite wrote") from None
    with os.fdopen(handle, "rb") as file:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptMarkerError(f"{marker} is {file_kind(mode)}, not a marker the suite wrote")
        data = file.read(MARKER_MAX_BYTES + 1)
    try:
        found = json.loads(data) if len(data) <= MARKER_MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        found = None
    if not isinstance(found, dict) or found.get("tool") != TOOL or not isinstance(found.get("kind"), str):
        raise CorruptMarkerError(
            f"{marker} is corrupt (not the JSON object with tool {TOOL!r} and a kind that retrain "
            "writes): remove it if the folder is yours to replace"
        )
    return str(found["kind"])


def _absolute(directory: str | Path) -> Path:
    """``directory`` made absolute, ``.`` and ``..`` resolved but symbolic links kept."""
    if not str(directory).strip():
        raise OutputPathError("the output directory is an empty path")
    path = Path(os.path.abspath(directory))
    if path.parent == path:
        raise OutputPathError(f"output directory {path} is the file system root")
    return path


def _not_a_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"output directory {path} is a file")


def _is_empty(path: Path) -> bool:
    try:
        return next(path.iterdir(), None) is None
    except OSError as error:
        raise OutputPathError(f"cannot read output directory {path}: {error.strerror}") from None


def _same_kind(path: Path, kind: str, action: str) -> None:
    """Refuse a non-empty ``path`` unless the suite marked it as an output of ``kind``."""
    found = marked_kind(path)
    if found is None:
        raise OutputPathError(
            f"refusing to {action} {path}: it is not empty and has no {MARKER} marker, so retrain "
            "did not make it; give a new or empty directory"
        )
    if found != kind:
        raise OutputPathError(
            f"refusing to {action} {path}: it holds a {_words(found)}, not a {_words(kind)}; "
            "give another directory"
        )


def _make_parent(path: Path) -> None:
    """Create the missing parents of ``path``, naming the file in the way if there is one."""
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        raise OutputPathError(f"cannot create {path}: {existing} is a file, not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = error.filename or path.parent
        raise OutputPathError(f"cannot create the parent of {path} ({where}: {error.strerror})") from None


def _staging_beside(target: Path) -> Path:
    """A new empty directory beside ``target`` (same file system: renames stay atomic), missing
    parents created. ``mkdir``, not ``mkdtemp``: the output gets the umask's mode, not 0700."""
    _make_parent(target)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        staging.mkdir()
    except OSError as error:
        raise OutputPathError(f"cannot create {staging}: {error.strerror}") from None
    return staging


def _mark(directory: Path, kind: str) -> None:
    made = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        (directory / MARKER).write_text(json.dumps({"tool": TOOL, "kind": kind, "created": made}) + "\n")
    except OSError as error:
        raise OutputPathError(f"cannot write {directory / MARKER}: {error.strerror}") from None


def _swap(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; a non-empty target is first moved aside, then removed."""
    if not target.exists() or _is_empty(target):
        os.replace(staging, target)  # rename(2) replaces an empty directory in one step
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _words(kind: str) -> str:
    return kind.replace("-", " ")
