"""Fault injection for tests only (``dacn node --faulty MODE``): a worker that cheats in a known way, so tests
can show the ledger catching it.

A fault spec is ``MODE`` (every local worker key misbehaves) or ``MODE@name1,name2`` (only those keystore keys;
``node`` names the node's own key). Modes:

* ``none`` — honest;
* ``random-results`` — runs the job, then commits and reveals a perturbed summary (far outside any tolerance
  below 40%), so its verifier or a referee disagrees and the ledger slashes it;
* ``no-reveal`` — runs and commits honestly, then never reveals (stall-slashed at the reveal deadline);
* ``copy-commit`` — runs nothing: waits for the other party's commitment and posts the same bytes. It cannot open
  that commitment (it never learns the salt from the state), so it is stall-slashed at the reveal deadline;
* ``collude`` — every key in this mode, on any node, commits the same wrong summary for a job (perturbed with the
  job id, not the key's salt), in any role: two such keys holding worker and verifier agree on a false result,
  and as auditor, referee or panel member they back it. The audits and the appeal panel catch the pair;
* ``lazy-subsample`` — runs the job on the first half of the dataset's rows only (half the work), so its summary
  differs from an honest run's: the blind referee and the panel side with the honest party and it is slashed;
* ``fake-artifact`` — runs the job honestly and reveals the honest summary, but publishes an artifact with one
  weight changed: the ledger cannot see it, but the confirmer that must vouch for the artifact before anyone is
  paid recomputes the summary from it and does not confirm, so the job fails unpaid and the client is refunded
  (and ``GET /job/{id}/result`` would refuse it, 409 artifact_mismatch, were it ever accepted);
* ``hidden-move`` — on an ``mlp_train`` job, runs honestly and reveals the honest summary, but publishes weights
  moved by 2% of their norm along a direction none of the job's sketch projections sees (each tensor's sum and
  norm kept): the job's own check passes it, since the sketch seed is public while the author computes. The
  confirmer checks it again under a second sketch whose seed comes from the block that accepted the result
  (``compute.binding.fresh_sketch_problem``), finds it differs from its own run, and does not confirm: the job
  fails unpaid. Other models run honestly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from bootstrap.errors import NodeError
from compute.canonical import JobResult, blake2b256, decode_artifact, encode_artifact
from compute.dataset import Dataset, make_dataset

NONE = "none"
RANDOM_RESULTS = "random-results"
NO_REVEAL = "no-reveal"
COPY_COMMIT = "copy-commit"
COLLUDE = "collude"
LAZY_SUBSAMPLE = "lazy-subsample"
FAKE_ARTIFACT = "fake-artifact"
HIDDEN_MOVE = "hidden-move"
FAULT_MODES = (NONE, RANDOM_RESULTS, NO_REVEAL, COPY_COMMIT, COLLUDE, LAZY_SUBSAMPLE, FAKE_ARTIFACT, HIDDEN_MOVE)
RUN_FAULTS = (LAZY_SUBSAMPLE, FAKE_ARTIFACT, HIDDEN_MOVE)
"""Modes that change the run itself, so they apply when any of the run's roles is held by a key in the mode."""


