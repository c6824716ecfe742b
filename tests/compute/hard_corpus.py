"""The hard corpus: ill-posed and edge-case jobs on which honest backends must still never dispute.

Each :class:`Entry` is a job (model, params, a seeded dataset) in a category. :func:`run_outcomes` runs entries
on every CPU backend here at 1 and 2 threads and records an :class:`Outcome` per run: the quantised summary, or
the typed compute error (class and stable :func:`compute.errors.error_code`). Two outcomes agree when both are
summaries that agree under the ledger's rule with the spec's tolerance, or both are the same typed error.
:func:`disputes` lists the pairs that do not: each one would be a false dispute between honest workers.

Run as a module (``python -m tests.compute.hard_corpus --datasets IN --out OUT``) it loads datasets written by
:func:`write_datasets` and writes its outcomes as JSON, so the test can rerun the corpus in a child process
with another BLAS kernel (``OPENBLAS_CORETYPE``): the datasets travel as bytes because rebuilding them there
would change their last bits, their digests and so the job.

Extending: write a function returning ``list[Entry]`` and add it to ``CATEGORIES`` (k-means entries go in a
``kmeans`` category the same way); everything else (runs, child process, counts) picks it up.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from compute.canonical import JobResult
from compute.dataset import Dataset, decode_dataset, encode_dataset, make_dataset
from compute.errors import ComputeError, SpecError, error_code
from compute.executor import available_backends, backends_for, execute
from compute.spec import JobSpec, make_spec

THREADS = (1, 2)


@dataclass(frozen=True)
class Entry:
    """One hard job: a name unique in the corpus, its category, and how to build its dataset."""

    name: str
    category: str
    model: str
    params: Mapping[str, Any]
    build: Callable[[], Dataset] = field(repr=False, compare=False)

    @functools.cached_property
    def dataset(self) -> Dataset:
        return self.build()

    def spec_for(self, ds: Dataset) -> JobSpec:
        return make_spec(self.model, dict(self.params), ds.digest)


@dataclass(frozen=True)
class Outcome:
    """What one honest run produced: a summary, or a typed compute error (``error`` = ``Class:code``), or a
    crash (any other exception: a bug, which agrees with nothing)."""

    summary: tuple[int, ...] | None = None
    error: str | None = None
    crash: str | None = None
    result: JobResult | None = field(default=None, compare=False, repr=False)  # in-process runs only

    def to_json(self) -> list[Any]:
        return [None if self.summary is None else list(self.summary), self.error, self.crash]

    @classmethod
    def from_json(cls, wire: list[Any]) -> Outcome:
        return cls(None if wire[0] is None else tuple(wire[0]), wire[1], wire[2])


def agree(a: Outcome, b: Outcome, spec: JobSpec) -> bool:
    """Whether two honest outcomes agree the way the ledger would judge them."""
    from ledger.verdict import summaries_agree  # tests may use the ledger's rule; compute never does

    if a.crash is not None or b.crash is not None:
        return False
    if a.summary is not None and b.summary is not None:
        return summaries_agree(a.summary, b.summary, spec.tolerance.abs, spec.tolerance.ppm)
    return a.error is not None and a.error == b.error


def run_one(spec: JobSpec, ds: Dataset, backend: str, threads: int) -> Outcome:
    try:
        result = execute(spec, ds, backend, threads)
        return Outcome(summary=tuple(result.summary), result=result)
    except ComputeError as exc:
        return Outcome(error=f"{type(exc).__name__}:{error_code(exc)}")
    except Exception as exc:  # a crash is recorded, not raised: the corpus reports every run
        return Outcome(crash=f"{type(exc).__name__}: {exc}")


def cpu_backends(model: str) -> tuple[str, ...]:
    here = available_backends()
    return tuple(b for b in backends_for(model) if b in here and b != "torch-cuda")


def run_outcomes(spec: JobSpec, ds: Dataset, tag: str = "", threads: Iterable[int] = THREADS) -> dict[str, Outcome]:
    """Every CPU backend here at each thread count, keyed ``backend/threads`` (plus ``tag``)."""
    return {
        f"{backend}/{t}{tag}": run_one(spec, ds, backend, t) for backend in cpu_backends(spec.model) for t in threads
    }


def disputes(spec: JobSpec, outcomes: Mapping[str, Outcome]) -> list[tuple[str, str]]:
    """The pairs of honest runs the ledger would see disagree."""
    return [(a, b) for a, b in itertools.combinations(sorted(outcomes), 2) if not agree(outcomes[a], outcomes[b], spec)]


def worst_gap(outcomes: Mapping[str, Outcome]) -> int:
    """The largest per-entry difference, in quantised units, between two summaries of equal length (for
    reports: how far outside the tolerance a dispute is)."""
    sums = [o.summary for o in outcomes.values() if o.summary is not None]
    gaps = [max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0)
            for a, b in itertools.combinations(sums, 2) if len(a) == len(b)]
    return max(gaps, default=0)


# ---------------------------------------------------------------------------------------------------------
# Dataset builders. Anything may use BLAS here: a dataset is built once and then travels as bytes.


def _orthonormal(rows: int, cols: int, rng: np.random.Generator, centred: bool = False) -> np.ndarray:
    G = rng.standard_normal((rows, cols))
    if centred:
        G = G - G.mean(axis=0)
    return np.linalg.qr(G)[0]


def spectrum_data(n: int, variances: Iterable[float], seed: int, offset: float = 0.0,
                  rotate: bool = True) -> np.ndarray:
    """Rows whose sample covariance has exactly the given eigenvalues (to rounding), in a random basis."""
    lam = np.asarray(list(variances), dtype=np.float64)
    d = lam.size
    rng = np.random.default_rng(seed)
    U = _orthonormal(n, d, rng, centred=True)  # columns orthogonal to the all-ones vector: zero mean
    R = _orthonormal(d, d, rng) if rotate else np.eye(d)
    return (U * np.sqrt(lam * (n - 1))) @ R.T + offset


def _labels_from(X: np.ndarray, seed: int, classes: int = 2, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((X.shape[1], classes))
    Z = (X - X.mean(axis=0)) @ W + noise * rng.standard_normal((X.shape[0], classes))
    y = Z.argmax(axis=1)
    k = min(classes, len(y))
    y[:k] = np.arange(k)  # every class present (as many as there are rows)
    return y.astype(np.float64)


def _gauss(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _ds(X: np.ndarray, y: np.ndarray | None = None) -> Callable[[], Dataset]:
    return lambda: make_dataset(X, y)


def _lazy(fn: Callable[[], tuple[np.ndarray, np.ndarray | None]]) -> Callable[[], Dataset]:
    return lambda: make_dataset(*fn())


# ---------------------------------------------------------------------------------------------------------
# Categories.


def pca_entries() -> list[Entry]:
    """Degenerate and rank-deficient PCA: repeated eigenvalues, tiny gaps at several scales, rank below
    n_components, constant and duplicated columns, a large offset, all-constant data."""
    out: list[Entry] = []

    def add(name: str, m: int, build: Callable[[], np.ndarray], whiten: bool = False) -> None:
        out.append(Entry(f"pca/{name}", "pca", "pca", {"n_components": m, "whiten": whiten},
                         _lazy(lambda: (build(), None))))

    iso = lambda: spectrum_data(64, [1.0] * 6, seed=1)  # noqa: E731 -- covariance = I: every basis is right
    add("isotropic-m1", 1, iso)
    add("isotropic-m3", 3, iso)
    add("isotropic-m6", 6, iso, whiten=True)
    rep = lambda: spectrum_data(80, [3, 3, 2, 2, 2, 1, 0.5], seed=2)  # noqa: E731
    add("repeated-m2", 2, rep)
    add("repeated-m3-cut-in-cluster", 3, rep)
    add("repeated-m5", 5, rep)
    for g in (1e-14, 1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4):
        gap = lambda g=g: spectrum_data(60, [1.0, 1.0 - g, 0.5, 0.2, 0.1], seed=3)  # noqa: E731
        add(f"gap{g:.0e}-m1", 1, gap)
        add(f"gap{g:.0e}-m2", 2, gap)
        low = lambda g=g: spectrum_data(60, [1.0, 0.5, 0.5 - 0.5 * g, 0.2], seed=4)  # noqa: E731
        add(f"gap{g:.0e}-low-m2", 2, low)
    # Rank 2 in 6 columns, asked for 4 (and all 6).
    lowrank = lambda: _gauss(50, 2, 5) @ _gauss(2, 6, 6)  # noqa: E731
    add("rank2-m2", 2, lowrank)
    add("rank2-m4", 4, lowrank)
    add("rank2-m6", 6, lowrank, whiten=True)
    # Rank 3 but eigenvalues below the rounding floor of the rest (1e-9 of the scale).
    add("rank-near-floor-m4", 4, lambda: spectrum_data(40, [1.0, 0.3, 1e-18, 1e-20, 1e-22], seed=7))

    def constant_cols() -> np.ndarray:
        X = _gauss(40, 5, 8)
        X[:, 1] = 0.1
        X[:, 3] = 7.3
        return X

    add("constant-cols-m3", 3, constant_cols)
    add("constant-cols-m5", 5, constant_cols)

    def duplicated() -> np.ndarray:
        X = _gauss(40, 3, 9)
        return np.column_stack([X, X[:, 0], -X[:, 1]])

    add("duplicated-cols-m2", 2, duplicated)
    add("duplicated-cols-m5", 5, duplicated)
    # The sign convention's pivot is tied: v = (1, -1)/sqrt(2).
    add("sign-pivot-tie", 1,
        lambda: np.column_stack([(a := _gauss(30, 1, 10)[:, 0]), -a, 1e-3 * _gauss(30, 1, 11)[:, 0]]))
    add("offset-1e8", 2, lambda: 1e8 + spectrum_data(50, [1.0, 0.5, 0.25], seed=12))
    add("offset-1e8-tiny-spread", 2, lambda: 1e8 + 1e-3 * _gauss(50, 3, 13))
    add("all-constant", 1, lambda: np.full((20, 3), 0.1))
    add("all-constant-m3", 3, lambda: np.tile([0.1, 3.3, -7.7], (20, 1)))
    add("integer-grid", 2, lambda: np.array(list(itertools.product([-1.0, 1.0], repeat=4))))
    return out


def linear_entries() -> list[Entry]:
    """Ill-conditioned and collinear least squares: duplicated and nearly collinear columns (a target in the
    weak direction too), a Vandermonde design, mixed scales, offsets, constant columns and targets, n < d."""
    out: list[Entry] = []

    def add(name: str, build: Callable[[], tuple[np.ndarray, np.ndarray]], **params: Any) -> None:
        out.append(Entry(f"linear/{name}", "linear", "linear_regression", params, _lazy(build)))

    def duplicated() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(100, 3, 20)
        X = np.column_stack([X, X[:, 0], 2.0 * X[:, 1]])
        return X, X[:, 0] - X[:, 2] + 0.1 * _gauss(100, 1, 21)[:, 0]

    add("duplicated-ols", duplicated)
    add("duplicated-no-intercept", duplicated, fit_intercept=False)
    add("duplicated-tiny-ridge", duplicated, alpha=1e-12)
    for eps in (1e-6, 1e-9, 1e-12, 1e-15):
        def near(eps: float = eps) -> tuple[np.ndarray, np.ndarray]:
            X = _gauss(120, 3, 22)
            X = np.column_stack([X, X[:, 0] + eps * _gauss(120, 1, 23)[:, 0]])
            return X, X[:, 0] + X[:, 1] + 0.05 * _gauss(120, 1, 24)[:, 0]

        def weak(eps: float = eps) -> tuple[np.ndarray, np.ndarray]:
            X, _ = near(eps)
            return X, (X[:, 3] - X[:, 0]) / eps + 0.01 * _gauss(120, 1, 25)[:, 0]

        add(f"near-collinear-{eps:.0e}", near)
        add(f"target-in-weak-direction-{eps:.0e}", weak)

    def vandermonde(degree: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(0.0, 1.0, 200)
        X = np.column_stack([x**k for k in range(1, degree + 1)])
        return X, np.sin(6 * x) + 0.01 * _gauss(200, 1, 26)[:, 0]

    add("vandermonde-8", lambda: vandermonde(8))
    add("vandermonde-15", lambda: vandermonde(15))

    def mixed_scale() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(150, 4, 27) * np.array([1e6, 1.0, 1e-6, 1e-3])
        return X, X @ np.array([1e-6, 2.0, 3e6, -1e3]) + 0.1 * _gauss(150, 1, 28)[:, 0]

    add("mixed-scale", mixed_scale)

    def offset() -> tuple[np.ndarray, np.ndarray]:
        X = 1e8 + _gauss(150, 3, 29)
        return X, (X - 1e8) @ np.array([1.0, -2.0, 0.5]) + 3.0 + 0.1 * _gauss(150, 1, 30)[:, 0]

    add("offset-1e8", offset)

    def constant_col() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(80, 3, 31)
        X[:, 1] = 0.1
        return X, X[:, 0] + 0.1 * _gauss(80, 1, 32)[:, 0]

    add("constant-column", constant_col)
    add("constant-column-no-intercept", constant_col, fit_intercept=False)
    add("constant-target", lambda: (_gauss(50, 3, 33), np.full(50, 0.1)))
    add("underdetermined-n5-d20", lambda: (_gauss(5, 20, 34), _gauss(5, 1, 35)[:, 0]))
    add("underdetermined-n5-d20-no-intercept", lambda: (_gauss(5, 20, 34), _gauss(5, 1, 35)[:, 0]),
        fit_intercept=False)
    add("huge-target", lambda: (_gauss(60, 2, 36), 1e13 * _gauss(60, 1, 37)[:, 0]))
    return out


def logistic_entries() -> list[Entry]:
    """Separable data (coefficients grow with C), capped iterations, duplicated columns, tied rows."""
    out: list[Entry] = []

    def add(name: str, build: Callable[[], tuple[np.ndarray, np.ndarray]], **params: Any) -> None:
        out.append(Entry(f"logistic/{name}", "logistic", "logistic_regression", params, _lazy(build)))

    def separable(classes: int = 2, n: int = 60, seed: int = 40) -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(n, 3, seed)
        y = _labels_from(X, seed + 1, classes)
        return X, y

    for C in (1.0, 1e4, 1e12):
        add(f"separable-C{C:.0e}", separable, C=C)
        add(f"separable-3class-C{C:.0e}", lambda: separable(3), C=C)
    add("separable-C1e12-max_iter-5", separable, C=1e12, max_iter=5)

    def noisy(classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(300, 4, 42)
        return X, _labels_from(X, 43, classes, noise=2.0)

    for it in (1, 2, 3):
        add(f"max_iter-{it}", noisy, max_iter=it)
        add(f"max_iter-{it}-3class", lambda: noisy(3), max_iter=it)

    def duplicated() -> tuple[np.ndarray, np.ndarray]:
        X, y = noisy()
        return np.column_stack([X, X[:, 0], -X[:, 1]]), y

    add("duplicated-cols", duplicated)
    add("tied-rows", lambda: (np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1], dtype=np.float64)))
    add("tied-rows-no-intercept", lambda: (np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1], dtype=np.float64)),
        fit_intercept=False)
    add("symmetric-boundary", lambda: (np.array([[-1.0], [0.0], [0.0], [1.0]]), np.array([0.0, 0.0, 1.0, 1.0])))
    # The fitted boundary passes (up to rounding) through two rows: their predicted class is a coin toss.
    add("rows-on-the-boundary", lambda: (np.array([[-0.9], [0.1], [0.1], [1.1]]), np.array([0.0, 0.0, 1.0, 1.0])))
    add("rows-on-the-boundary-3class", lambda: (np.array([[-0.9, 0.3], [0.1, 0.3], [0.1, 0.3], [1.1, 0.3],
                                                          [0.1, 5.0], [0.1, 5.2]]),
                                                np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])))
    add("offset-1e6", lambda: (1e6 + noisy()[0], noisy()[1]))
    add("offset-1e6-no-intercept", lambda: (1e6 + noisy()[0], noisy()[1]), fit_intercept=False)
    # Found by the long random run: without an intercept, columns sharing a 1e6 offset are nearly parallel and
    # the Hessian formed from them had a scaled condition of 1e17.
    add("offset-1e6-no-intercept-3class-C1e4", lambda: (1e6 + _gauss(6, 2, 44), np.array([0.0, 1, 2, 1, 1, 1])),
        fit_intercept=False, C=1e4)
    return out


def mlp_entries() -> list[Entry]:
    """Training long at a high learning rate (chaotic: another CPU's kernels end somewhere else), a scan of
    learning rates across the edge of chaos, runs that blow up, and calm long runs for contrast. Ten classes and
    a 64-wide layer: narrower shapes never reach the vectorised kernels that differ between CPUs."""
    out: list[Entry] = []

    def data(n: int = 200, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(n, 8, 50)
        return X, _labels_from(X, 51, classes, noise=1.0)

    def add(name: str, **params: Any) -> None:
        params = {"hidden": [64], "batch_size": 16, "epochs": 60, **params}
        out.append(Entry(f"mlp/{name}", "mlp", "mlp_train", params, _lazy(data)))

    for lr in (0.05, 0.1, 0.12, 0.15, 0.2, 0.5, 2.0, 8.0):
        add(f"lr{lr}", lr=lr)
    add("tanh-lr1-long", lr=1.0, epochs=150, activation="tanh", hidden=[16, 16], batch_size=8)
    add("deep-lr0.3", lr=0.3, epochs=40, hidden=[32, 32, 32], batch_size=8)
    add("weight-decay-lr2", lr=2.0, epochs=40, hidden=[8], batch_size=4, weight_decay=0.01)
    add("calm-lr0.01-long", lr=0.01, epochs=150, batch_size=32)
    return out


def tiny_entries() -> list[Entry]:
    """One to three rows, one feature: every model at the edge of what it can fit."""
    out: list[Entry] = []
    x1 = np.array([[0.5]])
    x2 = np.array([[0.5], [-1.5]])
    x3 = np.array([[0.5], [-1.5], [2.0]])
    x3d3 = np.array([[0.5, 1.0, -2.0], [-1.5, 0.0, 1.0], [2.0, 3.0, 0.5]])
    for rows, X in (("1", x1), ("2", x2), ("3", x3)):
        y = np.arange(X.shape[0], dtype=np.float64) * 1.5 - 0.3
        out.append(Entry(f"tiny/linear-n{rows}", "tiny", "linear_regression", {}, _ds(X, y)))
        out.append(Entry(f"tiny/linear-n{rows}-no-intercept", "tiny", "linear_regression",
                         {"fit_intercept": False}, _ds(X, y)))
        out.append(Entry(f"tiny/pca-n{rows}", "tiny", "pca", {"n_components": 1}, _ds(X)))
        if X.shape[0] >= 2:
            labels = np.array([0.0, 1.0, 0.0][: X.shape[0]])
            out.append(Entry(f"tiny/logistic-n{rows}", "tiny", "logistic_regression", {}, _ds(X, labels)))
            out.append(Entry(f"tiny/mlp-n{rows}", "tiny", "mlp_train", {"epochs": 5, "hidden": [3]},
                             _ds(X, labels)))
    # Found by the long random run: Newton's last step here is below what Armijo can judge.
    out.append(Entry("tiny/logistic-n2-last-step", "tiny", "logistic_regression", {},
                     _ds(np.array([[-0.70710678118654757], [0.70710678118654757]]), np.array([0.0, 1.0]))))
    out.append(Entry("tiny/pca-n3-d3-m2", "tiny", "pca", {"n_components": 2}, _ds(x3d3)))
    out.append(Entry("tiny/pca-n3-d3-m3", "tiny", "pca", {"n_components": 3}, _ds(x3d3)))
    out.append(Entry("tiny/linear-n3-d3", "tiny", "linear_regression", {}, _ds(x3d3, np.array([1.0, 2.0, -1.0]))))
    out.append(Entry("tiny/logistic-n3-d3", "tiny", "logistic_regression", {"C": 100.0},
                     _ds(x3d3, np.array([0.0, 1.0, 1.0]))))
    return out


def large_entries() -> list[Entry]:
    """Larger shapes (still seconds on two cores): many rows, many columns, a summary near the length cap."""
    out: list[Entry] = []

    def reg() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(20_000, 40, 60)
        return X, X @ np.linspace(-1, 1, 40) + 0.1 * _gauss(20_000, 1, 61)[:, 0]

    out.append(Entry("large/linear-20000x40", "large", "linear_regression", {}, _lazy(reg)))

    def wide() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(400, 300, 62)
        return X, X[:, :10].sum(axis=1) + 0.1 * _gauss(400, 1, 63)[:, 0]

    out.append(Entry("large/linear-400x300", "large", "linear_regression", {"alpha": 1.0}, _lazy(wide)))
    out.append(Entry("large/pca-20000x40-m10", "large", "pca", {"n_components": 10},
                     _lazy(lambda: (_gauss(20_000, 40, 64) * np.linspace(1, 3, 40), None))))
    out.append(Entry("large/pca-500x200-m40", "large", "pca", {"n_components": 40},
                     _lazy(lambda: (_gauss(500, 200, 65), None))))

    def cls() -> tuple[np.ndarray, np.ndarray]:
        X = _gauss(10_000, 20, 66)
        return X, _labels_from(X, 67, 4, noise=1.5)

    out.append(Entry("large/logistic-10000x20-4class", "large", "logistic_regression", {}, _lazy(cls)))
    out.append(Entry("large/mlp-10000x20", "large", "mlp_train", {"epochs": 4, "hidden": [64, 32],
                                                                    "batch_size": 256}, _lazy(cls)))
    return out


CATEGORIES: dict[str, Callable[[], list[Entry]]] = {
    "pca": pca_entries,
    "linear": linear_entries,
    "logistic": logistic_entries,
    "mlp": mlp_entries,
    "tiny": tiny_entries,
    "large": large_entries,
}


@functools.cache
def corpus() -> tuple[Entry, ...]:
    """Every entry of every category, names unique."""
    out = tuple(e for build in CATEGORIES.values() for e in build())
    names = [e.name for e in out]
    assert len(names) == len(set(names)), "corpus entry names must be unique"
    return out


# ---------------------------------------------------------------------------------------------------------
# Random jobs: seeded specs over the models, shapes and parameters, with ill-posed structure drawn often.


def _random_features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    kind = str(rng.choice(["gauss", "lowrank", "duplicated", "constant", "scaled", "offset", "integer",
                           "isotropic", "near-collinear"]))
    seed = int(rng.integers(2**31))
    X = _gauss(n, d, seed)
    if kind == "lowrank" and d > 1:
        r = int(rng.integers(1, d))
        X = _gauss(n, r, seed) @ _gauss(r, d, seed + 1)
    elif kind == "duplicated" and d > 1:
        X[:, -1] = X[:, 0] * float(rng.choice([1.0, -1.0, 2.0]))
    elif kind == "constant":
        X[:, int(rng.integers(d))] = float(rng.choice([0.0, 0.1, 7.3]))
    elif kind == "scaled":
        X = X * 10.0 ** rng.integers(-6, 7, d)
    elif kind == "offset":
        X = X + float(rng.choice([1e4, 1e6, 1e8]))
    elif kind == "integer":
        X = rng.integers(-2, 3, (n, d)).astype(np.float64)
    elif kind == "isotropic" and n > d:
        X = spectrum_data(n, [1.0] * d, seed)
    elif kind == "near-collinear" and d > 1:
        X[:, -1] = X[:, 0] + float(rng.choice([1e-6, 1e-9, 1e-12])) * X[:, -1]
    return X


def _random_labels(rng: np.random.Generator, X: np.ndarray, classes: int) -> np.ndarray:
    y = _labels_from(X, int(rng.integers(2**31)), classes, noise=float(rng.choice([0.0, 0.5, 3.0])))
    return y if np.unique(y).size >= 2 else np.arange(len(y), dtype=np.float64) % 2


def _random_linear(rng: np.random.Generator) -> tuple[dict[str, Any], Dataset]:
    n, d = int(rng.choice([1, 2, 3, 5, 20, 60, 200])), int(rng.integers(1, 9))
    X = _random_features(rng, n, d)
    w = rng.standard_normal(d)
    y = (X - X.mean(axis=0)) @ w / max(1.0, float(np.abs(X).max())) + 0.1 * rng.standard_normal(n)
    params = {"alpha": float(rng.choice([0.0, 0.0, 1e-12, 1e-6, 1.0, 1e3])), "fit_intercept": bool(rng.random() < 0.7)}
    return params, make_dataset(X, y)


def _random_pca(rng: np.random.Generator) -> tuple[dict[str, Any], Dataset]:
    n, d = int(rng.choice([2, 3, 5, 20, 60, 200])), int(rng.integers(1, 9))
    X = _random_features(rng, n, d)
    m = int(rng.integers(1, max(1, min(n - 1, d)) + 1 + int(rng.random() < 0.1)))  # sometimes one too many
    return {"n_components": m, "whiten": bool(rng.random() < 0.3)}, make_dataset(X)


def _random_logistic(rng: np.random.Generator) -> tuple[dict[str, Any], Dataset]:
    n, d = int(rng.choice([2, 3, 6, 20, 60, 200])), int(rng.integers(1, 7))
    X = _random_features(rng, n, d)
    y = _random_labels(rng, X, int(rng.integers(2, 5)) if n >= 4 else 2)
    params = {"C": float(rng.choice([1e-2, 1.0, 1.0, 1e4, 1e12])), "fit_intercept": bool(rng.random() < 0.8),
              "max_iter": int(rng.choice([1, 3, 100, 100, 100]))}
    return params, make_dataset(X, y)


def _random_mlp(rng: np.random.Generator) -> tuple[dict[str, Any], Dataset]:
    n, d = int(rng.choice([3, 10, 40, 120])), int(rng.integers(1, 7))
    X = _random_features(rng, n, d)
    y = _random_labels(rng, X, int(rng.integers(2, 5)))
    params = {"hidden": [int(rng.choice([4, 16]))] * int(rng.integers(1, 3)), "epochs": int(rng.integers(1, 16)),
              "lr": float(10.0 ** rng.uniform(-3, 0.5)), "batch_size": int(rng.choice([1, 8, 32])),
              "activation": str(rng.choice(["relu", "tanh"])), "seed": int(rng.integers(100))}
    return params, make_dataset(X, y)


# Per model: how often it is drawn, and how a random job for it is made. Add k-means here.
RANDOM_MODELS: dict[str, tuple[float, Callable[[np.random.Generator], tuple[dict[str, Any], Dataset]]]] = {
    "linear_regression": (0.3, _random_linear),
    "pca": (0.3, _random_pca),
    "logistic_regression": (0.3, _random_logistic),
    "mlp_train": (0.1, _random_mlp),
}


def random_jobs(count: int, seed: int = 14) -> Iterator[tuple[str, JobSpec, Dataset]]:
    """``count`` seeded random jobs ``(name, spec, dataset)``; a spec the validator refuses is drawn again."""
    rng = np.random.default_rng(seed)
    models = list(RANDOM_MODELS)
    weights = np.array([RANDOM_MODELS[m][0] for m in models])
    made = 0
    while made < count:
        model = str(rng.choice(models, p=weights / weights.sum()))
        params, ds = RANDOM_MODELS[model][1](rng)
        try:
            spec = make_spec(model, params, ds.digest)
        except SpecError:
            continue
        yield f"{model}#{made}", spec, ds
        made += 1


# ---------------------------------------------------------------------------------------------------------
# The child-process side.


def write_datasets(entries: Iterable[Entry], path: Path) -> None:
    """The entries' datasets as bytes, for a child process to run the same jobs bit for bit."""
    path.write_bytes(msgpack.packb({e.name: encode_dataset(e.dataset) for e in entries}, use_bin_type=True))


def run_from_file(datasets: Path, out: Path) -> None:
    """Run every corpus entry whose dataset is in ``datasets``; write ``{name: {run: outcome}}`` as JSON."""
    blobs = msgpack.unpackb(datasets.read_bytes(), raw=False)
    result: dict[str, dict[str, list[Any]]] = {}
    for entry in corpus():
        if entry.name not in blobs:
            continue
        ds = decode_dataset(blobs[entry.name])
        result[entry.name] = {k: o.to_json() for k, o in run_outcomes(entry.spec_for(ds), ds).items()}
    out.write_text(json.dumps(result))


def kernels() -> dict[str, Any]:
    """The kernels this process computes with: each loaded OpenBLAS's architecture (``OPENBLAS_CORETYPE``
    selects it), whether NumPy's BLAS is OpenBLAS, and PyTorch's CPU capability (``ATEN_CPU_CAPABILITY``)."""
    import scipy.linalg  # noqa: F401 -- scikit-learn's solvers use SciPy's OpenBLAS
    from threadpoolctl import threadpool_info

    info = threadpool_info()
    numpy_blas = [i for i in info if i.get("user_api") == "blas" and "numpy" in str(i.get("filepath", ""))]
    out: dict[str, Any] = {
        "blas": [str(i.get("architecture")) for i in info if i.get("internal_api") == "openblas"],
        "numpy_openblas": bool(numpy_blas) and all(i.get("internal_api") == "openblas" for i in numpy_blas),
        "aten": None,
    }
    try:
        import torch

        out["aten"] = str(torch.backends.cpu.get_cpu_capability())
    except ImportError:
        pass
    return out


# Older kernels than the host's, in order of preference (OpenBLAS core names, ATen capabilities).
OLDER_BLAS = ("Haswell", "Sandybridge", "Prescott")
OLDER_ATEN = {"AVX512": "avx2", "AVX2": "default"}


def older_kernel_env(host: Mapping[str, Any]) -> dict[str, str]:
    """Environment for a child process on kernels older than this host's."""
    env = {"OPENBLAS_CORETYPE": next((c for c in OLDER_BLAS if c not in host["blas"]), OLDER_BLAS[-1])}
    if host.get("aten") in OLDER_ATEN:
        env["ATEN_CPU_CAPABILITY"] = OLDER_ATEN[host["aten"]]
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps({"kernels": kernels()}), file=sys.stderr)
    run_from_file(args.datasets, args.out)


if __name__ == "__main__":
    main()
