"""Score a Hive partition with a release's adapters and write the scores atomically.

The scores of (``ds``, ``release``) are written into a new attempt directory; only when that
write finished is the partition pointed at it in the metastore (one ``ALTER TABLE ... SET
LOCATION``). A failed or killed job therefore leaves the previous partition exactly as it was,
and re-running replaces the partition instead of appending to it.
"""

from __future__ import annotations

import logging
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrain.adapters.model import default_base_model
from retrain.engine.engine import DEFAULT_BATCH_SIZE
from retrain.errors import InputError, NotFoundError
from retrain.outputs import RELEASE_CACHE, claim
from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE, write_context
from retrain.release.manifest import Manifest
from retrain.release.store import MANIFEST_FILE, ReleaseStore
from retrain.scoring.inference import OUTPUT_COLUMNS, OUTPUT_SCHEMA, scorer
from retrain.scoring.partitions import check_partition, ensure_table, has_partition, replace_partition

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("request_id", "customer_id", "text")


class ScoringError(InputError):
    """The job cannot run as asked; the message names the table, partition, column or release."""


class MissingPartitionError(ScoringError, NotFoundError):
    """The input table has no such partition (yet): retrying later, once it lands, can succeed."""

    http_status = 404
    retryable = True


@dataclass(frozen=True)
class ScoringReport:
    release_id: str
    input_table: str
    ds: str
    output_table: str
    rows_scored: int
    seconds: float
    customers_scored: dict[str, int] = field(default_factory=dict)
    missing_customers: dict[str, int] = field(default_factory=dict)  # no adapter in the release: not scored
    skipped: str = ""  # why nothing was scored (``if_missing="skip"`` and no input partition)

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        rate = self.rows_scored / self.seconds if self.seconds else 0.0
        lines = [
            f"scored {self.rows_scored} rows of {self.input_table} ds={self.ds} "
            f"with release {self.release_id} "
            f"into {self.output_table} in {self.seconds:.1f}s ({rate:.0f} rows/s), "
            f"{len(self.customers_scored)} customers"
        ]
        if self.missing_customers:
            missing = ", ".join(f"{c} ({n} rows)" for c, n in sorted(self.missing_customers.items()))
            lines.append(f"NOT SCORED, no adapter in the release: {missing}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringReport:
        return cls(**data)


def score_partition(
    spark: Any,
    store: ReleaseStore,
    *,
    release_id: str,
    input_table: str,
    ds: str,
    output_table: str,
    workdir: str | Path,
    customers: list[str] | None = None,
    if_missing: Literal["error", "skip"] = "error",
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_bytes: int | None = None,
) -> ScoringReport:
    """Score ``input_table`` partition ``ds`` with release ``release_id`` into ``output_table``.

    :param customers: score only these customers' rows (a partner's retro-test). The partition's
        rows of other customers are kept: the new partition is their rows plus the new scores,
        flipped in atomically like a full one.
    :param cache_bytes: adapter memory per Python worker (the engine's LRU budget); default room
        for every adapter of the release, the pools growing only with the adapters a worker uses.
    :param if_missing: a missing input partition raises :class:`MissingPartitionError` (``error``)
        or returns a report saying why nothing was scored (``skip``: today's requests may not
        have landed when a retrain finishes).
    """
    from pyspark.sql import functions as F

    check_partition((input_table, output_table), ds, release_id, ScoringError)
    started = time.perf_counter()
    try:
        frame = _input_partition(spark, input_table, ds)
    except MissingPartitionError as error:
        if if_missing == "error":
            raise
        log.warning("not scoring: %s", error)
        return ScoringReport(release_id, input_table, ds, output_table, 0, 0.0, skipped=str(error))
    if customers is not None:
        frame = frame.where(F.col("customer_id").isin(customers))
    release = ReleaseFiles.fetch(store, release_id, Path(workdir))
    shipped = _ship(spark, release.context)
    released = [a.customer for a in release.manifest.adapters]
    counts = {str(r["customer_id"]): int(r["count"]) for r in frame.groupBy("customer_id").count().collect()}
    missing = {c: n for c, n in counts.items() if c not in released}
    if missing:
        log.warning("customers without an adapter in release %s (not scored): %s", release_id, missing)
    # Rows are dealt round-robin to one partition per core: customers mix freely in a task (the
    # engine scores them together), and one big customer cannot keep a single core busy alone.
    slots = int(spark.sparkContext.defaultParallelism)
    scored = (
        frame.where(F.col("customer_id").isin(released))
        .select(*INPUT_COLUMNS)
        .repartition(slots)
        .mapInPandas(
            scorer(shipped.name, default_base_model(), batch_size, cache_bytes), schema=OUTPUT_SCHEMA
        )
    )
    try:
        _overwrite_partition(spark, scored, output_table, ds, release_id, keep_others_than=customers)
    finally:  # executors fetched their copy while the job ran
        shipped.unlink(missing_ok=True)
    written = spark.table(output_table).where((F.col("ds") == ds) & (F.col("release") == release_id))
    if customers is not None:
        written = written.where(F.col("customer_id").isin(customers))
    per_customer = {
        str(r["customer_id"]): int(r["count"]) for r in written.groupBy("customer_id").count().collect()
    }
    report = ScoringReport(
        release_id,
        input_table,
        ds,
        output_table,
        sum(per_customer.values()),
        time.perf_counter() - started,
        per_customer,
        missing,
    )
    log.info("%s", report.summary())
    return report


def _input_partition(spark: Any, table: str, ds: str) -> Any:
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        partitions = [r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]
    except AnalysisException as error:
        raise ScoringError(f"cannot read Hive table {table!r}: {str(error).splitlines()[0]}") from None
    if f"ds={ds}" not in partitions:
        raise MissingPartitionError(
            f"table {table!r} has no partition ds={ds} (partitions: {', '.join(partitions) or 'none'})"
        )
    frame = spark.table(table).where(F.col("ds") == ds)
    lacking = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if lacking:
        raise ScoringError(
            f"table {table!r} lacks column(s) {', '.join(lacking)} needed for scoring "
            f"(has: {', '.join(frame.columns)})"
        )
    return frame


@dataclass(frozen=True)
class ReleaseFiles:
    """A release's manifest and adapters on local disk, in ``<workdir>/<release id>``."""

    context: Path
    manifest: Manifest

    @classmethod
    def fetch(cls, store: ReleaseStore, release_id: str, workdir: Path) -> ReleaseFiles:
        """Download the release once into ``workdir``; later calls read it from there.

        ``workdir`` must be new, empty or a cache the suite marked (:func:`retrain.outputs.claim`).
        """
        context = claim(workdir, RELEASE_CACHE) / release_id
        marker = context / RELEASE_ID_FILE
        if not (
            marker.is_file()
            and marker.read_text().strip() == release_id
            and (context / MANIFEST_FILE).is_file()
        ):
            write_context(store, release_id, context, reuse_from=context.parent, force=True)
        return cls(context, Manifest.from_json((context / MANIFEST_FILE).read_text()))

    def adapter_dir(self, customer: str) -> str:
        return str(self.context / ADAPTER_SUBDIR.format(customer=customer))


def _ship(spark: Any, context: Path) -> Path:
    """Send the release's files to every executor as one zip archive (no shared file system
    needed); returns the archive, whose file name the workers look up with ``SparkFiles.get``.

    An archive, not ``addFile`` of the directory: a directory added with ``addFile`` reaches
    executors only under a local master. Each job ships under a name of its own: Spark refuses a
    second file of the same name from another path or with other contents.
    """
    name = f"{context.name}-{uuid.uuid4().hex[:12]}"
    staging = context.parent / ".shipped"
    staging.mkdir(exist_ok=True)
    archive = staging / f"{name}.zip"
    # Stored, not deflated: adapter weights do not compress, and 1,000 of them are ~300 MB.
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
        for path in sorted(context.rglob("*")):
            bundle.write(path, path.relative_to(context))
    spark.sparkContext.addArchive(str(archive))
    return archive


def _overwrite_partition(
    spark: Any, frame: Any, table: str, ds: str, release_id: str, keep_others_than: list[str] | None
) -> None:
    from pyspark.sql import functions as F

    ensure_table(spark, table, OUTPUT_COLUMNS, ("ds", "release"))
    spec = {"ds": ds, "release": release_id}  # both validated against strict patterns above
    if keep_others_than is not None and has_partition(spark, table, spec):
        # Read from the current location, written to the new one: the flip stays atomic.
        this_partition = (F.col("ds") == ds) & (F.col("release") == release_id)
        others = spark.table(table).where(this_partition & ~F.col("customer_id").isin(keep_others_than))
        frame = frame.unionByName(others.select(*frame.columns))
    replace_partition(spark, frame, table, spec)
