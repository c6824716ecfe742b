"""One named test per way issue 12 found to break consensus, each on the real machine (and chain where a block is
involved). A restart is modelled exactly as the node does it: a new machine built from the ``Persist`` entries the
old one returned (what the write-ahead log holds); ``tests/bootstrap/test_consensus_wal.py`` does the same
through the real file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from nacl.signing import SigningKey

from ledger import consensus as c
from ledger.block import (
    MAX_BLOCK_TIME_MS,
    BadTime,
    Evidence,
    Proposal,
    ProposalEvidence,
    Vote,
    VoteType,
    evidence_from_wire,
    verify_commit,
)
from ledger.chain import Chain
from tests.ledger.chainkit import T0, genesis4, next_block, validator_keys

CHAIN = "regress-chain"
KEYS = [SigningKey(bytes([i + 11]) * 32) for i in range(4)]
VALS = [bytes(k.verify_key) for k in KEYS]


def vid(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=32).digest()


def machine(me: int, *, restore: tuple = (), validate: Callable[[int, Any], bool] = lambda h, v: True, height=1):
    return c.ConsensusMachine(chain_id=CHAIN, validators=VALS, height=height, value_id=vid, validate=validate,
                              signing_key=KEYS[me], config=c.test_config(), restore=restore)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def wal_of(actions) -> list:
    return [a.entry for a in of(actions, c.Persist)]


def prop(i: int, value: bytes, round_: int = 0, pol: int = -1, height: int = 1) -> c.ProposalReceived:
    return c.ProposalReceived(Proposal.sign(KEYS[i], CHAIN, height, round_, pol, vid(value)), value)


def vote(i: int, vt: VoteType, value: bytes | None, round_: int = 0, height: int = 1) -> c.VoteReceived:
    return c.VoteReceived(Vote.sign(KEYS[i], CHAIN, vt, height, round_, None if value is None else vid(value)))


class Log:
    """Everything one validator ever sent, across restarts, and its WAL."""

    def __init__(self) -> None:
        self.wal: list = []
        self.sent: list[Vote | Proposal] = []

    def feed(self, m: c.ConsensusMachine, event) -> list:
        acts = m.handle(event)
        self.wal.extend(wal_of(acts))
        self.sent.extend(a.vote for a in of(acts, c.BroadcastVote))
        self.sent.extend(a.proposal for a in of(acts, c.BroadcastProposal))
        return acts

    def conflicts(self) -> list:
        seen: dict[tuple, bytes] = {}
        bad = []
        for s in self.sent:
            k = (s.height, s.round, int(s.vote_type)) if isinstance(s, Vote) else (s.height, s.round, 0)
            if seen.setdefault(k, s.signature) != s.signature:
                bad.append(k)
        return bad


def start_round0(log: Log, m: c.ConsensusMachine) -> None:
    log.feed(m, c.Start())
    log.feed(m, c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))


def test_case1_restarted_validators_keep_their_lock_so_no_fork_without_a_byzantine():
    """V0 locks X in round 0 (and V1 decides X elsewhere); V0 is killed and restarted. In round 1 V2, never locked,
    proposes Y: the restarted V0 must still prevote nil, or V0, V2 and V3 (restarted the same way) decide Y."""
    log = Log()
    m = machine(0)
    start_round0(log, m)
    log.feed(m, prop(1, b"X"))  # the proposer of (1, 0) is VALS[1]
    for i in (1, 2, 3):
        log.feed(m, vote(i, VoteType.PREVOTE, b"X"))
    assert m.locked_round == 0 and m.step is c.Step.PRECOMMIT
    restarted = machine(0, restore=tuple(log.wal))  # kill -9, then the node reads its WAL back
    assert restarted.locked_round == 0 and restarted.locked_value == b"X"
    log.feed(restarted, c.Start())
    # Two validators in round 1 make it skip there; V2 proposes a fresh Y.
    for i in (2, 3):
        log.feed(restarted, vote(i, VoteType.PREVOTE, None, round_=1))
    assert restarted.round == 1
    acts = log.feed(restarted, prop(2, b"Y", round_=1))
    prevotes = [a.vote for a in of(acts, c.BroadcastVote) if a.vote.vote_type is VoteType.PREVOTE]
    assert prevotes and all(v.block_hash is None for v in prevotes), "a restarted validator forgot its lock"
    assert log.conflicts() == []


def test_case2_restarted_validator_resends_its_votes_and_its_commit_holds_no_conflicting_signature():
    """V0 prevoted and precommitted nil in round 0, then restarted; the polka and precommits for X arrive late.
    It must neither sign a conflicting vote (held back or not) nor put one into the commit it decides with."""
    log = Log()
    m = machine(0)
    start_round0(log, m)
    log.feed(m, c.TimeoutFired(1, 0, c.Step.PROPOSE))  # no proposal yet: prevote nil
    for i in (1, 2):
        log.feed(m, vote(i, VoteType.PREVOTE, None))
    log.feed(m, c.TimeoutFired(1, 0, c.Step.PREVOTE))  # precommit nil
    assert m.step is c.Step.PRECOMMIT
    restarted = machine(0, restore=tuple(log.wal))
    acts = log.feed(restarted, c.Start())
    resent = [a.vote for a in of(acts, c.BroadcastVote)]
    assert {(v.vote_type, v.block_hash) for v in resent} == {(VoteType.PREVOTE, None), (VoteType.PRECOMMIT, None)}
    assert restarted.round == 0 and restarted.step is c.Step.PRECOMMIT
    log.feed(restarted, prop(1, b"X"))
    for i in (1, 2, 3):
        log.feed(restarted, vote(i, VoteType.PREVOTE, b"X"))
    decided = []
    for i in (1, 2, 3):
        decided += of(log.feed(restarted, vote(i, VoteType.PRECOMMIT, b"X")), c.Decide)
    assert log.conflicts() == []
    (d,) = decided
    assert VALS[0] not in {s.validator for s in d.commit.signatures}  # only signatures it really sent
    verify_commit(d.commit, VALS, CHAIN, height=1, block_hash=vid(b"X"))


def test_case3_restarted_proposer_resends_its_proposal_and_a_conflicting_pair_is_evidence():
    log = Log()
    m = machine(1)  # the proposer of (1, 0)
    start_round0(log, m)
    acts = log.feed(m, c.ValueReady(1, 0, b"X-built-at-t0"))
    (first,) = of(acts, c.BroadcastProposal)
    restarted = machine(1, restore=tuple(log.wal))
    acts = log.feed(restarted, c.Start())
    assert not of(acts, c.BuildProposal)
    (again,) = of(acts, c.BroadcastProposal)
    assert again.proposal == first.proposal and again.value == b"X-built-at-t0"
    # A later build for the same round (the value would differ: a new clock) never leads to a second signature.
    acts = log.feed(restarted, c.ValueReady(1, 0, b"X-built-at-t1"))
    assert not of(acts, c.BroadcastProposal)
    assert log.conflicts() == []
    # And a proposer that does sign twice is caught: the pair is evidence that a block carries.
    observer = machine(2)
    observer.handle(c.Start())
    observer.handle(prop(1, b"A"))
    found = of(observer.handle(prop(1, b"B")), c.EvidenceFound)
    (ev,) = [f.evidence for f in found]
    assert isinstance(ev, ProposalEvidence) and ev.offender == VALS[1]
    ev.validate(CHAIN, VALS)
    assert evidence_from_wire(ev.to_wire()) == ev


def test_case3_proposal_evidence_is_included_and_slashes_through_the_chain():
    g = genesis4(workers=["validator-0", "validator-1", "validator-2", "validator-3"])
    keys = validator_keys()
    chain = Chain(g)
    b1, c1 = next_block(chain)
    chain.commit_block(b1, c1)
    offender = c.proposer_for(chain.validators, 1, 0)
    k = keys[chain.validators.index(offender)]
    pa = Proposal.sign(k, chain.chain_id, 1, 0, -1, b"\x01" * 32)
    pb = Proposal.sign(k, chain.chain_id, 1, 0, -1, b"\x02" * 32)
    ev = ProposalEvidence.from_proposals(pa, pb)
    before = chain.state.workers[offender].stake
    b2, c2 = next_block(chain, evidence=[ev])
    assert b2.evidence == (ev,)
    chain.commit_block(b2, c2)
    assert chain.state.workers[offender].stake < before


def test_case4_three_live_validators_recover_lost_precommits_of_an_earlier_round():
    """V3 is down. V2's round-0 precommit is lost to V0 and V1, so V2 moves to round 1 alone and V0, V1 wait in
    round 0 with two precommits. Only the round-state exchange (answered with earlier rounds' votes) unsticks
    them: nobody resends round 0's votes otherwise, and one validator in round 1 is not f + 1."""
    ms = [machine(i) for i in range(3)]
    timers: list[list[c.ScheduleTimeout]] = [[], [], []]
    queue: list[tuple[int, Any]] = []
    cut = {"on": True}

    def drop(src: int, dst: int, msg: Any) -> bool:
        # Round 0: V1's proposal is lost and V2's precommit never reaches V0 or V1 -- until the network heals.
        if not cut["on"]:
            return False
        if isinstance(msg, c.ProposalReceived):
            return True
        return src == 2 and isinstance(msg, c.VoteReceived) and msg.vote.vote_type is VoteType.PRECOMMIT

    def send(src: int, msg: Any) -> None:
        for dst in range(3):
            if dst != src and not drop(src, dst, msg):
                queue.append((dst, msg))

    def feed(i: int, event: Any) -> None:
        for a in ms[i].handle(event):
            if isinstance(a, (c.BroadcastVote, c.RelayVote)):
                send(i, c.VoteReceived(a.vote))
            elif isinstance(a, (c.BroadcastProposal, c.RelayProposal)):
                send(i, c.ProposalReceived(a.proposal, a.value))
            elif isinstance(a, c.BroadcastRoundState):
                send(i, c.RoundStateReceived(a.state))
            elif isinstance(a, c.ScheduleTimeout):
                timers[i].append(a)
            elif isinstance(a, c.BuildProposal):
                queue.append((i, c.ValueReady(a.height, a.round, b"value-%d" % a.round)))

    def drain() -> None:
        while queue:
            feed(*queue.pop(0))

    def fire_due() -> None:
        for i in range(3):
            due, timers[i] = timers[i], []
            for t in due:
                feed(i, c.TimeoutFired(t.height, t.round, t.step))
            drain()

    # Round 0: everyone prevotes and precommits nil.
    for i in range(3):
        feed(i, c.Start())
    for _ in range(4):
        fire_due()
        if ms[2].round == 1:
            break
    assert [m.round for m in ms] == [0, 0, 1] and all(m.height == 1 for m in ms)
    # The network heals; only ticks and timeouts from now on.
    cut["on"] = False
    for _ in range(30):
        for i in range(3):
            feed(i, c.Rebroadcast())
        drain()
        fire_due()
        if all(m.height > 1 for m in ms):
            break
    assert all(m.height > 1 for m in ms), [(m.height, m.round, m.step) for m in ms]


def test_case4_only_validators_answer_round_states():
    validator, observer = machine(0), c.ConsensusMachine(
        chain_id=CHAIN, validators=VALS, height=1, value_id=vid, validate=lambda h, v: True, config=c.test_config()
    )
    lagging = machine(1)
    for m in (validator, observer, lagging):
        m.handle(c.Start())
        m.handle(c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    for m in (validator, observer):
        for i in (2, 3):
            m.handle(vote(i, VoteType.PREVOTE, None))
    (rs,) = [a.state for a in lagging.handle(c.Rebroadcast()) if isinstance(a, c.BroadcastRoundState)]
    assert len(of(validator.handle(c.RoundStateReceived(rs)), c.RelayVote)) == 2
    assert of(validator.handle(c.RoundStateReceived(rs)), c.RelayVote) == []  # once per tick
    assert of(observer.handle(c.RoundStateReceived(rs)), c.RelayVote) == []


def test_case5_a_block_time_at_the_end_of_time_is_invalid_and_cannot_stop_the_next_block():
    g = genesis4(workers=["validator-0", "validator-1", "validator-2", "validator-3"])
    chain = Chain(g)
    block, commit = next_block(chain)
    late = dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=2**64 - 1))
    assert not chain.validate(1, late)
    with pytest.raises(BadTime):
        chain.validate_block(late)
    at_cap = dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=MAX_BLOCK_TIME_MS + 1))
    assert not chain.validate(1, at_cap)
    chain.commit_block(block, commit)
    # Even at the latest valid time, the next block can be built (its time is that + 1, still a uint64).
    nxt = chain.build(2, 0, c.proposer_for(chain.validators, 2, 0), T0)
    assert nxt.header.time_ms > block.header.time_ms


