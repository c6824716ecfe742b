"""End to end over real node processes (issue 14): scikit-learn's shipped datasets through a devnet, every model's
verified result compared with what scikit-learn computes directly on the same data.

A careful data scientist's answer is the reference: scikit-learn's defaults, except where those stop short of the
optimum they define (logistic regression's lbfgs stops at 100 iterations unconverged on unscaled data; the
reference there is the same objective solved to convergence, and ours must not be worse than the default's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.e2e.netkit import running_devnet

pytestmark = pytest.mark.slow
sklearn = pytest.importorskip("sklearn")


def _inline(X: np.ndarray, y: np.ndarray | None = None) -> dict:
    body = {"X": np.asarray(X, dtype=float).tolist()}
    if y is not None:
        body["y"] = np.asarray(y, dtype=float).tolist()
    return body


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def test_shipped_datasets_give_what_sklearn_gives(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier

    iris, wine, diabetes, cancer = load_iris(), load_wine(), load_diabetes(), load_breast_cancer()
    jobs = {
        "kmeans": ("kmeans", {"k": 3, "seed": 0}, _inline(iris.data)),
        "pca": ("pca", {"n_components": 3}, _inline(wine.data)),
        "linear_regression": ("linear_regression", {}, _inline(diabetes.data, diabetes.target)),
        "logistic_regression": ("logistic_regression", {}, _inline(iris.data, iris.target)),
        "mlp_train": ("mlp_train", {"seed": 0}, _inline(cancer.data, cancer.target)),
    }
    with running_devnet(tmp_path / "devnet", 4) as nodes:
        clients = [n.client(timeout=120.0) for n in nodes]
        for i in range(len(jobs)):
            clients[i % len(clients)].register_client(f"sk{i}", 1_000)
        submitted = {name: clients[i % len(clients)].submit_job(f"sk{i}", model, 100, params=params,
                                                                 dataset=dataset)["job_id"]
                     for i, (name, (model, params, dataset)) in enumerate(jobs.items())}
        results = {}
        for name, job_id in submitted.items():
            view = clients[0].wait_job(job_id, timeout=180)
            # agreed, or audited too (devnet stakes are small against the pay, so many jobs draw an auditor)
            assert (view["status"], view["verdict"]) in (("verified", "agreed"), ("verified", "audited")), \
                (name, view["verdict"], view["outcomes"], view["history"])
            results[name] = clients[1].job_result(job_id)["artifact"]

    # k-means: the optimum scikit-learn's default finds for some seed (centres in any order), and never worse than
    # its default for any seed (on iris, random_state=0 stops at 78.8557 against the optimum 78.8514).
    runs = [KMeans(n_clusters=3, random_state=seed).fit(iris.data) for seed in range(5)]
    assert results["kmeans"]["inertia"] <= min(r.inertia_ for r in runs) * (1 + 1e-9)
    km = min(runs, key=lambda r: r.inertia_)
    ours = np.asarray(results["kmeans"]["centres"])
    assert _rel(np.sort(ours, axis=0), np.sort(km.cluster_centers_, axis=0)) < 1e-6
    assert abs(results["kmeans"]["inertia"] - km.inertia_) / km.inertia_ < 1e-6

    # PCA: the same variances, and the same directions up to sign.
    pca = PCA(n_components=3).fit(wine.data)
    assert _rel(results["pca"]["explained_variance"], pca.explained_variance_) < 1e-6
    dots = np.abs(np.sum(np.asarray(results["pca"]["components"]) * pca.components_, axis=1))
    assert np.all(dots > 1 - 1e-6), dots

    # Least squares: scikit-learn's coefficients and intercept.
    lr = LinearRegression().fit(diabetes.data, diabetes.target)
    assert _rel(results["linear_regression"]["coef"], lr.coef_) < 1e-6
    assert abs(results["linear_regression"]["intercept"] - lr.intercept_) < 1e-6 * max(1.0, abs(lr.intercept_))

    # Logistic regression: the converged optimum of scikit-learn's objective (C = 1, L2, multinomial), and never
    # a worse fit than its 100-iteration default.
    converged = LogisticRegression(max_iter=100_000, tol=1e-12).fit(iris.data, iris.target)
    ours_coef = np.asarray(results["logistic_regression"]["coef"])
    assert _rel(ours_coef.reshape(converged.coef_.shape), converged.coef_) < 1e-3
    default = LogisticRegression().fit(iris.data, iris.target)
    assert results["logistic_regression"]["accuracy"] >= default.score(iris.data, iris.target) - 1e-9

    # MLP (no exact counterpart: different optimiser and split): it learns about as well as scikit-learn's.
    mlp = MLPClassifier(random_state=0, max_iter=500).fit(cancer.data, cancer.target)
    assert results["mlp_train"]["test_accuracy"] >= min(0.9, mlp.score(cancer.data, cancer.target) - 0.05)