class FaultSpecError(NodeError, ValueError):
    """A ``--faulty`` value names no known mode, or its key list is malformed."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"--faulty {value!r}: {reason}")
        self.value, self.reason = value, reason


@dataclass(frozen=True)
class Faults:
    """Which misbehaviour to inject, and for which local keys (``None``: every key)."""

    mode: str = NONE
    keys: frozenset[str] | None = None

    def applies(self, key_name: str, mode: str) -> bool:
        """Whether the key named ``key_name`` should misbehave in ``mode``."""
        return self.mode == mode and (self.keys is None or key_name in self.keys)

    def run_applies(self, roles: tuple[tuple[str, str], ...], mode: str) -> bool:
        """Whether a run for ``roles`` ((key name, role) pairs) is made in ``mode`` (one of ``RUN_FAULTS``)."""
        return any(self.applies(name, mode) for name, _ in roles)

    @property
    def active(self) -> bool:
        return self.mode != NONE

    def describe(self) -> str:
        return self.mode if self.keys is None else f"{self.mode}@{','.join(sorted(self.keys))}"


def parse_faults(value: str | None) -> Faults:
    """``None``/``"none"`` → honest; ``"MODE"`` or ``"MODE@a,b"``; anything else raises :class:`FaultSpecError`."""
    if value is None:
        return Faults()
    if not isinstance(value, str):
        raise FaultSpecError(repr(value), "expected a string")
    mode, sep, names = value.partition("@")
    if mode not in FAULT_MODES:
        raise FaultSpecError(value, f"unknown mode {mode!r}; known: {', '.join(FAULT_MODES)}")
    if not sep:
        return Faults(mode)
    keys = frozenset(n.strip() for n in names.split(","))
    if not names or "" in keys:
        raise FaultSpecError(value, "expected MODE@name1,name2 with non-empty key names")
    return Faults(mode, keys)


def perturb_summary(summary: list[int], seed: bytes) -> list[int]:
    """A deterministic wrong answer: every value moved by more than its own magnitude plus a million units.

    Two faulty keys get different seeds, so they disagree with each other too (no accidental majority).
    """
    if not summary:
        return [1]
    out = []
    for i, x in enumerate(summary):
        h = hashlib.blake2b(seed + i.to_bytes(4, "big"), digest_size=8).digest()
        sign = 1 if h[0] & 1 else -1
        jitter = int.from_bytes(h[1:], "big") % 1000
        if abs(x) > 2**61:  # moving it further would leave the signed 64-bit range the ledger accepts
            out.append(-(x // 2))
        else:
            out.append(x + sign * (abs(x) + 1_000_000 + jitter))
    return out


def half_of(dataset: Dataset) -> Dataset:
    """``lazy-subsample``: the first half of the rows (at least one), as a dataset of its own."""
    n = max(1, dataset.X.shape[0] // 2)
    return make_dataset(np.array(dataset.X[:n]), None if dataset.y is None else np.array(dataset.y[:n]))


def forged(result: JobResult) -> JobResult:
    """``fake-artifact``: the same summary beside an artifact whose first array has its first entry moved by 1."""
    art = decode_artifact(result.artifact)
    fields = dict(art.fields)
    for name in sorted(fields):
        value = fields[name]
        if isinstance(value, np.ndarray) and value.size:
            changed = np.array(value, copy=True)
            changed.flat[0] += 1
            fields[name] = changed
            break
    data = encode_artifact(art.model, art.spec_digest, art.dataset_digest, fields)
    return replace(result, artifact=data, artifact_digest=blake2b256(data))


def hidden_move(result: JobResult, seed: int, eps: float = 0.02) -> JobResult:
    """``hidden-move``: an ``mlp_train`` result whose first layer's weights are moved by ``eps`` of their norm
    along a direction that none of the sketch's projections under ``seed`` (the job's public sketch seed) sees,
    orthogonal to the tensor's ones (its sum stays to first order) and to the weights (rescaled, so its norm stays
    exactly); the summary is left as it was. Another model's result is returned as it is."""
    from compute.models.base import sketch_projections

    art = decode_artifact(result.artifact)
    if art.model != "mlp_train":
        return result
    w0 = np.array(art.fields["w0"], dtype=np.float64)
    n0 = w0.size
    width = n0 + np.asarray(art.fields["w1"]).size  # the first layer's sketched vector: w0 then its bias w1
    # The projections the sketch applies to that vector (array 0); the w0 part is what the move may use.
    projections = np.hstack([p for _, p in sketch_projections(seed, 0, width)])[:, :n0]
    q, _ = np.linalg.qr(np.vstack([projections, np.ones(n0), w0.ravel()]).T)
    d = np.random.default_rng(seed % 2**32).standard_normal(n0)
    d -= q @ (q.T @ d)
    d *= eps * np.linalg.norm(w0) / np.linalg.norm(d)
    keep = np.sqrt(1.0 - eps**2)  # d is orthogonal to w0: its norm stays
    fields = {**art.fields, "w0": (keep * w0.ravel() + d).reshape(w0.shape).astype(np.asarray(art.fields["w0"]).dtype)}
    data = encode_artifact(art.model, art.spec_digest, art.dataset_digest, fields)
    return replace(result, artifact=data, artifact_digest=blake2b256(data))
