"""Certificates: checks of a claimed result, cheaper than re-running the job, that a wrong result never passes.

Every result must be bound to this spec and this dataset, carry an intact artifact, and have a summary that is
exactly the quantised artifact. Then the model's own checks. Three answers (``CertificateReport.verdict``):

* ``certified`` — a sound bound says the summary is within a fraction of the spec's tolerance of the true
  answer: linear regression (the exact distance to the optimum of the quadratic, measured in the solution's
  own conditioning), PCA where the trace bound isolates the top components (all of ``V C Vᵀ`` against the
  claimed spectrum), logistic regression (a Newton step from the claim, in score space);
* ``refuted`` — a check that only a wrong result fails did fail (a proof of cheating, for any model);
* ``uncertifiable`` — nothing failed, but no sound certificate cheaper than re-running exists: k-means (which
  local optimum is right depends on the seeded starts, so only a re-run from them decides), MLP training (only
  training again says whether these are the trained weights), and instances of the others outside their cheap
  bound (PCA whose left-over variance could hide a larger direction). ``ok`` is False: re-run it.

Where a certificate pays (an auditor's first pass, a referee's narrowing) is measured in ``bench.certificates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compute.binding import summary_values
from compute.canonical import JobResult, blake2b256, decode_artifact, quantise
from compute.dataset import Dataset
from compute.errors import DatasetError, ResultError
from compute.models import Check, get_model
from compute.models.base import NotCertifiable
from compute.spec import JobSpec

CERTIFIED, REFUTED, UNCERTIFIABLE = "certified", "refuted", "uncertifiable"


@dataclass(frozen=True)
class CertificateReport:
    """The outcome: ``ok`` only when the result is certified; ``reason`` names the first failed check, or why
    this result cannot be certified (``verdict`` tells the two apart: only ``refuted`` proves it wrong)."""

    ok: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    verdict: str = CERTIFIED

    @property
    def refuted(self) -> bool:
        """A check failed: this result is wrong (not merely uncertified)."""
        return self.verdict == REFUTED


def certifiable(model: str) -> bool:
    """Whether ``model`` has a sound certificate at all (an instance may still be outside its cheap bound)."""
    return get_model(model).certifiable


def _fail(reason: str, checks: list[Check] | None = None) -> CertificateReport:
    return CertificateReport(False, reason, checks or [], REFUTED)


def _uncertifiable(reason: str, checks: list[Check]) -> CertificateReport:
    return CertificateReport(False, reason, checks, UNCERTIFIABLE)


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
    except NotCertifiable as exc:
        if expected != list(result.summary):
            return _fail("summary is not the quantised artifact")
        return _uncertifiable(f"no sound certificate for this {spec.model} result: {exc}; re-run it", [])
    except (KeyError, ValueError, TypeError, IndexError, ResultError, np.linalg.LinAlgError) as exc:
        return _fail(f"artifact fields are unusable: {type(exc).__name__}: {exc}")
    if expected != list(result.summary):
        return _fail("summary is not the quantised artifact", checks)
    for check in checks:
        if not check.ok:
            return _fail(f"{check.name}: {check.value:.3g} exceeds {check.threshold:.3g}", checks)
    if not model.certifiable:
        # Its checks are necessary conditions only: passing them proves nothing.
        return _uncertifiable(f"no sound certificate for {spec.model}: re-run it", checks)
    return CertificateReport(True, "", checks)
