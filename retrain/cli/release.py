"""``retrain release``: build, inspect, roll back and pin releases; their server's build context, KServe
InferenceService and golden-sample check."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.errors import InputError

if TYPE_CHECKING:
    from retrain.cli.common import Commands


def _build(args: argparse.Namespace) -> None:
    from retrain.release.build import promote_all
    from retrain.release.manifest import diff
    from retrain.release.promotion import check_settings, parse_floor

    store = common.release_store(args)
    floor = None if args.no_floor else parse_floor(args.floor)
    check_settings(args.metric, args.tolerance, floor or {})  # before the registry is read
    built = promote_all(
        store,
        store.challengers() if args.promote else {},
        metric=args.metric,
        tolerance=args.tolerance,
        floor=floor,
        require_floor=args.require_floor,
    )
    for line in built.decision_lines():
        print(line)
    event = built.event
    print(f"release {event.release_id} ({event.event}, {event.adapter_count} adapters, {event.changes})")
    if built.previous is not None and built.previous.release_id != event.release_id:
        print("\n".join(diff(store.manifest(built.previous.release_id), built.manifest).lines()))


def _list(args: argparse.Namespace) -> None:
    for event in common.release_store(args, create=False).events():
        extra = f" {event.pinned_from}..{event.pinned_to}" if event.event == "pin" else f" {event.changes}"
        when = f"{event.time:%Y-%m-%d %H:%M:%S}"
        print(
            f"{when}  {event.release_id}  {event.event:<8} {event.adapter_count:>4} adapters  "
            f"commits {event.commits or '-'} {extra} {event.note}".rstrip()
        )


def _show(args: argparse.Namespace) -> None:
    store = common.release_store(args, create=False)
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


def _diff(args: argparse.Namespace) -> None:
    from retrain.release.manifest import diff

    store = common.release_store(args, create=False)
    print("\n".join(diff(store.manifest(args.old), store.manifest(args.new)).lines()))


def _rollback(args: argparse.Namespace) -> None:
    store = common.release_store(args, create=False)
    if bool(args.release) == bool(args.customer):
        raise InputError("give either a release id (whole release) or --customer (one adapter)")
    event = store.rollback_customer(args.customer) if args.customer else store.rollback(args.release)
    print(f"release {event.release_id} ({event.event}) {event.note}")


def _pin(args: argparse.Namespace) -> None:
    event = common.release_store(args, create=False).pin(args.release, args.start, args.end)
    print(f"release {event.release_id} pinned to {event.pinned_from}..{event.pinned_to}")


def _context(args: argparse.Namespace) -> None:
    from retrain.release.context import write_context

    print(write_context(common.release_store(args, create=False), args.release, args.out, force=args.force))


def _inference_service(args: argparse.Namespace) -> None:
    from retrain.serving.inference_service import render, spec_from_args

    spec = spec_from_args(args)  # settings first: they need no MLflow
    common.release_store(args, create=False).manifest(args.release)  # a release that exists, intact
    print(render(spec), end="")


def _check(args: argparse.Namespace) -> None:
    from retrain.serving.check import check_endpoint

    named = {"model_name": args.model_name} if args.model_name else {}
    checked = check_endpoint(
        common.release_store(args, create=False),
        args.release,
        args.endpoint,
        tolerance=args.tolerance,
        timeout=args.timeout,
        **named,
    )
    print("\n".join(checked.lines()))


def register(commands: Commands) -> None:
    """Add ``retrain release`` and its subcommands."""
    # Here, not at the top: importing retrain.cli alone (spark_submit, tests) stays light.
    from retrain.serving.inference_service import add_arguments as add_inference_service_arguments

    release = commands.add_parser(
        "release", help="release manifests: build, inspect, roll back, pin"
    ).add_subparsers(dest="release_command", required=True)

    def command(name: str, handler: common.Handler, help: str) -> argparse.ArgumentParser:
        sub = release.add_parser(name, help=help)
        common.add_mlflow_uri(sub)
        sub.set_defaults(handler=handler)
        return sub

    build = command("build", _build, "register the production adapters as a release")
    build.add_argument(
        "--promote", action="store_true", help="run the promotion gate on newer versions first"
    )
    build.add_argument("--metric", default="roc_auc", help="promotion metric (default roc_auc)")
    build.add_argument("--tolerance", type=float, default=0.01, help="how much worse a challenger may be")
    floors = build.add_mutually_exclusive_group()
    floors.add_argument(
        "--floor",
        action="append",
        metavar="METRIC=MIN",
        help="quality floor every promoted version must reach (repeatable; default roc_auc=0.6)",
    )
    floors.add_argument(
        "--no-floor",
        action="store_true",
        help="promote without the quality floor (adapters trained on a handful of rows)",
    )
    build.add_argument(
        "--require-floor",
        action="store_true",
        help="withhold the release, moving no alias, when a customer's first version is below the floor",
    )
    command("list", _list, "release events, newest first")
    show = command("show", _show, "a release's adapters")
    shown = show.add_mutually_exclusive_group(required=True)  # an id and a time could name two releases
    shown.add_argument("release", nargs="?", type=common.release, help="release id (MD5)")
    shown.add_argument(
        "--as-of", type=common.timestamp, help="the release in production at this time (ISO 8601)"
    )
    show.add_argument("--json", action="store_true", help="print the canonical manifest")
    diff = command("diff", _diff, "added, removed and changed adapters")
    diff.add_argument("old", type=common.release)
    diff.add_argument("new", type=common.release)
    rollback = command("rollback", _rollback, "roll back a whole release or one customer")
    rollback.add_argument("release", nargs="?", type=common.release)
    rollback.add_argument(
        "--customer", type=common.customer, help="re-point this customer to its last release"
    )
    pin = command("pin", _pin, "pin a release to a date range (retro-tests)")
    pin.add_argument("release", type=common.release)
    pin.add_argument("--from", dest="start", type=common.iso_date, required=True)
    pin.add_argument("--to", dest="end", type=common.iso_date, required=True)
    context = command("context", _context, "write the serving image's build context")
    common.add_release(context, help=None)
    context.add_argument("--out", required=True, help="a new or empty folder, or a context it wrote before")
    context.add_argument("--force", action="store_true", help="replace the release context already in --out")
    check = command("check", _check, "send each adapter's golden sample to a model server")
    check.add_argument("--endpoint", required=True, help="the server's base URL, e.g. http://host:8080")
    common.add_release(check, help="release id (manifest MD5) the server must serve")
    check.add_argument("--model-name", help="V2 model name in /v2/models/<name> (default retrain)")
    common.add_golden_tolerance(check)
    check.add_argument(
        "--timeout", type=common.seconds, help="seconds per request (default $RETRAIN_CONNECT_TIMEOUT or 15)"
    )

    isvc = release.add_parser("inference-service", help="print the release's KServe InferenceService (YAML)")
    common.add_mlflow_uri(isvc)
    common.add_release(isvc)
    add_inference_service_arguments(isvc)
    isvc.set_defaults(handler=_inference_service)
