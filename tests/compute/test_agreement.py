"""Cross-backend agreement under the ledger's rule: NumPy vs scikit-learn vs PyTorch, 1 vs 2 threads."""

from __future__ import annotations

import itertools

import pytest

from compute.canonical import JobResult
from compute.certificates import check_certificate
from compute.executor import backends_for, execute
from ledger.verdict import summaries_agree
from tests.compute.conftest import BACKENDS_HERE, Case, assert_honest_certificate

pytest.importorskip("threadpoolctl")


def _runs(case: Case, backends: tuple[str, ...]) -> dict[tuple[str, int], JobResult]:
    return {
        (backend, threads): execute(case.spec, case.dataset, backend, threads)
        for backend in backends
        for threads in (1, 2)
    }


def _assert_all_agree(case: Case, runs: dict[tuple[str, int], JobResult]) -> None:
    tol = case.spec.tolerance
    bad = [
        (a, b)
        for a, b in itertools.combinations(runs, 2)
        if not summaries_agree(runs[a].summary, runs[b].summary, tol.abs, tol.ppm)
    ]
    assert bad == [], f"{case.name}: disagreements {bad}"


def test_every_cpu_backend_and_thread_count_agree(case: Case) -> None:
    backends = tuple(b for b in backends_for(case.spec.model) if b in BACKENDS_HERE and b != "torch-cuda")
    if not backends:
        pytest.skip(f"no backend for {case.spec.model} here")
    runs = _runs(case, backends)
    assert len(runs) == 2 * len(backends)
    _assert_all_agree(case, runs)
    for key, result in runs.items():
        assert result.backend == key[0] and result.threads == key[1]
        assert result.precision == case.spec.precision and result.spec_digest == case.spec.digest
        report = check_certificate(case.spec, case.dataset, result)
        assert_honest_certificate(report, case.spec.model, f"{case.name} on {key}")


def test_agreement_is_not_vacuous(case: Case) -> None:
    # The same job on other data must disagree: the summary really depends on the input.
    from compute.dataset import make_dataset
    from compute.spec import make_spec

    X = case.dataset.X.copy()
    X[:, 0] = X[:, 0] + 0.75 * X[:, 1] + 0.25
    if case.spec.model == "linear_regression":  # fitted values do not change under an affine change of the
        X[:, 0] = X[:, 0] + 0.5 * X[:, 1] ** 2  # columns (the same regression): make this one non-affine
    other = make_dataset(X, case.dataset.y)
    spec2 = make_spec(case.spec.model, dict(case.spec.params), other.digest)
    backend = backends_for(case.spec.model)[0] if case.spec.model != "mlp_train" else "torch-cpu"
    if backend not in BACKENDS_HERE:
        pytest.skip("backend missing")
    a = execute(case.spec, case.dataset, backend).summary
    b = execute(spec2, other, backend).summary
    assert not summaries_agree(a, b, case.spec.tolerance.abs, case.spec.tolerance.ppm)


@pytest.mark.gpu
def test_cuda_agrees_with_cpu(case: Case) -> None:
    if "torch-cuda" not in BACKENDS_HERE:
        pytest.skip("torch.cuda.is_available() is false")
    backends = tuple(b for b in backends_for(case.spec.model) if b in BACKENDS_HERE)
    runs = _runs(case, backends)
    _assert_all_agree(case, runs)
    report = check_certificate(case.spec, case.dataset, runs[("torch-cuda", 1)])
    assert_honest_certificate(report, case.spec.model, case.name)
