"""Expectation suite files that analysts edit, in Great Expectations' own JSON form.

A suite file loads with ``gx.ExpectationSuite(**json.load(f))``; this suite's own settings sit
under the suite's ``meta``::

    {
      "name": "examples",
      "meta": {"retrain": {
        "key_column": "customer_id",      # whose rows each failure is attributed to
        "label_column": "label",          # used to compute per-customer class balance
        "id_column": "example_id"         # optional: unique row id, needed by the Spark engine
      }},
      "expectations": [ ...GX expectation configurations... ]
    }

Expectations on the per-customer columns (``customer_examples``, ``customer_distinct_labels``,
``customer_minority_label_share``) check customers: those columns are computed for each row from
its customer's rows, so one GX suite checks rows and customers together and one Data Docs page
shows a commit's whole result. Every threshold lives in the file; the code only computes those
columns.

The old form (settings as top-level keys, per-customer expectations in a top-level
``per_customer`` list) still loads, with one deprecation warning per file;
``retrain migrate-suite FILE`` rewrites it in the form above.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from retrain.errors import InputError
from retrain.outputs import file_kind, output_file

logger = logging.getLogger(__name__)

# The suite shipped in the wheel: the demo data's rules, and the DAGs' default ([retrain] suite_path).
PACKAGED_SUITE = Path(__file__).with_name("suites") / "examples.json"
# Columns computed per customer that expectations may use.
PER_CUSTOMER_COLUMNS = ("customer_examples", "customer_distinct_labels", "customer_minority_label_share")
_COLUMN_KWARGS = ("column", "column_A", "column_B")
META_KEY = "retrain"  # the suite's settings: meta.retrain
_REQUIRED_SETTINGS = ("key_column", "label_column")
_SETTINGS = (*_REQUIRED_SETTINGS, "id_column")
_OLD_FORM_KEYS = (*_SETTINGS, "per_customer")
# The top-level keys GX accepts: gx.ExpectationSuite's own arguments.
_SUITE_FIELDS = tuple(inspect.signature(gx.ExpectationSuite).parameters)
MIGRATE_COMMAND = "retrain migrate-suite"
MAX_SUITE_BYTES = 16 * 2**20  # a suite of thousands of expectations is a few MB
_warned_old_form: set[Path] = set()  # files already warned about in this process


class SuiteError(InputError):
    """A suite file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SuiteFile:
    path: Path
    name: str
    key_column: str
    label_column: str
    suite: gx.ExpectationSuite
    id_column: str | None = None  # a unique row id: the Spark engine streams rows in its order

    @property
    def labels(self) -> list[str] | None:
        """The allowed labels: the value set of the label column's in-set expectation, if any."""
        for expectation in self.suite.expectations:
            configuration = expectation.configuration
            if (
                configuration.type == "expect_column_values_to_be_in_set"
                and configuration.kwargs.get("column") == self.label_column
            ):
                return sorted(str(v) for v in configuration.kwargs["value_set"])
        return None

    def check_columns(self, table_columns: list[str], where: str) -> None:
        """Raise naming the expectation when it refers to a column the table lacks."""
        for role, column in (("key_column", self.key_column), ("label_column", self.label_column)):
            if column not in table_columns:
                raise SuiteError(f"{self.path}: meta.{META_KEY}.{role} {column!r} is not a column of {where}")
        clashing = set(PER_CUSTOMER_COLUMNS) & set(table_columns)
        if clashing:
            raise SuiteError(
                f"{self.path}: {where} has columns reserved for per-customer checks: {sorted(clashing)}"
            )
        available = [*table_columns, *PER_CUSTOMER_COLUMNS]
        for expectation in self.suite.expectations:
            for column in expectation_columns(expectation.configuration):
                if column not in available:
                    raise SuiteError(
                        f"{self.path}: expectation {expectation.expectation_type} names column "
                        f"{column!r}, which {where} lacks (columns: {', '.join(table_columns)})"
                    )


def load_suite(path: str | Path) -> SuiteFile:
    """Read and check a suite file; every problem is a :class:`SuiteError` naming the file.

    A file in the old form loads too, after one deprecation warning naming the command that
    migrates it.
    """
    path = Path(path)
    raw = _read_object(path)
    if _is_old_form(raw):
        _warn_old_form(path)
    return _parse(path, *_native(path, raw))


