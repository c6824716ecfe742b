"""Tendermint consensus as a sans-IO state machine (Buchman, Kwon, Milosevic 2018, Algorithm 1).

Why this file is long: it is one state machine, Algorithm 1's rules over one round state, plus the recovery and
catch-up that keep it safe and live across restarts; the handlers read and write the same fields, and splitting
them apart would hide which rule changes which field. Its vocabulary (config, events, actions, log entries) is in
``ledger.consensus_io`` and re-exported here.

The machine decides one value per height. It never touches the network, the clock or the store: the caller feeds
it events (a proposal, a vote, a peer's round state, a fired timeout, "the value you asked for is ready", a
periodic rebroadcast tick) through :meth:`ConsensusMachine.handle`, one at a time, and carries out the returned
actions in order (persist this, broadcast a message, schedule a timeout, build a proposal, commit a decided
value). The value is opaque: the machine only sees it through injected callbacks, ``value_id`` (its hash),
``validate`` (is it a valid block at this height, evaluated against the state the caller has committed so far)
and optionally ``timely`` (is a fresh proposal's time close enough to the local clock). A ``Decide`` ends the
handling of its event: the caller commits the value before it feeds the next one, so ``validate`` and
``BuildProposal`` for height h+1 always see the state after height h.

Crash recovery (the write-ahead log): every signature the machine makes, and every change of its lock and valid
values, is first returned as a :class:`Persist` action, before the action that sends it. The caller must make
those entries durable before it carries out any later broadcast. A machine built with ``restore=`` (the entries
of the current height, read back after a crash) resumes mid-height: same round, same lock, the same signatures
resent, and it never signs a second, different vote or proposal for a (round, step) it already signed.

Voting power is equal; the proposer for (h, r) is ``validators[(h + r) % n]``. Two votes from one validator for
one height, round and step with different block hashes are kept as :class:`~ledger.block.Evidence`, and both
count, each for its own block hash (see :meth:`ConsensusMachine._add_vote`); two proposals for one round are kept
as :class:`~ledger.block.ProposalEvidence`.

What the caller's network must provide (the paper's gossip assumption, "a message one correct validator received
reaches every correct validator") is repaired here rather than assumed: on every :class:`Rebroadcast` tick a
validator resends its own current-round messages and a signed :class:`~ledger.block.RoundState` (its height,
round, step and which votes it holds per recent round); a validator that receives one answers with what the
sender lacks (others' signed votes and proposals, as :class:`RelayVote` and :class:`RelayProposal`), for earlier
rounds too. It also relays the proof of lock behind a proposal that re-proposes a valid value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nacl.signing import SigningKey

from ledger.block import (
    ROUND_STATE_ROUNDS,
    AnyEvidence,
    CommitSig,
    Evidence,
    Proposal,
    ProposalEvidence,
    RoundState,
    RoundVotes,
    Vote,
    VoteType,
    proposer_for,
)
from ledger.block import Commit as CommitCert
from ledger.consensus_io import (
    Action,
    Behind,
    BroadcastProposal,
    BroadcastRoundState,
    BroadcastVote,
    BuildProposal,
    ConsensusConfig,
    ConsensusError,
    ConsensusStats,
    Decide,
    Event,
    EvidenceFound,
    InvalidConfig,
    NotAValidator,
    Persist,
    ProposalReceived,
    Rebroadcast,
    RelayProposal,
    RelayVote,
    RoundStateReceived,
    ScheduleTimeout,
    Start,
    Step,
    SyncedTo,
    TimeoutFired,
    ValueReady,
    VoteReceived,
    WalEntry,
    WalLock,
    WalProposal,
    WalValue,
    WalVote,
    default_config,
    one_third_plus,
    quorum,
    test_config,
    wal_height,
)
from ledger.types import AccountId, Height

V = TypeVar("V")

__all__ = [
    "Action",
    "Behind",
    "BroadcastProposal",
    "BroadcastRoundState",
    "BroadcastVote",
    "BuildProposal",
    "ConsensusConfig",
    "ConsensusError",
    "ConsensusMachine",
    "ConsensusStats",
    "Decide",
    "Event",
    "EvidenceFound",
    "InvalidConfig",
    "NotAValidator",
    "Persist",
    "ProposalReceived",
    "Rebroadcast",
    "RelayProposal",
    "RelayVote",
    "RoundStateReceived",
    "ScheduleTimeout",
    "Start",
    "Step",
    "SyncedTo",
    "TimeoutFired",
    "ValueReady",
    "VoteReceived",
    "WalEntry",
    "WalLock",
    "WalProposal",
    "WalValue",
    "WalVote",
    "default_config",
    "one_third_plus",
    "proposer_for",
    "quorum",
    "test_config",
    "wal_height",
]


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
    """One validator's (or an observer's, with ``me=None``) Tendermint instance, one height at a time.

    ``restore`` is what the write-ahead log holds (entries of other heights are ignored); ``sign_from`` is the
    first height this machine may sign at (the caller passes one above the log's highest height when its
    committed chain is behind the log, so a node whose store lost a block never signs at that height again).
    """

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
        timely: Callable[[Height, V], bool] | None = None,
        restore: Sequence[WalEntry] = (),
        sign_from: Height = 0,
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
        self._index = {v: i for i, v in enumerate(self.validators)}
        self._value_id = value_id
        self._validate = validate
        self._timely = timely
        self._key = signing_key
        self.sign_from = sign_from
        self.me: AccountId | None = bytes(signing_key.verify_key) if signing_key is not None else None
        if self.me is not None and self.me not in self._validator_set:
            raise NotAValidator(self.me)
        self.stats = ConsensusStats()
        self.evidence: list[AnyEvidence] = []
        self._evidence_keys: set[tuple[AccountId, int, int, int]] = set()
        self._future: list[ProposalReceived[V] | VoteReceived] = []
        self._future_by_sender: dict[AccountId, int] = {}
        self._behind_reported: set[Height] = set()
        self._answered: set[AccountId] = set()
        self._started = False
        self._halt = False
        self._reset_height(height)
        self._restored = self._restore(restore)
        # The transition table: each input kind has one handler.
        self._handlers: dict[type, Callable[[object, list[Action]], None]] = {
            Start: self._on_start,  # type: ignore[dict-item]
            ProposalReceived: self._on_proposal,  # type: ignore[dict-item]
            VoteReceived: self._on_vote,  # type: ignore[dict-item]
            RoundStateReceived: self._on_round_state,  # type: ignore[dict-item]
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
        self._halt = False
        handler(event, actions)
        if self._started and not self._halt:
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
        # A second, conflicting proposal per round (from an equivocating proposer): kept so that a quorum formed
        # on it elsewhere can still be seen and committed here.
        self._other_proposals: dict[int, tuple[Proposal, V]] = {}
        self._votes: dict[tuple[int, VoteType], _RoundVotes] = {}
        self._prevote_timeout_rounds: set[int] = set()
        self._precommit_timeout_rounds: set[int] = set()
        self._lock_rule_rounds: set[int] = set()
        self._awaiting_value: tuple[Height, int] | None = None
        self._valid_cache: dict[bytes, bool] = {}
        self._my_votes: dict[tuple[int, VoteType], Vote] = {}
        self._my_proposals: dict[int, Proposal] = {}
        self._persisted_values: set[bytes] = set()
        self._proposal_relays: set[tuple[AccountId, int]] = set()

    def _enter_height(self, height: Height, actions: list[Action]) -> None:
        self._reset_height(height)
        actions.append(ScheduleTimeout(height, 0, Step.NEW_HEIGHT, self.config.timeout_ms(Step.NEW_HEIGHT, 0)))
        keep_from = height - self.config.evidence_keep_heights
        if any(ev.height < keep_from for ev in self.evidence):
            self.evidence = [ev for ev in self.evidence if ev.height >= keep_from]
            self._evidence_keys = {ev.key for ev in self.evidence}
        # Replay what arrived early for this height; drop anything older.
        buffered, self._future = self._future, []
        self._future_by_sender = {}
        # Buffered messages were verified on arrival, so they go straight to acceptance.
        for event in buffered:
            msg_height = event.proposal.height if isinstance(event, ProposalReceived) else event.vote.height
            if msg_height > height:
                self._buffer_future(event, self._sender(event))
            elif msg_height == height:
                if isinstance(event, ProposalReceived):
                    self._accept_proposal(event, actions)
                else:
                    self._accept_vote(event.vote, actions)

    def _restore(self, entries: Sequence[WalEntry]) -> bool:
        """Rebuild this height's round state from the write-ahead log; True if it held anything for it."""
        values: dict[bytes, V] = {}
        found = False
        lock: WalLock | None = None
        for entry in entries:
            if wal_height(entry) != self.height:
                continue
            found = True
            if isinstance(entry, WalValue):
                vid = self._value_id(entry.value)
                values[vid] = entry.value
                self._persisted_values.add(vid)
            elif isinstance(entry, WalProposal):
                p = entry.proposal
                self._my_proposals[p.round] = p
                if p.block_hash in values:
                    self._proposals.setdefault(p.round, (p, values[p.block_hash]))
                self._enter_restored(p.round, Step.PROPOSE)
            elif isinstance(entry, WalVote):
                vote = entry.vote
                self._my_votes[(vote.round, vote.vote_type)] = vote
                self._add_vote(vote, [])
                step = Step.PREVOTE if vote.vote_type is VoteType.PREVOTE else Step.PRECOMMIT
                self._enter_restored(vote.round, step)
            else:
                lock = entry
        if lock is not None:
            if lock.locked_id in values:
                self.locked_round, self.locked_value = lock.locked_round, values[lock.locked_id]
            if lock.valid_id in values:
                self.valid_round, self.valid_value = lock.valid_round, values[lock.valid_id]
        if self.locked_round >= 0:
            # The precommit that went with the lock was sent: the lock rule has fired in that round.
            self._lock_rule_rounds.add(self.locked_round)
        return found

    def _enter_restored(self, round_: int, step: Step) -> None:
        if (round_, step) > (self.round, self.step):
            self.round, self.step = round_, step

    def _may_sign(self) -> bool:
        return self._key is not None and self.height >= self.sign_from

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

    def _persist_value(self, value: V, actions: list[Action]) -> bytes:
        vid = self._value_id(value)
        if vid not in self._persisted_values:
            self._persisted_values.add(vid)
            actions.append(Persist(WalValue(self.height, value)))
        return vid

    def _persist_lock(self, actions: list[Action]) -> None:
        locked = self._persist_value(self.locked_value, actions) if self.locked_value is not None else b""
        valid = self._persist_value(self.valid_value, actions) if self.valid_value is not None else b""
        actions.append(Persist(WalLock(self.height, self.locked_round, locked, self.valid_round, valid)))

    def _propose(self, value: V, pol_round: int, actions: list[Action]) -> None:
        if not self._may_sign():
            return
        assert self._key is not None
        proposal = self._my_proposals.get(self.round)
        if proposal is not None:
            # Signed before a restart: send that one again, never a second, different proposal.
            self.stats.resent_signatures += 1
            value = self._proposals[self.round][1] if self.round in self._proposals else value
        else:
            vid = self._value_id(value)
            proposal = Proposal.sign(self._key, self.chain_id, self.height, self.round, pol_round, vid)
            self._persist_value(value, actions)
            actions.append(Persist(WalProposal(proposal)))
            self._my_proposals[self.round] = proposal
        self._proposals.setdefault(self.round, (proposal, value))
        actions.append(BroadcastProposal(proposal, value))
        self._relay_pol(proposal, actions)

    def _relay_pol(self, proposal: Proposal, actions: list[Action]) -> None:
        """Send the 2f+1 prevotes of ``pol_round`` that justify re-proposing a valid value.

        Without them, a validator that missed some of those prevotes (lost in a partition, or hidden behind an
        equivocator's conflicting vote) can never prevote the re-proposal (line 28), and one honest validator
        locked on that value then blocks every other value forever.
        """
        if proposal.pol_round < 0:
            return
        rv = self._votes.get((proposal.pol_round, VoteType.PREVOTE))
        if rv is None:
            return
        for vote in rv.by_hash.get(proposal.block_hash, {}).values():
            actions.append(RelayVote(vote))

    def _cast(self, vote_type: VoteType, block_hash: bytes | None, actions: list[Action]) -> None:
        if not self._may_sign():
            return
        assert self._key is not None
        vote = self._my_votes.get((self.round, vote_type))
        if vote is not None:
            # Signed before a restart: that vote stands (and was counted when restored); send it again.
            self.stats.resent_signatures += 1
        else:
            vote = Vote.sign(self._key, self.chain_id, vote_type, self.height, self.round, block_hash)
            self._my_votes[(self.round, vote_type)] = vote
            actions.append(Persist(WalVote(vote)))
            self._add_vote(vote, actions)
        actions.append(BroadcastVote(vote))

    # ------------------------------------------------------------------------------------------ inputs

    def _on_start(self, _event: Start, actions: list[Action]) -> None:
        if self._started:
            return
        self._started = True
        if not self._restored:
            self._enter_height(self.height, actions)
            return
        # Resume mid-height where the log left us: same round and step, our signatures sent again at once.
        if self.step is Step.PROPOSE:
            actions.append(
                ScheduleTimeout(self.height, self.round, Step.PROPOSE, self.config.timeout_ms(Step.PROPOSE, self.round))
            )
        elif self.step is Step.NEW_HEIGHT:
            actions.append(ScheduleTimeout(self.height, 0, Step.NEW_HEIGHT, self.config.timeout_ms(Step.NEW_HEIGHT, 0)))
        self._resend_own(actions, all_rounds=True)

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
        self._answered.clear()
        if self.step is Step.NEW_HEIGHT:
            return
        self._resend_own(actions, all_rounds=False)
        if self._may_sign():
            assert self._key is not None
            state = RoundState.sign(
                self._key, self.chain_id, self.height, self.round, int(self.step), self._round_summary()
            )
            actions.append(BroadcastRoundState(state))

    def _resend_own(self, actions: list[Action], *, all_rounds: bool) -> None:
        """Send our own signed messages again: the current round's, or (after a restart) every round's."""
        for r, proposal in sorted(self._my_proposals.items()):
            if (all_rounds or r == self.round) and r in self._proposals:
                actions.append(BroadcastProposal(proposal, self._proposals[r][1]))
                self._relay_pol(proposal, actions)
        for (r, _t), vote in sorted(self._my_votes.items()):
            if all_rounds or r == self.round:
                actions.append(BroadcastVote(vote))

    def _bits(self, rv: _RoundVotes | None) -> int:
        if rv is None:
            return 0
        bits = 0
        for validator in rv.by_validator:
            bits |= 1 << self._index[validator]
        return bits

    def _held_rounds(self) -> list[int]:
        rounds = {r for r, _t in self._votes} | set(self._proposals)
        return sorted(r for r in rounds if r <= self.round + self.config.max_round_ahead)

    def _round_summary(self) -> list[RoundVotes]:
        rounds = set(self._held_rounds()[-ROUND_STATE_ROUNDS:]) | {self.round}
        return [
            RoundVotes(
                r,
                r in self._proposals,
                self._bits(self._votes.get((r, VoteType.PREVOTE))),
                self._bits(self._votes.get((r, VoteType.PRECOMMIT))),
            )
            for r in sorted(rounds)[-ROUND_STATE_ROUNDS:]
        ]

    def _on_round_state(self, event: RoundStateReceived, actions: list[Action]) -> None:
        """Send a validator the votes and proposals of this height that it says it lacks, for any round we hold.

        Budget: one answer per validator per rebroadcast tick, at most 2n votes and 2 proposals each, so a
        validator that lies about what it holds can make us send no more than an honest catch-up would; the
        cost per tick is bounded by the validator count, not by the network's size or the height's rounds.
        """
        rs = event.state
        # Only validators answer: with every observer answering too, one lagging validator would draw a copy of
        # each missing vote from every node of the network.
        if self.me is None or rs.validator not in self._validator_set or rs.validator == self.me:
            self.stats.round_states_ignored += 1
            return
        if rs.height != self.height or rs.validator in self._answered or self.step is Step.NEW_HEIGHT:
            if rs.height > self.height and rs.verify(self.chain_id) and rs.height not in self._behind_reported:
                self._behind_reported.add(rs.height)
                actions.append(Behind(rs.height, rs.validator))
            self.stats.round_states_ignored += 1
            return
        if not rs.verify(self.chain_id):
            self.stats.bad_signature += 1
            return
        self._answered.add(rs.validator)
        self.stats.round_states_answered += 1
        theirs = {r.round: r for r in rs.rounds}
        # A round older than everything it listed fell out of its window, not out of its memory.
        oldest = min(theirs) if len(theirs) >= ROUND_STATE_ROUNDS else -1
        vote_budget, proposal_budget = 2 * self.n, 2
        for r in reversed(self._held_rounds()):
            if r < oldest:
                break
            have = theirs.get(r)
            lacks_proposal = r in self._proposals and not (have and have.has_proposal)
            # Only proposals that can still matter: its round, ours, or one that precommits name.
            matters = r in (rs.round, self.round) or self._count(r, VoteType.PRECOMMIT) > 0
            if lacks_proposal and proposal_budget and matters and (rs.validator, r) not in self._proposal_relays:
                # A block is large: each validator gets each round's proposal from us at most once per height,
                # so one that keeps claiming to lack it cannot turn our link into its amplifier.
                self._proposal_relays.add((rs.validator, r))
                proposal_budget -= 1
                self.stats.relayed_proposals += 1
                actions.append(RelayProposal(*self._proposals[r]))
            for vote_type, bits in (
                (VoteType.PRECOMMIT, have.precommits if have else 0),
                (VoteType.PREVOTE, have.prevotes if have else 0),
            ):
                rv = self._votes.get((r, vote_type))
                if rv is None:
                    continue
                for validator, vote in rv.by_validator.items():
                    if vote_budget and not bits >> self._index[validator] & 1:
                        vote_budget -= 1
                        self.stats.relayed_votes += 1
                        actions.append(RelayVote(vote))

    def _sender(self, event: ProposalReceived[V] | VoteReceived) -> AccountId:
        return event.proposal.proposer if isinstance(event, ProposalReceived) else event.vote.validator

    def _buffer_future(self, event: ProposalReceived[V] | VoteReceived, sender: AccountId) -> None:
        share = max(8, self.config.max_future_messages // self.n)
        held = self._future_by_sender.get(sender, 0)
        if len(self._future) < self.config.max_future_messages and held < share:
            self._future.append(event)
            self._future_by_sender[sender] = held + 1
        else:
            self.stats.future_buffer_full += 1

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
            self._buffer_future(event, sender)
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
            self._accept_proposal(event, actions)

    def _accept_proposal(self, event: ProposalReceived[V], actions: list[Action]) -> None:
        p = event.proposal
        if p.round > self.round + self.config.max_round_ahead or not -1 <= p.pol_round < p.round:
            self.stats.too_far_ahead += 1
            return
        if self._value_id(event.value) != p.block_hash:
            self.stats.invalid_value += 1
            return
        first = self._proposals.get(p.round)
        if first is None:
            self._proposals[p.round] = (p, event.value)
            return
        if first[0] == p:
            self.stats.duplicate += 1
            return
        if (first[0].block_hash, first[0].pol_round) == (p.block_hash, p.pol_round):
            self.stats.duplicate += 1  # the same claim signed again (signatures are deterministic, so: a relay)
            return
        self.stats.proposal_equivocations += 1
        self._add_evidence(ProposalEvidence.from_proposals(first[0], p), actions)
        self._other_proposals.setdefault(p.round, (p, event.value))

    def _add_evidence(self, ev: AnyEvidence, actions: list[Action]) -> None:
        if ev.key in self._evidence_keys:
            return
        if sum(1 for e in self.evidence if e.offender == ev.offender) >= self.config.max_evidence_per_validator:
            self.stats.evidence_dropped += 1  # one offence is enough to punish it; more only costs memory
            return
        self._evidence_keys.add(ev.key)
        self.evidence.append(ev)
        actions.append(EvidenceFound(ev))

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
        self._add_evidence(Evidence.from_votes(existing, vote), actions)
        # Dropping it would be a liveness bug: an equivocator that shows "v" to one honest validator and "nil" then
        # "v" to the others lets the first lock on v with a polka the others can never see, so they never prevote
        # v's re-proposal and the locked one never prevotes anything else. Counting a validator under two hashes
        # is safe (two quorums for different hashes still share an honest validator). To bound memory, a second
        # hash is kept only if it can matter: nil, or the hash of a proposal we hold. One that arrives before its
        # proposal is dropped here and comes back relayed with the proposal's proof of lock (RelayVote).
        if h and not any(p.block_hash == h for p, _v in self._all_proposals()):
            return
        rv.by_hash.setdefault(h, {})[vote.validator] = vote

    # ------------------------------------------------------------------------------------------- rules

    def _all_proposals(self) -> list[tuple[Proposal, V]]:
        return list(self._proposals.values()) + list(self._other_proposals.values())

    def _round_proposals(self, round_: int) -> list[tuple[Proposal, V]]:
        return [p for p in (self._proposals.get(round_), self._other_proposals.get(round_)) if p is not None]

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
        while progressed and not self._halt:
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
            # A fresh value must also be timely by our clock (a re-proposal's polka already vouched for it).
            if good and self._timely is not None and not self._timely(self.height, value):
                self.stats.untimely += 1
                good = False
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
        if self.step < Step.PREVOTE or self.round in self._lock_rule_rounds:
            return False
        for proposal, value in self._round_proposals(self.round):
            if self._count(self.round, VoteType.PREVOTE, proposal.block_hash) < quorum(self.n):
                continue
            if not self._is_valid(value):
                continue
            self._lock_rule_rounds.add(self.round)
            self.valid_value = value
            self.valid_round = self.round
            if self.step is Step.PREVOTE:
                self.locked_value = value
                self.locked_round = self.round
                if self._may_sign():
                    self._persist_lock(actions)  # durable before the precommit that goes with it
                self._cast(VoteType.PRECOMMIT, proposal.block_hash, actions)
                self.step = Step.PRECOMMIT
            elif self._may_sign():
                self._persist_lock(actions)
            return True
        return False

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
        """Line 49: a proposal of any round with 2f+1 precommits for it: decide, and move to the next height.

        Deciding ends this input's handling: the buffered messages of the next height are accepted now, but no
        rule judges them until the caller has committed this value, so validity is judged against the state it
        is about.
        """
        if self.decided:
            return False
        for proposal, value in sorted(self._all_proposals(), key=lambda pv: pv[0].round):
            r = proposal.round
            rv = self._votes.get((r, VoteType.PRECOMMIT))
            if rv is None or rv.count(proposal.block_hash) < quorum(self.n):
                continue
            if not self._is_valid(value):
                continue
            sigs = sorted(
                (CommitSig(v.validator, v.signature) for v in rv.by_hash[proposal.block_hash].values()),
                key=lambda s: self._index[s.validator],
            )
            self.decided = True
            actions.append(Decide(value, CommitCert(self.height, r, proposal.block_hash, tuple(sigs))))
            self._enter_height(self.height + 1, actions)
            self._halt = True
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
