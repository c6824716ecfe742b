"""Whether a blob is the artifact a job accepted: one check shared by the confirmer that vouches for it on the
ledger (``confirm_artifact``, :mod:`bootstrap.agent`) and the node that serves it (``GET /job/{id}/result``), so
what a client is served is exactly what was confirmed."""

from __future__ import annotations

from typing import Any

from bootstrap.errors import NodeError
from compute.binding import artifact_problem, fresh_sketch_problem
from compute.canonical import Artifact, decode_artifact
from compute.errors import ComputeError
from compute.spec import JobSpec
from ledger.state import Job
from ledger.verdict import summaries_agree
from p2pnet import blob_digest


class ArtifactRefused(NodeError):
    """The blob is not the job's accepted result. ``kind`` is ``bad_artifact`` (it does not decode) or
    ``artifact_mismatch``; ``differs`` names what differs (``model``, ``spec_digest``, ``dataset_digest``,
    ``fields``, ``summary``, ``artifact_digest``, ``fresh_sketch``) and ``detail`` the values."""

    def __init__(self, kind: str, differs: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason if kind == "bad_artifact" else f"the artifact is not the accepted result: {reason}")
        self.kind, self.differs, self.reason, self.detail = kind, differs, reason, dict(detail or {})


def accepted_artifact(job: Job, spec: JobSpec, data: bytes, own: tuple[bytes, int] | None = None) -> Artifact:
    """``data`` decoded, once it is shown to be the result ``job`` accepted: this job's model, spec and dataset,
    a summary recomputed from it that agrees with ``job.result_summary`` under the job's own tolerance (the
    ledger's rule), and bytes that hash to ``job.result_artifact``; otherwise :class:`ArtifactRefused`. A
    confirmer also passes ``own``: its own run's artifact bytes and the seed of a second sketch drawn after the
    result was accepted (``compute.binding.confirm_seed``), and the two artifacts must agree under that sketch
    too (``fresh_sketch_problem``); an own artifact that cannot be compared (it does not decode, or belongs to
    another job) refuses nothing, since the fault is the confirmer's. CPU-bound (every array is sketched): call it
    off the event loop."""
    try:
        artifact = decode_artifact(data)
    except ComputeError as exc:
        raise ArtifactRefused("bad_artifact", "fields", f"the result artifact does not decode: {exc}") from None

    def agree(recomputed: Any, verified: Any) -> bool:
        return summaries_agree(recomputed, verified, job.tolerance_abs, job.tolerance_ppm)

    problem = artifact_problem(spec, job.dataset_digest, artifact, list(job.result_summary or []), agree)
    if problem is not None:
        raise ArtifactRefused("artifact_mismatch", problem.kind,
                              problem.reason, problem.detail)
    # After the meaning, the bytes: a blob altered yet still consistent is not the one the job names.
    if blob_digest(data) != job.result_artifact:
        raise ArtifactRefused("artifact_mismatch", "artifact_digest",
                              "its bytes do not hash to the digest the job recorded "
                              f"({(job.result_artifact or b'').hex()[:16]}…)")
    if own is not None:
        mine, seed = own
        try:
            own_artifact = decode_artifact(mine)
        except ComputeError:
            return artifact  # the confirmer's own copy is at fault, not the author: nothing to compare with
        problem = fresh_sketch_problem(spec, job.dataset_digest, artifact, own_artifact, seed, agree)
        if problem is not None and problem.kind != "own":  # the same: an own artifact of no use is not a refusal
            raise ArtifactRefused("artifact_mismatch", problem.kind, problem.reason, problem.detail)
    return artifact


__all__ = ["ArtifactRefused", "accepted_artifact"]
