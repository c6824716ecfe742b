"""Shared compute fixtures: small seeded jobs for every model, and backend availability."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from compute.certificates import CertificateReport, certifiable
from compute.dataset import Dataset, synthetic
from compute.executor import available_backends
from compute.spec import JobSpec, make_spec


@dataclass(frozen=True)
class Case:
    """A named job: its spec and its dataset."""

    name: str
    spec: JobSpec
    dataset: Dataset


def _case(name: str, model: str, params: dict[str, Any], ds: Dataset) -> Case:
    return Case(name, make_spec(model, params, ds.digest), ds)


def small_cases() -> list[Case]:
    """One or two seeded jobs per model, small enough for the unit suite."""
    reg = synthetic("regression", 1500, 8, seed=11)
    blobs = synthetic("blobs", 1500, 5, seed=12, n_classes=4)
    cls2 = synthetic("classification", 1500, 6, seed=13, n_classes=2)
    cls3 = synthetic("classification", 1500, 6, seed=14, n_classes=3)
    return [
        _case("ols", "linear_regression", {}, reg),
        _case("ridge", "linear_regression", {"alpha": 5.0, "fit_intercept": False}, reg),
        _case("kmeans++", "kmeans", {"k": 4, "seed": 5}, blobs),
        _case("kmeans-random", "kmeans", {"k": 5, "seed": 6, "init": "random", "iterations": 50}, blobs),
        _case("pca", "pca", {"n_components": 3}, cls3),
        _case("pca-whiten", "pca", {"n_components": 2, "whiten": True}, reg),
        _case("logistic-binary", "logistic_regression", {}, cls2),
        _case("logistic-multi", "logistic_regression", {"C": 0.3}, cls3),
        _case("mlp", "mlp_train", {"epochs": 4, "hidden": [12], "batch_size": 128}, cls3),
    ]


CASES = small_cases()
# Models whose honest results are always certified here (PCA is certified only where its trace bound applies).
ALWAYS_CERTIFIED = ("linear_regression", "logistic_regression")


def assert_honest_certificate(report: CertificateReport, model: str, where: str = "") -> None:
    """An honest result is never refuted; it is certified where its model always certifies, and a model with no
    sound certificate says so."""
    assert not report.refuted, f"{where}: {report.reason}"
    if model in ALWAYS_CERTIFIED:
        assert report.ok, f"{where}: {report.reason}"
    if not certifiable(model):
        assert report.verdict == "uncertifiable" and "re-run" in report.reason, f"{where}: {report.reason}"
BACKENDS_HERE = available_backends()


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param
