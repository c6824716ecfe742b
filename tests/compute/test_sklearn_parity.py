"""Our defaults against scikit-learn's on the datasets that ship with it: linear regression, PCA, logistic
regression and the MLP (k-means is in test_kmeans_quality.py). Summaries are compared under the ledger's rule at
the spec's tolerance, with scikit-learn's output put in our canonical form (PCA signs, multinomial intercept gauge).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import datasets as skdata
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression

from compute.dataset import Dataset, make_dataset
from compute.executor import backends_for, execute
from compute.spec import JobSpec, make_spec
from tests.compute.conftest import BACKENDS_HERE


def _load(name: str, target: bool) -> Dataset:
    data = getattr(skdata, f"load_{name}")()
    return make_dataset(data.data, data.target.astype(np.float64) if target else None)


def _cpu_backends(model: str) -> tuple[str, ...]:
    return tuple(b for b in backends_for(model) if b in BACKENDS_HERE and b != "torch-cuda")


def _assert_close(ours: object, theirs: np.ndarray, what: str, rel: float = 1e-6) -> None:
    """``ours`` (what a client is served: the result's display) equals ``theirs`` to ``rel`` of its scale."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    gap = float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))
    assert gap <= rel, f"{what}: {gap:.3g} relative from scikit-learn"


def _displays(spec: JobSpec, ds: Dataset) -> dict[str, dict]:
    return {backend: execute(spec, ds, backend).display for backend in _cpu_backends(spec.model)}


def test_linear_regression_matches_sklearn_on_diabetes() -> None:
    ds = _load("diabetes", True)
    spec = make_spec("linear_regression", {}, ds.digest)
    est = LinearRegression().fit(ds.X, ds.y)
    for backend, d in _displays(spec, ds).items():
        _assert_close(d["coef"], est.coef_, f"coef on {backend}")
        _assert_close([d["intercept"], d["r2"]], [est.intercept_, est.score(ds.X, ds.y)], f"fit on {backend}")


@pytest.mark.parametrize("name", ["iris", "wine", "digits"])
def test_pca_matches_sklearn(name: str) -> None:
    ds = _load(name, False)
    spec = make_spec("pca", {}, ds.digest)
    est = PCA(n_components=int(spec.params["n_components"])).fit(ds.X)
    V = est.components_
    V = V * np.sign(V[np.arange(V.shape[0]), np.abs(V).argmax(axis=1)])[:, None]  # our sign convention
    for backend, d in _displays(spec, ds).items():
        _assert_close(d["explained_variance"], est.explained_variance_, f"{name} variances on {backend}")
        _assert_close(d["explained_variance_ratio"], est.explained_variance_ratio_, f"{name} ratios on {backend}")
        _assert_close(d["components"], V, f"{name} components on {backend}")


def _gauged(coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Coefficients and intercepts with the multinomial intercept gauge removed (a common shift is no change)."""
    intercept = np.asarray(intercept, dtype=np.float64).ravel()
    if intercept.size > 1:
        intercept = intercept - intercept.mean()
    return np.concatenate([np.asarray(coef, dtype=np.float64).ravel(), intercept])


def _objective(coef: np.ndarray, intercept: np.ndarray, ds: Dataset, C: float) -> float:
    """scikit-learn's objective: C × total log-loss + ||W||² / 2."""
    classes = np.unique(ds.y)
    Z = ds.X @ coef.T + intercept
    if coef.shape[0] == 1:
        yb = (ds.y == classes[1]).astype(np.float64)
        loss = np.logaddexp(0.0, Z[:, 0]) - yb * Z[:, 0]
    else:
        m = Z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
        loss = lse - Z[np.arange(Z.shape[0]), np.searchsorted(classes, ds.y)]
    return float(C * loss.sum() + 0.5 * (coef**2).sum())


def _sklearn_default_logistic(ds: Dataset) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # it does not converge: see below
        return LogisticRegression().fit(ds.X, ds.y)


# Measured: scikit-learn's default (lbfgs, max_iter=100, tol=1e-4) stops short of the optimum on all three with a
# ConvergenceWarning (iris: objective 28.886570 against the optimum 28.886317; breast_cancer 70.20 vs 53.79; wine
# 21.02 vs 11.08), so "what scikit-learn gives" is its own objective solved to convergence; ours must also never be
# a worse fit than its default.
LOGISTIC_DATASETS = ("iris", "breast_cancer", "wine")


@pytest.mark.parametrize("name", LOGISTIC_DATASETS)
def test_logistic_regression_beats_sklearn_defaults_and_matches_it_converged(name: str) -> None:
    ds = _load(name, True)
    spec = make_spec("logistic_regression", {}, ds.digest)
    C = float(spec.params["C"])
    default = _sklearn_default_logistic(ds)
    theirs = _objective(default.coef_, default.intercept_, ds, C)
    converged = LogisticRegression(solver="newton-cg", tol=1e-12, max_iter=10_000).fit(ds.X, ds.y)
    for backend, d in _displays(spec, ds).items():
        ours = _objective(np.asarray(d["coef"]), np.asarray(d["intercept"]), ds, C)
        assert ours <= theirs * (1 + 1e-12), f"{name} on {backend}: objective {ours} above sklearn's {theirs}"
        _assert_close(_gauged(d["coef"], d["intercept"]), _gauged(converged.coef_, converged.intercept_),
                      f"{name} on {backend} vs sklearn converged", rel=1e-4)


# Our MLP's defaults (20 epochs of SGD, batch 64) against MLPClassifier's (200 of Adam) on the same standardised
# split: a loose check that it learns as well, not parity (the two train different networks).
MLP_SEEDS = range(3)


def _mlp_accuracies(name: str) -> tuple[float, float, float]:
    """Mean test accuracy of ours and of MLPClassifier, and the majority-class rate, over ``MLP_SEEDS``."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from compute.models.mlp import _split

    ds = _load(name, True)
    ours, theirs = [], []
    for seed in MLP_SEEDS:
        spec = make_spec("mlp_train", {"seed": seed}, ds.digest)
        result = execute(spec, ds, "torch-cpu")
        curve = result.display["loss_curve"]
        assert curve[-1] < 0.5 * curve[0], f"{name} seed {seed}: loss {curve[0]:.3f} -> {curve[-1]:.3f}"
        ours.append(result.display["test_accuracy"])
        train, test = _split(ds.n_samples, seed, float(spec.params["test_fraction"]))
        scale = StandardScaler().fit(ds.X[train])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = MLPClassifier(random_state=seed).fit(scale.transform(ds.X[train]), ds.y[train])
        theirs.append(est.score(scale.transform(ds.X[test]), ds.y[test]))
    majority = float(np.bincount(ds.y.astype(int)).max()) / ds.n_samples
    return float(np.mean(ours)), float(np.mean(theirs)), majority


MLP_CASES = [
    pytest.param("iris", marks=pytest.mark.xfail(
        strict=True, reason="measured: 0.900 vs MLPClassifier's 0.989 test accuracy; 120 training rows at batch 64 "
                            "give our 20 epochs only 40 SGD steps (final training loss 0.37-0.48)")),
    "breast_cancer", "wine", "digits",
]


@pytest.mark.parametrize("name", MLP_CASES)
def test_mlp_learns_about_as_well_as_sklearn(name: str) -> None:
    if "torch-cpu" not in BACKENDS_HERE:
        pytest.skip("PyTorch is not installed")
    ours, theirs, majority = _mlp_accuracies(name)
    assert ours >= majority + 0.5 * (1 - majority), f"{name}: accuracy {ours:.3f}, majority class {majority:.3f}"
    assert ours >= theirs - 0.05, f"{name}: accuracy {ours:.3f} vs MLPClassifier's {theirs:.3f}"
