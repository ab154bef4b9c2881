"""The release operators in real ``dag.test()`` runs over a real MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from retrain import cli
from retrain.adapters.registry import train_and_register
from retrain.adapters.training import TrainingParams
from retrain.dolt import DoltRepository
from retrain.errors import InputError
from retrain.release.build import promote_all
from retrain.release.store import ReleaseStore

from ..dag_files import load_dag

DAG_SOURCE = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.release import BuildReleaseOperator

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    # Adapters of 20 rows: the floor (tested below) would rightly refuse some of them.
    BuildReleaseOperator(task_id="release", candidates={candidates!r}, failures={failures!r}, floor=None)
"""


def dag_with(home: Path, dag_id: str, candidates: Any, failures: Any = None) -> Any:
    return load_dag(home, dag_id, DAG_SOURCE.format(dag_id=dag_id, candidates=candidates, failures=failures))


@pytest.mark.slow
def test_build_promotes_candidates_and_registers_the_release(
    airflow_db: Path, repo: DoltRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    fast = TrainingParams(epochs=1, min_examples=10)
    trained = {
        c: {
            "version": train_and_register(
                repo, table="examples", commit="main", customer=c, params=fast
            ).version
        }
        for c in ("acme_air", "globex_bank")
    }
    run = dag_with(airflow_db, "release_build", trained).test()
    assert run.state == "success"
    result = run.get_task_instance("release").xcom_pull(task_ids="release")
    store = ReleaseStore(MlflowClient(uri), uri)
    assert result["release_id"] == store.production_manifest().release_id == store.latest().release_id  # type: ignore[union-attr]
    assert [p["promoted"] for p in result["promotions"]] == [True, True]

    failed = dag_with(airflow_db, "release_bad_candidates", "{'acme_air': '1'}").test()
    assert failed.state == "failed"

    # A partial release: acme_air retrained, globex_bank's training failed and keeps its adapter.
    retrained = train_and_register(
        repo, table="examples", commit="main", customer="acme_air", params=fast, force=True
    )
    reasons = {"globex_bank": "RuntimeError: worker crashed"}
    partial = dag_with(airflow_db, "release_partial", {"acme_air": retrained.version}, reasons).test()
    assert partial.state == "success"
    release_id = partial.get_task_instance("release").xcom_pull(task_ids="release")["release_id"]
    assert store.failures(release_id) == reasons
    kept = store.manifest(release_id).by_customer()["globex_bank"]
    assert kept.version == trained["globex_bank"]["version"]


FLOOR_DAG = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.release import BuildReleaseOperator

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1), params={{"floor": {floor!r}}},
         render_template_as_native_obj=True) as dag:
    BuildReleaseOperator(task_id="release", candidates={candidates!r}, floor="{{{{ params.floor }}}}",
                         require_floor={require!r})
