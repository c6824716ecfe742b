"""Cheating is caught: every forged result disagrees with the honest one and fails its certificate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from compute.binding import summary_values
from compute.canonical import JobResult, blake2b256, decode_artifact, encode_artifact, quantise
from compute.certificates import check_certificate
from compute.dataset import make_dataset, synthetic
from compute.errors import DatasetError
from compute.executor import default_backend, execute
from compute.spec import make_spec
from ledger.verdict import summaries_agree
from tests.compute.conftest import BACKENDS_HERE, CASES, Case

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
    assert report.ok, report.reason
    assert report.checks and all(c.ok for c in report.checks)


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
    assert check_certificate(case.spec, case.dataset, bad).ok is not certificate_fails
    assert summary_differs or certificate_fails
