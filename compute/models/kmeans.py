"""k-means (Lloyd's algorithm), best of ``n_init`` seeded starts that every backend shares, ties broken one way.

Starts. The data are first centred on their column means (as scikit-learn does), so the expanded distance
``|x|² - 2x·c + |c|²`` keeps the clusters' detail under a large common offset. Start ``i`` is drawn in NumPy from
``default_rng([seed, i])``: greedy k-means++ as scikit-learn does it (each step samples ``2 + int(ln k)`` rows by D²
weight and keeps the one that lowers the potential most) or ``k`` distinct ``random`` rows. The draw uses NumPy's own
loops (einsum, sum, cumsum), never BLAS, whose last bits change with the kernel and thread count, so every backend
starts from bit-identical centres.

Ties. On lattice or duplicated data a point is often exactly as far from two centres, and which one a backend's
rounding calls nearer depends on its BLAS kernel and thread count; one flipped label sends Lloyd to another local
optimum. Every backend therefore applies one rule: a point goes to the lowest-index centre whose squared distance is
within ``TIE_REL · (|x|² + d²_min)`` (plus ``TIE_REL · TIE_FLOOR`` of the mean ``|x|²``) of the smallest. That
is far above any backend's rounding (about ``d · 2⁻⁵³`` of the same scale) and far below any difference that changes
the clustering. Index means the order of the shared starting centres, which every backend holds bit for bit.
The ``sklearn`` backend runs this loop with scikit-learn's distance kernel (``euclidean_distances``) and NumPy
for the rule and the means: ``KMeans.fit`` labels tied points by its own rounding (and relocates empty clusters),
so on such data it cannot agree with the other backends. Empty clusters keep their previous centre everywhere.

Best of n_init. Each start runs Lloyd to a fixed point (labels repeat, scikit-learn's ``tol=0``) or ``iterations``
updates. The result is the lowest-index start whose inertia is within ``BEST_REL`` of the smallest. Taking the plain
minimum would let rounding choose between two starts whose inertias are equal in exact arithmetic (mirror-image
partitions of symmetric data); quantising the inertias first would leave a rounding boundary that such a tie can
straddle. A window has no boundary at a tie, only at a gap of exactly the window.

Summary. What honest runs agree on exactly is the partition, so the canonical order comes from it: clusters by
their first row, empty clusters last in starting order. (Sorting centres by coordinate would let two centres that
share a coordinate in exact arithmetic, as on a lattice, swap places by rounding.) The summary is these centres and
then the root-mean-square distance ``sqrt(inertia / n)``: every entry is in data units, so a precision that holds
the centres holds it too. The inertia itself (squared units times n) overflows the int64 summary at 6 digits once
it passes 9.2e12, which 1,000 rows of spread 1e5 already do; it stays in the artifact and the display. Last, a
sketch of the labels (``base.sketch``), so the partition served is the one compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from compute.errors import ExecutionError, SpecError
from compute.models._torch import as_tensor, torch_for
from compute.models.base import Check, Fields, ModelDef, sketch

TIE_REL = 1e-10  # squared distances this close (relative to |x|² + d²) are a tie, won by the lower index
TIE_FLOOR = 1e-6  # of the mean |x|², added to that scale so that points at the data's mean still tie robustly
BEST_REL = 1e-6  # starts whose inertias are this close count as equally good; the lowest index wins
BEST_FLOOR = 1e-12  # of the total sum of squares: all near-perfect fits are equally good
_CANCEL = 1e-6  # below this fraction of |x|² + |c|² the expanded distance has lost too many digits

Lloyd = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, float, int]]


def _fix_cancelled(mind: np.ndarray, X: np.ndarray, xx: np.ndarray, C: np.ndarray, labels: np.ndarray) -> float:
    """The inertia from each row's expanded distance to its centre, recomputed as a difference where the
    expanded form cancelled (a row at or next to its centre)."""
    cc = np.einsum("ij,ij->i", C, C)[labels]
    near = mind <= _CANCEL * (xx + cc)
    if near.any():
        diff = X[near] - C[labels[near]]
        mind = mind.copy()
        mind[near] = np.einsum("ij,ij->i", diff, diff)
    return float(mind.sum())


def _sq_dist_to(X: np.ndarray, xx: np.ndarray, lim: np.ndarray, c: np.ndarray, cc: float) -> np.ndarray:
    """Squared distances from every row of ``X`` to ``c``, the same bits on every machine: the expanded form by
    NumPy's own einsum (no BLAS), and the difference form where the expanded one cancelled (``lim`` is
    ``_CANCEL · |x|²``)."""
    d2 = np.einsum("ij,j->i", X, c)
    d2 *= -2.0
    d2 += xx
    d2 += cc
    near = d2 <= lim + _CANCEL * cc
    if near.any():
        diff = X[near] - c
        d2[near] = np.einsum("ij,ij->i", diff, diff)
    return d2


def initial_centres(
    X: np.ndarray, k: int, seed: int | Sequence[int], init: str, xx: np.ndarray | None = None
) -> np.ndarray:
    """The shared starting centres drawn from ``default_rng(seed)``: greedy k-means++ or ``random`` rows."""
    n = X.shape[0]
    if k > n:
        raise SpecError("params.k", f"k={k} exceeds the dataset's {n} samples")
    rng = np.random.default_rng(seed)
    if init == "random":
        return X[np.sort(rng.choice(n, size=k, replace=False))].copy()
    if xx is None:
        xx = np.einsum("ij,ij->i", X, X)
    lim = _CANCEL * xx
    trials = 2 + int(math.log(k))
    chosen = [int(rng.integers(n))]
    closest = _sq_dist_to(X, xx, lim, X[chosen[0]], float(xx[chosen[0]]))
    for _ in range(1, k):
        cum = np.cumsum(closest)
        # All-zero weights (every row already a centre) give row 0: a duplicate centre, as scikit-learn picks.
        ids = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), n - 1)
        cands = [np.minimum(closest, _sq_dist_to(X, xx, lim, X[i], float(xx[i]))) for i in ids]
        pots = np.array([float(c.sum()) for c in cands])
        # The first candidate within rounding of the best, so exact ties (symmetric data) go one way everywhere.
        t = int(np.argmax(pots <= pots.min() * (1.0 + TIE_REL)))
        chosen.append(int(ids[t]))
        closest = cands[t]
    return X[chosen].copy()


def nearest_centre(d2: np.ndarray, xx: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The tie rule on an n × k matrix of squared distances (NumPy): the lowest index within the tie band, and
    each row's squared distance to it."""
    m = np.maximum(d2.min(axis=1), 0.0)
    band = m + TIE_REL * (xx + m) + floor
    labels = np.argmax(d2 <= band[:, None], axis=1)  # argmax of booleans is the first True
    return labels, np.maximum(np.take_along_axis(d2, labels[:, None], axis=1)[:, 0], 0.0)


