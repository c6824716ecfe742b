"""The typed-error code table: stable, distinct per class and field or kind, total (never raises)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute.canonical import quantise
from compute.dataset import make_dataset
from compute.errors import (
    _DATASET_KINDS,
    _EXECUTION_KINDS,
    _RESULT_KINDS,
    _SPEC_FIELDS,
    BackendUnavailable,
    ComputeError,
    DatasetError,
    ExecutionError,
    PoolError,
    ResultError,
    SpecError,
    error_code,
)
from compute.executor import execute
from compute.spec import MODEL_PARAMS, make_spec

# Pinned: a ledger may already hold these numbers, so changing one is a protocol change.
PINNED = {
    SpecError("spec", "x"): 101,
    SpecError("model", "x"): 102,
    SpecError("params.no_such_thing", "x"): 103,
    SpecError("precision", "x"): 105,
    SpecError("params.n_components", "x"): 126,
    SpecError("params.lr", "x"): 134,
    SpecError("somewhere.else", "x"): 100,
    DatasetError("x"): 200,
    DatasetError("x", "too_few_classes"): 203,
    DatasetError("x", "nothing_to_train"): 204,
    ExecutionError("x"): 300,
    ExecutionError("x", "non_finite_summary"): 301,
    ExecutionError("x", "overflow_at_precision"): 302,
    ExecutionError("x", "not_converged"): 306,
    DatasetError("x", "magnitude"): 206,
    ResultError("x"): 400,
    BackendUnavailable("torch-cuda", "x"): 500,
    PoolError("x"): 600,
    ComputeError("x"): 900,
}


def test_pinned_codes() -> None:
    for exc, code in PINNED.items():
        assert error_code(exc) == code, exc


def test_codes_are_distinct_small_and_positive() -> None:
    tables = [_SPEC_FIELDS, _DATASET_KINDS, _EXECUTION_KINDS, _RESULT_KINDS]
    codes = [c for t in tables for c in t.values()] + [100, 200, 300, 400, 500, 600, 900]
    assert len(codes) == len(set(codes))
    assert all(isinstance(c, int) and 0 < c < 1000 for c in codes)


def test_every_model_parameter_has_its_own_code() -> None:
    names = {p.name for params in MODEL_PARAMS.values() for p in params}
    codes = {error_code(SpecError(f"params.{n}", "bad")) for n in names}
    assert len(codes) == len(names) and 103 not in codes and 100 not in codes


@given(st.text(max_size=30), st.text(max_size=30))
def test_never_raises(field: str, kind: str) -> None:
    for exc in (SpecError(field, kind), DatasetError(field, kind), ExecutionError(field, kind),
                ResultError(field, kind)):
        assert isinstance(error_code(exc), int) and error_code(exc) > 0


def test_hostile_subclass_still_gets_a_code() -> None:
    class Weird(SpecError):
        @property  # type: ignore[override]
        def field(self) -> str:
            raise RuntimeError("no")

        @field.setter
        def field(self, value: str) -> None:
            pass

    assert error_code(Weird("a", "b")) == 900
    assert error_code(type("Sub", (ExecutionError,), {})("x", "diverged")) == 305


def test_spec_errors_raised_by_the_spec_module_carry_table_codes() -> None:
    bad = [("pca", {"n_components": 0}), ("mlp_train", {"lr": -1.0}), ("kmeans", {"k": "x"}),
           ("logistic_regression", {"nope": 1})]
    codes = []
    for model, params in bad:
        with pytest.raises(SpecError) as info:
            make_spec(model, params, bytes(32))
        codes.append(error_code(info.value))
    assert codes == [126, 134, 122, 103]


def test_deterministic_job_failures_have_their_codes() -> None:
    ds = make_dataset(np.arange(6.0).reshape(3, 2), np.array([0.0, 0.0, 0.0]))
    with pytest.raises(DatasetError) as info:
        execute(make_spec("logistic_regression", {}, ds.digest), ds, "numpy")
    assert error_code(info.value) == 203
    with pytest.raises(ResultError) as info3:
        quantise([float("nan")], 3)
    assert error_code(info3.value) == 401


def test_a_summary_that_overflows_is_an_execution_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from compute.models import pca

    monkeypatch.setattr(pca, "MODEL", dataclasses.replace(pca.MODEL, summarise=lambda f, seed: (np.array([1e300]), {})))
    ds = make_dataset(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ExecutionError) as info:
        execute(make_spec("pca", {"n_components": 1}, ds.digest), ds, "numpy")
    assert error_code(info.value) == 302 and isinstance(info.value.__cause__, ResultError)
