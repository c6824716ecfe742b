"""Benchmark: pool execution vs a direct library call, and certificate checks vs re-execution.

``.venv/bin/python -m bench.compute_jobs [--sizes 100000x50,1000000x20] [--repeats 3]``

For each model and size, measured side by side in one run, medians of ``--repeats``:

* direct — the scikit-learn (or, for the MLP, in-process PyTorch) call the pool's backend makes, in this process;
* pool — the same job through :class:`compute.pool.WorkerPool` (one worker, dataset already cached there),
  including spec/result encoding, canonicalisation, quantisation and the artifact digest;
* first — the first pool run, which also moves the dataset down the pipe and decodes it;
* re-run — ``execute`` in-process (what a verifier would do without certificates), and cert — ``check_certificate``.

Everything is pinned to one thread on both sides so the noisy shared machine disturbs the ratio less.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import sklearn.cluster  # loaded before the thread limit below, so it covers their BLAS
import sklearn.decomposition
import sklearn.linear_model  # noqa: F401
import torch
from threadpoolctl import threadpool_limits

from bench.machine import interleaved_medians
from compute.certificates import check_certificate
from compute.dataset import Dataset, synthetic
from compute.executor import execute
from compute.models.kmeans import initial_centres
from compute.pool import JobRequest, PoolConfig, WorkerPool
from compute.spec import JobSpec, make_spec


def _direct(model: str, params: dict[str, Any], ds: Dataset, backend: str) -> Callable[[], Any]:
    X, y = ds.X, ds.y
    if model == "pca" and backend == "numpy":
        from compute.models.pca import _covariance_eigh

        return lambda: _covariance_eigh(X, params["n_components"])
    if model == "linear_regression":
        from sklearn.linear_model import LinearRegression

        return lambda: LinearRegression().fit(X, y)
    if model == "kmeans":
        from sklearn.cluster import KMeans

        # The same work as the job: draw each of its n_init starts (on the centred data, as the job does), then
        # scikit-learn's own Lloyd from each. The job's sklearn backend runs that loop with sklearn's distance
        # kernel and its own tie rule instead (see compute.models.kmeans), so this is the library's speed.
        def run() -> Any:
            mean = X.mean(axis=0)
            for i in range(params["n_init"]):
                C0 = initial_centres(X - mean, params["k"], (params["seed"], i), params["init"]) + mean
                KMeans(n_clusters=params["k"], init=C0, n_init=1, max_iter=params["iterations"], tol=0.0,
                       algorithm="lloyd").fit(X)

        return run
    if model == "pca":
        from sklearn.decomposition import PCA

        return lambda: PCA(n_components=params["n_components"], svd_solver="full").fit(X)
    if model == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return lambda: LogisticRegression(tol=1e-10, solver="newton-cholesky").fit(X, y)
    from compute.models import mlp

    return lambda: mlp.fit("torch-cpu", X, y, params)


def jobs(n: int, d: int, wide: bool = False) -> list[tuple[str, JobSpec, Dataset, str]]:
    reg = synthetic("regression", n, d, seed=1)
    if wide:  # where the certificate's O(n d k) against re-execution's O(n d²) shows
        return [
            ("pca (sklearn)", make_spec("pca", {"n_components": 5}, reg.digest), reg, "sklearn"),
            ("pca (numpy)", make_spec("pca", {"n_components": 5}, reg.digest), reg, "numpy"),
        ]
    blobs = synthetic("blobs", n, d, seed=1, n_classes=8)
    cls = synthetic("classification", n, d, seed=2, n_classes=2)
    out = [
        ("linear_regression", make_spec("linear_regression", {}, reg.digest), reg, "sklearn"),
        # Run to convergence (a Lloyd fixed point is what the refutation checks look for).
        ("kmeans", make_spec("kmeans", {"k": 8, "seed": 3}, blobs.digest), blobs, "sklearn"),
        ("pca (sklearn)", make_spec("pca", {"n_components": 5}, reg.digest), reg, "sklearn"),
        ("pca (numpy)", make_spec("pca", {"n_components": 5}, reg.digest), reg, "numpy"),
        ("logistic_regression", make_spec("logistic_regression", {}, cls.digest), cls, "sklearn"),
        ("mlp_train", make_spec("mlp_train", {"epochs": 2, "hidden": [32], "batch_size": 1024}, cls.digest),
         cls, "torch-cpu"),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000x50,1000000x20")
    parser.add_argument("--wide", default="20000x500", help="extra PCA-only sizes, comma-separated ('' for none)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with WorkerPool(PoolConfig(size=1, preload=("sklearn", "torch"))) as pool:
        sizes = [(s, False) for s in args.sizes.split(",") if s] + [(s, True) for s in args.wide.split(",") if s]
        for size, wide in sizes:
            n, d = (int(v) for v in size.split("x"))
            for name, spec, ds, backend in jobs(n, d, wide):
                request = JobRequest(spec, ds, backend, threads=1)
                t = time.perf_counter()
                first = pool.run(request)
                first_s = time.perf_counter() - t
                assert first.ok, first.failure
                # Every BLAS/OpenMP library is loaded (imports above) before the limit, so it covers them all.
                with threadpool_limits(1):
                    torch.set_num_threads(1)
                    direct = _direct(spec.model, dict(spec.params), ds, backend)
                    direct()  # warm-up (lazy imports, allocator)
                    result = execute(spec, ds, backend, 1)
                    report = check_certificate(spec, ds, result)
                    # Since issue 13 k-means, the MLP and full-rank PCA answer "re-run it" (bench.certificates).
                    assert not report.refuted, report.reason
                    direct_s, pool_s, rerun_s, cert_s = interleaved_medians(
                        [
                            direct,
                            lambda r=request: pool.run(r),
                            lambda s=spec, d_=ds, b=backend: execute(s, d_, b, 1),
                            lambda s=spec, d_=ds, r=result: check_certificate(s, d_, r),
                        ],
                        args.repeats,
                    )
                note = (f"best of {spec.params['n_init']} starts, {result.display['n_iter']} Lloyd passes in it"
                        if spec.model == "kmeans" else "")
                rows.append((name, size, direct_s, pool_s, first_s, rerun_s, cert_s, note))
                print(f"done {name} {size}", flush=True)
    print()
    print("| model | n×d | direct (s) | pool (s) | pool overhead | first pool run, with transfer (s) "
          "| re-execution (s) | certificate (s) | certificate speed-up | note |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, size, direct_s, pool_s, first_s, rerun_s, cert_s, note in rows:
        print(f"| {name} | {size.replace('x', '×')} | {direct_s:.3f} | {pool_s:.3f} | "
              f"{100 * (pool_s / direct_s - 1):+.1f}% | {first_s:.3f} | {rerun_s:.3f} | {cert_s:.3f} | "
              f"{rerun_s / cert_s:.1f}× | {note} |")


if __name__ == "__main__":
    main()
