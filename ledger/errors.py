"""The ledger's exceptions, all under one root, each carrying the fields that explain it.

``DecodeError`` is for untrusted bytes that are malformed; ``InvalidTx`` (and its subclasses) for a well-formed
transaction that the state rejects; ``InvalidGenesis`` for a bad genesis file. A caller that only wants to know
"did the ledger refuse this" catches ``LedgerError``.
"""

from __future__ import annotations


def _hex(b: bytes | None) -> str:
    return "None" if b is None else b.hex()[:16]


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class EncodeError(LedgerError, ValueError):
    """A value that canonical MessagePack does not allow (a float, a dict, a bool, an oversized int)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot encode {path}: {reason}")
        self.path = path
        self.reason = reason


class DecodeError(LedgerError, ValueError):
    """Untrusted bytes that are not a well-formed object; ``field`` names the part that is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidGenesis(LedgerError, ValueError):
    """A genesis document that cannot start a chain; ``field`` is a dotted path such as ``params.min_stake``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"genesis {field}: {reason}")
        self.field = field
        self.reason = reason


class UnbondingTooShort(InvalidGenesis):
    """``params.unbonding_period`` is not longer than ``params.evidence_max_age``: stake unbonded right after an
    equivocation would be released before the evidence of it expires, so the slash could be dodged."""

    def __init__(self, unbonding_period: int, evidence_max_age: int) -> None:
        super().__init__(
            "params.unbonding_period",
            f"must be greater than params.evidence_max_age={evidence_max_age}, got {unbonding_period}",
        )
        self.unbonding_period = unbonding_period
        self.evidence_max_age = evidence_max_age


class InvalidTx(LedgerError):
    """A transaction the current state rejects; applying it changed nothing."""


class BadSignature(InvalidTx):
    """The signature does not verify for the sender over this chain id and body."""

    def __init__(self, tx_id: bytes) -> None:
        super().__init__(f"bad signature on tx {_hex(tx_id)}")
        self.tx_id = tx_id


class BadNonce(InvalidTx):
    """The tx nonce is not the sender's next nonce (``check_tx`` accepts future nonces, ``apply_tx`` doesn't)."""

    def __init__(self, account: bytes, expected: int, got: int) -> None:
        super().__init__(f"account {_hex(account)}: expected nonce {expected}, got {got}")
        self.account = account
        self.expected = expected
        self.got = got


class FeeTooLow(InvalidTx):
    """The fee is below the chain's ``min_fee``."""

    def __init__(self, min_fee: int, got: int) -> None:
        super().__init__(f"fee {got} below minimum {min_fee}")
        self.min_fee = min_fee
        self.got = got


class InsufficientFunds(InvalidTx):
    """The account cannot pay ``needed`` (fee included) from ``available``."""

    def __init__(self, account: bytes, needed: int, available: int) -> None:
        super().__init__(f"account {_hex(account)} needs {needed}, has {available}")
        self.account = account
        self.needed = needed
        self.available = available


class InsufficientAllowance(InvalidTx):
    """``spender`` may move at most ``available`` of ``owner``'s tokens, not ``needed``."""

    def __init__(self, owner: bytes, spender: bytes, needed: int, available: int) -> None:
        super().__init__(f"{_hex(spender)} may spend {available} of {_hex(owner)}, not {needed}")
        self.owner = owner
        self.spender = spender
        self.needed = needed
        self.available = available


class InvalidField(InvalidTx):
    """A field is well-typed but its value is not allowed (e.g. an unknown device kind, a window too long)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class WindowTooShort(InvalidField):
    """A job's commit window cannot fit its run's time limit; ``needed`` is the shortest window that can, and
    ``extra_fee`` what the fee then adds for windows above the chain's defaults (also in ``detail``)."""

    def __init__(self, window: int, time_limit_ms: int, needed: int, extra_fee: int) -> None:
        super().__init__("submit_job.commit_window",
                         f"{window} blocks cannot fit a run of {time_limit_ms} ms; ask for commit_window of at "
                         f"least {needed} blocks (the fee then includes {extra_fee} for windows above the "
                         f"chain's defaults)")
        self.window, self.time_limit_ms, self.needed, self.extra_fee = window, time_limit_ms, needed, extra_fee
        self.detail = {"commit_window_needed": needed, "extra_fee": extra_fee, "time_limit_ms": time_limit_ms}


class UnknownWorker(InvalidTx):
    """The account is not a registered worker."""

    def __init__(self, account: bytes) -> None:
        super().__init__(f"{_hex(account)} is not a registered worker")
        self.account = account


class AlreadyRegistered(InvalidTx):
    """The account is already a registered worker."""

    def __init__(self, account: bytes) -> None:
        super().__init__(f"{_hex(account)} is already a registered worker")
        self.account = account


class StakeTooLow(InvalidTx):
    """The stake offered is below the chain's ``min_stake``."""

    def __init__(self, min_stake: int, got: int) -> None:
        super().__init__(f"stake {got} below minimum {min_stake}")
        self.min_stake = min_stake
        self.got = got