"""


def register_version(client: MlflowClient, root: Path, customer: str, roc_auc: float) -> str:
    """A version with a holdout ROC AUC and non-empty required artifacts, without training."""
    from retrain.adapters.registry import METRIC_TAG_PREFIX, TAG_PREFIX, model_name
    from retrain.release.store import REQUIRED_ARTIFACTS

    if not client.search_registered_models(f"name = '{model_name(customer)}'"):
        client.create_registered_model(model_name(customer))
    run = client.create_run("0")
    artifacts = root / customer
    for required in REQUIRED_ARTIFACTS:
        (artifacts / required).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / required).write_text("x")
    tags = {
        f"{METRIC_TAG_PREFIX}roc_auc": str(roc_auc),
        f"{METRIC_TAG_PREFIX}unpredicted_labels": "0",
        f"{TAG_PREFIX}customer": customer,
        f"{TAG_PREFIX}artifact_uri": str(artifacts),
    }
    return str(
        client.create_model_version(model_name(customer), str(artifacts), run.info.run_id, tags).version
    )


def test_build_leaves_out_a_first_version_below_the_floor_unless_required(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    store = ReleaseStore(MlflowClient(uri), uri)
    candidates = {
        "acme_air": register_version(store.client, tmp_path, "acme_air", 0.9),
        "initech_saas": register_version(store.client, tmp_path, "initech_saas", 0.52),
    }

    def dag(dag_id: str, floor: dict[str, float], require: bool) -> Any:
        source = FLOOR_DAG.format(dag_id=dag_id, floor=floor, candidates=candidates, require=require)
        return load_dag(airflow_db, dag_id, source)

    withheld = dag("release_require_floor", {"roc_auc": 0.6}, True).test()
    assert withheld.state == "failed"
    assert store.latest() is None
    assert not store.client.get_registered_model("adapter-acme_air").aliases  # no alias moved

    run = dag("release_floor", {"roc_auc": 0.6}, False).test()
    assert run.state == "success"
    result = run.get_task_instance("release").xcom_pull(task_ids="release")
    reason = "no production adapter: ROC AUC 0.52 < floor 0.6"
    assert [(p["customer"], p["promoted"], p["reason"]) for p in result["promotions"]][1] == (
        "initech_saas",
        False,
        reason,
    )
    assert store.failures(result["release_id"]) == {"initech_saas": reason}
    assert [a.customer for a in store.manifest(result["release_id"]).adapters] == ["acme_air"]

    # The DAG param lowers the floor: the customer joins the next release.
    lowered = dag("release_low_floor", {"roc_auc": 0.5}, True).test()
    assert lowered.state == "success"
    assert store.latest().adapter_count == 2  # type: ignore[union-attr]


def test_the_cli_and_the_operator_build_the_same_release_from_the_same_registry(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One promote-then-register (:func:`promote_all`): ``retrain release build --promote`` and the
    DAGs' operator, given the same registry, promote the same versions and register the same MD5."""
    registry = tmp_path / "registry.db"
    store = ReleaseStore.open(f"sqlite:///{registry}")
    released = {c: register_version(store.client, tmp_path, c, 0.9) for c in ("acme_air", "globex_bank")}
    promote_all(store, released)  # a release in production, as an earlier run left it
    candidates = {  # what training registered since: what the CLI finds as challengers
        "acme_air": register_version(store.client, tmp_path, "acme_air", 0.95),
        "initech_saas": register_version(store.client, tmp_path, "initech_saas", 0.52),  # below the floor
    }
    uris = {}
    for side in ("cli", "operator"):
        shutil.copyfile(registry, tmp_path / f"{side}.db")
        uris[side] = f"sqlite:///{tmp_path / f'{side}.db'}"

    assert cli.main(["release", "build", "--promote", "--mlflow-uri", uris["cli"]]) == 0
    printed = capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uris["operator"])
    state, result = run_release_task(
        airflow_db, "release_parity", f"BuildReleaseOperator(task_id='release', candidates={candidates!r})"
    )

    assert state == "success"
    assert result is not None
    by_cli, by_operator = (ReleaseStore.open(uris[side]) for side in ("cli", "operator"))
    built = by_cli.latest()
    assert built is not None
    assert result["release_id"] == built.release_id != store.latest().release_id  # type: ignore[union-attr]
    assert by_operator.manifest(result["release_id"]) == by_cli.manifest(built.release_id)
    assert (
        by_operator.failures(result["release_id"])
        == by_cli.failures(built.release_id)
        == {"initech_saas": "no production adapter: ROC AUC 0.52 < floor 0.6"}
    )
    for promotion in result["promotions"]:  # the CLI printed the same decision for each
        verdict = "promoted" if promotion["promoted"] else "rejected"
        assert f"{verdict} {promotion['customer']} v{promotion['version']}: {promotion['reason']}" in printed


