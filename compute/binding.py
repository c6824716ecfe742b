"""The binding between a job's verified summary and the artifact served as its result.

The ledger compares only summaries; what a client downloads is the artifact the assigned worker named by digest.
Every summary is a function of the artifact's fields alone (``ModelDef.summarise``), and each model's summary
ends with a seeded sketch of the arrays it does not list in full (``compute.models.base.sketch``), so an
artifact can be checked against the verified summary without the dataset: recompute the summary from it, the
same way the executors do (``summary_values`` is the one path both take), and compare under the ledger's rule.

The rule itself belongs to the ledger (``ledger.verdict``): compute never imports it, so the caller passes it in
as ``agree``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compute.canonical import Artifact, ArtifactValue, blake2b256, quantise
from compute.errors import ResultError
from compute.models import get_model
from compute.spec import JobSpec

SKETCH_TAG = b"dacn-sketch/1"
CONFIRM_TAG = b"dacn-confirm-sketch/1"

# (recomputed, verified) -> whether they agree: the ledger's comparison with the job's tolerance bound in.
Agreement = Callable[[Sequence[int], Sequence[int]], bool]


def sketch_seed(spec_digest: bytes, dataset_digest: bytes) -> int:
    """The seed of a job's summary sketch: a function of its spec and dataset, so every run of the job (and every
    check of its artifact) draws the same projections, and another job draws others."""
    return int.from_bytes(blake2b256(SKETCH_TAG + spec_digest + dataset_digest)[:8], "little")


def confirm_seed(job_id: bytes, block_hash: bytes) -> int:
    """The seed of the second sketch a confirmer draws (``fresh_sketch_problem``): a function of the job and of the
    hash of the block that accepted its result, which did not exist when the author committed to its artifact."""
    return int.from_bytes(blake2b256(CONFIRM_TAG + job_id + block_hash)[:8], "little")


def summary_values(
    model: str, spec_digest: bytes, dataset_digest: bytes, fields: Mapping[str, ArtifactValue],
    seed: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The summary floats and display dict of ``fields`` for this job: what the executor quantises and what an
    artifact check recomputes. ``seed`` replaces the job's sketch seed (a confirmer's second sketch)."""
    if seed is None:
        seed = sketch_seed(spec_digest, dataset_digest)
    return get_model(model).summarise(dict(fields), seed)


@dataclass(frozen=True)
class ArtifactProblem:
    """Why an artifact is not the one a verified summary describes. ``kind``: ``model``, ``spec_digest``,
    ``dataset_digest`` (it is bound to another job or dataset), ``fields`` (the summary cannot be computed from
    it) or ``summary`` (its summary differs from the verified one); ``detail`` names the values that differ."""

    kind: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


# What summarising a forged artifact may raise (a missing field, one of the wrong shape): it is not the result.
_UNSUMMARISABLE = (KeyError, ValueError, TypeError, IndexError, ResultError, np.linalg.LinAlgError)


def _quantised_summary(spec: JobSpec, dataset_digest: bytes, artifact: Artifact, seed: int | None, whose: str,
                       kind: str) -> list[int] | ArtifactProblem:
    """``artifact``'s summary (under the sketch seed ``seed``, the job's when None), quantised at the spec's
    precision; or, when none can be computed from it, the problem ``kind`` naming ``whose`` artifact it is."""
    try:
        values, _ = summary_values(spec.model, spec.digest, dataset_digest, artifact.fields, seed)
        return quantise(values, spec.precision)
    except _UNSUMMARISABLE as exc:
        return ArtifactProblem(kind, f"no summary can be computed from {whose}: {type(exc).__name__}: {exc!s:.200}")


def _differing(got: Sequence[int], want: Sequence[int], agree: Agreement) -> tuple[list[int], int]:
    """The positions where ``got`` and ``want`` disagree value by value, and the first of them (0 if none)."""
    off = [i for i, (a, b) in enumerate(zip(got, want, strict=False)) if not agree([a], [b])]
    return off, off[0] if off else 0


def artifact_problem(
    spec: JobSpec, dataset_digest: bytes, artifact: Artifact, verified: Sequence[int], agree: Agreement
) -> ArtifactProblem | None:
    """``None`` when ``artifact`` belongs to ``spec`` on the dataset ``dataset_digest`` and its recomputed
    summary agrees (by ``agree``) with the ``verified`` one; otherwise the first thing that differs."""
    for kind, got, want in (
        ("model", artifact.model, spec.model),
        ("spec_digest", artifact.spec_digest, spec.digest),
        ("dataset_digest", artifact.dataset_digest, dataset_digest),
    ):
        if got != want:
            shown = (got.hex(), want.hex()) if isinstance(got, bytes) and isinstance(want, bytes) else (got, want)
            return ArtifactProblem(kind, f"the artifact's {kind.replace('_', ' ')} is {shown[0]!s:.64}, the job's is "
                                         f"{shown[1]!s:.64}", {"artifact": shown[0], "job": shown[1]})
    summary = _quantised_summary(spec, dataset_digest, artifact, None, "the artifact", "fields")
    if isinstance(summary, ArtifactProblem):
        return summary
    if len(summary) != len(verified):
        return ArtifactProblem("summary", f"the artifact's summary has {len(summary)} values, the verified one "
                                          f"{len(verified)}", {"length": len(summary), "verified_length":
                                                               len(verified)})
    if agree(summary, verified):
        return None
    off, first = _differing(summary, verified, agree)
    return ArtifactProblem(
        "summary",
        f"the artifact's summary differs from the verified one at {len(off)} of {len(summary)} positions (first "
        f"at index {first}: {summary[first]} against {verified[first]})",
        {"positions": off[:16], "differing": len(off), "index": first, "artifact_value": summary[first],
         "verified_value": verified[first]},
    )


def fresh_sketch_problem(spec: JobSpec, dataset_digest: bytes, artifact: Artifact, own: Artifact, seed: int,
                         agree: Agreement) -> ArtifactProblem | None:
    """``None`` when the accepted ``artifact`` and ``own`` (the confirmer's own run of the same job) agree, by
    ``agree``, on their summaries under the sketch seed ``seed`` (``confirm_seed``) instead of the job's; else the
    first value that differs, as ``fresh_sketch``.

    Why: the job's sketch seed is public while the author computes, so an author could move its weights along a
    direction none of the job's projections sees (keeping every tensor's sum and norm) and still pass
    ``artifact_problem``. Projections drawn after its artifact was committed see such a move like any other; two
    honest runs agree on any projections as they do on the job's."""
    if (own.model, own.spec_digest, own.dataset_digest) != (spec.model, spec.digest, dataset_digest):
        return ArtifactProblem("own", "the confirmer's own artifact belongs to another job")
    mine = _quantised_summary(spec, dataset_digest, own, seed, "the confirmer's own artifact", "own")
    if isinstance(mine, ArtifactProblem):
        return mine
    theirs = _quantised_summary(spec, dataset_digest, artifact, seed, "the artifact", "fields")
    if isinstance(theirs, ArtifactProblem):
        return theirs
    if len(theirs) == len(mine) and agree(theirs, mine):
        return None
    off, first = _differing(theirs, mine, agree)
    return ArtifactProblem(
        "fresh_sketch",
        f"under a sketch drawn after the artifact was committed, it differs from the confirmer's own run at "
        f"{len(off)} of {len(theirs)} positions (first at index {first})",
        {"positions": off[:16], "differing": len(off), "index": first},
    )


__all__ = ["Agreement", "ArtifactProblem", "artifact_problem", "confirm_seed", "fresh_sketch_problem", "sketch_seed",
           "summary_values"]
