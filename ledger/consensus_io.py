"""The consensus machine's vocabulary: its configuration, the events it is fed, the actions it returns, the
write-ahead log entries it asks the caller to persist, its errors and counters (``ledger.consensus`` holds the
machine itself and re-exports all of these, so callers use ``ledger.consensus`` only)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, TypeVar

from ledger.block import AnyEvidence, Proposal, RoundState, Vote
from ledger.block import Commit as CommitCert
from ledger.types import AccountId, Height

V = TypeVar("V")


class ConsensusError(Exception):
    """Root of the consensus machine's errors (misuse by the caller, never bad network input)."""


class InvalidConfig(ConsensusError):
    """A consensus configuration value is out of range."""

    def __init__(self, field_name: str, value: int, reason: str) -> None:
        super().__init__(f"consensus config {field_name}={value}: {reason}")
        self.field_name = field_name
        self.value = value
        self.reason = reason


class NotAValidator(ConsensusError):
    """The signing key given to the machine does not belong to any validator."""

    def __init__(self, account: AccountId) -> None:
        super().__init__(f"{account.hex()} is not in the validator set")
        self.account = account


class Step(IntEnum):
    """Where the machine is inside a height. NEW_HEIGHT is the wait (timeout_commit) before round 0."""

    NEW_HEIGHT = 0
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True)
class ConsensusConfig:
    """Round timeouts in milliseconds; each grows by its delta per round so that slow rounds eventually fit."""

    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    timeout_commit_ms: int = 1000
    # Votes for rounds further ahead than this are dropped, so a Byzantine peer cannot fill memory.
    max_round_ahead: int = 64
    # Messages for the next height are buffered (they arrive before we decide); beyond this they are counted
    # as dropped and the round-state exchange recovers them. Each validator may fill at most its share
    # (max_future_messages // n, at least 8), so one Byzantine validator cannot crowd out the others.
    max_future_messages: int = 4096
    # Evidence kept for inclusion in a block: at most this many offences per validator, and none older than
    # ``evidence_keep_heights`` (the chain refuses older evidence anyway).
    max_evidence_per_validator: int = 8
    evidence_keep_heights: int = 100
    # How far into the future (by our clock) a fresh proposal's block time may be: further, and we prevote nil.
    # Nothing a proposer writes can then push the chain's time beyond the validators' clocks plus this bound.
    max_clock_drift_ms: int = 10_000

    def validate(self) -> None:
        """Raise :class:`InvalidConfig` naming the first field out of range."""
        for name in (
            "timeout_propose_ms",
            "timeout_propose_delta_ms",
            "timeout_prevote_ms",
            "timeout_prevote_delta_ms",
            "timeout_precommit_ms",
            "timeout_precommit_delta_ms",
            "timeout_commit_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidConfig(name, value, "must be a non-negative integer")
        if self.timeout_propose_ms == 0:
            raise InvalidConfig("timeout_propose_ms", 0, "must be positive")
        if self.max_round_ahead < 1:
            raise InvalidConfig("max_round_ahead", self.max_round_ahead, "must be at least 1")
        if self.max_future_messages < 0:
            raise InvalidConfig("max_future_messages", self.max_future_messages, "must be non-negative")
        for name in ("max_evidence_per_validator", "evidence_keep_heights", "max_clock_drift_ms"):
            if getattr(self, name) < 1:
                raise InvalidConfig(name, getattr(self, name), "must be at least 1")

    def timeout_ms(self, step: Step, round_: int) -> int:
        """The timeout for a step in a round: base + round * delta."""
        if step is Step.PROPOSE:
            return self.timeout_propose_ms + round_ * self.timeout_propose_delta_ms
        if step is Step.PREVOTE:
            return self.timeout_prevote_ms + round_ * self.timeout_prevote_delta_ms
        if step is Step.PRECOMMIT:
            return self.timeout_precommit_ms + round_ * self.timeout_precommit_delta_ms
        return self.timeout_commit_ms


def default_config() -> ConsensusConfig:
    """Timeouts for a real network."""
    return ConsensusConfig()


def test_config() -> ConsensusConfig:
    """Short timeouts for simulations and devnets."""
    return ConsensusConfig(
        timeout_propose_ms=400,
        timeout_propose_delta_ms=100,
        timeout_prevote_ms=200,
        timeout_prevote_delta_ms=100,
        timeout_precommit_ms=200,
        timeout_precommit_delta_ms=100,
        timeout_commit_ms=100,
    )


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def quorum(n: int) -> int:
    """The smallest count that is more than 2/3 of n."""
    return 2 * n // 3 + 1


def one_third_plus(n: int) -> int:
    """The smallest count that is more than 1/3 of n (at least one honest validator among them)."""
    return n // 3 + 1


# ---------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """Begin the current height (waits timeout_commit first, like every later height)."""


@dataclass(frozen=True)
class ProposalReceived(Generic[V]):
    """A signed proposal and the value it names."""

    proposal: Proposal
    value: V


@dataclass(frozen=True)
class VoteReceived:
    """A signed prevote or precommit."""

    vote: Vote


@dataclass(frozen=True)
class TimeoutFired:
    """A timeout scheduled by :class:`ScheduleTimeout` has expired."""

    height: Height
    round: int
    step: Step


@dataclass(frozen=True)
class ValueReady(Generic[V]):
    """The value requested by :class:`BuildProposal` (the "tx set is ready" input)."""

    height: Height
    round: int
    value: V


@dataclass(frozen=True)
class Rebroadcast:
    """A periodic tick: resend our own current-round messages and our round state, so lost messages cannot stall
    us or anyone else."""


@dataclass(frozen=True)
class RoundStateReceived:
    """A validator's signed round state: answer with what it lacks."""

    state: RoundState


@dataclass(frozen=True)
class SyncedTo:
    """The caller has committed blocks up to ``height - 1`` by block sync; continue consensus at ``height``."""

    height: Height


Event = (
    Start | ProposalReceived | VoteReceived | RoundStateReceived | TimeoutFired | ValueReady | Rebroadcast | SyncedTo
)

# ------------------------------------------------------------------------------------ write-ahead log entries


@dataclass(frozen=True)
class WalValue(Generic[V]):
    """A value that later entries name by its id (our proposal's, or the locked or valid one)."""

    height: Height
    value: V


@dataclass(frozen=True)
class WalProposal:
    """A proposal we signed."""

    proposal: Proposal


@dataclass(frozen=True)
class WalVote:
    """A vote we signed."""

    vote: Vote


@dataclass(frozen=True)
class WalLock:
    """Our lock and valid values changed (ids of values written before as :class:`WalValue`; b"" for none)."""

    height: Height
    locked_round: int
    locked_id: bytes
    valid_round: int
    valid_id: bytes


WalEntry = WalValue | WalProposal | WalVote | WalLock


def wal_height(entry: WalEntry) -> Height:
    """The height an entry belongs to."""
    if isinstance(entry, WalProposal):
        return entry.proposal.height
    if isinstance(entry, WalVote):
        return entry.vote.height
    return entry.height


# --------------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Persist:
    """Append this entry to the write-ahead log; it must be durable before any later broadcast is sent."""

    entry: WalEntry


@dataclass(frozen=True)
class BroadcastProposal(Generic[V]):
    """Send this proposal and its value to every validator."""

    proposal: Proposal
    value: V


@dataclass(frozen=True)
class BroadcastVote:
    """Send this vote to every validator."""

    vote: Vote


@dataclass(frozen=True)
class RelayVote:
    """Send this already-signed vote (usually another validator's) to every validator; it is not a new signature,
    so it must not go through the caller's double-sign guard."""

    vote: Vote


@dataclass(frozen=True)
class RelayProposal(Generic[V]):
    """Send this already-signed proposal (usually another validator's) and its value to every validator."""

    proposal: Proposal
    value: V


@dataclass(frozen=True)
class BroadcastRoundState:
    """Send our signed round state to every validator."""

    state: RoundState


@dataclass(frozen=True)
class ScheduleTimeout:
    """Feed back ``TimeoutFired(height, round, step)`` after ``delay_ms``."""

    height: Height
    round: int
    step: Step
    delay_ms: int


@dataclass(frozen=True)
class BuildProposal:
    """We are the proposer: build a value for (height, round) and feed it back as :class:`ValueReady`."""

    height: Height
    round: int


@dataclass(frozen=True)
class Decide(Generic[V]):
    """The value is final at its height: persist it with its commit before feeding the next event."""

    value: V
    commit: CommitCert


@dataclass(frozen=True)
class EvidenceFound:
    """A validator signed two conflicting votes (or proposals); keep this for inclusion in a block."""

    evidence: AnyEvidence


@dataclass(frozen=True)
class Behind:
    """A validly signed message for a later height arrived: we are behind and should block-sync."""

    seen_height: Height
    validator: AccountId


Action = (
    Persist | BroadcastProposal | BroadcastVote | RelayVote | RelayProposal | BroadcastRoundState | ScheduleTimeout
    | BuildProposal | Decide | EvidenceFound | Behind
)


@dataclass
class ConsensusStats:
    """Counters for messages the machine refused, so nothing is dropped silently."""

    bad_signature: int = 0
    not_a_validator: int = 0
    wrong_proposer: int = 0
    stale: int = 0
    too_far_ahead: int = 0
    future_buffer_full: int = 0
    invalid_value: int = 0
    duplicate: int = 0
    equivocations: int = 0
    proposal_equivocations: int = 0
    untimely: int = 0
    evidence_dropped: int = 0
    round_states_answered: int = 0
    round_states_ignored: int = 0
    relayed_votes: int = 0
    relayed_proposals: int = 0
    resent_signatures: int = 0
