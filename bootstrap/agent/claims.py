"""What the worker agent claims when it cannot produce a result (issue 14: honest workers are never punished).

A worker or verifier that cannot run its job used to commit nothing and be stall-slashed at the commit deadline.
Instead it now commits an honest claim (``ledger.verdict``):

* ``UNAVAILABLE`` — the spec or the dataset could not be fetched from any peer (the planner keeps retrying and
  commits this only when the deadline is near, ``Planner.claim_blocks``);
* ``ERROR`` with a code — the spec fails deterministically: a typed compute error on its data (``SpecError``,
  ``DatasetError``, a ``ResultError`` for a non-finite or overflowing summary, an ``ExecutionError`` the code
  table names such as a capped logistic run that did not converge; the code is
  ``compute.errors.error_code``, below 1000), or one of this node's own checks, coded from 1000 up so they never
  clash with compute's: the spec disagrees with its job on chain (model, dataset, run time limit, minimum
  memory, device), or its summary is longer than the chain's ``max_summary_len``;
* ``OVER_LIMIT`` — the run was stopped by its time or memory limit (the spec's, or this node's own cap when that
  is lower: either way this machine could not finish it within what it allows).

Anything else (the pool crashed, a backend missing here, an OS error) is this node's trouble, not a claim: it is
retried, and the node stalls if it never succeeds. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from compute.errors import DatasetError, ResultError, SpecError, error_code
from compute.pool import DETERMINISTIC_KINDS, JobFailure
from compute.spec import JobSpec
from ledger.state import Job
from ledger.verdict import ERROR, OUTCOMES, OVER_LIMIT, RESULT, UNAVAILABLE

NO_ARTIFACT = bytes(32)
"""The artifact digest a claim names: there is no artifact (the ledger compares claims by outcome and code)."""

SPEC_MODEL_MISMATCH = 1001
SPEC_DATASET_MISMATCH = 1002
SPEC_TIME_LIMIT_MISMATCH = 1003
SPEC_MEMORY_MISMATCH = 1004
SPEC_DEVICE_MISMATCH = 1005
SUMMARY_TOO_LONG = 1006
NODE_CODES = {
    SPEC_MODEL_MISMATCH: "the spec's model differs from the job's",
    SPEC_DATASET_MISMATCH: "the spec names another dataset than the job",
    SPEC_TIME_LIMIT_MISMATCH: "the spec's time limit differs from the job's",
    SPEC_MEMORY_MISMATCH: "the spec's minimum memory differs from the job's",
    SPEC_DEVICE_MISMATCH: "the spec's device differs from the job's",
    SUMMARY_TOO_LONG: "the result summary is longer than the chain's max_summary_len",
}
"""The node's own error codes (1000 and up; compute's are below 1000) and what each means."""

OVER_LIMIT_KINDS = frozenset({"timeout", "memory"})
"""Pool failures that mean the run's time or memory limit stopped it."""


def spec_mismatch(job: Job, spec: JobSpec) -> tuple[int, str] | None:
    """``(code, reason)`` when ``spec`` says something else than its job on chain, or ``None``. Every honest node
    reads the same spec and the same job, so it is a deterministic error of the job, claimed as such."""
    if spec.model != job.model:
        return SPEC_MODEL_MISMATCH, f"spec model {spec.model!r} differs from the job's {job.model!r}"
    if spec.dataset_digest != job.dataset_digest:
        return SPEC_DATASET_MISMATCH, "spec names another dataset than the job"
    if job.time_limit_ms and spec.limits.time_limit_ms != job.time_limit_ms:
        return SPEC_TIME_LIMIT_MISMATCH, (f"spec time limit {spec.limits.time_limit_ms} ms differs from the job's "
                                          f"{job.time_limit_ms} ms")
    if spec.requirements.min_memory_mb != job.min_memory_mb:
        return SPEC_MEMORY_MISMATCH, (f"spec needs {spec.requirements.min_memory_mb} MB, the job says "
                                      f"{job.min_memory_mb} MB")
    if spec.requirements.device != job.device:
        return SPEC_DEVICE_MISMATCH, f"spec device {spec.requirements.device!r} differs from the job's {job.device!r}"
    return None


def error_claim(exc: BaseException) -> tuple[int, list[int]]:
    """The claim for a deterministic compute error raised in this process (decoding the spec or the dataset)."""
    return ERROR, [error_code(exc)]


def failure_claim(failure: JobFailure) -> tuple[int, list[int]] | None:
    """The claim a failed pool run supports, or ``None`` when the failure is this node's own trouble (retry)."""
    if failure.kind in DETERMINISTIC_KINDS:
        if failure.code:
            return ERROR, [failure.code]
        # A child that sent no code (an older one): the code its error would have had.
        exc = {"spec": SpecError(failure.field or "", failure.message), "dataset": DatasetError(failure.message)}
        return error_claim(exc.get(failure.kind, ResultError(failure.message)))
    if failure.kind == "execution" and failure.code:
        return ERROR, [failure.code]  # a failure the code table names: every honest run of the job hits it
    if failure.kind in OVER_LIMIT_KINDS:
        return OVER_LIMIT, []
    return None


def describe_claim(outcome: int, summary: Sequence[int]) -> str:
    """A claim in a few words for logs: ``result``, ``unavailable``, ``error 1003 (…)``, ``over_limit``."""
    if outcome == ERROR and summary:
        code = summary[0]
        meaning = NODE_CODES.get(code)
        return f"error {code}" + (f" ({meaning})" if meaning else "")
    return OUTCOMES.get(outcome, str(outcome))


__all__ = [
    "ERROR", "NODE_CODES", "NO_ARTIFACT", "OVER_LIMIT", "RESULT", "SPEC_DATASET_MISMATCH", "SPEC_DEVICE_MISMATCH",
    "SPEC_MEMORY_MISMATCH", "SPEC_MODEL_MISMATCH", "SPEC_TIME_LIMIT_MISMATCH", "SUMMARY_TOO_LONG", "UNAVAILABLE",
    "describe_claim", "error_claim", "failure_claim", "spec_mismatch",
]
