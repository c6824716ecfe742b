"""k-means (Lloyd's algorithm) from a seeded initialisation that every backend shares.

The initial centres (``k-means++`` D² sampling or ``random`` rows) are drawn once in NumPy from
``default_rng(seed)``, so backends differ only in floating-point detail. Lloyd stops when the labels repeat or
after ``iterations`` updates, exactly as scikit-learn's ``tol=0`` does. Empty clusters keep their previous
centre in the NumPy and PyTorch paths. Canonical form: centres sorted lexicographically, labels renumbered to
match.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.errors import SpecError
from compute.models._torch import as_tensor, torch_for
from compute.models.base import Check, Fields, ModelDef


def initial_centres(X: np.ndarray, k: int, seed: int, init: str) -> np.ndarray:
    """The shared starting centres for ``params`` on ``X``."""
    n = X.shape[0]
    if k > n:
        raise SpecError("params.k", f"k={k} exceeds the dataset's {n} samples")
    rng = np.random.default_rng(seed)
    if init == "random":
        return X[np.sort(rng.choice(n, size=k, replace=False))].copy()
    xx = np.einsum("ij,ij->i", X, X)

    def dist2(i: int) -> np.ndarray:
        # Expanded form: one matrix-vector pass, no n × d temporary.
        return np.maximum(xx - 2.0 * (X @ X[i]) + xx[i], 0.0)

    chosen = [int(rng.integers(n))]
    d2 = dist2(chosen[0])
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0.0:  # fewer distinct points than k: fall back to the first unused index
            idx = next(i for i in range(n) if i not in set(chosen))
        else:
            idx = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            idx = min(idx, n - 1)
        chosen.append(idx)
        d2 = np.minimum(d2, dist2(idx))
    return X[chosen].copy()


def _lloyd_numpy(X: np.ndarray, C: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    n, k = X.shape[0], C.shape[0]
    xx = np.einsum("ij,ij->i", X, X)

    def assign(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d2 = xx[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
        labels = np.argmin(d2, axis=1)
        return labels, np.maximum(d2[np.arange(n), labels], 0.0)

    prev = None
    n_iter = 0
    for _ in range(iterations):
        labels, _ = assign(C)
        if prev is not None and np.array_equal(labels, prev):
            break
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        counts = onehot.sum(axis=0)
        sums = onehot.T @ X
        C = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], C)
        prev = labels
        n_iter += 1
    labels, mind = assign(C)
    return C, labels, float(mind.sum()), n_iter


def _lloyd_torch(
    backend: str, X: np.ndarray, C0: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    torch, device = torch_for(backend)
    Xt = as_tensor(torch, X, device)
    C = as_tensor(torch, C0, device)
    k = C.shape[0]
    xx = (Xt * Xt).sum(dim=1)

    def assign(C: Any) -> tuple[Any, Any]:
        d2 = xx[:, None] - 2.0 * (Xt @ C.T) + (C * C).sum(dim=1)[None, :]
        mind, labels = torch.min(d2, dim=1)
        return labels, torch.clamp(mind, min=0.0)

    prev = None
    n_iter = 0
    for _ in range(iterations):
        labels, _ = assign(C)
        if prev is not None and torch.equal(labels, prev):
            break
        # One-hot matmul rather than index_add_, whose CUDA atomics make sums order-dependent.
        onehot = torch.nn.functional.one_hot(labels, k).to(Xt.dtype)
        counts = onehot.sum(dim=0)
        sums = onehot.T @ Xt
        C = torch.where(counts[:, None] > 0, sums / torch.clamp(counts, min=1.0)[:, None], C)
        prev = labels
        n_iter += 1
    labels, mind = assign(C)
    return C.cpu().numpy(), labels.cpu().numpy(), float(mind.sum().item()), n_iter


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    k, iterations = int(params["k"]), int(params["iterations"])
    C0 = initial_centres(X, k, int(params["seed"]), str(params["init"]))
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        est = KMeans(n_clusters=k, init=C0, n_init=1, max_iter=iterations, tol=0.0, algorithm="lloyd")
        est.fit(X)
        C, labels, inertia, n_iter = est.cluster_centers_, est.labels_, float(est.inertia_), int(est.n_iter_)
    elif backend == "numpy":
        C, labels, inertia, n_iter = _lloyd_numpy(X, C0, iterations)
    else:
        C, labels, inertia, n_iter = _lloyd_torch(backend, X, C0, iterations)
    order = np.lexsort(np.asarray(C).T[::-1])
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return {
        "centres": np.asarray(C, dtype=np.float64)[order],
        "labels": rank[np.asarray(labels, dtype=np.int64)].astype(np.int32),
        "inertia": inertia,
        "n_iter": n_iter,
    }


def summarise(f: Fields) -> tuple[np.ndarray, dict[str, Any]]:
    centres = np.asarray(f["centres"])
    summary = np.concatenate([centres.ravel(), [f["inertia"]]])
    return summary, {"centres": centres.tolist(), "inertia": f["inertia"], "n_iter": f["n_iter"]}


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """A Lloyd fixed point: each point's label is its nearest claimed centre, each centre is the mean of its
    points, centres are in canonical order, and the inertia matches. One assignment pass, O(n k d).

    A run stopped by the ``iterations`` cap before converging is not a fixed point and fails here: such a
    result can only be checked by re-execution (the dispute path falls back to a referee)."""
    k = int(params["k"])
    C = np.asarray(f["centres"], dtype=np.float64)
    labels = np.asarray(f["labels"])
    if C.shape != (k, X.shape[1]) or labels.shape != (X.shape[0],) or labels.min() < 0 or labels.max() >= k:
        return [Check("shapes", float("inf"), 0.0)]
    n = X.shape[0]
    xx = np.einsum("ij,ij->i", X, X)
    cc = np.einsum("ij,ij->i", C, C)
    d2 = xx[:, None] - 2.0 * (X @ C.T) + cc[None, :]
    mine = d2[np.arange(n), labels]
    # A label is wrong when another centre is nearer by more than rounding in the expanded distance.
    slack = 1e-9 * (xx + cc.max() + 1.0)
    wrong = int(np.count_nonzero(mine - d2.min(axis=1) > slack))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(X.shape[1])], axis=1)
    means = sums / np.maximum(counts, 1.0)[:, None]
    scale = max(1.0, float(np.abs(X).max()))
    drift = float(np.abs(means - C)[counts > 0].max(initial=0.0)) / scale
    inertia = float(np.maximum(mine, 0.0).sum())
    ordered = bool(np.array_equal(np.lexsort(C.T[::-1]), np.arange(k)))
    return [
        Check("labels_not_nearest", float(wrong), 0.0),
        Check("centre_not_mean", drift, 1e-9),
        Check("inertia_mismatch", abs(inertia - float(f["inertia"])) / max(1.0, inertia), 1e-8),
        Check("centres_not_canonical", 0.0 if ordered else 1.0, 0.0),
    ]


MODEL = ModelDef("kmeans", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "none", fit, summarise, certify)
