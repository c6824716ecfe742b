"""The cross-backend self-check: run every model on every backend here, compare all pairs, print a table.

Each model runs on seeded synthetic data on every available backend (numpy, sklearn, torch-cpu, torch-cuda)
with 1 and 2 threads; every pair of summaries is compared with the ledger's agreement rule and every result is
certified. compute never imports the ledger: the caller passes the agreement rule in. The command
``python -m bootstrap.selfcheck`` wires in the ledger's rule and exits non-zero on any disagreement, failed
certificate or error, so a GPU check is one command.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from compute.certificates import check_certificate
from compute.dataset import Dataset, synthetic
from compute.executor import available_backends, backends_for, execute
from compute.spec import JobSpec, make_spec

AgreementRule = Callable[[Sequence[int], Sequence[int], int, int], bool]


def selfcheck_jobs(rows: int) -> list[tuple[str, JobSpec, Dataset]]:
    """The seeded jobs the self-check runs: every model, some with their main options."""
    reg = synthetic("regression", rows, 20, seed=1)
    blobs = synthetic("blobs", rows, 10, seed=2, n_classes=6)
    cls2 = synthetic("classification", rows, 12, seed=3, n_classes=2)
    cls4 = synthetic("classification", rows, 12, seed=4, n_classes=4)
    jobs = [
        ("linear_regression/ols", "linear_regression", {}, reg),
        ("linear_regression/ridge", "linear_regression", {"alpha": 10.0}, reg),
        ("kmeans/k-means++", "kmeans", {"k": 6, "seed": 7}, blobs),
        ("kmeans/random", "kmeans", {"k": 6, "seed": 8, "init": "random"}, blobs),
        ("pca", "pca", {"n_components": 4}, cls4),
        ("pca/whiten", "pca", {"n_components": 3, "whiten": True}, reg),
        ("logistic_regression/binary", "logistic_regression", {}, cls2),
        ("logistic_regression/multinomial", "logistic_regression", {"C": 0.5}, cls4),
        ("mlp_train", "mlp_train", {"epochs": 10, "hidden": [32, 16], "batch_size": 128}, cls4),
    ]
    return [(name, make_spec(model, params, ds.digest), ds) for name, model, params, ds in jobs]


def run_selfcheck(
    agree: AgreementRule, rows: int = 4000, out: Callable[[str], None] = print, only: str = ""
) -> int:
    """Run the check (jobs whose name starts with ``only``), print a markdown table, return the problem count."""
    here = available_backends()
    out(f"backends here: {', '.join(here)}")
    out("")
    out("| job | runs | pairs | disagreements | certificates refuted | errors | worst pair |")
    out("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    problems = 0
    for name, spec, ds in selfcheck_jobs(rows):
        if not name.startswith(only):
            continue
        results = {}
        errors: list[str] = []
        for backend in (b for b in backends_for(spec.model) if b in here):
            for threads in (1, 2):
                try:
                    results[f"{backend}/{threads}"] = execute(spec, ds, backend, threads)
                except Exception as exc:  # report every failure in the table rather than stop
                    errors.append(f"{backend}/{threads}: {type(exc).__name__}: {exc}")
        tol = spec.tolerance
        pairs = list(itertools.combinations(results, 2))
        bad = [(a, b) for a, b in pairs if not agree(results[a].summary, results[b].summary, tol.abs, tol.ppm)]
        worst = ""
        if pairs:
            gaps = {
                (a, b): max((abs(u - v) for u, v in zip(results[a].summary, results[b].summary, strict=False)),
                            default=0)
                for a, b in pairs
            }
            (a, b), units = max(gaps.items(), key=lambda item: item[1])
            worst = f"{a} vs {b}: {units} units"
        # Refuted only: a model (or instance) with no sound certificate answers "re-run it", which is no failure.
        failed_certs = [k for k, r in results.items() if check_certificate(spec, ds, r).refuted]
        problems += len(bad) + len(failed_certs) + len(errors)
        out(f"| {name} | {len(results)} | {len(pairs)} | {len(bad)} | {len(failed_certs)} | {len(errors)} | {worst} |")
        for line in [*(f"disagree: {a} vs {b}" for a, b in bad), *(f"cert: {k}" for k in failed_certs), *errors]:
            out(f"  - {name}: {line}")
    return problems
