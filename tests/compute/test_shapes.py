"""A spec's summary length and shape problems, known before running: the predictions equal what real runs give,
and every problem caught here is the one the run itself raises (with the same error code; the code table itself is
tested in test_errors.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from compute.dataset import make_dataset, synthetic
from compute.errors import (
    ComputeError,
    DatasetError,
    SpecError,
    error_code,
)
from compute.executor import execute
from compute.models._torch import torch_available
from compute.shapes import check_shape, n_classes_of, summary_len
from compute.spec import make_spec
from tests.compute.conftest import Case

REG = synthetic("regression", 120, 5, seed=1)
BLOBS = synthetic("blobs", 90, 3, seed=2, n_classes=4)
CLS2 = synthetic("classification", 100, 4, seed=3, n_classes=2)
CLS5 = synthetic("classification", 150, 3, seed=4, n_classes=5)

SHAPED = [
    ("ols", "linear_regression", {}, REG),
    ("ridge-no-intercept", "linear_regression", {"alpha": 2.0, "fit_intercept": False}, REG),
    ("kmeans-k1", "kmeans", {"k": 1}, BLOBS),
    ("kmeans-k7", "kmeans", {"k": 7, "seed": 3}, BLOBS),
    ("pca-1", "pca", {"n_components": 1}, REG),
    ("pca-3-whiten", "pca", {"n_components": 3, "whiten": True}, CLS5),
    ("logistic-binary", "logistic_regression", {}, CLS2),
    ("logistic-binary-no-intercept", "logistic_regression", {"fit_intercept": False}, CLS2),
    ("logistic-5", "logistic_regression", {"C": 0.5}, CLS5),
    ("mlp-short", "mlp_train", {"epochs": 3, "hidden": [4], "batch_size": 64}, CLS5),
    ("mlp-deep", "mlp_train", {"epochs": 2, "hidden": [3, 5, 2], "batch_size": 64}, CLS2),
    ("mlp-long-curve", "mlp_train", {"epochs": 70, "hidden": [2], "batch_size": 512}, CLS2),
]


@pytest.mark.parametrize(("model", "params", "ds"), [s[1:] for s in SHAPED], ids=[s[0] for s in SHAPED])
def test_the_predicted_summary_length_is_what_a_run_gives(model: str, params: dict[str, Any], ds: Any) -> None:
    if model == "mlp_train" and not torch_available():
        pytest.skip("mlp_train needs PyTorch")
    spec = make_spec(model, params, ds.digest)
    n, d = ds.X.shape
    result = execute(spec, ds)
    assert summary_len(spec, n, d, n_classes_of(ds.y)) == len(result.summary)
    check_shape(spec, ds, max_summary_len=len(result.summary))  # exactly at the limit passes


def test_every_model_of_the_shared_cases_is_predicted_too(case: Case) -> None:
    if case.spec.model == "mlp_train" and not torch_available():
        pytest.skip("mlp_train needs PyTorch")
    n, d = case.dataset.X.shape
    assert summary_len(case.spec, n, d, n_classes_of(case.dataset.y)) == len(execute(case.spec, case.dataset).summary)


def _same_error_as_a_run(spec: Any, ds: Any) -> ComputeError:
    with pytest.raises(ComputeError) as checked:
        check_shape(spec, ds)
    with pytest.raises(ComputeError) as ran:
        execute(spec, ds)
    assert type(checked.value) is type(ran.value)
    assert error_code(checked.value) == error_code(ran.value)
    return checked.value


@pytest.mark.parametrize(("model", "params", "ds", "field"), [
    ("kmeans", {"k": 91}, BLOBS, "params.k"),
    ("pca", {"n_components": 6}, REG, "params.n_components"),
    ("pca", {"n_components": 4}, synthetic("regression", 4, 6, seed=5), "params.n_components"),
])
def test_shape_problems_are_the_errors_the_run_raises(model: str, params: dict[str, Any], ds: Any,
                                                      field: str) -> None:
    err = _same_error_as_a_run(make_spec(model, params, ds.digest), ds)
    assert isinstance(err, SpecError) and err.field == field


def test_targets_and_classes_are_checked_before_running() -> None:
    one_class = make_dataset(CLS2.X, np.zeros(CLS2.X.shape[0]))
    no_target = make_dataset(REG.X)
    fractional = make_dataset(REG.X, REG.y)
    for model, ds in [("logistic_regression", one_class), ("linear_regression", no_target),
                      ("logistic_regression", fractional), ("logistic_regression", no_target)]:
        assert isinstance(_same_error_as_a_run(make_spec(model, {}, ds.digest), ds), DatasetError)
    if torch_available():
        _same_error_as_a_run(make_spec("mlp_train", {"epochs": 1}, one_class.digest), one_class)
    # a well-shaped job passes
    check_shape(make_spec("kmeans", {"k": 90}, BLOBS.digest), BLOBS)


def test_a_summary_longer_than_the_chain_allows_is_refused_by_name() -> None:
    # 50 centres × 3 features + inertia + the labels' 9-value sketch = 160 values
    spec = make_spec("kmeans", {"k": 50}, BLOBS.digest)
    check_shape(spec, BLOBS, max_summary_len=160)
    with pytest.raises(SpecError) as err:
        check_shape(spec, BLOBS, max_summary_len=159)
    assert err.value.field == "summary" and "160" in str(err.value) and "159" in str(err.value)