def best_start(inertias: Sequence[float], total: float) -> int:
    """The lowest-index start whose inertia is within ``BEST_REL`` (plus ``BEST_FLOOR`` of ``total``, the sum of
    squares about the mean) of the smallest: rounding cannot turn a tie between starts into a disagreement."""
    lo = min(inertias)
    bound = lo + BEST_REL * lo + BEST_FLOOR * total
    return next(i for i, v in enumerate(inertias) if v <= bound)


def _means_onehot(X: np.ndarray, labels: np.ndarray, C: np.ndarray) -> np.ndarray:
    n, k = X.shape[0], C.shape[0]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    counts = onehot.sum(axis=0)
    return np.where(counts[:, None] > 0, (onehot.T @ X) / np.maximum(counts, 1.0)[:, None], C)


def _means_bincount(X: np.ndarray, labels: np.ndarray, C: np.ndarray) -> np.ndarray:
    k = C.shape[0]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(X.shape[1])], axis=1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], C)


def _lloyd_cpu(X: np.ndarray, xx: np.ndarray, floor: float, iterations: int, backend: str) -> Lloyd:
    """Lloyd for ``numpy`` (BLAS distances, one-hot means) or ``sklearn`` (its distance kernel, bincount means)."""
    if backend == "sklearn":
        from sklearn.metrics.pairwise import euclidean_distances

        xx_col = xx[:, None]

        def dist(C: np.ndarray) -> np.ndarray:
            return euclidean_distances(X, C, X_norm_squared=xx_col, squared=True)

        means = _means_bincount
    else:

        def dist(C: np.ndarray) -> np.ndarray:
            d2 = X @ C.T
            d2 *= -2.0
            d2 += xx[:, None]
            d2 += np.einsum("ij,ij->i", C, C)[None, :]
            return d2

        means = _means_onehot

    def run(C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        labels, mind = nearest_centre(dist(C), xx, floor)
        n_iter = 0
        for _ in range(iterations):
            C = means(X, labels, C)
            n_iter += 1
            new, mind = nearest_centre(dist(C), xx, floor)
            if np.array_equal(new, labels):
                break
            labels = new
        return C, labels, _fix_cancelled(mind, X, xx, C, labels), n_iter

    return run


def _lloyd_torch(X: np.ndarray, xx_np: np.ndarray, floor: float, iterations: int, backend: str) -> Lloyd:
    torch, device = torch_for(backend)
    Xt = as_tensor(torch, X, device)
    xx = (Xt * Xt).sum(dim=1)

    def nearest(C: Any) -> tuple[Any, Any]:
        d2 = (Xt @ C.T).mul_(-2.0).add_(xx[:, None]).add_((C * C).sum(dim=1)[None, :])
        m = torch.clamp(d2.min(dim=1).values, min=0.0)
        band = m + TIE_REL * (xx + m) + floor
        index = torch.arange(C.shape[0], device=device)
        # The same rule as nearest_centre: the lowest index inside the band.
        labels = torch.where(d2 <= band[:, None], index, C.shape[0]).min(dim=1).values
        return labels, torch.clamp(d2.gather(1, labels[:, None])[:, 0], min=0.0)

    def inertia(mind: Any, C: Any, labels: Any) -> float:
        # As _fix_cancelled: rows at or next to their centre get the difference form.
        near = mind <= _CANCEL * (xx + (C * C).sum(dim=1)[labels])
        if bool(near.any()):
            diff = Xt[near] - C[labels[near]]
            mind = mind.clone()
            mind[near] = (diff * diff).sum(dim=1)
        return float(mind.sum().item())

    def means(labels: Any, C: Any) -> Any:
        # One-hot matmul rather than index_add_, whose CUDA atomics make sums order-dependent.
        onehot = torch.nn.functional.one_hot(labels, C.shape[0]).to(Xt.dtype)
        counts = onehot.sum(dim=0)
        return torch.where(counts[:, None] > 0, (onehot.T @ Xt) / torch.clamp(counts, min=1.0)[:, None], C)

    def run(C0: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        C = as_tensor(torch, C0, device)
        labels, mind = nearest(C)
        n_iter = 0
        for _ in range(iterations):
            C = means(labels, C)
            n_iter += 1
            new, mind = nearest(C)
            if torch.equal(new, labels):
                break
            labels = new
        return C.cpu().numpy(), labels.cpu().numpy(), inertia(mind, C, labels), n_iter

    return run


def canonical_order(labels: np.ndarray, k: int) -> np.ndarray:
    """Cluster indices in canonical order: by first row, then empty clusters in starting order."""
    first = np.full(k, labels.shape[0], dtype=np.int64)
    present, idx = np.unique(labels, return_index=True)
    first[present] = idx
    return np.lexsort((np.arange(k), first))


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    k, iterations, n_init = int(params["k"]), int(params["iterations"]), int(params["n_init"])
    seed, init = int(params["seed"]), str(params["init"])
    n = X.shape[0]
    if k > n:
        raise SpecError("params.k", f"k={k} exceeds the dataset's {n} samples")
    mean = X.mean(axis=0)
    Xc = X - mean
    xx = np.einsum("ij,ij->i", Xc, Xc)
    # Every squared distance is at most 4 max|x|²; summed over n rows it must still be a float64.
    if not math.isfinite(4.0 * n * float(xx.max())):
        raise ExecutionError(f"squared distances overflow float64 (largest |x - mean|² is {xx.max():.3g}); "
                             "rescale the data")
    total = float(xx.sum())
    floor = TIE_REL * TIE_FLOOR * total / n
    make = _lloyd_torch if backend.startswith("torch") else _lloyd_cpu
    lloyd = make(Xc, xx, floor, iterations, backend)
    runs = [lloyd(initial_centres(Xc, k, (seed, i), init, xx)) for i in range(n_init)]
    best = best_start([r[2] for r in runs], total)
    C, labels, inertia, n_iter = runs[best]
    labels = np.asarray(labels, dtype=np.int64)
    order = canonical_order(labels, k)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return {
        "centres": (np.asarray(C, dtype=np.float64) + mean)[order],
        "labels": rank[labels].astype(np.int32),
        "inertia": inertia,
        "n_iter": n_iter,
        "best_start": best,
    }


SKETCHED = ("labels",)  # the arrays the summary's sketch covers (the centres are in it in full)


def summarise(f: Fields, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    centres = np.asarray(f["centres"])
    n = max(1, int(np.asarray(f["labels"]).size))
    rms = math.sqrt(max(float(f["inertia"]), 0.0) / n)
    # The labels are the partition honest runs agree on exactly; the sketch ties every one of them in.
    summary = np.concatenate([centres.ravel(), [rms], sketch([np.asarray(f[k]) for k in SKETCHED], seed)])
    return summary, {
        "centres": centres.tolist(), "inertia": f["inertia"], "rms_distance": rms, "n_iter": f["n_iter"],
        "best_start": f.get("best_start", 0),
    }


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """Necessary conditions only, which refute a result but never certify one: each label is its nearest
    claimed centre, centres are in canonical order, the inertia matches, and a run that claims to have converged
    before the ``iterations`` cap sits at a Lloyd fixed point (each centre the mean of its points). O(n k d).

    No sound certificate exists short of re-running: a fixed point reached from another seed passes all of
    these and can be 1e7 units off in the objective, and which fixed point (or, capped, which point after
    ``iterations`` updates) is right is decided only by running Lloyd from the spec's own seeded starts.
    ``certifiable=False``: the answer is "re-run it"."""
    k = int(params["k"])
    C = np.asarray(f["centres"], dtype=np.float64)
    labels = np.asarray(f["labels"])
    if C.shape != (k, X.shape[1]) or labels.shape != (X.shape[0],) or labels.min() < 0 or labels.max() >= k:
        return [Check("shapes", float("inf"), 0.0)]
    n = X.shape[0]
    # Distances about the data's mean, as the fit computes them: an offset common to all rows cancels.
    mean = X.mean(axis=0)
    Xc, Cc = X - mean, C - mean
    xx = np.einsum("ij,ij->i", Xc, Xc)
    cc = np.einsum("ij,ij->i", Cc, Cc)
    d2 = xx[:, None] - 2.0 * (Xc @ Cc.T) + cc[None, :]
    mine = d2[np.arange(n), labels]
    # A label is wrong when another centre is nearer by more than rounding in the expanded distance (and more
    # than the fit's tie band, TIE_REL of the same scale).
    slack = 1e-9 * (xx + cc.max() + 1.0)
    wrong = int(np.count_nonzero(mine - d2.min(axis=1) > slack))
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=X[:, j], minlength=k) for j in range(X.shape[1])], axis=1)
    means = sums / np.maximum(counts, 1.0)[:, None]
    scale = max(1.0, float(np.abs(X).max()))
    drift = float(np.abs(means - C)[counts > 0].max(initial=0.0)) / scale
    resid = X - C[labels]
    inertia = float(np.einsum("ij,ij->", resid, resid))
    ordered = bool(np.array_equal(canonical_order(labels, k)[: int(np.count_nonzero(counts))],
                                  np.arange(int(np.count_nonzero(counts)))))
    return [
        Check("labels_not_nearest", float(wrong), 0.0),
        # A capped run's centres are the means of the labels before its last assignment, not of these.
        Check("centre_not_mean", drift if int(f["n_iter"]) < int(params["iterations"]) else 0.0, 1e-9),
        Check("inertia_mismatch", abs(inertia - float(f["inertia"])) / max(1.0, inertia), 1e-8),
        Check("centres_not_canonical", 0.0 if ordered else 1.0, 0.0),
    ]


MODEL = ModelDef("kmeans", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "none", fit, summarise, certify,
                 certifiable=False)
