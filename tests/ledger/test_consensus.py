"""The Tendermint machine in isolation, over opaque byte values: rules fire on the right inputs, and only then."""

from __future__ import annotations

import hashlib

import pytest
from nacl.signing import SigningKey

from ledger import consensus as c
from ledger.block import Proposal, Vote, VoteType, verify_commit

CHAIN = "test-chain"


def vid(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=32).digest()


def make_keys(n: int) -> list[SigningKey]:
    return [SigningKey(bytes([i + 1]) * 32) for i in range(n)]


def machine(keys: list[SigningKey], me: int | None, height: int = 1, valid=lambda h, v: True):
    return c.ConsensusMachine(
        chain_id=CHAIN,
        validators=[bytes(k.verify_key) for k in keys],
        height=height,
        value_id=vid,
        validate=valid,
        signing_key=None if me is None else keys[me],
        config=c.test_config(),
    )


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def votes(keys, idxs, vtype, height, round_, block_hash):
    return [c.VoteReceived(Vote.sign(keys[i], CHAIN, vtype, height, round_, block_hash)) for i in idxs]


def test_single_validator_decides_alone():
    keys = make_keys(1)
    m = machine(keys, 0)
    acts = m.handle(c.Start())
    (t,) = of(acts, c.ScheduleTimeout)
    assert t.step is c.Step.NEW_HEIGHT
    acts = m.handle(c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    (build,) = of(acts, c.BuildProposal)
    assert (build.height, build.round) == (1, 0)
    acts = m.handle(c.ValueReady(1, 0, b"block-1"))
    (decide,) = of(acts, c.Decide)
    assert decide.value == b"block-1"
    verify_commit(decide.commit, m.validators, CHAIN, height=1, block_hash=vid(b"block-1"))
    assert m.height == 2 and m.step is c.Step.NEW_HEIGHT


def test_proposer_rotates_with_height_and_round():
    keys = make_keys(4)
    vals = [bytes(k.verify_key) for k in keys]
    assert [c.proposer_for(vals, 1, r) for r in range(4)] == [vals[1], vals[2], vals[3], vals[0]]
    assert c.proposer_for(vals, 6, 1) == vals[3]


def test_timeouts_grow_per_round_and_config_is_checked():
    cfg = c.test_config()
    assert cfg.timeout_ms(c.Step.PROPOSE, 3) > cfg.timeout_ms(c.Step.PROPOSE, 0)
    assert cfg.timeout_ms(c.Step.PRECOMMIT, 2) == cfg.timeout_precommit_ms + 2 * cfg.timeout_precommit_delta_ms
    with pytest.raises(c.InvalidConfig) as exc:
        c.ConsensusConfig(timeout_prevote_ms=-1).validate()
    assert exc.value.field_name == "timeout_prevote_ms"
    with pytest.raises(c.NotAValidator):
        c.ConsensusMachine(
            chain_id=CHAIN,
            validators=[bytes(k.verify_key) for k in make_keys(2)],
            height=1,
            value_id=vid,
            validate=lambda h, v: True,
            signing_key=SigningKey(b"\x09" * 32),
        )


def _at_propose(keys, me, valid=lambda h, v: True):
    m = machine(keys, me, valid=valid)
    m.handle(c.Start())
    m.handle(c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    return m


def test_valid_proposal_gets_prevote_invalid_gets_nil():
    keys = make_keys(4)  # proposer for (1, 0) is validator 1
    for valid, expected in ((True, vid(b"v")), (False, None)):
        m = _at_propose(keys, 0, valid=lambda h, v, ok=valid: ok)
        p = Proposal.sign(keys[1], CHAIN, 1, 0, -1, vid(b"v"))
        acts = m.handle(c.ProposalReceived(p, b"v"))
        (bv,) = of(acts, c.BroadcastVote)
        assert bv.vote.vote_type is VoteType.PREVOTE and bv.vote.block_hash == expected
        assert m.step is c.Step.PREVOTE


def test_proposal_from_wrong_proposer_or_bad_signature_is_refused():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    wrong = Proposal.sign(keys[2], CHAIN, 1, 0, -1, vid(b"v"))
    assert of(m.handle(c.ProposalReceived(wrong, b"v")), c.BroadcastVote) == []
    assert m.stats.wrong_proposer == 1
    good = Proposal.sign(keys[1], CHAIN, 1, 0, -1, vid(b"v"))
    forged = Proposal(good.height, good.round, good.pol_round, vid(b"other"), good.proposer, good.signature)
    assert of(m.handle(c.ProposalReceived(forged, b"other")), c.BroadcastVote) == []
    assert m.stats.bad_signature == 1
    assert m.step is c.Step.PROPOSE


def test_lock_then_commit_and_commit_certificate_verifies():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    h = vid(b"v")
    m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    acts = []
    for ev in votes(keys, [1, 2], VoteType.PREVOTE, 1, 0, h):
        acts += m.handle(ev)
    (pc,) = of(acts, c.BroadcastVote)
    assert pc.vote.vote_type is VoteType.PRECOMMIT and pc.vote.block_hash == h
    assert m.locked_round == 0 and m.locked_value == b"v"
    acts = []
    for ev in votes(keys, [1, 2], VoteType.PRECOMMIT, 1, 0, h):
        acts += m.handle(ev)
    (d,) = of(acts, c.Decide)
    assert d.value == b"v" and len(d.commit.signatures) == 3
    verify_commit(d.commit, m.validators, CHAIN, height=1, block_hash=h)


def test_locked_validator_prevotes_nil_for_a_different_value_without_newer_polka():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    h = vid(b"v")
    m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    for ev in votes(keys, [1, 2], VoteType.PREVOTE, 1, 0, h):
        m.handle(ev)
    assert m.locked_value == b"v"
    # Round 0 fails to commit; round 1's proposer (validator 2) proposes something else with no proof of lock.
    for ev in votes(keys, [1, 2, 3], VoteType.PRECOMMIT, 1, 0, None):
        m.handle(ev)
    m.handle(c.TimeoutFired(1, 0, c.Step.PRECOMMIT))
    assert m.round == 1 and m.step is c.Step.PROPOSE
    acts = m.handle(c.ProposalReceived(Proposal.sign(keys[2], CHAIN, 1, 1, -1, vid(b"w")), b"w"))
    (pv,) = of(acts, c.BroadcastVote)
    assert pv.vote.block_hash is None
    # A proposer re-proposing the locked value with its polka round is prevoted.
    m2 = _at_propose(keys, 0)
    m2.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    for ev in votes(keys, [1, 2], VoteType.PREVOTE, 1, 0, h):
        m2.handle(ev)
    for ev in votes(keys, [1, 2, 3], VoteType.PRECOMMIT, 1, 0, None):
        m2.handle(ev)
    m2.handle(c.TimeoutFired(1, 0, c.Step.PRECOMMIT))
    acts = m2.handle(c.ProposalReceived(Proposal.sign(keys[2], CHAIN, 1, 1, 0, h), b"v"))
    (pv,) = of(acts, c.BroadcastVote)
    assert pv.vote.block_hash == h


def test_timeouts_move_steps_and_rounds():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    acts = m.handle(c.TimeoutFired(1, 0, c.Step.PROPOSE))
    assert of(acts, c.BroadcastVote)[0].vote.block_hash is None and m.step is c.Step.PREVOTE
    # A stale timeout is ignored.
    assert m.handle(c.TimeoutFired(1, 0, c.Step.PROPOSE)) == []
    acts = []
    for ev in votes(keys, [1, 2], VoteType.PREVOTE, 1, 0, vid(b"x")):
        acts += m.handle(ev)
    (t,) = of(acts, c.ScheduleTimeout)
    assert t.step is c.Step.PREVOTE
    m.handle(c.TimeoutFired(1, 0, c.Step.PREVOTE))
    assert m.step is c.Step.PRECOMMIT
    acts = []
    for ev in votes(keys, [1, 2], VoteType.PRECOMMIT, 1, 0, None):
        acts += m.handle(ev)
    (t,) = of(acts, c.ScheduleTimeout)
    assert t.step is c.Step.PRECOMMIT
    acts = m.handle(c.TimeoutFired(1, 0, c.Step.PRECOMMIT))
    assert m.round == 1
    (t,) = of(acts, c.ScheduleTimeout)
    assert t.delay_ms == m.config.timeout_ms(c.Step.PROPOSE, 1) > m.config.timeout_ms(c.Step.PROPOSE, 0)


def test_f_plus_one_votes_in_a_later_round_skip_ahead():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    m.handle(votes(keys, [2], VoteType.PREVOTE, 1, 5, None)[0])
    assert m.round == 0
    m.handle(votes(keys, [3], VoteType.PREVOTE, 1, 5, None)[0])
    assert m.round == 5 and m.step is c.Step.PROPOSE


def test_equivocation_is_kept_as_evidence_once():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    a = Vote.sign(keys[3], CHAIN, VoteType.PREVOTE, 1, 0, vid(b"a"))
    b = Vote.sign(keys[3], CHAIN, VoteType.PREVOTE, 1, 0, vid(b"b"))
    m.handle(c.VoteReceived(a))
    (found,) = of(m.handle(c.VoteReceived(b)), c.EvidenceFound)
    found.evidence.validate(CHAIN, m.validators)
    assert found.evidence.offender == bytes(keys[3].verify_key)
    assert of(m.handle(c.VoteReceived(b)), c.EvidenceFound) == []
    assert m.evidence == [found.evidence]
    # One validator, however many versions: and "b" names no proposal we hold, so it is not tallied.
    assert m._count(0, VoteType.PREVOTE) == 1
    assert m._count(0, VoteType.PREVOTE, vid(b"b")) == 0


def test_equivocators_second_vote_counts_so_a_hidden_polka_is_seen():
    # Validator 3 prevotes proposal v; the equivocator 0 shows it nil first, then v (validator 1 saw only v).
    keys = make_keys(4)
    h = vid(b"v")
    m = _at_propose(keys, 3)
    m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    found = []
    for ev in votes(keys, [0], VoteType.PREVOTE, 1, 0, None) + votes(keys, [1, 0], VoteType.PREVOTE, 1, 0, h):
        found += of(m.handle(ev), c.EvidenceFound)
    assert [e.evidence.offender for e in found] == [bytes(keys[0].verify_key)]
    assert m._count(0, VoteType.PREVOTE, h) == 3  # itself, 1, and 0's second version
    assert m._count(0, VoteType.PREVOTE) == 3  # validators, not messages
    # It sees the polka validator 1 saw, so it locks on v and precommits it as validator 1 did.
    assert m.locked_value == b"v" and m.locked_round == 0
    assert m.step is c.Step.PRECOMMIT and m._my_votes[(0, VoteType.PRECOMMIT)].block_hash == h


def test_reproposal_is_prevoted_when_its_polka_includes_an_equivocated_vote():
    # The liveness bug (line 28): if 0's second prevote is dropped, validator 3 never sees the round-0 polka for v,
    # so it never prevotes v's re-proposal, while honest validator 1, locked on v, prevotes nil for everything
    # else: no value gets 2f+1 prevotes again, in any round.
    keys = make_keys(4)
    h = vid(b"v")
    m = _at_propose(keys, 3)
    # Round 1's proposer (2) re-proposes v with proof-of-lock round 0; it and 1's prevote move 3 to round 1.
    m.handle(c.ProposalReceived(Proposal.sign(keys[2], CHAIN, 1, 1, 0, h), b"v"))
    acts = m.handle(votes(keys, [1], VoteType.PREVOTE, 1, 1, h)[0])
    assert m.round == 1 and m.step is c.Step.PROPOSE and of(acts, c.BroadcastVote) == []  # waiting for the polka
    acts = []
    for ev in votes(keys, [0], VoteType.PREVOTE, 1, 0, None) + votes(keys, [1, 2, 0], VoteType.PREVOTE, 1, 0, h):
        acts += m.handle(ev)
    (pv,) = of(acts, c.BroadcastVote)
    assert (pv.vote.round, pv.vote.vote_type, pv.vote.block_hash) == (1, VoteType.PREVOTE, h)
    assert m.locked_round == -1  # line 28 alone, not a lock of its own


def test_conflicting_vote_for_an_unknown_hash_is_not_kept_until_its_proposal_arrives():
    keys = make_keys(4)
    h = vid(b"v")
    m = _at_propose(keys, 3)
    nil0, v0 = votes(keys, [0], VoteType.PREVOTE, 1, 0, None)[0], votes(keys, [0], VoteType.PREVOTE, 1, 0, h)[0]
    m.handle(nil0)
    m.handle(v0)  # no proposal names h yet: bounded memory, so this version is dropped (evidence is kept)
    assert m._count(0, VoteType.PREVOTE, h) == 0 and len(m.evidence) == 1
    m.handle(c.TimeoutFired(1, 0, c.Step.PROPOSE))  # prevotes nil itself, so only 0 can count for h
    m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    m.handle(v0)  # relayed again (RelayVote with a proof of lock): now it counts
    assert m._count(0, VoteType.PREVOTE, h) == 1 and len(m.evidence) == 1
    assert m.stats.duplicate == 0
    m.handle(v0)
    assert m.stats.duplicate == 1


def test_reproposal_relays_its_proof_of_lock_now_and_on_every_rebroadcast():
    # Prevotes lost in a partition are never resent by their signers (they rebroadcast only their current round),
    # so the proposer of a valid value must pass on the 2f+1 prevotes that let the others accept it.
    keys = make_keys(4)
    h = vid(b"v")
    m = _at_propose(keys, 2)  # proposer of (1, 1)
    m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    polka = [ev.vote for ev in votes(keys, [0, 1], VoteType.PREVOTE, 1, 0, h)]
    for v in polka:
        m.handle(c.VoteReceived(v))
    assert m.valid_value == b"v" and m.valid_round == 0
    mine = m._my_votes[(0, VoteType.PREVOTE)]
    for ev in votes(keys, [0, 1, 3], VoteType.PRECOMMIT, 1, 0, None):
        m.handle(ev)
    acts = m.handle(c.TimeoutFired(1, 0, c.Step.PRECOMMIT))
    (bp,) = of(acts, c.BroadcastProposal)
    assert bp.value == b"v" and bp.proposal.pol_round == 0 and bp.proposal.round == 1
    relayed = {r.vote for r in of(acts, c.RelayVote)}
    assert relayed == {mine, *polka}
    assert all(v.round == 0 and v.block_hash == h for v in relayed)
    acts = m.handle(c.Rebroadcast())
    assert of(acts, c.BroadcastProposal) == [bp]
    assert {r.vote for r in of(acts, c.RelayVote)} == relayed
    # A fresh proposal (no proof of lock) relays nothing.
    m2 = _at_propose(keys, 1)  # proposer of (1, 0)
    acts = m2.handle(c.ValueReady(1, 0, b"w"))
    assert of(acts, c.BroadcastProposal) and of(acts, c.RelayVote) == []


def test_next_height_messages_are_buffered_and_reported():
    keys = make_keys(4)
    m = _at_propose(keys, 0)
    acts = m.handle(votes(keys, [1], VoteType.PREVOTE, 2, 0, None)[0])
    (b,) = of(acts, c.Behind)
    assert b.seen_height == 2
    assert m._count(0, VoteType.PREVOTE) == 0
    acts = m.handle(c.SyncedTo(2))
    assert m.height == 2 and m._count(0, VoteType.PREVOTE) == 1


def test_observer_never_votes():
    keys = make_keys(4)
    m = _at_propose(keys, None)
    h = vid(b"v")
    acts = m.handle(c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, h), b"v"))
    assert of(acts, c.BroadcastVote) == []
    acts = []
    for ev in votes(keys, [0, 1, 2], VoteType.PRECOMMIT, 1, 0, h):
        acts += m.handle(ev)
    assert of(acts, c.Decide)[0].value == b"v"