def test_case5_a_fresh_proposal_too_far_in_our_future_gets_a_nil_prevote():
    m = c.ConsensusMachine(chain_id=CHAIN, validators=VALS, height=1, value_id=vid, validate=lambda h, v: True,
                           signing_key=KEYS[0], config=c.test_config(), timely=lambda h, v: not v.startswith(b"late"))
    m.handle(c.Start())
    m.handle(c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    acts = m.handle(prop(1, b"late-block"))
    (pv,) = [a.vote for a in of(acts, c.BroadcastVote)]
    assert pv.block_hash is None and m.stats.untimely == 1


def test_case6_next_height_proposal_is_judged_against_the_state_after_the_commit():
    """Buffered height-2 messages are replayed when height 1 is decided; they must not be judged before the
    caller has committed height 1, or a valid block is cached as invalid for the whole height."""
    committed = {"height": 0}
    judged: list[tuple[int, int]] = []

    def validate(h: int, v: bytes) -> bool:
        judged.append((h, committed["height"]))
        return committed["height"] == h - 1  # valid only against the state right below it

    m = machine(0, validate=validate)
    m.handle(c.Start())
    m.handle(c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    # Height 2 arrives early: its proposal and a quorum of precommits.
    m.handle(prop(2, b"B2", height=2))  # the proposer of (2, 0) is VALS[2]
    for i in (1, 2, 3):
        m.handle(vote(i, VoteType.PRECOMMIT, b"B2", height=2))
    m.handle(prop(1, b"B1"))
    for i in (1, 2, 3):
        m.handle(vote(i, VoteType.PREVOTE, b"B1"))
    decided = of(m.handle(vote(1, VoteType.PRECOMMIT, b"B1")), c.Decide)
    decided += of(m.handle(vote(2, VoteType.PRECOMMIT, b"B1")), c.Decide)  # with our own: a quorum
    assert [d.value for d in decided] == [b"B1"]
    assert all(h == 1 for h, _ in judged), "a height-2 value was judged before height 1 was committed"
    committed["height"] = 1  # the caller commits, then feeds the next event
    acts = m.handle(vote(3, VoteType.PRECOMMIT, b"B1"))
    assert [d.value for d in of(acts, c.Decide)] == [b"B2"]


def test_case8_evidence_and_the_next_height_buffer_are_bounded_per_validator():
    cfg = dataclasses.replace(c.test_config(), max_future_messages=64, max_evidence_per_validator=3)
    m = c.ConsensusMachine(chain_id=CHAIN, validators=VALS, height=1, value_id=vid, validate=lambda h, v: True,
                           signing_key=KEYS[0], config=cfg)
    m.handle(c.Start())
    # V3 equivocates in 20 rounds: only 3 offences are kept (one is enough to slash it).
    for r in range(20):
        m.handle(vote(3, VoteType.PREVOTE, None, round_=r))
        m.handle(vote(3, VoteType.PREVOTE, b"x%d" % r, round_=r))
    assert len([e for e in m.evidence if e.offender == VALS[3]]) == 3 and m.stats.evidence_dropped > 0
    assert all(isinstance(e, Evidence) for e in m.evidence)
    # V3 floods next-height votes; V1's next-height vote still finds room.
    for r in range(60):
        m.handle(vote(3, VoteType.PREVOTE, None, round_=r, height=2))
    m.handle(vote(1, VoteType.PREVOTE, None, height=2))
    held = [e.vote.validator for e in m._future if isinstance(e, c.VoteReceived)]
    assert held.count(VALS[3]) == 16 and VALS[1] in held  # 64 // 4 each
