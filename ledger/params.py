"""Chain parameters, fixed at genesis: integers only, each with a default and a range check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ledger.errors import InvalidGenesis, UnbondingTooShort
from ledger.types import REPUTATION_MAX


@dataclass(frozen=True, slots=True)
class Params:
    """Every number the ledger rules depend on; the genesis file may override any of them."""

    min_fee: int = 1
    """Smallest fee a tx may carry; fees go to the block proposer."""
    min_stake: int = 1_000
    """Stake a worker needs to register and to be eligible for jobs."""
    unbonding_period: int = 120
    """Blocks between an ``unbond`` and the tokens returning to the balance; must exceed ``evidence_max_age``."""
    evidence_max_age: int = 100
    """Oldest equivocation evidence a block may carry, in blocks behind it. Shorter than ``unbonding_period``, so
    stake bonded at an offence is still bonded or unbonding whenever its evidence can be included
    (``ledger.staking.slash_equivocation``)."""
    slash_permille: int = 100
    """Share of stake taken from the odd one out of a disputed job (per mille)."""
    stall_slash_permille: int = 20
    """Share of stake taken from a worker that missed a commit/reveal deadline (per mille)."""
    equivocation_slash_permille: int = 500
    """Share of a validator's stake, bonded and unbonding, taken when it is caught signing two conflicting votes
    (per mille)."""
    initial_reputation: int = 500
    reputation_reward: int = 10
    """Reputation gained by each worker whose result was accepted."""
    reputation_penalty: int = 100
    """Reputation lost by the odd one out of a dispute."""
    reputation_stall_penalty: int = 50
    """Reputation lost by a worker that stalled (missed a deadline)."""
    min_reputation: int = 0
    """Reputation a worker needs to be assigned, drawn as verifier or referee, or to bid."""
    max_bids_per_job: int = 32
    default_bid_window: int = 3
    default_commit_window: int = 10
    default_reveal_window: int = 5
    max_window: int = 1_000
    """Longest bid/commit/reveal window a job may ask for, in blocks."""
    max_reassignments: int = 2
    """How many times a job's stalled worker/verifier/referee may be replaced before it is refunded."""
    max_summary_len: int = 256
    """Longest result summary a reveal may carry (at most ``ledger.tx.MAX_SUMMARY_LEN``)."""
    block_time_ms: int = 1_000
    """The shortest block interval the chain plans for, in ms: it converts a job's time limit into blocks
    (``ledger.jobs.commit_blocks_needed``). Err low: a window sized by a shorter block time is longer in time."""
    commit_margin_blocks: int = 2
    """Blocks a commit window needs beyond the run itself: fetching the spec and data, and landing the commitment."""
    default_job_time_ms: int = 4_000
    """Wall time one run of a job may take when its submitter names none; must fit ``default_commit_window``."""
    max_job_time_ms: int = 600_000
    """Longest wall time a job may ask for one run."""
    max_job_memory_mb: int = 65_536
    """Most memory a job may ask a worker to have."""
    window_fee_per_block: int = 1
    """Extra fee per block by which a job's bid, commit and reveal windows together exceed the defaults: a long
    window holds workers' capacity and the job's escrow longer, so the client pays for it."""
    trouble_permille: int = 100
    """Share of its pay (the price for the worker, the fee for a verifier or referee) each party gets when a job
    ends through nobody's fault (``ledger.jobs``: unavailable, spec error, over its own limits)."""
    offer_band_permille: int = 100
    """Offers and bids whose effective price is within this much (per mille) of the best compete in a seeded,
    reputation- and capacity-weighted draw, so undercutting by one token does not take every job."""
    audit_permille: int = 100
    """Least chance (per mille) that a job whose worker and verifier made the same claim gets an auditor: a third
    worker drawn from the hash of the block holding the last commitment, who commits blind before anything is
    revealed. A job is audited more often when its pay is large against the stakes at risk:
    ``p = max(audit_permille, 1000·pay / (κ·(pay + S_w + S_v)))`` per mille with ``pay = price +
    verification_fee``, ``S`` a party's slash (``stake · slash_permille / 1000``) and ``κ = 0.49``
    (``ledger.jobs.audit_permille_for``), so that ``p·κ·(pay + S_w + S_v) ≥ pay``: a pair of one owner's keys
    that fakes the result (saving at most the pay it would spend on honest runs) loses more when caught than it
    saves (docs/VERIFICATION.md). 0 turns audits off, and with them that guarantee."""
    appeal_panel: int = 3
    """Checkers drawn after a referee's commitment (every dispute) or an auditor's that differs from the worker's
    and verifier's claim, committing blind like it; a strict majority of them (with the referee, in a dispute)
    decides which side wins and who is slashed. Fewer are drawn when fewer workers are free. With none (or 0
    here) a dispute is decided two to one with the referee, and an audit that differs fails the job, refunded,
    nobody slashed."""
    confirm_window: int = 8
    """Blocks after a result is accepted in which one of its confirmers (the checkers drawn after the commitments
    that backed it, else the other of worker and verifier) must post ``confirm_artifact``: it fetched the accepted
    artifact and recomputed the accepted summary from it. Only then is anyone paid; with no confirmation by the
    deadline the job fails, the client is refunded and nobody is paid or slashed (an artifact nobody could
    fetch cannot be blamed on one party). 0 settles at the verdict, the artifact unchecked (before issue 13)."""
    job_retention_blocks: int = 0
    """Blocks a finished job stays in the live state after the block it ended in; then it leaves the state (a
    ``job_pruned`` event), so the state holds the jobs of the last window rather than every job ever posted.
    0 keeps every job (an archive chain). A job's final record can be proven (``GET /proof/job``) while it is
    retained, and a proof saved then verifies for ever. It holds no escrow and no role once finished, so
    dropping it moves no token and no reputation."""
    faucet: bytes | None = None
    """Optional devnet faucet account (a 32-byte account id); the ledger gives it no special rights."""

    def validate(self) -> None:
        """Raise ``InvalidGenesis`` for any value out of range."""
        from ledger.tx import MAX_SUMMARY_LEN

        for f in fields(self):
            if f.name == "faucet":
                continue
            v = getattr(self, f.name)
            if type(v) is not int or v < 0 or v > 2**63 - 1:
                raise InvalidGenesis(f"params.{f.name}", f"expected a non-negative integer, got {v!r}")
        for name in ("slash_permille", "stall_slash_permille", "equivocation_slash_permille", "trouble_permille",
                     "offer_band_permille", "audit_permille"):
            if getattr(self, name) > 1000:
                raise InvalidGenesis(f"params.{name}", "must be at most 1000 (per mille)")
        for name in ("initial_reputation", "reputation_reward", "reputation_penalty", "reputation_stall_penalty",
                     "min_reputation"):
            if getattr(self, name) > REPUTATION_MAX:
                raise InvalidGenesis(f"params.{name}", f"must be at most {REPUTATION_MAX}")
        for name in ("default_bid_window", "default_commit_window", "default_reveal_window", "max_window",
                     "max_bids_per_job", "max_summary_len", "evidence_max_age", "block_time_ms",
                     "default_job_time_ms"):
            if getattr(self, name) < 1:
                raise InvalidGenesis(f"params.{name}", "must be at least 1")
        for name in ("default_bid_window", "default_commit_window", "default_reveal_window", "confirm_window"):
            if getattr(self, name) > self.max_window:
                raise InvalidGenesis(f"params.{name}", f"exceeds max_window={self.max_window}")
        # Stake unbonded at or after an offence must not be released before the offence's evidence expires, or a
        # validator could equivocate, unbond, and be gone with its stake when the evidence lands.
        if self.unbonding_period <= self.evidence_max_age:
            raise UnbondingTooShort(self.unbonding_period, self.evidence_max_age)
        if self.default_job_time_ms > self.max_job_time_ms:
            raise InvalidGenesis("params.default_job_time_ms", f"exceeds max_job_time_ms={self.max_job_time_ms}")
        needed = self.commit_blocks_needed(self.default_job_time_ms)
        if needed > self.default_commit_window:
            raise InvalidGenesis("params.default_commit_window",
                                 f"a run of default_job_time_ms={self.default_job_time_ms} needs {needed} blocks")
        if self.max_summary_len > MAX_SUMMARY_LEN:
            raise InvalidGenesis("params.max_summary_len", f"must be at most {MAX_SUMMARY_LEN}")
        if self.faucet is not None and (type(self.faucet) is not bytes or len(self.faucet) != 32):
            raise InvalidGenesis("params.faucet", "expected a 32-byte account id")

    def commit_blocks_needed(self, time_limit_ms: int) -> int:
        """The shortest commit window (in blocks) for a run of ``time_limit_ms``: the run at ``block_time_ms`` per
        block, rounded up, plus ``commit_margin_blocks`` (fetching the spec and data, landing the commitment)."""
        return self.commit_margin_blocks + -(-time_limit_ms // max(1, self.block_time_ms))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Params:
        """Defaults overridden by ``d``; ``faucet`` as 64 hex chars. Unknown keys are an error, not ignored."""
        if not isinstance(d, dict):
            raise InvalidGenesis("params", "expected a table/object")
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                raise InvalidGenesis(f"params.{key}", "unknown parameter")
            if key == "faucet":
                value = None if value in (None, "") else _account_from_hex(value, "params.faucet")
            kwargs[key] = value
        params = cls(**kwargs)
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["faucet"] = self.faucet.hex() if self.faucet is not None else None
        if d["faucet"] is None:
            del d["faucet"]
        return d

    def to_list(self) -> list[Any]:
        """Canonical field-ordered list (for the state encoding and root)."""
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def from_list(cls, values: list[Any]) -> Params:
        names = [f.name for f in fields(cls)]
        if not isinstance(values, list) or len(values) != len(names):
            raise InvalidGenesis("params", f"expected {len(names)} values")
        params = cls(**dict(zip(names, values, strict=True)))
        params.validate()
        return params


def _account_from_hex(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidGenesis(field, "expected an account id as 64 hex characters")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise InvalidGenesis(field, "not valid hex") from None
    if len(raw) != 32:
        raise InvalidGenesis(field, f"expected 32 bytes (64 hex characters), got {len(raw)}")
    return raw
