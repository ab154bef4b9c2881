"""What each error answers is data, checked here over every subclass of RetrainError in the suite."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest

import retrain
import retrain_airflow
from retrain.engine.errors import AdapterFileError, EngineError, EngineInputError
from retrain.errors import (
    OUTCOMES,
    ConflictError,
    InputError,
    NotFoundError,
    RetrainError,
    ServiceUnreachableError,
)
from retrain.fanout.argo_client import ArgoError

KINDS: tuple[type[RetrainError], ...] = (InputError, NotFoundError, ConflictError, ServiceUnreachableError)
# Modules that import KServe or its Prometheus client, which only .venv-serve has.
NEEDS_SERVE_EXTRA = {
    "retrain.serving.model": ("kserve",),
    "retrain.serving.kserve_server": ("kserve",),
    "retrain.serving.metrics": ("prometheus_client",),
    "retrain.serving.rest_infer": ("orjson", "kserve"),
}
# Process entry points: the first runs the command line, the second installs doltlite's engine,
# which after sqlite3 re-executes the interpreter. Neither defines an error.
ENTRY_POINTS = {"retrain.cli.__main__", "retrain.dolt.worker"}


def every_error() -> list[type[RetrainError]]:
    """Every subclass of RetrainError the suite defines, after importing each of its modules."""
    for package in (retrain, retrain_airflow):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name in ENTRY_POINTS:
                continue
            try:
                importlib.import_module(module.name)
            except ModuleNotFoundError as error:
                if error.name not in NEEDS_SERVE_EXTRA.get(module.name, ()):
                    raise

    def below(cls: type[RetrainError]) -> Iterator[type[RetrainError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    found = {cls for cls in below(RetrainError) if cls.__module__.startswith(("retrain", "retrain_airflow"))}
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


ERRORS = every_error()


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_bases_that_disagree_never_decide_by_their_order(cls: type[RetrainError]) -> None:
    """Where two bases state different outcomes, the class states its own."""
    for name in OUTCOMES:
        stated = {getattr(base, name) for base in cls.__bases__ if stated_below_the_root(base, name)}
        assert len(stated) <= 1 or name in vars(cls), (cls, name, stated)


def stated_below_the_root(cls: type, name: str) -> bool:
    """Whether a class below RetrainError states ``name`` for ``cls`` (not the root's default)."""
    if not issubclass(cls, RetrainError):
        return False
    return next(c for c in cls.__mro__ if name in vars(c)) is not RetrainError


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_each_kind_answers_its_status(cls: type[RetrainError]) -> None:
    """A class of one kind answers that kind's status; one of two kinds, one of theirs."""
    kinds = [kind for kind in KINDS if issubclass(cls, kind)]
    if kinds:
        assert cls.http_status in {kind.http_status for kind in kinds}, (cls, kinds)
    assert cls.retryable or not issubclass(cls, ServiceUnreachableError), cls
    assert cls.exit_code == 1
    assert 400 <= cls.http_status < 600


def test_a_new_class_whose_bases_disagree_must_state_its_status() -> None:
    with pytest.raises(TypeError, match=r"Ambiguous inherits http_status \[409, 502\] .*: state its own"):
        type("Ambiguous", (ArgoError, ConflictError), {})
    stated = type("Stated", (ArgoError, ConflictError), {"http_status": 409})
    assert stated.http_status == 409


def test_server_faults_never_answer_400() -> None:
    """The engine's own faults (a broken release, an unsupported device, the serve extra missing) are
    the server's: 500; not loaded yet or stopping: 503, try again. Only the request's fault is 400."""
    from retrain.serving.server import ServeExtraMissing

    for fault in (EngineError, AdapterFileError, ServeExtraMissing):
        assert fault.http_status == 500
        assert not issubclass(fault, InputError)
    assert issubclass(EngineInputError, InputError)
