"""An artifact is checked against the verified summary it is served under: honest artifacts pass, another job's
or a changed one is refused by name (``compute.binding.artifact_problem``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest

from bootstrap.agent.faults import hidden_move
from compute.binding import Agreement, artifact_problem, confirm_seed, fresh_sketch_problem, sketch_seed
from compute.canonical import Artifact, JobResult, decode_artifact
from compute.executor import default_backend, execute
from compute.models.base import SKETCH_WIDTH, sketch
from ledger.verdict import summaries_agree
from tests.compute.conftest import BACKENDS_HERE, CASES, Case

# Per model, an array the summary must bind entry by entry (in full or through the sketch).
BOUND_ARRAY = {
    "linear_regression": "probe_design",
    "kmeans": "centres",
    "pca": "components",
    "logistic_regression": "probe_design",
    "mlp_train": "w0",
}


def honest(case: Case) -> tuple[JobResult, Artifact]:
    backend = default_backend(case.spec)
    if backend not in BACKENDS_HERE:
        pytest.skip(f"{backend} not available")
    result = execute(case.spec, case.dataset, backend)
    return result, decode_artifact(result.artifact)


def rule(case: Case) -> Agreement:
    tol = case.spec.tolerance

    def agree(a: Sequence[int], b: Sequence[int]) -> bool:
        return summaries_agree(a, b, tol.abs, tol.ppm)

    return agree


def with_field(artifact: Artifact, name: str, value: np.ndarray) -> Artifact:
    return dataclasses.replace(artifact, fields={**artifact.fields, name: value})


def test_an_honest_artifact_binds_to_its_summary(case: Case) -> None:
    result, artifact = honest(case)
    assert artifact_problem(case.spec, case.dataset.digest, artifact, result.summary, rule(case)) is None


def test_an_artifact_of_another_model_spec_or_dataset_is_refused(case: Case) -> None:
    result, artifact = honest(case)
    other = next(c for c in CASES if c.spec.model != case.spec.model and c.dataset.digest != case.dataset.digest)
    for kind, forged in (
        ("model", dataclasses.replace(artifact, model=other.spec.model)),
        ("spec_digest", dataclasses.replace(artifact, spec_digest=other.spec.digest)),
        ("dataset_digest", dataclasses.replace(artifact, dataset_digest=other.dataset.digest)),
    ):
        problem = artifact_problem(case.spec, case.dataset.digest, forged, result.summary, rule(case))
        assert problem is not None and problem.kind == kind, (kind, problem)
    # Another job's whole artifact, its own summary and all: bound to the other job.
    theirs_result, theirs = honest(other)
    problem = artifact_problem(case.spec, case.dataset.digest, theirs, result.summary, rule(case))
    assert problem is not None and problem.kind == "model"
    assert theirs_result.summary != result.summary


def test_a_perturbed_array_is_refused(case: Case) -> None:
    result, artifact = honest(case)
    name = BOUND_ARRAY[case.spec.model]
    a = np.array(artifact.fields[name], dtype=np.float64)
    flat = a.reshape(-1)
    flat[flat.size // 2] += 0.05 * max(float(np.abs(flat).max()), 1e-3)  # one entry, by 5% of the largest
    problem = artifact_problem(case.spec, case.dataset.digest, with_field(artifact, name, a), result.summary,
                               rule(case))
    assert problem is not None and problem.kind == "summary", problem
    assert problem.detail["differing"] >= 1 and "index" in problem.detail


def test_a_missing_field_is_refused() -> None:
    case = next(c for c in CASES if c.spec.model == "kmeans")
    result, artifact = honest(case)
    fields = dict(artifact.fields)
    del fields["labels"]
    problem = artifact_problem(case.spec, case.dataset.digest, dataclasses.replace(artifact, fields=fields),
                               result.summary, rule(case))
    assert problem is not None and problem.kind == "fields"


def test_swapping_two_mlp_weights_is_caught_by_the_sketch() -> None:
    # A swap leaves every tensor's sum and norm, and the reported metrics, exactly as they were: before the sketch
    # the summary could not tell the network it served from the one that was verified.
    case = next(c for c in CASES if c.spec.model == "mlp_train")
    result, artifact = honest(case)
    w = np.array(artifact.fields["w0"], dtype=np.float64)
    i, j = np.unravel_index(np.argmax(w), w.shape), np.unravel_index(np.argmin(w), w.shape)
    w[i], w[j] = w[j], w[i]
    forged = with_field(artifact, "w0", w)
    assert float(w.sum()) == pytest.approx(float(np.asarray(artifact.fields["w0"]).sum()), abs=1e-12)
    problem = artifact_problem(case.spec, case.dataset.digest, forged, result.summary, rule(case))
    assert problem is not None and problem.kind == "summary", problem


def test_perturbing_one_mlp_weight_disagrees() -> None:
    case = next(c for c in CASES if c.spec.model == "mlp_train")
    result, artifact = honest(case)
    for name in sorted(k for k in artifact.fields if k[0] == "w" and k[1:].isdigit()):
        w = np.array(artifact.fields[name], dtype=np.float64)
        w.reshape(-1)[0] += 0.01
        problem = artifact_problem(case.spec, case.dataset.digest, with_field(artifact, name, w), result.summary,
                                   rule(case))
        assert problem is not None and problem.kind == "summary", (name, problem)


def test_the_sketch_is_seeded_per_job_and_fixed_in_length() -> None:
    a, b = sketch_seed(b"s" * 32, b"d" * 32), sketch_seed(b"s" * 32, b"e" * 32)
    assert a != b and a == sketch_seed(b"s" * 32, b"d" * 32)
    small, huge = np.arange(5.0), np.linspace(-1.0, 1.0, 200_000)
    assert sketch([small, huge], a).shape == (2 * SKETCH_WIDTH,)
    assert not np.allclose(sketch([huge], a), sketch([huge], b))
    # Size and direction: a rescaled array moves the size entry, a zero array reads zero.
    assert sketch([2 * small], a)[0] != sketch([small], a)[0]
    assert np.array_equal(sketch([np.zeros(7)], a), np.zeros(SKETCH_WIDTH))


def test_a_move_hidden_from_the_jobs_sketch_is_seen_by_a_sketch_drawn_after_the_commitment() -> None:
    # The move is the ``hidden-move`` fault's (bootstrap.agent.faults), made with the job's public sketch seed.
    case = next(c for c in CASES if c.spec.model == "mlp_train")
    result, artifact = honest(case)
    public = sketch_seed(case.spec.digest, case.dataset.digest)
    forged = decode_artifact(hidden_move(result, public, 0.02).artifact)
    moved = np.asarray(forged.fields["w0"]) - np.asarray(artifact.fields["w0"])
    assert np.linalg.norm(moved) > 0.019 * np.linalg.norm(np.asarray(artifact.fields["w0"]))
    # The job's own check passes it: a 2% move of the weights, invisible to the verified summary.
    assert artifact_problem(case.spec, case.dataset.digest, forged, result.summary, rule(case)) is None
    # A confirmer's second sketch, from a seed fixed only after the artifact was committed, sees it...
    seed = confirm_seed(b"j" * 32, b"h" * 32)
    problem = fresh_sketch_problem(case.spec, case.dataset.digest, forged, artifact, seed, rule(case))
    assert problem is not None and problem.kind == "fresh_sketch" and problem.detail["differing"] >= 1, problem
    # ...while an honest artifact agrees with another honest run under it (here a second run of the same job).
    again = decode_artifact(execute(case.spec, case.dataset, default_backend(case.spec)).artifact)
    assert fresh_sketch_problem(case.spec, case.dataset.digest, artifact, again, seed, rule(case)) is None
    other = next(c for c in CASES if c.spec.model != case.spec.model)
    _, theirs = honest(other)
    problem = fresh_sketch_problem(case.spec, case.dataset.digest, artifact, theirs, seed, rule(case))
    assert problem is not None and problem.kind == "own"