def migrate_suite(source: str | Path, out: str | Path | None = None, *, force: bool = False) -> Path | None:
    """Write ``source`` in the GX-native form to ``out`` (default: over ``source``), atomically.

    The result is checked before anything is written. Returns the path written, or None when
    ``source`` is already native and no ``out`` is given (nothing to do). ``out`` follows the
    suite's rules for one output file (:func:`retrain.outputs.output_file`): new, or a regular
    file replaced with ``force`` (or already holding this very result). In place, a symbolic link
    stays a link and the file it points to is migrated.
    """
    source = Path(source)
    raw = _read_object(source)
    native, where = _native(source, raw)
    _parse(source, native, where)
    if not _is_old_form(raw) and out is None:
        return None
    text = json.dumps(native, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        target = Path(os.path.realpath(source))
    else:
        target = output_file(out, force=force or _holds(Path(out), text))
    _write_atomically(target, text, like=source)
    return Path(out) if out is not None else source


def _holds(path: Path, text: str) -> bool:
    """Whether ``path`` is a regular file holding exactly ``text`` (migrating again changes nothing)."""
    try:
        return path.is_file() and not path.is_symlink() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _read_object(path: Path) -> dict[str, Any]:
    """The file's JSON object; unreadable files and other JSON values are SuiteErrors."""
    try:
        raw = json.loads(_read_text(path))
    except FileNotFoundError:
        raise SuiteError(f"expectation suite file {path} does not exist") from None
    except IsADirectoryError:
        raise SuiteError(f"expectation suite file {path} is a directory, not a JSON file") from None
    except OSError as error:
        raise SuiteError(f"cannot read expectation suite file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SuiteError(
            f"{path} is not UTF-8 text: byte 0x{error.object[error.start]:02x} at offset {error.start}"
        ) from None
    except json.JSONDecodeError as error:
        raise SuiteError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:  # json's C parser recurses once per nesting level
        raise SuiteError(f"{path} nests JSON too deeply to be an expectation suite") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: the suite must be a JSON object")
    return raw


def _is_old_form(raw: dict[str, Any]) -> bool:
    return any(key in raw for key in _OLD_FORM_KEYS)


def _warn_old_form(path: Path) -> None:
    """Log the deprecation once per file and process, so a loop over commits does not repeat it."""
    resolved = path.resolve()
    if resolved not in _warned_old_form:
        _warned_old_form.add(resolved)
        logger.warning(
            "%s uses the deprecated suite form (top-level %s); run `%s %s` to move them under meta.%s",
            path,
            ", ".join(_OLD_FORM_KEYS),
            MIGRATE_COMMAND,
            path,
            META_KEY,
        )


def _native(path: Path, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The suite in GX's form, and where each expectation sits in the file (for messages)."""
    if not _is_old_form(raw):
        listed = raw.get("expectations")
        count = len(listed) if isinstance(listed, list) else 0
        return raw, [f"expectations[{i}]" for i in range(count)]
    for field in ("name", *_REQUIRED_SETTINGS, "expectations"):
        if field not in raw:
            raise SuiteError(f"{path}: missing required field {field!r}")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict) or META_KEY in meta:
        raise SuiteError(
            f"{path}: mixes the old form (top-level {', '.join(k for k in _OLD_FORM_KEYS if k in raw)}) "
            f"with a 'meta' that is not an object or already has {META_KEY!r}; keep one form"
        )
    where: list[str] = []
    expectations: list[Any] = []
    for field in ("expectations", "per_customer"):
        items = raw.get(field, [])
        if not isinstance(items, list):
            raise SuiteError(f"{path}: {field!r} must be a list of expectations")
        expectations += items
        where += [f"{field}[{i}]" for i in range(len(items))]
    settings = {key: raw[key] for key in _SETTINGS if key in raw}
    native = {key: value for key, value in raw.items() if key not in _OLD_FORM_KEYS}
    native["expectations"] = expectations
    native["meta"] = {**meta, META_KEY: settings}
    return native, where


def _read_text(path: Path) -> str:
    """A regular file's text, at most :data:`MAX_SUITE_BYTES`; opened without waiting, so a FIFO
    is refused at once instead of hanging, and a device (``/dev/zero``) is never read."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(handle, "rb") as file:
        mode = os.fstat(handle).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise SuiteError(f"expectation suite file {path} is {file_kind(mode)}, not a JSON file")
        data = file.read(MAX_SUITE_BYTES + 1)
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError(f"expectation suite file {path} is over {MAX_SUITE_BYTES // 2**20} MiB: not a suite")
    return data.decode("utf-8")


def _parse(path: Path, native: dict[str, Any], where: list[str]) -> SuiteFile:
    """Check a GX-form suite and build it; ``where`` names each expectation's place in the file."""
    unknown = [key for key in native if key not in _SUITE_FIELDS]
    if unknown:
        raise SuiteError(
            f"{path}: unknown top-level field {unknown[0]!r} (a GX suite has {', '.join(_SUITE_FIELDS)}; "
            f"this suite's own settings go under meta.{META_KEY})"
        )
    for field in ("name", "expectations", "meta"):
        if field not in native:
            raise SuiteError(f"{path}: missing required field {field!r}")
    if not isinstance(native["name"], str) or not native["name"]:
        raise SuiteError(f"{path}: 'name' must be a non-empty string")
    if not isinstance(native["expectations"], list):
        raise SuiteError(f"{path}: 'expectations' must be a list of expectations")
    settings = _settings(path, native["meta"])
    try:
        suite = gx.ExpectationSuite(**{k: v for k, v in native.items() if k != "expectations"})
    except Exception as error:  # GX raises several types for bad ids, notes and parameters
        raise SuiteError(f"{path}: not a valid GX suite: {_one_line(error)}") from None
    _add_expectations(path, suite, native["expectations"], where)
    return SuiteFile(path=path, name=native["name"], suite=suite, **settings)


def _settings(path: Path, meta: Any) -> dict[str, str]:
    """This suite's settings from ``meta.retrain``: column names, checked for presence and type."""
    if not isinstance(meta, dict):
        raise SuiteError(f"{path}: 'meta' must be an object")
    settings = meta.get(META_KEY)
    if not isinstance(settings, dict):
        raise SuiteError(
            f"{path}: meta.{META_KEY} must be an object with {', '.join(_REQUIRED_SETTINGS)} "
            f"(and optionally id_column)"
        )
    unknown = [key for key in settings if key not in _SETTINGS]
    if unknown:
        raise SuiteError(
            f"{path}: unknown field meta.{META_KEY}.{unknown[0]} (known: {', '.join(_SETTINGS)})"
        )
    for key in _REQUIRED_SETTINGS:
        if key not in settings:
            raise SuiteError(f"{path}: missing required field meta.{META_KEY}.{key}")
    for key, value in settings.items():
        if not isinstance(value, str) or not value:
            raise SuiteError(
                f"{path}: meta.{META_KEY}.{key} must be a column name (a non-empty string), not {value!r}"
            )
    return dict(settings)


def _add_expectations(
    path: Path, suite: gx.ExpectationSuite, expectations: list[Any], where: list[str]
) -> None:
    for place, item in zip(where, expectations, strict=True):
        if not isinstance(item, dict) or "type" not in item:
            raise SuiteError(f"{path}: {place} needs a 'type' (e.g. expect_column_values_to_not_be_null)")
        try:
            configuration = ExpectationConfiguration(
                type=item["type"], kwargs=item.get("kwargs", {}), meta=item.get("meta") or {}
            )
            suite.add_expectation_configuration(configuration)
        except Exception as error:  # GX raises several types for unknown types and bad kwargs
            raise SuiteError(
                f"{path}: {place} ({item['type']}) is not a valid expectation: {_one_line(error)}"
            ) from None


def _one_line(error: Exception) -> str:
    """GX explains some errors over several lines (one per type it tried); join them."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _write_atomically(target: Path, text: str, like: Path) -> None:
    """Replace ``target`` with ``text`` in one rename, with ``like``'s permissions."""
    try:
        handle, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise SuiteError(f"cannot write {target}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(staging, like.stat().st_mode & 0o777)
        os.replace(staging, target)
    except OSError as error:
        Path(staging).unlink(missing_ok=True)
        raise SuiteError(f"cannot write {target}: {error.strerror}") from None


def expectation_columns(configuration: ExpectationConfiguration) -> list[str]:
    """The columns an expectation reads (``column``, ``column_A``/``column_B``, ``column_list``)."""
    kwargs = configuration.kwargs
    columns = [str(kwargs[k]) for k in _COLUMN_KWARGS if k in kwargs]
    return columns + [str(c) for c in kwargs.get("column_list", [])]