class InsufficientStake(InvalidTx):
    """An unbond asks for more than is staked."""

    def __init__(self, account: bytes, needed: int, available: int) -> None:
        super().__init__(f"worker {_hex(account)} has {available} staked, cannot unbond {needed}")
        self.account = account
        self.needed = needed
        self.available = available


class StakeLocked(InvalidTx):
    """A worker with jobs in flight cannot unbond below ``min_stake`` (it could then escape a slash)."""

    def __init__(self, account: bytes, active_jobs: int, min_stake: int) -> None:
        super().__init__(f"worker {_hex(account)} has {active_jobs} active jobs; stake must stay >= {min_stake}")
        self.account = account
        self.active_jobs = active_jobs
        self.min_stake = min_stake


class ValidatorStakeLocked(InvalidTx):
    """A validator cannot unbond below ``min_stake``: the validator set is fixed at genesis, so this bond is what
    an equivocation slash takes from (``remaining`` is what the unbond would have left bonded)."""

    def __init__(self, account: bytes, remaining: int, min_stake: int) -> None:
        super().__init__(f"validator {_hex(account)} would keep {remaining} staked; must stay >= {min_stake}")
        self.account = account
        self.remaining = remaining
        self.min_stake = min_stake


class UnknownJob(InvalidTx):
    """No job has this id."""

    def __init__(self, job_id: bytes) -> None:
        super().__init__(f"unknown job {_hex(job_id)}")
        self.job_id = job_id


class WrongJobState(InvalidTx):
    """The job is in ``status`` but the tx needs one of ``expected``."""

    def __init__(self, job_id: bytes, status: str, expected: tuple[str, ...] | str) -> None:
        exp = (expected,) if isinstance(expected, str) else tuple(expected)
        super().__init__(f"job {_hex(job_id)} is {status!r}, expected {'/'.join(exp)}")
        self.job_id = job_id
        self.status = status
        self.expected = exp


class DeadlinePassed(InvalidTx):
    """The job's current phase ended at ``deadline``; the tx came at ``height``."""

    def __init__(self, job_id: bytes, deadline: int, height: int) -> None:
        super().__init__(f"job {_hex(job_id)}: deadline {deadline} passed at height {height}")
        self.job_id = job_id
        self.deadline = deadline
        self.height = height


class NotEligible(InvalidTx):
    """The worker cannot take part in this job (device, memory, stake, or it is the client)."""

    def __init__(self, account: bytes, job_id: bytes, reason: str) -> None:
        super().__init__(f"worker {_hex(account)} not eligible for job {_hex(job_id)}: {reason}")
        self.account = account
        self.job_id = job_id
        self.reason = reason


class IneligibleWorker(InvalidTx):
    """The worker may not do this at all right now (e.g. offer), whatever the job: ``reason`` says why."""

    def __init__(self, account: bytes, reason: str) -> None:
        super().__init__(f"worker {_hex(account)} is not eligible: {reason}")
        self.account = account
        self.reason = reason


class NotParticipant(InvalidTx):
    """The sender holds no role in this job that allows the tx (``role`` is what it would need)."""

    def __init__(self, job_id: bytes, account: bytes, role: str) -> None:
        super().__init__(f"{_hex(account)} is not the {role} of job {_hex(job_id)}")
        self.job_id = job_id
        self.account = account
        self.role = role


class DuplicateAction(InvalidTx):
    """The sender already did this for this job (``action`` is ``bid``, ``commit`` or ``reveal``)."""

    def __init__(self, job_id: bytes, account: bytes, action: str) -> None:
        super().__init__(f"{_hex(account)} already did {action} on job {_hex(job_id)}")
        self.job_id = job_id
        self.account = account
        self.action = action


class TooManyBids(InvalidTx):
    """The job already holds ``max_bids`` bids."""

    def __init__(self, job_id: bytes, max_bids: int) -> None:
        super().__init__(f"job {_hex(job_id)} already has {max_bids} bids")
        self.job_id = job_id
        self.max_bids = max_bids


class BadCommitment(InvalidTx):
    """A reveal does not hash to the commitment (or the fingerprint) its sender posted."""

    def __init__(self, job_id: bytes, account: bytes, reason: str = "") -> None:
        super().__init__(f"reveal by {_hex(account)} does not match its commitment on job {_hex(job_id)}"
                         + (f": {reason}" if reason else ""))
        self.reason = reason
        self.job_id = job_id
        self.account = account


class NotCommitted(InvalidTx):
    """A reveal from a participant that has not committed yet."""

    def __init__(self, job_id: bytes, account: bytes) -> None:
        super().__init__(f"{_hex(account)} has not committed on job {_hex(job_id)}")
        self.job_id = job_id
        self.account = account


class NotClient(InvalidTx):
    """Only the job's client may do this (e.g. cancel it)."""

    def __init__(self, job_id: bytes, account: bytes) -> None:
        super().__init__(f"{_hex(account)} is not the client of job {_hex(job_id)}")
        self.job_id = job_id
        self.account = account
