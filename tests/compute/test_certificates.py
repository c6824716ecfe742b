"""Cheating is caught: every forged result disagrees with the honest one and is never certified; honest results
(capped runs and ill-conditioned designs included) are never refuted; models with no sound certificate say so."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from compute.binding import summary_values
from compute.canonical import JobResult, blake2b256, decode_artifact, encode_artifact, quantise
from compute.certificates import certifiable, check_certificate
from compute.dataset import make_dataset, synthetic
from compute.errors import DatasetError
from compute.executor import default_backend, execute
from compute.spec import make_spec
from ledger.verdict import summaries_agree
from tests.compute.conftest import BACKENDS_HERE, CASES, Case, assert_honest_certificate

# The array a cheater would most like to fake, per model.
MAIN_FIELD = {
    "linear_regression": "coef",
    "kmeans": "centres",
    "pca": "components",
    "logistic_regression": "coef",
    "mlp_train": "w0",
}


def honest(case: Case) -> JobResult:
    backend = default_backend(case.spec)
    if backend not in BACKENDS_HERE:
        pytest.skip(f"{backend} not available")
    return execute(case.spec, case.dataset, backend)


def forge(case: Case, base: JobResult, fields: dict) -> JobResult:
    """A self-consistent forged result: artifact, digest and summary all match the forged fields."""
    values, display = summary_values(case.spec.model, case.spec.digest, case.dataset.digest, fields)
    artifact = encode_artifact(case.spec.model, case.spec.digest, case.dataset.digest, fields)
    return dataclasses.replace(
        base, summary=quantise(values, case.spec.precision), artifact=artifact,
        artifact_digest=blake2b256(artifact), display=display,
    )


def assert_caught(case: Case, good: JobResult, bad: JobResult, *, summary_differs: bool = True) -> str:
    tol = case.spec.tolerance
    if summary_differs:
        assert not summaries_agree(good.summary, bad.summary, tol.abs, tol.ppm)
    report = check_certificate(case.spec, case.dataset, bad)
    assert not report.ok
    return report.reason


def test_honest_results_pass(case: Case) -> None:
    report = check_certificate(case.spec, case.dataset, honest(case))
    assert_honest_certificate(report, case.spec.model, case.name)
    assert all(c.ok for c in report.checks)


def test_perturbed_summary_alone_is_caught(case: Case) -> None:
    good = honest(case)
    summary = list(good.summary)
    summary[0] += 1000
    reason = assert_caught(case, good, dataclasses.replace(good, summary=summary))
    assert "quantised artifact" in reason


def test_perturbed_model_with_consistent_artifact_is_caught(case: Case) -> None:
    good = honest(case)
    fields = dict(decode_artifact(good.artifact).fields)
    main = MAIN_FIELD[case.spec.model]
    arr = np.array(fields[main], dtype=np.float64)
    arr.flat[0] += 1e-2 * max(1.0, abs(arr.flat[0]))
    fields[main] = arr
    assert_caught(case, good, forge(case, good, fields))


def test_result_for_other_data_is_caught(case: Case) -> None:
    good = honest(case)
    X = case.dataset.X.copy()
    X[:, 0] = X[:, 0] + 0.75 * X[:, 1] + 0.25
    if case.spec.model == "linear_regression":  # fitted values do not change under an affine change of the
        X[:, 0] = X[:, 0] + 0.5 * X[:, 1] ** 2  # columns (the same regression): make this one non-affine
    other = make_dataset(X, case.dataset.y)
    other_spec = make_spec(case.spec.model, dict(case.spec.params), other.digest)
    theirs = execute(other_spec, other, good.backend)
    # Replayed as is: bound to the other job.
    assert_caught(case, good, theirs)
    # Relabelled as ours: the artifact binding, and then the model's own checks, catch it.
    relabelled = dataclasses.replace(theirs, spec_digest=case.spec.digest, dataset_digest=case.dataset.digest)
    assert "another job or dataset" in assert_caught(case, good, relabelled)
    rebound = forge(case, good, dict(decode_artifact(theirs.artifact).fields))
    assert_caught(case, good, rebound)


def test_stale_result_from_an_older_dataset_is_caught() -> None:
    # A worker replays its result for the same job on last week's data (fewer rows).
    full = synthetic("blobs", 1500, 5, seed=21, n_classes=6)
    ds_old = make_dataset(full.X[:1000], full.y[:1000])
    new = make_spec("kmeans", {"k": 6, "seed": 1}, full.digest)
    old = make_spec("kmeans", {"k": 6, "seed": 1}, ds_old.digest)
    ds = full
    good, stale = execute(new, ds, "numpy"), execute(old, ds_old, "numpy")
    case = Case("stale", new, ds)
    assert "another job spec" in assert_caught(case, good, stale)
    fields = dict(decode_artifact(stale.artifact).fields)
    # Padding the labels to the new length still leaves centres that are not the new means.
    fields["labels"] = np.concatenate([fields["labels"], np.zeros(500, dtype=np.int32)])
    assert not check_certificate(new, ds, forge(case, good, fields)).ok
    assert not summaries_agree(good.summary, forge(case, good, fields).summary, 2, 10)


def test_random_centres_are_caught() -> None:
    case = next(c for c in CASES if c.spec.model == "kmeans")
    good = execute(case.spec, case.dataset, "numpy")
    rng = np.random.default_rng(99)
    k, d = int(case.spec.params["k"]), case.dataset.n_features
    centres = rng.uniform(-10, 10, (k, d))
    centres = centres[np.lexsort(centres.T[::-1])]
    labels = ((case.dataset.X[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1).astype(np.int32)
    fields = dict(decode_artifact(good.artifact).fields, centres=centres, labels=labels)
    fields["inertia"] = float(((case.dataset.X - centres[labels]) ** 2).sum())
    assert "centre_not_mean" in assert_caught(case, good, forge(case, good, fields))


def test_pca_with_a_skipped_eigenvector_is_caught() -> None:
    case = next(c for c in CASES if c.spec.model == "pca")
    ds = case.dataset
    spec4 = make_spec("pca", {"n_components": 4}, ds.digest)
    full = decode_artifact(execute(spec4, ds, "numpy").artifact).fields
    good = execute(case.spec, ds, "numpy")
    fields = dict(decode_artifact(good.artifact).fields)
    # Claim components 2..4: true eigenvectors, orthonormal, small residual, but not the top three.
    fields["components"] = np.asarray(full["components"])[1:]
    fields["explained_variance"] = np.asarray(full["explained_variance"])[1:]
    fields["explained_variance_ratio"] = np.asarray(full["explained_variance_ratio"])[1:]
    assert "larger_direction_left_out" in assert_caught(case, good, forge(case, good, fields))


def test_truncated_artifact_is_caught(case: Case) -> None:
    good = honest(case)
    cut = good.artifact[: len(good.artifact) // 2]
    # Digest left as it was: mismatch.
    reason = assert_caught(case, good, dataclasses.replace(good, artifact=cut), summary_differs=False)
    assert "digest" in reason
    # Digest recomputed by the cheater: the artifact no longer decodes.
    resealed = dataclasses.replace(good, artifact=cut, artifact_digest=blake2b256(cut))
    assert "malformed" in assert_caught(case, good, resealed, summary_differs=False)


def test_wrong_precision_and_wrong_dataset_argument() -> None:
    case = CASES[0]
    good = execute(case.spec, case.dataset, "numpy")
    assert not check_certificate(case.spec, case.dataset, dataclasses.replace(good, precision=3)).ok
    with pytest.raises(DatasetError):
        check_certificate(case.spec, synthetic("regression", 10, 2, seed=0), good)



def _case(model: str) -> Case:
    return next(c for c in CASES if c.spec.model == model)


Forgery = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.mark.parametrize(
    ("model", "forgery", "summary_differs", "certificate_fails"),
    [
        # Claiming the next eigenvalue equals the last one fades the last component out of the summary; the
        # certificate only bounds the next eigenvalue (probe below, λ_m and the trace above), so that claim is
        # the summary comparison's to catch.
        ("pca", lambda f: {**f, "next_variance": float(f["explained_variance"][-1])}, True, False),
        ("pca", lambda f: {**f, "scale": 2.0 * np.asarray(f["scale"])}, True, True),
        ("pca", lambda f: {**f, "next_variance": 2.0 * float(f["explained_variance"][-1])}, True, True),
        ("pca", lambda f: {**f, "total_variance": 2.0 * float(f["total_variance"])}, True, True),
        ("linear_regression", lambda f: {**f, "probe_design": np.zeros_like(f["probe_design"])}, True, True),
        ("linear_regression", lambda f: {**f, "target_rms": 2.0 * float(f["target_rms"])}, True, True),
        ("logistic_regression", lambda f: {**f, "intercept_centred": f["intercept_centred"] + 0.1}, True, True),
        ("logistic_regression", lambda f: {**f, "probe_design": f["probe_design"] * 1.01}, True, True),
        # Claiming chaos zeroes the summary: an honest peer's does not read zero (the divergence is the run's
        # own measurement; without training again only its range can be checked).
        ("mlp_train", lambda f: {**f, "twin_divergence": float("inf")}, True, False),
        ("mlp_train", lambda f: {**f, "twin_divergence": -1.0}, False, True),
    ],
)
def test_forged_summary_fields_are_caught(model: str, forgery: Forgery, summary_differs: bool,
                                          certificate_fails: bool) -> None:
    case = _case(model)
    good = honest(case)
    bad = forge(case, good, forgery(dict(decode_artifact(good.artifact).fields)))
    tol = case.spec.tolerance
    assert summaries_agree(good.summary, bad.summary, tol.abs, tol.ppm) is not summary_differs
    report = check_certificate(case.spec, case.dataset, bad)
    # Never certified. Refuted where the model's checks see it (PCA outside its trace bound answers "re-run").
    assert not report.ok
    if certificate_fails and model != "pca":
        assert report.refuted, report.reason


# The review's cases (issue 13): wrong results the old certificates passed, honest ones they refused.


def _forge_for(spec: Any, ds: Any, base: JobResult, fields: dict[str, Any]) -> JobResult:
    return forge(Case("forged", spec, ds), base, fields)


def test_kmeans_fixed_point_from_another_seed_is_not_certified() -> None:
    # A Lloyd fixed point from another seed: every label nearest, every centre its points' mean, yet another
    # local optimum than the spec's seed reaches. Only re-running from the spec's starts tells them apart.
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, 1.0, (300, 2)) for c in ((0, 0), (40, 0), (0, 40), (40, 40), (20, 90))]) * 100
    ds = make_dataset(X)
    spec = make_spec("kmeans", {"k": 5, "seed": 0, "init": "random", "n_init": 1}, ds.digest)
    good = execute(spec, ds, "numpy")
    good_inertia = float(decode_artifact(good.artifact).fields["inertia"])
    for seed in range(1, 40):
        other = execute(make_spec("kmeans", {**spec.params, "seed": seed}, ds.digest), ds, "numpy")
        fields = dict(decode_artifact(other.artifact).fields)
        if float(fields["inertia"]) > good_inertia + 1e6:
            break
    else:
        pytest.fail("no seed reached another fixed point")
    bad = _forge_for(spec, ds, good, fields)
    assert not summaries_agree(good.summary, bad.summary, spec.tolerance.abs, spec.tolerance.ppm)
    report = check_certificate(spec, ds, bad)
    assert not report.ok
    assert report.verdict == "uncertifiable" and "no sound certificate for kmeans" in report.reason


def test_pca_reporting_the_second_eigenvector_first_at_d200_is_not_certified() -> None:
    # Components 2..4 reported as 1..3 at d = 200: true eigenvectors in order, but eight random probes and a
    # power step never found the first. The trace bound cannot exclude it, so no certificate.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((2000, 200)) * np.linspace(2.0, 1.0, 200)
    ds = make_dataset(X)
    spec = make_spec("pca", {"n_components": 3}, ds.digest)
    full = decode_artifact(execute(make_spec("pca", {"n_components": 4}, ds.digest), ds, "numpy").artifact).fields
    good = execute(spec, ds, "numpy")
    fields = dict(decode_artifact(good.artifact).fields)
    for key in ("components", "explained_variance", "explained_variance_ratio"):
        fields[key] = np.asarray(full[key])[1:]
    fields["scale"] = np.ones(3)
    bad = _forge_for(spec, ds, good, fields)
    assert not summaries_agree(good.summary, bad.summary, spec.tolerance.abs, spec.tolerance.ppm)
    assert not check_certificate(spec, ds, bad).ok


def _low_rank(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)) @ (rng.standard_normal((3, d)) * np.array([[6.0], [3.0], [1.5]])) \
        + 1e-3 * rng.standard_normal((n, d))


def test_pca_swapped_components_are_refuted_where_pca_certifies() -> None:
    ds = make_dataset(_low_rank(1500, 40, 8))
    spec = make_spec("pca", {"n_components": 3}, ds.digest)
    good = execute(spec, ds, "numpy")
    assert check_certificate(spec, ds, good).ok
    fields = dict(decode_artifact(good.artifact).fields)
    V = np.asarray(fields["components"]).copy()
    V[[0, 1]] = V[[1, 0]]  # the second component first, the variances left in order
    bad = _forge_for(spec, ds, good, {**fields, "components": V})
    assert not summaries_agree(good.summary, bad.summary, spec.tolerance.abs, spec.tolerance.ppm)
    assert "spectrum_mismatch" in check_certificate(spec, ds, bad).reason


@pytest.mark.parametrize("backend", ["numpy", "sklearn", "torch-cpu"])
def test_low_rank_pca_is_certified_on_every_backend(backend: str) -> None:
    if backend not in BACKENDS_HERE:
        pytest.skip(f"{backend} not available")
    for whiten in (False, True):
        ds = make_dataset(_low_rank(1200, 25, 9))
        spec = make_spec("pca", {"n_components": 3, "whiten": whiten}, ds.digest)
        report = check_certificate(spec, ds, execute(spec, ds, backend))
        assert report.ok, report.reason


def test_full_rank_pca_says_it_cannot_be_certified() -> None:
    case = _case("pca")  # a spread-out spectrum: the left-over variance exceeds the last component's
    report = check_certificate(case.spec, case.dataset, honest(case))
    assert not report.ok and not report.refuted
    assert report.verdict == "uncertifiable" and "re-run" in report.reason


def _collinear_regression(eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal(2000)
    X = np.column_stack([x1, x1 + eps * rng.standard_normal(2000), rng.standard_normal((2000, 3))])
    return X, X @ np.array([1.0, 2.0, 0.5, -1.0, 3.0]) + 0.1 * rng.standard_normal(2000)


def test_ill_conditioned_coefficients_moved_along_the_weakest_direction_are_refuted() -> None:
    from compute.models.linear import _centred, _fields, penalties

    X, y = _collinear_regression()
    ds = make_dataset(X, y)
    spec = make_spec("linear_regression", {}, ds.digest)
    good = execute(spec, ds, "numpy")
    fields = decode_artifact(good.artifact).fields
    Xc, yc, xm, ym = _centred(X, y, True)
    t = 1.0 / np.sqrt(penalties(Xc, 0.0))
    weakest = np.linalg.svd(Xc * t, full_matrices=False)[2][-1] * t
    coef = np.asarray(fields["coef"]) + 1e-2 * np.linalg.norm(fields["coef"]) * weakest / np.linalg.norm(weakest)
    bad = _forge_for(spec, ds, good, dict(_fields(Xc, yc, y, coef, ym - float(xm @ coef))))
    assert not summaries_agree(good.summary, bad.summary, spec.tolerance.abs, spec.tolerance.ppm)
    report = check_certificate(spec, ds, bad)
    assert report.refuted and "fitted_value_error_bound" in report.reason


@pytest.mark.parametrize("backend", ["numpy", "sklearn", "torch-cpu"])
@pytest.mark.parametrize("eps", [1e-4, 1e-6, 1e-8])
def test_ill_conditioned_ols_is_certified_on_every_backend(backend: str, eps: float) -> None:
    if backend not in BACKENDS_HERE:
        pytest.skip(f"{backend} not available")
    X, y = _collinear_regression(eps)
    ds = make_dataset(X, y)
    for params in ({}, {"fit_intercept": False}):
        spec = make_spec("linear_regression", params, ds.digest)
        report = check_certificate(spec, ds, execute(spec, ds, backend))
        assert report.ok, report.reason


def test_untrained_mlp_weights_are_not_certified() -> None:
    from compute.models.mlp import _evaluate, _initial_weights, _split, _standardiser

    case = _case("mlp_train")
    good = honest(case)
    fields = dict(decode_artifact(good.artifact).fields)
    X, y, params = case.dataset.X, case.dataset.y, case.spec.params
    classes = np.unique(y)
    train, test = _split(X.shape[0], int(params["seed"]), float(params["test_fraction"]))
    mu, sd = _standardiser(X[train])
    init = _initial_weights([X.shape[1], *params["hidden"], classes.size], int(params["seed"]))
    fields.update({f"w{i}": w for i, w in enumerate(init)})
    fields.update(_evaluate(init, (X - mu) / sd, np.searchsorted(classes, y), train, test, str(params["activation"])))
    bad = forge(case, good, fields)
    tol = case.spec.tolerance
    assert not summaries_agree(good.summary, bad.summary, tol.abs, tol.ppm)
    report = check_certificate(case.spec, case.dataset, bad)
    assert not report.ok
    assert report.verdict == "uncertifiable" and "no sound certificate for mlp_train" in report.reason


def test_models_without_a_sound_certificate_say_so() -> None:
    assert not certifiable("kmeans") and not certifiable("mlp_train")
    assert certifiable("linear_regression") and certifiable("logistic_regression") and certifiable("pca")
    for model in ("kmeans", "mlp_train"):
        case = _case(model)
        report = check_certificate(case.spec, case.dataset, honest(case))
        assert not report.ok and not report.refuted
        assert report.reason == f"no sound certificate for {model}: re-run it"


@pytest.mark.parametrize("backend", ["numpy", "sklearn", "torch-cpu"])
def test_iteration_capped_runs_are_not_refuted(backend: str) -> None:
    if backend not in BACKENDS_HERE:
        pytest.skip(f"{backend} not available")
    X = np.random.default_rng(0).standard_normal((3000, 4))
    ds = make_dataset(X)
    for iterations in (1, 3):
        spec = make_spec("kmeans", {"k": 8, "seed": 1, "iterations": iterations}, ds.digest)
        result = execute(spec, ds, backend)
        assert int(decode_artifact(result.artifact).fields["n_iter"]) == iterations
        assert_honest_certificate(check_certificate(spec, ds, result), "kmeans", f"capped at {iterations}")
    cls = synthetic("classification", 1500, 6, seed=3, n_classes=3)
    for max_iter in (1, 2):
        spec = make_spec("logistic_regression", {"max_iter": max_iter}, cls.digest)
        report = check_certificate(spec, cls, execute(spec, cls, backend))
        assert report.ok, report.reason


def test_capped_kmeans_claiming_convergence_is_refuted() -> None:
    X = np.random.default_rng(0).standard_normal((3000, 4))
    ds = make_dataset(X)
    spec = make_spec("kmeans", {"k": 8, "seed": 1, "iterations": 2}, ds.digest)
    good = execute(spec, ds, "numpy")
    fields = dict(decode_artifact(good.artifact).fields, n_iter=1)  # not at a fixed point, yet says it stopped
    assert "centre_not_mean" in check_certificate(spec, ds, _forge_for(spec, ds, good, fields)).reason