def test_unusable_gate_settings_fail_the_dag_import() -> None:
    from retrain_airflow.operators.release import BuildReleaseOperator

    cases: list[tuple[dict[str, Any], str]] = [
        ({"metric": "nope"}, "unknown promotion metric 'nope'"),
        ({"tolerance": float("nan")}, "promotion tolerance must be a finite number >= 0, got nan"),
        ({"tolerance": -0.5}, "promotion tolerance must be a finite number >= 0, got -0.5"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            BuildReleaseOperator(task_id="release", **kwargs)


ONE_TASK_DAG = """
import datetime as dt
from airflow.sdk import DAG
from retrain_airflow.operators.release import (
    BuildReleaseOperator, PinReleaseOperator, ResolveReleaseOperator, RollbackReleaseOperator,
)

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    {operator}
"""


def run_release_task(home: Path, dag_id: str, operator: str) -> tuple[str, dict[str, Any] | None]:
    """Run ``operator`` (its call, task_id ``release``) as a one-task DAG: its state and result."""
    run = load_dag(home, dag_id, ONE_TASK_DAG.format(dag_id=dag_id, operator=operator)).test()
    return run.state, run.get_task_instance("release").xcom_pull(task_ids="release")


def test_rollback_pin_and_resolve_move_and_find_releases(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    store = ReleaseStore(MlflowClient(uri), uri)
    first = {c: register_version(store.client, tmp_path, c, 0.9) for c in ("acme_air", "globex_bank")}

    def build(dag_id: str, candidates: dict[str, str]) -> dict[str, Any]:
        state, result = run_release_task(
            airflow_db, dag_id, f"BuildReleaseOperator(task_id='release', candidates={candidates!r})"
        )
        assert state == "success"
        assert result is not None
        return result

    def production_version(customer: str) -> str:
        return store.production_manifest().by_customer()[customer].version

    one = build("release_one", first)["release_id"]
    newer = register_version(store.client, tmp_path, "acme_air", 0.95)
    built = build("release_two", {"acme_air": newer})
    two = built["release_id"]
    assert [(p["customer"], p["promoted"]) for p in built["promotions"]] == [("acme_air", True)]
    assert built["diff"]
    assert all("acme_air" in line for line in built["diff"])

    state, result = run_release_task(
        airflow_db, "rollback_customer", "RollbackReleaseOperator(task_id='release', customer='acme_air')"
    )
    assert state == "success"
    assert result is not None
    assert result["note"] == f"rollback of acme_air: v{newer} -> v{first['acme_air']}"
    assert result["diff"]  # what changed from the release in production before
    assert production_version("acme_air") == first["acme_air"]

    state, result = run_release_task(
        airflow_db, "rollback_release", f"RollbackReleaseOperator(task_id='release', release_id={two!r})"
    )
    assert state == "success"
    assert result is not None
    assert (result["release_id"], result["event"]) == (two, "rollback")
    assert production_version("acme_air") == newer

    pin = f"release_id={one!r}, pin_from='2026-10-01', pin_to='2026-10-31'"
    state, result = run_release_task(
        airflow_db, "pin_release", f"PinReleaseOperator(task_id='release', {pin})"
    )
    assert state == "success"
    assert result is not None
    assert (result["release_id"], result["event"], result["diff"]) == (one, "pin", [])
    assert production_version("acme_air") == newer  # a pin moves no alias

    resolved = {
        "resolve_pinned_day": ("day='2026-10-15'", ("success", one)),  # the pin wins
        "resolve_by_id": (f"release_id={two!r}, day='2026-10-15'", ("success", two)),  # the id wins
        "resolve_day_before_any": ("day='2020-01-01'", ("failed", None)),
        "resolve_unknown_id": (f"release_id={'0' * 32!r}", ("failed", None)),
        "resolve_nothing": ("release_id=''", ("failed", None)),  # neither an id nor a day
    }
    for dag_id, (arguments, expected) in resolved.items():
        state, result = run_release_task(
            airflow_db, dag_id, f"ResolveReleaseOperator(task_id='release', {arguments})"
        )
        assert (state, result and result["release_id"]) == expected, dag_id


@pytest.mark.parametrize(
    "arguments",
    [{}, {"release_id": "0" * 32, "customer": "acme_air"}],
    ids=["neither", "both"],
)
def test_rollback_takes_exactly_one_of_a_release_or_a_customer(arguments: dict[str, str]) -> None:
    from retrain_airflow.operators.release import RollbackReleaseOperator

    with pytest.raises(InputError, match=r"exactly one of release_id .* or customer"):
        RollbackReleaseOperator(task_id="rollback", **arguments)


@pytest.mark.parametrize("day", ["yesterday", "2026-13-01", ""])
def test_pin_dates_are_checked_in_one_line(day: str) -> None:
    """A templated date that is no date is the suite's InputError (no plain ValueError), store
    untouched; the task fails without retries, with its message."""
    from airflow.sdk.exceptions import AirflowFailException

    from retrain_airflow.operators.release import PinReleaseOperator

    pin = PinReleaseOperator(task_id="pin", release_id="0" * 32, pin_from=day, pin_to="2026-01-02")
    expected = "needs pin_from" if not day else f"pin_from must be a date YYYY-MM-DD, got '{day}'"
    with pytest.raises(AirflowFailException, match=expected) as raised:
        pin.execute({})  # type: ignore[arg-type]  # no context is read before the dates
    assert isinstance(raised.value.__cause__, InputError)


def test_each_operator_templates_only_its_own_fields() -> None:
    from retrain_airflow.operators.release import (
        BuildReleaseOperator,
        PinReleaseOperator,
        ResolveReleaseOperator,
        RollbackReleaseOperator,
    )

    assert {
        operator.__name__: set(operator.template_fields)
        for operator in (
            BuildReleaseOperator,
            ResolveReleaseOperator,
            RollbackReleaseOperator,
            PinReleaseOperator,
        )
    } == {
        "BuildReleaseOperator": {"candidates", "failures", "floor", "require_floor"},
        "ResolveReleaseOperator": {"release_id", "day"},
        "RollbackReleaseOperator": {"release_id", "customer"},
        "PinReleaseOperator": {"release_id", "pin_from", "pin_to"},
    }
