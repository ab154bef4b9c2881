"""The promotion gate's quality floor and settings, over a real MLflow store (SQLite).

Versions are registered with their holdout metrics as tags and real (tiny) artifact files, without
training: the gate reads only the tags, the release only checks the files.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from retrain import cli
from retrain.adapters.registry import METRIC_TAG_PREFIX, TAG_PREFIX, model_name
from retrain.adapters.training import UNPREDICTED_LABELS
from retrain.release.build import promote_all
from retrain.release.promotion import (
    DEFAULT_FLOOR,
    PromotionSettingsError,
    check_settings,
    first_versions_below_floor,
    floor_failure,
    floor_failures,
    parse_floor,
    promote,
)
from retrain.release.store import PRODUCTION_ALIAS, REQUIRED_ARTIFACTS, ReleaseStore

GOOD = {"roc_auc": 0.9, "f1": 0.8, "accuracy": 0.9, UNPREDICTED_LABELS: 0.0}


@pytest.fixture(scope="module")
def empty_store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store migrated once: copying it spares each test MLflow's ~5 s of migrations."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    ReleaseStore(MlflowClient(f"sqlite:///{path}"), f"sqlite:///{path}").client.search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, empty_store_file: Path) -> ReleaseStore:
    shutil.copyfile(empty_store_file, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return ReleaseStore(MlflowClient(uri), uri)


def register(store: ReleaseStore, tmp_path: Path, customer: str, metrics: dict[str, float]) -> str:
    """A model version of ``customer`` with these holdout metrics and non-empty required artifacts."""
    client = store.client
    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(model_name(customer))
    run = client.create_run(store.experiment_id)
    artifacts = tmp_path / "artifacts" / run.info.run_id
    for required in REQUIRED_ARTIFACTS:
        (artifacts / required).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / required).write_text("x")
    tags = {f"{METRIC_TAG_PREFIX}{k}": str(v) for k, v in metrics.items()}
    tags |= {f"{TAG_PREFIX}customer": customer, f"{TAG_PREFIX}artifact_uri": str(artifacts)}
    version = client.create_model_version(
        model_name(customer), str(artifacts), run_id=run.info.run_id, tags=tags
    )
    return str(version.version)


def production(store: ReleaseStore, customer: str) -> str | None:
    try:
        return str(store.client.get_model_version_by_alias(model_name(customer), PRODUCTION_ALIAS).version)
    except MlflowException:
        return None


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({**GOOD, "roc_auc": 0.52}, "no production adapter: ROC AUC 0.52 < floor 0.6"),
        # initech_saas in `make demo` before class weights: good ROC AUC, never says "urgent".
        (
            {**GOOD, "roc_auc": 0.86, "f1": 0.0, UNPREDICTED_LABELS: 1.0},
            "no production adapter: never predicts 1 of its labels on its holdout",
        ),
        ({"accuracy": 0.9, "f1": 0.8}, "no production adapter: no holdout ROC AUC to hold against floor 0.6"),
    ],
)
def test_a_first_version_below_the_floor_is_not_promoted(
    store: ReleaseStore, tmp_path: Path, metrics: dict[str, float], reason: str
) -> None:
    version = register(store, tmp_path, "initech_saas", metrics)
    decision = promote(store.client, "initech_saas", version, floor=DEFAULT_FLOOR)
    assert (decision.promoted, decision.below_floor, decision.no_production_adapter) == (False, True, True)
    assert decision.reason == reason
    assert production(store, "initech_saas") is None
    assert floor_failures([decision]) == {"initech_saas": reason}
    run = store.client.get_run(store.client.get_model_version(model_name("initech_saas"), version).run_id)
    assert run.data.tags["retrain.promotion"] == "rejected"
    assert run.data.tags["retrain.promotion_reason"] == reason


def test_a_first_version_at_the_floor_is_promoted(store: ReleaseStore, tmp_path: Path) -> None:
    version = register(store, tmp_path, "acme_air", {**GOOD, "roc_auc": 0.6})
    decision = promote(store.client, "acme_air", version, floor=DEFAULT_FLOOR)
    assert decision.promoted
    assert decision.reason == "no production version yet"
    assert production(store, "acme_air") == version
    assert floor_failures([decision]) == {}


def test_no_floor_is_checked_only_when_the_caller_says_none(store: ReleaseStore, tmp_path: Path) -> None:
    """``floor=None``: tiny test adapters and benchmarks, whose 4-row holdouts measure nothing."""
    version = register(store, tmp_path, "acme_air", {"accuracy": 0.5, UNPREDICTED_LABELS: 1.0})
    assert promote(store.client, "acme_air", version, floor=None).promoted


def test_a_challenger_below_the_floor_keeps_the_champion(store: ReleaseStore, tmp_path: Path) -> None:
    champion = register(store, tmp_path, "acme_air", GOOD)
    assert promote(store.client, "acme_air", champion, floor=DEFAULT_FLOOR).promoted
    # Within any tolerance of the champion, but it never predicts a label: rejected all the same.
    challenger = register(store, tmp_path, "acme_air", {**GOOD, UNPREDICTED_LABELS: 1.0})
    decision = promote(store.client, "acme_air", challenger, tolerance=1.0, floor=DEFAULT_FLOOR)
    assert (decision.promoted, decision.below_floor, decision.no_production_adapter) == (False, True, False)
    assert decision.reason == "production stays v1: never predicts 1 of its labels on its holdout"
    assert production(store, "acme_air") == champion
    assert floor_failures([decision]) == {}  # the customer keeps an adapter: nothing to report


def test_the_floor_is_configurable_per_metric(store: ReleaseStore, tmp_path: Path) -> None:
    weak = {**GOOD, "roc_auc": 0.55, "f1": 0.4}
    assert promote(store.client, "a", register(store, tmp_path, "a", weak), floor={"roc_auc": 0.5}).promoted
    decision = promote(store.client, "b", register(store, tmp_path, "b", weak), floor={"f1": 0.5})
    assert decision.reason == "no production adapter: F1 0.40 < floor 0.5"
    # An empty floor still refuses an adapter that never predicts one of its labels.
    silent = {**GOOD, UNPREDICTED_LABELS: 1.0}
    assert not promote(store.client, "c", register(store, tmp_path, "c", silent), floor={}).promoted


def test_a_missing_metric_falls_back_to_accuracy_and_says_so(store: ReleaseStore, tmp_path: Path) -> None:
    assert promote(store.client, "a", register(store, tmp_path, "a", GOOD)).promoted
    without_f1 = {k: v for k, v in GOOD.items() if k != "f1"}
    decision = promote(store.client, "a", register(store, tmp_path, "a", without_f1), metric="f1")
    assert decision.metric == "accuracy"
    assert decision.reason.endswith("(f1 missing, compared accuracy)")


@pytest.mark.parametrize(
    ("metric", "tolerance", "floor", "message"),
    [
        ("nope", 0.01, {}, "unknown promotion metric 'nope': use one of roc_auc, f1, accuracy"),
        ("roc_auc", math.nan, {}, "promotion tolerance must be a finite number >= 0, got nan"),
        ("roc_auc", -0.1, {}, "promotion tolerance must be a finite number >= 0, got -0.1"),
        ("roc_auc", math.inf, {}, "promotion tolerance must be a finite number >= 0, got inf"),
        ("roc_auc", 0.01, {"auc": 0.6}, "unknown quality floor metric 'auc'"),
        (
            "roc_auc",
            0.01,
            {"roc_auc": 1.5},
            "quality floor roc_auc must be a number between 0 and 1, got 1.5",
        ),
        ("roc_auc", 0.01, {"roc_auc": math.nan}, "quality floor roc_auc must be a number between 0 and 1"),
    ],
)
def test_unusable_settings_are_refused_before_any_alias_moves(
    store: ReleaseStore, tmp_path: Path, metric: str, tolerance: float, floor: dict[str, float], message: str
) -> None:
    version = register(store, tmp_path, "acme_air", GOOD)
    with pytest.raises(PromotionSettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        promote(store.client, "acme_air", version, metric=metric, tolerance=tolerance, floor=floor)
    assert production(store, "acme_air") is None
    with pytest.raises(PromotionSettingsError):
        check_settings(metric, tolerance, floor)


def test_floors_parse_from_the_cli_and_dag_params() -> None:
    assert parse_floor(None) == {"roc_auc": 0.6}
    assert parse_floor(["roc_auc=0.7", "f1=0.5"]) == {"roc_auc": 0.7, "f1": 0.5}
    assert parse_floor({"accuracy": "0.8"}) == {"accuracy": 0.8}
    assert parse_floor({}) == {}
    for bad, message in [
        (["roc_auc"], "quality floor takes METRIC=MINIMUM, got 'roc_auc'"),
        (["roc_auc=high"], "quality floor roc_auc must be a number, got 'high'"),
        (["roc_auc=-1"], "quality floor roc_auc must be a number between 0 and 1, got -1.0"),
        ({"precision": 0.5}, "unknown quality floor metric 'precision'"),
    ]:
        with pytest.raises(PromotionSettingsError) as raised:
            parse_floor(bad)  # type: ignore[arg-type]
        assert str(raised.value).startswith(message)
    assert floor_failure({"roc_auc": 0.59}, {"roc_auc": 0.6}) == "ROC AUC 0.59 < floor 0.6"


def test_require_floor_finds_first_versions_below_it_without_moving_aliases(
    store: ReleaseStore, tmp_path: Path
) -> None:
    kept = register(store, tmp_path, "acme_air", GOOD)
    promote(store.client, "acme_air", kept, floor=DEFAULT_FLOOR)
    candidates = {
        "acme_air": register(store, tmp_path, "acme_air", {**GOOD, "roc_auc": 0.1}),  # has a champion
        "initech_saas": register(store, tmp_path, "initech_saas", {**GOOD, "roc_auc": 0.52}),
        "globex_bank": register(store, tmp_path, "globex_bank", GOOD),
    }
    below = first_versions_below_floor(store.client, candidates, {"roc_auc": 0.6})
    assert below == {"initech_saas": "no production adapter: ROC AUC 0.52 < floor 0.6"}
    assert [production(store, c) for c in sorted(candidates)] == [kept, None, None]


def test_release_build_leaves_out_a_customer_below_the_floor_and_names_it(
    store: ReleaseStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(store, tmp_path, "acme_air", GOOD)
    register(store, tmp_path, "initech_saas", {**GOOD, "roc_auc": 0.52})
    code = cli.main(["release", "build", "--promote", "--mlflow-uri", store.tracking_uri])
    out = capsys.readouterr().out
    assert code == 0
    assert "rejected initech_saas v1: no production adapter: ROC AUC 0.52 < floor 0.6" in out
    latest = store.latest()
    assert latest is not None
    assert latest.failed_count == 1
    assert [a.customer for a in store.manifest(latest.release_id).adapters] == ["acme_air"]
    assert store.failures(latest.release_id) == {
        "initech_saas": "no production adapter: ROC AUC 0.52 < floor 0.6"
    }
    # A floor the CLI names lets it in: a new release, now without failures.
    assert (
        cli.main(
            ["release", "build", "--promote", "--floor", "roc_auc=0.5", "--mlflow-uri", store.tracking_uri]
        )
        == 0
    )
    latest = store.latest()
    assert latest is not None
    assert latest.failed_count == 0
    assert latest.adapter_count == 2


def test_release_build_require_floor_withholds_the_release_moving_no_alias(
    store: ReleaseStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(store, tmp_path, "acme_air", GOOD)
    register(store, tmp_path, "initech_saas", {**GOOD, "roc_auc": 0.52})
    code = cli.main(["release", "build", "--promote", "--require-floor", "--mlflow-uri", store.tracking_uri])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        "retrain: error: release withheld (require_floor): "
        "initech_saas: no production adapter: ROC AUC 0.52 < floor 0.6\n"
    )
    assert [production(store, c) for c in ("acme_air", "initech_saas")] == [None, None]
    assert store.latest() is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metric", "nope"], "unknown promotion metric 'nope'"),
        (["--tolerance", "nan"], "promotion tolerance must be a finite number >= 0, got nan"),
        (["--tolerance", "-1"], "promotion tolerance must be a finite number >= 0, got -1.0"),
        (["--floor", "roc_auc=2"], "quality floor roc_auc must be a number between 0 and 1, got 2.0"),
    ],
)
def test_release_build_refuses_unusable_gate_settings(
    store: ReleaseStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    register(store, tmp_path, "acme_air", GOOD)
    code = cli.main(["release", "build", "--promote", "--mlflow-uri", store.tracking_uri, *argv])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"retrain: error: {message}")
    assert err.count("\n") == 1
    assert production(store, "acme_air") is None
    assert store.latest() is None


def test_failures_file_holds_the_floor_reason(store: ReleaseStore, tmp_path: Path) -> None:
    """The reason reaches the Releases view through the release's failures.json, verbatim."""
    register(store, tmp_path, "acme_air", GOOD)
    low = register(store, tmp_path, "initech_saas", {**GOOD, "roc_auc": 0.52})
    event = promote_all(store, {"acme_air": "1", "initech_saas": low}).event
    text = store.client.download_artifacts(event.run_id, "failures.json", str(tmp_path))
    assert json.loads(Path(text).read_text()) == {
        "initech_saas": "no production adapter: ROC AUC 0.52 < floor 0.6"
    }
