"""Tendermint consensus as a sans-IO state machine (Buchman, Kwon, Milosevic 2018, Algorithm 1).

The machine decides one value per height. It never touches the network, the clock or the store: the caller feeds
it events (a proposal, a vote, a fired timeout, "the value you asked for is ready", a periodic rebroadcast tick)
through :meth:`ConsensusMachine.handle`, one at a time, and carries out the returned actions in order (broadcast a
message, schedule a timeout, build a proposal, commit a decided value). The value is opaque: the machine only sees
it through two injected callbacks, ``value_id`` (its hash) and ``validate`` (is it a valid block at this height,
evaluated against the state the caller has committed so far). Because the caller commits a decided value before it
feeds the next event, ``validate`` and ``BuildProposal`` for height h+1 always see the state after height h.

Voting power is equal; the proposer for (h, r) is ``validators[(h + r) % n]``. Two votes from one validator for
one height, round and step with different block hashes are kept as :class:`~ledger.block.Evidence`, and both
count, each for its own block hash (see :meth:`ConsensusMachine._add_vote`).

What the caller's network must provide (the paper's gossip assumption, "a message one correct validator received
reaches every correct validator"): besides our own messages, the machine asks the caller to pass on other
validators' signed prevotes with :class:`RelayVote` -- the proof of lock behind a proposal that re-proposes a valid
value -- and repeats that, with our own current-round messages, on every :class:`Rebroadcast` tick.

Why this file is long: it is one state machine, Algorithm 1's rules over one round state; the handlers read and
write the same fields, and splitting them apart would hide which rule changes which field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

from nacl.signing import SigningKey

from ledger.block import Commit as CommitCert
from ledger.block import CommitSig, Evidence, Proposal, Vote, VoteType, proposer_for
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
    # as dropped and the rebroadcast tick recovers them.
    max_future_messages: int = 4096

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
    """A periodic tick: resend our own messages for the current round, so lost messages cannot stall us."""


@dataclass(frozen=True)
class SyncedTo:
    """The caller has committed blocks up to ``height - 1`` by block sync; continue consensus at ``height``."""

    height: Height


Event = Start | ProposalReceived | VoteReceived | TimeoutFired | ValueReady | Rebroadcast | SyncedTo

# --------------------------------------------------------------------------------------------------- actions


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
    """A validator signed two conflicting votes; keep this for inclusion in a block."""

    evidence: Evidence


@dataclass(frozen=True)
class Behind:
    """A validly signed message for a later height arrived: we are behind and should block-sync."""

    seen_height: Height
    validator: AccountId


Action = (
    BroadcastProposal | BroadcastVote | RelayVote | ScheduleTimeout | BuildProposal | Decide | EvidenceFound | Behind
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


@dataclass
class _RoundVotes:
    """Votes of one type in one round: each validator's first vote, and the voters per block hash (b"" is nil).

    An equivocating validator appears once in ``by_validator`` (so "2f+1 votes of any kind" counts validators, not
    messages) but may appear under several hashes in ``by_hash``: each hash's count is of distinct validators that
    signed it, which is all that quorum intersection needs for safety.
    """

    by_validator: dict[AccountId, Vote] = field(default_factory=dict)
    by_hash: dict[bytes, dict[AccountId, Vote]] = field(default_factory=dict)

    def count(self, block_hash: bytes) -> int:
        return len(self.by_hash.get(block_hash, ()))


class ConsensusMachine(Generic[V]):
    """One validator's (or an observer's, with ``me=None``) Tendermint instance, one height at a time."""

    def __init__(
        self,
        *,
        chain_id: str,
        validators: Sequence[AccountId],
        height: Height,
        value_id: Callable[[V], bytes],
        validate: Callable[[Height, V], bool],
        signing_key: SigningKey | None = None,
        config: ConsensusConfig | None = None,
    ) -> None:
        if not validators:
            raise ConsensusError("the validator set is empty")
        if len(set(validators)) != len(validators):
            raise ConsensusError("the validator set lists a validator twice")
        self.config = config or default_config()
        self.config.validate()
        self.chain_id = chain_id
        self.validators: tuple[AccountId, ...] = tuple(validators)
        self._validator_set = frozenset(self.validators)
        self._value_id = value_id
        self._validate = validate
        self._key = signing_key
        self.me: AccountId | None = bytes(signing_key.verify_key) if signing_key is not None else None
        if self.me is not None and self.me not in self._validator_set:
            raise NotAValidator(self.me)
        self.stats = ConsensusStats()
        self.evidence: list[Evidence] = []
        self._evidence_keys: set[tuple[AccountId, int, int, int]] = set()
        self._future: list[ProposalReceived[V] | VoteReceived] = []
        self._behind_reported: set[Height] = set()
        self._started = False
        self._reset_height(height)
        # The transition table: each input kind has one handler.
        self._handlers: dict[type, Callable[[object, list[Action]], None]] = {
            Start: self._on_start,  # type: ignore[dict-item]
            ProposalReceived: self._on_proposal,  # type: ignore[dict-item]
            VoteReceived: self._on_vote,  # type: ignore[dict-item]
            TimeoutFired: self._on_timeout,  # type: ignore[dict-item]
            ValueReady: self._on_value_ready,  # type: ignore[dict-item]
            Rebroadcast: self._on_rebroadcast,  # type: ignore[dict-item]
            SyncedTo: self._on_synced,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------------------------------ public

    @property
    def n(self) -> int:
        return len(self.validators)

    def proposer(self, height: Height, round_: int) -> AccountId:
        return proposer_for(self.validators, height, round_)

    def handle(self, event: Event) -> list[Action]:
        """Feed one input; return the actions to carry out, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise ConsensusError(f"unknown consensus event {type(event).__name__}")
        actions: list[Action] = []
        handler(event, actions)
        if self._started:
            self._run_rules(actions)
        return actions

    # ------------------------------------------------------------------------------------- per height

    def _reset_height(self, height: Height) -> None:
        self.height = height
        self.round = 0
        self.step = Step.NEW_HEIGHT
        self.locked_value: V | None = None
        self.locked_round = -1
        self.valid_value: V | None = None
        self.valid_round = -1
        self.decided = False
        self._proposals: dict[int, tuple[Proposal, V]] = {}
        self._votes: dict[tuple[int, VoteType], _RoundVotes] = {}
        self._prevote_timeout_rounds: set[int] = set()
        self._precommit_timeout_rounds: set[int] = set()
        self._lock_rule_rounds: set[int] = set()
        self._awaiting_value: tuple[Height, int] | None = None
        self._valid_cache: dict[bytes, bool] = {}
        self._my_votes: dict[tuple[int, VoteType], Vote] = {}

    def _enter_height(self, height: Height, actions: list[Action]) -> None:
        self._reset_height(height)
        actions.append(ScheduleTimeout(height, 0, Step.NEW_HEIGHT, self.config.timeout_ms(Step.NEW_HEIGHT, 0)))
        # Replay what arrived early for this height; drop anything older.
        buffered, self._future = self._future, []
        # Buffered messages were verified on arrival, so they go straight to acceptance.
        for event in buffered:
            if isinstance(event, ProposalReceived):
                if event.proposal.height == height:
                    self._accept_proposal(event)
                elif event.proposal.height > height:
                    self._future.append(event)
            elif event.vote.height == height:
                self._accept_vote(event.vote, actions)
            elif event.vote.height > height:
                self._future.append(event)

    def _start_round(self, round_: int, actions: list[Action]) -> None:
        self.round = round_
        self.step = Step.PROPOSE
        if self.me is not None and self.proposer(self.height, round_) == self.me:
            if self.valid_value is not None:
                self._propose(self.valid_value, self.valid_round, actions)
            else:
                self._awaiting_value = (self.height, round_)
                actions.append(BuildProposal(self.height, round_))
        # Scheduled for the proposer too, so a proposer that cannot build a value does not stall the round.
        actions.append(ScheduleTimeout(self.height, round_, Step.PROPOSE, self.config.timeout_ms(Step.PROPOSE, round_)))

    def _propose(self, value: V, pol_round: int, actions: list[Action]) -> None:
        assert self._key is not None
        proposal = Proposal.sign(self._key, self.chain_id, self.height, self.round, pol_round, self._value_id(value))
        self._proposals.setdefault(self.round, (proposal, value))
        actions.append(BroadcastProposal(proposal, value))
        self._relay_pol(proposal, actions)

    def _relay_pol(self, proposal: Proposal, actions: list[Action]) -> None:
        """Send the 2f+1 prevotes of ``pol_round`` that justify re-proposing a valid value.

        Without them, a validator that missed some of those prevotes (lost in a partition, or hidden behind an
        equivocator's conflicting vote) can never prevote the re-proposal (line 28), and one honest validator
        locked on that value then blocks every other value forever. Nobody else resends old rounds' votes.
        """
        if proposal.pol_round < 0:
            return
        rv = self._votes.get((proposal.pol_round, VoteType.PREVOTE))
        if rv is None:
            return
        for vote in rv.by_hash.get(proposal.block_hash, {}).values():
            actions.append(RelayVote(vote))

    def _cast(self, vote_type: VoteType, block_hash: bytes | None, actions: list[Action]) -> None:
        if self._key is None:
            return
        vote = Vote.sign(self._key, self.chain_id, vote_type, self.height, self.round, block_hash)
        self._my_votes[(self.round, vote_type)] = vote
        self._add_vote(vote, actions)
        actions.append(BroadcastVote(vote))

    # ------------------------------------------------------------------------------------------ inputs

    def _on_start(self, _event: Start, actions: list[Action]) -> None:
        if self._started:
            return
        self._started = True
        self._enter_height(self.height, actions)

    def _on_synced(self, event: SyncedTo, actions: list[Action]) -> None:
        if event.height <= self.height:
            return
        self._started = True
        self._enter_height(event.height, actions)

    def _on_timeout(self, event: TimeoutFired, actions: list[Action]) -> None:
        if event.height != self.height:
            return
        if event.step is Step.NEW_HEIGHT:
            if self.step is Step.NEW_HEIGHT:
                self._start_round(0, actions)
        elif event.round != self.round:
            return
        elif event.step is Step.PROPOSE and self.step is Step.PROPOSE:
            self._cast(VoteType.PREVOTE, None, actions)
            self.step = Step.PREVOTE
        elif event.step is Step.PREVOTE and self.step is Step.PREVOTE:
            self._cast(VoteType.PRECOMMIT, None, actions)
            self.step = Step.PRECOMMIT
        elif event.step is Step.PRECOMMIT and self.step is not Step.NEW_HEIGHT:
            self._start_round(self.round + 1, actions)

    def _on_value_ready(self, event: ValueReady[V], actions: list[Action]) -> None:
        if self._awaiting_value != (event.height, event.round):
            return
        self._awaiting_value = None
        if self.height == event.height and self.round == event.round and self.step is Step.PROPOSE:
            self._propose(event.value, -1, actions)

    def _on_rebroadcast(self, _event: Rebroadcast, actions: list[Action]) -> None:
        # A sync request sent on an earlier Behind may have been lost: allow reporting again.
        self._behind_reported.clear()
        if self.step is Step.NEW_HEIGHT:
            return
        own = self._proposals.get(self.round)
        if own is not None and self.me is not None and own[0].proposer == self.me:
            actions.append(BroadcastProposal(own[0], own[1]))
            self._relay_pol(own[0], actions)
        for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            vote = self._my_votes.get((self.round, vote_type))
            if vote is not None:
                actions.append(BroadcastVote(vote))

    def _admit_height(
        self, event: ProposalReceived[V] | VoteReceived, height: Height, sender: AccountId, actions: list[Action]
    ) -> bool:
        """Whether a message is for the current height; buffer next-height messages, report being behind."""
        if height == self.height:
            return True
        if height < self.height:
            self.stats.stale += 1
            return False
        if height not in self._behind_reported:
            self._behind_reported.add(height)
            actions.append(Behind(height, sender))
        if height == self.height + 1:
            if len(self._future) < self.config.max_future_messages:
                self._future.append(event)
            else:
                self.stats.future_buffer_full += 1
        else:
            self.stats.too_far_ahead += 1
        return False

    def _on_proposal(self, event: ProposalReceived[V], actions: list[Action]) -> None:
        p = event.proposal
        if p.proposer not in self._validator_set or p.proposer != self.proposer(p.height, p.round):
            self.stats.wrong_proposer += 1
            return
        if not p.verify(self.chain_id):
            self.stats.bad_signature += 1
            return
        if self._admit_height(event, p.height, p.proposer, actions):
            self._accept_proposal(event)

    def _accept_proposal(self, event: ProposalReceived[V]) -> None:
        p = event.proposal
        if p.round > self.round + self.config.max_round_ahead or not -1 <= p.pol_round < p.round:
            self.stats.too_far_ahead += 1
            return
        if self._value_id(event.value) != p.block_hash:
            self.stats.invalid_value += 1
            return
        if p.round in self._proposals:
            self.stats.duplicate += 1
            return
        self._proposals[p.round] = (p, event.value)

    def _on_vote(self, event: VoteReceived, actions: list[Action]) -> None:
        vote = event.vote
        if vote.validator not in self._validator_set:
            self.stats.not_a_validator += 1
            return
        if not vote.verify(self.chain_id):
            self.stats.bad_signature += 1
            return
        if self._admit_height(event, vote.height, vote.validator, actions):
            self._accept_vote(vote, actions)

    def _accept_vote(self, vote: Vote, actions: list[Action]) -> None:
        if vote.round > self.round + self.config.max_round_ahead:
            self.stats.too_far_ahead += 1
            return
        self._add_vote(vote, actions)

    def _add_vote(self, vote: Vote, actions: list[Action]) -> None:
        rv = self._votes.setdefault((vote.round, vote.vote_type), _RoundVotes())
        h = vote.block_hash or b""
        voters = rv.by_hash.get(h)
        if voters is not None and vote.validator in voters:
            self.stats.duplicate += 1
            return
        existing = rv.by_validator.get(vote.validator)
        if existing is None:
            rv.by_validator[vote.validator] = vote
            rv.by_hash.setdefault(h, {})[vote.validator] = vote
            return
        # Two different votes for one height/round/step: record the pair as evidence, and count this one too.
        self.stats.equivocations += 1
        key = (vote.validator, vote.height, vote.round, int(vote.vote_type))
        if key not in self._evidence_keys:
            self._evidence_keys.add(key)
            ev = Evidence.from_votes(existing, vote)
            self.evidence.append(ev)
            actions.append(EvidenceFound(ev))
        # Dropping it would be a liveness bug: an equivocator that shows "v" to one honest validator and "nil" then
        # "v" to the others lets the first lock on v with a polka the others can never see, so they never prevote
        # v's re-proposal and the locked one never prevotes anything else. Counting a validator under two hashes
        # is safe (two quorums for different hashes still share an honest validator). To bound memory, a second
        # hash is kept only if it can matter: nil, or the hash of a proposal we hold. One that arrives before its
        # proposal is dropped here and comes back relayed with the proposal's proof of lock (RelayVote).
        if h and not any(p.block_hash == h for p, _v in self._proposals.values()):
            return
        rv.by_hash.setdefault(h, {})[vote.validator] = vote

    # ------------------------------------------------------------------------------------------- rules

    def _count(self, round_: int, vote_type: VoteType, block_hash: bytes | None = None) -> int:
        rv = self._votes.get((round_, vote_type))
        if rv is None:
            return 0
        if block_hash is None:
            return len(rv.by_validator)
        return rv.count(block_hash)

    def _is_valid(self, value: V) -> bool:
        vid = self._value_id(value)
        cached = self._valid_cache.get(vid)
        if cached is None:
            cached = bool(self._validate(self.height, value))
            self._valid_cache[vid] = cached
            if not cached:
                self.stats.invalid_value += 1
        return cached

    def _run_rules(self, actions: list[Action]) -> None:
        # Every "upon" clause is re-checked after every input until none fires; the order does not matter for
        # safety, and re-checking to a fixed point means no rule depends on the order messages arrived in.
        rules = (
            self._rule_commit,
            self._rule_skip_round,
            self._rule_prevote,
            self._rule_prevote_timeout,
            self._rule_lock,
            self._rule_precommit_nil,
            self._rule_precommit_timeout,
        )
        progressed = True
        while progressed:
            progressed = False
            for rule in rules:
                if rule(actions):
                    progressed = True
                    break

    def _rule_prevote(self, actions: list[Action]) -> bool:
        """Lines 22 and 28: prevote for the round's proposal, honouring the lock."""
        if self.step is not Step.PROPOSE or self.round not in self._proposals:
            return False
        proposal, value = self._proposals[self.round]
        vr = proposal.pol_round
        vid = proposal.block_hash
        locked_id = self._value_id(self.locked_value) if self.locked_value is not None else None
        if vr == -1:
            good = self._is_valid(value) and (self.locked_round == -1 or locked_id == vid)
        elif self._count(vr, VoteType.PREVOTE, vid) >= quorum(self.n):
            good = self._is_valid(value) and (self.locked_round <= vr or locked_id == vid)
        else:
            return False
        self._cast(VoteType.PREVOTE, vid if good else None, actions)
        self.step = Step.PREVOTE
        return True

    def _rule_prevote_timeout(self, actions: list[Action]) -> bool:
        """Line 34: 2f+1 prevotes of any kind, for the first time: schedule the prevote timeout."""
        if self.step is not Step.PREVOTE or self.round in self._prevote_timeout_rounds:
            return False
        if self._count(self.round, VoteType.PREVOTE) < quorum(self.n):
            return False
        self._prevote_timeout_rounds.add(self.round)
        actions.append(
            ScheduleTimeout(self.height, self.round, Step.PREVOTE, self.config.timeout_ms(Step.PREVOTE, self.round))
        )
        return True

    def _rule_lock(self, actions: list[Action]) -> bool:
        """Line 36: a valid proposal with 2f+1 prevotes: lock and precommit it (or just remember it as valid)."""
        if self.step < Step.PREVOTE or self.round in self._lock_rule_rounds or self.round not in self._proposals:
            return False
        proposal, value = self._proposals[self.round]
        if self._count(self.round, VoteType.PREVOTE, proposal.block_hash) < quorum(self.n):
            return False
        if not self._is_valid(value):
            return False
        self._lock_rule_rounds.add(self.round)
        if self.step is Step.PREVOTE:
            self.locked_value = value
            self.locked_round = self.round
            self._cast(VoteType.PRECOMMIT, proposal.block_hash, actions)
            self.step = Step.PRECOMMIT
        self.valid_value = value
        self.valid_round = self.round
        return True

    def _rule_precommit_nil(self, actions: list[Action]) -> bool:
        """Line 44: 2f+1 nil prevotes: precommit nil."""
        if self.step is not Step.PREVOTE or self._count(self.round, VoteType.PREVOTE, b"") < quorum(self.n):
            return False
        self._cast(VoteType.PRECOMMIT, None, actions)
        self.step = Step.PRECOMMIT
        return True

    def _rule_precommit_timeout(self, actions: list[Action]) -> bool:
        """Line 47: 2f+1 precommits of any kind, for the first time: schedule the precommit timeout."""
        if self.step is Step.NEW_HEIGHT or self.round in self._precommit_timeout_rounds:
            return False
        if self._count(self.round, VoteType.PRECOMMIT) < quorum(self.n):
            return False
        self._precommit_timeout_rounds.add(self.round)
        actions.append(
            ScheduleTimeout(self.height, self.round, Step.PRECOMMIT, self.config.timeout_ms(Step.PRECOMMIT, self.round))
        )
        return True

    def _rule_commit(self, actions: list[Action]) -> bool:
        """Line 49: a proposal of any round with 2f+1 precommits for it: decide, and move to the next height."""
        if self.decided:
            return False
        for r, (proposal, value) in sorted(self._proposals.items()):
            rv = self._votes.get((r, VoteType.PRECOMMIT))
            if rv is None or rv.count(proposal.block_hash) < quorum(self.n):
                continue
            if not self._is_valid(value):
                continue
            sigs = sorted(
                (CommitSig(v.validator, v.signature) for v in rv.by_hash[proposal.block_hash].values()),
                key=lambda s: self.validators.index(s.validator),
            )
            self.decided = True
            actions.append(Decide(value, CommitCert(self.height, r, proposal.block_hash, tuple(sigs))))
            self._enter_height(self.height + 1, actions)
            return True
        return False

    def _rule_skip_round(self, actions: list[Action]) -> bool:
        """Line 55: f+1 validators speak in a later round: jump to it."""
        if self.step is Step.NEW_HEIGHT:
            return False
        later: dict[int, set[AccountId]] = {}
        for (r, _t), rv in self._votes.items():
            if r > self.round:
                later.setdefault(r, set()).update(rv.by_validator)
        for r, (proposal, _v) in self._proposals.items():
            if r > self.round:
                later.setdefault(r, set()).add(proposal.proposer)
        for r in sorted(later, reverse=True):
            if len(later[r]) >= one_third_plus(self.n):
                self._start_round(r, actions)
                return True
        return False
