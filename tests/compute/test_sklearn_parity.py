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
from sklearn.metrics import log_loss

from compute.canonical import quantise
from compute.dataset import Dataset, make_dataset
from compute.executor import backends_for, execute
from compute.spec import JobSpec, make_spec
from ledger.verdict import summaries_agree
from tests.compute.conftest import BACKENDS_HERE


def _load(name: str, target: bool) -> Dataset:
    data = getattr(skdata, f"load_{name}")()
    return make_dataset(data.data, data.target.astype(np.float64) if target else None)


def _cpu_backends(model: str) -> tuple[str, ...]:
    return tuple(b for b in backends_for(model) if b in BACKENDS_HERE and b != "torch-cuda")


def _gap(a: list[int], b: list[int], spec: JobSpec) -> float:
    """The worst entry's difference in units of what the tolerance allows (≤ 1 agrees)."""
    tol = spec.tolerance
    return max(abs(x - y) * 1e6 / (tol.abs * 1e6 + tol.ppm * max(abs(x), abs(y))) for x, y in zip(a, b, strict=True))


def _assert_parity(spec: JobSpec, ds: Dataset, theirs: np.ndarray, what: str) -> None:
    expected = quantise(theirs, spec.precision)
    tol = spec.tolerance
    for backend in _cpu_backends(spec.model):
        ours = execute(spec, ds, backend).summary
        assert summaries_agree(ours, expected, tol.abs, tol.ppm), (
            f"{what} on {backend}: {_gap(ours, expected, spec):.3g}× the tolerance from scikit-learn"
        )


def test_linear_regression_matches_sklearn_on_diabetes() -> None:
    ds = _load("diabetes", True)
    spec = make_spec("linear_regression", {}, ds.digest)
    est = LinearRegression().fit(ds.X, ds.y)
    _assert_parity(spec, ds, np.concatenate([est.coef_, [est.intercept_, est.score(ds.X, ds.y)]]), "diabetes")


@pytest.mark.parametrize("name", ["iris", "wine", "digits"])
def test_pca_matches_sklearn(name: str) -> None:
    ds = _load(name, False)
    spec = make_spec("pca", {}, ds.digest)
    est = PCA(n_components=int(spec.params["n_components"])).fit(ds.X)
    V = est.components_
    V = V * np.sign(V[np.arange(V.shape[0]), np.abs(V).argmax(axis=1)])[:, None]  # our sign convention
    _assert_parity(spec, ds, np.concatenate([V.ravel(), est.explained_variance_, est.explained_variance_ratio_]),
                   name)


def _logistic_summary(est: LogisticRegression, ds: Dataset) -> np.ndarray:
    intercept = est.intercept_ - (est.intercept_.mean() if est.classes_.size > 2 else 0.0)  # our gauge
    metrics = [est.score(ds.X, ds.y), log_loss(ds.y, est.predict_proba(ds.X))]
    return np.concatenate([est.coef_.ravel(), intercept, metrics])


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
# ConvergenceWarning; our Newton reaches it (lower objective, and parity with scikit-learn converged, below).
LOGISTIC_DEFAULT_GAP = {
    "iris": "152× the tolerance; objective 28.886317 (ours) vs 28.886570",
    "breast_cancer": "19,460× the tolerance; objective 53.79 (ours) vs 70.20",
    "wine": "19,422× the tolerance; objective 11.08 (ours) vs 21.02",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=f"sklearn's default lbfgs does not converge: {g}"))
     for n, g in LOGISTIC_DEFAULT_GAP.items()],
)
def test_logistic_regression_matches_sklearn_defaults(name: str) -> None:
    ds = _load(name, True)
    spec = make_spec("logistic_regression", {}, ds.digest)
    _assert_parity(spec, ds, _logistic_summary(_sklearn_default_logistic(ds), ds), name)


@pytest.mark.parametrize("name", list(LOGISTIC_DEFAULT_GAP))
def test_logistic_regression_beats_sklearn_defaults_and_matches_it_converged(name: str) -> None:
    ds = _load(name, True)
    spec = make_spec("logistic_regression", {}, ds.digest)
    C = float(spec.params["C"])
    default = _sklearn_default_logistic(ds)
    theirs = _objective(default.coef_, default.intercept_, ds, C)
    for backend in _cpu_backends(spec.model):
        d = execute(spec, ds, backend).display
        ours = _objective(np.asarray(d["coef"]), np.asarray(d["intercept"]), ds, C)
        assert ours <= theirs * (1 + 1e-12), f"{name} on {backend}: objective {ours} above sklearn's {theirs}"
    converged = LogisticRegression(solver="newton-cg", tol=1e-12, max_iter=10_000).fit(ds.X, ds.y)
    _assert_parity(spec, ds, _logistic_summary(converged, ds), f"{name} (sklearn converged)")


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
