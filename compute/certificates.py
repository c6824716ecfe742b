"""Certificates: cheap checks of a claimed result without re-running the job.

Each model checks a property that only a correct output has (normal equations, an eigen-residual, a Lloyd fixed
point, a vanishing gradient, reproduced metrics), and every result must also be bound to this spec and this
dataset, carry an intact artifact, and have a summary that is exactly the quantised artifact. The verifier runs
this first; a dispute between two revealed results is settled quickly by certifying both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compute.binding import summary_values
from compute.canonical import JobResult, blake2b256, decode_artifact, quantise
from compute.dataset import Dataset
from compute.errors import DatasetError, ResultError
from compute.models import Check, get_model
from compute.spec import JobSpec


@dataclass(frozen=True)
class CertificateReport:
    """The outcome: ``ok`` when every check passed; ``reason`` names the first failure."""

    ok: bool
    reason: str
    checks: list[Check] = field(default_factory=list)


def _fail(reason: str, checks: list[Check] | None = None) -> CertificateReport:
    return CertificateReport(False, reason, checks or [])


def check_certificate(spec: JobSpec, dataset: Dataset, result: JobResult) -> CertificateReport:
    """Certify ``result`` as an honest output of ``spec`` on ``dataset`` (which must be the spec's dataset)."""
    if dataset.digest != spec.dataset_digest:
        raise DatasetError("the dataset given is not the one the spec names")
    if result.model != spec.model or result.spec_digest != spec.digest:
        return _fail("result is for another job spec")
    if result.dataset_digest != dataset.digest:
        return _fail("result is for another dataset")
    if result.precision != spec.precision:
        return _fail(f"result precision {result.precision} differs from the spec's {spec.precision}")
    if blake2b256(result.artifact) != result.artifact_digest:
        return _fail("artifact does not match its digest (truncated or altered)")
    try:
        artifact = decode_artifact(result.artifact)
    except ResultError as exc:
        return _fail(f"artifact is malformed: {exc}")
    if (artifact.model, artifact.spec_digest, artifact.dataset_digest) != (spec.model, spec.digest, dataset.digest):
        return _fail("artifact is bound to another job or dataset")
    model = get_model(spec.model)
    try:
        values, _ = summary_values(spec.model, spec.digest, dataset.digest, artifact.fields)
        expected = quantise(values, spec.precision)
        checks = model.certify(dataset.X, dataset.y, spec.params, artifact.fields)
    except (KeyError, ValueError, TypeError, IndexError, ResultError, np.linalg.LinAlgError) as exc:
        return _fail(f"artifact fields are unusable: {type(exc).__name__}: {exc}")
    if expected != list(result.summary):
        return _fail("summary is not the quantised artifact", checks)
    for check in checks:
        if not check.ok:
            return _fail(f"{check.name}: {check.value:.3g} exceeds {check.threshold:.3g}", checks)
    return CertificateReport(True, "", checks)
