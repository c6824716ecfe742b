"""Issue 12, case 7: an equivocating validator cannot dodge its slash by unbonding, and every validator has stake
to lose. Over the real chain (``ledger.chain.Chain``): blocks built from the mempool, evidence of two conflicting
signed precommits, commits signed by the validators."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import block as b
from ledger.chain import Chain
from ledger.errors import InvalidGenesis, StakeLocked, UnbondingTooShort, ValidatorStakeLocked
from ledger.genesis import Genesis
from ledger.params import Params
from ledger.rules import apply_tx
from ledger.state import total_supply
from ledger.store import open_chain
from tests.ledger.chainkit import genesis4, next_block, validator_keys
from tests.ledger.factories import Wallet, account, assert_rejected, ctx, make_genesis, make_state

V = "validator-1"


def _equivocation(chain: Chain, height: int) -> b.Evidence:
    """V's two conflicting precommits at ``height`` (round 0), as evidence."""
    k = validator_keys()[1]
    va = b.Vote.sign(k, chain.chain_id, b.VoteType.PRECOMMIT, height, 0, b"\x0a" * 32)
    vb = b.Vote.sign(k, chain.chain_id, b.VoteType.PRECOMMIT, height, 0, b"\x0b" * 32)
    return b.Evidence.from_votes(va, vb)


def _commit_next(chain: Chain, txs=(), evidence=()) -> list:
    blk, com = next_block(chain, txs, evidence=evidence)
    return chain.commit_block(blk, com).receipts


def _at_risk(chain: Chain, name: str = V) -> int:
    w = chain.state.workers[account(name)]
    return w.stake + w.unbonding_total


def test_case7_unbonding_does_not_dodge_equivocation_slash() -> None:
    chain = Chain(genesis4(workers=[V]))  # default params: unbonding 120 blocks, evidence valid for 100
    params = chain.state.params
    supply = total_supply(chain.state)
    v = Wallet(V)
    stake = chain.state.workers[account(V)].stake
    _commit_next(chain)
    h = chain.next_height
    # V double-signs at h and unbonds all a validator may (down to min_stake) in that same block...
    receipts = _commit_next(chain, [v.unbond(stake - params.min_stake)])
    assert [r.ok for r in receipts] == [True]
    # ...and the rest one block later, which is refused: a validator keeps min_stake bonded.
    receipts = _commit_next(chain, [v.unbond(params.min_stake)])
    assert "ValidatorStakeLocked" in (receipts[0].error or "")
    w = chain.state.workers[account(V)]
    assert (w.stake, w.unbonding_total) == (params.min_stake, stake - params.min_stake)
    _commit_next(chain)
    evidence = _equivocation(chain, h)
    _commit_next(chain, evidence=[evidence])  # included at h + 3
    expected = stake * params.equivocation_slash_permille // 1000
    assert stake - _at_risk(chain) == expected == 2_500
    assert chain.state.slashed_pool == expected
    assert chain.state.workers[account(V)].stake == 0  # bonded stake first, then the unbonding entry
    assert total_supply(chain.state) == supply
    # What the unbonding entry returns is what the slash left of it, and nothing more.
    release = h + params.unbonding_period
    while chain.next_height < release:
        _commit_next(chain)
    before = chain.state.balance(account(V))
    _commit_next(chain)
    assert chain.state.balance(account(V)) - before == stake - expected
    assert chain.state.workers[account(V)].unbonding == []
    assert total_supply(chain.state) == supply


def test_case7_slash_takes_the_latest_unbonding_entry_first() -> None:
    chain = Chain(genesis4(workers={V: {"stake": 10_000}}, params={"equivocation_slash_permille": 900}))
    v = Wallet(V)
    _commit_next(chain)
    h = chain.next_height
    _commit_next(chain, [v.unbond(4_000)])
    _commit_next(chain, [v.unbond(5_000)])
    early, late = (e[0] for e in chain.state.workers[account(V)].unbonding)
    _commit_next(chain, evidence=[_equivocation(chain, h)])
    # 9,000 of 10,000: the 1,000 bonded, then 5,000 of the latest entry, then 3,000 of the earlier one.
    w = chain.state.workers[account(V)]
    assert (w.stake, w.unbonding) == (0, [[early, 1_000]])
    assert late > early


def test_case7_validator_without_stake_is_refused_by_genesis() -> None:
    doc = make_genesis(workers=["w1"], validators=["validator-0", "w1"]).to_dict()
    doc["workers"] = [w for w in doc["workers"] if w["account"] != account("validator-0").hex()]
    with pytest.raises(InvalidGenesis) as exc:
        Genesis.from_dict(doc)
    assert exc.value.field == "validators[0]"
    assert account("validator-0").hex() in str(exc.value)
    # A bond below min_stake is refused too, and the error says whose bond it is.
    doc = make_genesis(validators=["validator-0"]).to_dict()
    doc["workers"][0]["stake"] = Params().min_stake - 1
    with pytest.raises(InvalidGenesis) as exc:
        Genesis.from_dict(doc)
    assert exc.value.field == "workers[0].stake"
    assert account("validator-0").hex() in str(exc.value)


def test_case7_validator_cannot_unbond_below_min_stake() -> None:
    state = make_state(workers=["validator-0", "w1"])  # validator-0 validates; w1 is only a worker
    min_stake = state.params.min_stake
    val, w1 = Wallet("validator-0"), Wallet("w1")
    stake = state.workers[val.account].stake
    err = assert_rejected(state, val.unbond(stake - min_stake + 1), ctx(1), ValidatorStakeLocked,
                          account=val.account, remaining=min_stake - 1, min_stake=min_stake)
    assert not isinstance(err, StakeLocked)
    apply_tx(state, val.unbond(stake - min_stake), ctx(1))
    assert state.workers[val.account].stake == min_stake
    assert_rejected(state, val.unbond(1), ctx(1), ValidatorStakeLocked, remaining=min_stake - 1)
    apply_tx(state, w1.unbond(stake), ctx(1))  # a worker that is no validator may leave entirely
    assert state.workers[w1.account].stake == 0


@pytest.mark.parametrize(("unbonding", "max_age"), [(100, 100), (99, 100), (5, 10)])
def test_case7_params_refuse_unbonding_period_not_longer_than_evidence_max_age(unbonding: int,
                                                                               max_age: int) -> None:
    with pytest.raises(UnbondingTooShort) as exc:
        Params.from_dict({"unbonding_period": unbonding, "evidence_max_age": max_age})
    assert (exc.value.unbonding_period, exc.value.evidence_max_age) == (unbonding, max_age)
    assert exc.value.field == "params.unbonding_period" and "params.evidence_max_age" in str(exc.value)
    # The same from a genesis document, and from a stored state's parameter list.
    with pytest.raises(InvalidGenesis) as gexc:
        make_genesis(params={"unbonding_period": unbonding, "evidence_max_age": max_age})
    assert gexc.value.field == "params.unbonding_period"
    bad = dataclasses.replace(Params(), unbonding_period=unbonding, evidence_max_age=max_age)
    with pytest.raises(UnbondingTooShort):
        Params.from_list(bad.to_list())


def test_case7_default_params_are_valid_and_evidence_age_is_positive() -> None:
    p = Params()
    p.validate()
    assert p.unbonding_period > p.evidence_max_age == 100
    with pytest.raises(InvalidGenesis) as exc:
        Params.from_dict({"evidence_max_age": 0})
    assert exc.value.field == "params.evidence_max_age"


def test_case7_evidence_age_is_the_chain_parameter() -> None:
    chain = Chain(genesis4(workers=[V], params={"unbonding_period": 6, "evidence_max_age": 5}))
    _commit_next(chain)
    evidence = _equivocation(chain, 1)
    while chain.next_height < 1 + 5:
        _commit_next(chain)
    assert chain.pending_evidence([evidence]) == [evidence]  # for height 6: exactly evidence_max_age old
    _commit_next(chain)
    assert chain.pending_evidence([evidence]) == []  # for height 7: too old
    blk, _ = next_block(chain)
    forged = dataclasses.replace(
        blk, evidence=(evidence,), header=dataclasses.replace(blk.header, evidence_hash=b.evidence_hash([evidence]))
    )
    with pytest.raises(b.BadEvidence, match="older than 5 blocks"):
        chain.validate_block(forged)


UNBONDING, MAX_AGE = 6, 4


@settings(deadline=None)
@given(
    stake=st.integers(1_000, 50_000),
    permille=st.integers(0, 1000),
    delay=st.integers(1, MAX_AGE),
    unbonds=st.lists(st.tuples(st.integers(0, MAX_AGE), st.integers(1, 60_000)), max_size=5),
)
def test_case7_equivocator_loses_its_share_of_what_was_bonded_at_the_offence(
    stake: int, permille: int, delay: int, unbonds: list[tuple[int, int]]
) -> None:
    """Whatever V unbonds from the offence height until (and in) the block carrying the evidence, the evidence
    takes ``floor(stake at the offence * permille / 1000)`` (an unbond the rules refuse is a failed tx), every
    token is still accounted for, and what comes back later is the rest and no more."""
    chain = Chain(genesis4(workers={V: {"stake": stake}}, params={
        "unbonding_period": UNBONDING, "evidence_max_age": MAX_AGE, "equivocation_slash_permille": permille,
    }))
    supply = total_supply(chain.state)
    v = Wallet(V)
    _commit_next(chain)
    h = chain.next_height
    evidence = _equivocation(chain, h)
    for offset in range(delay + 1):
        txs = [v.unbond(amount) for at, amount in unbonds if at == offset]
        _commit_next(chain, txs, evidence=[evidence] if offset == delay else ())
        if offset < delay:
            assert _at_risk(chain) == stake  # nothing released before the evidence can land
    assert chain.state.slashed_pool == stake * permille // 1000
    assert _at_risk(chain) == stake - stake * permille // 1000
    assert total_supply(chain.state) == supply
    balance = chain.state.balance(account(V))
    for _ in range(UNBONDING + 1):
        _commit_next(chain)
    w = chain.state.workers[account(V)]
    assert w.unbonding == [] and w.stake >= 0
    assert chain.state.balance(account(V)) - balance + w.stake == stake - stake * permille // 1000
    assert total_supply(chain.state) == supply


def test_case7_a_restarted_node_remembers_every_offence_its_evidence_age_covers(tmp_path) -> None:
    # With evidence valid for 150 blocks, an offence punished 120 blocks ago must still be refused after a restart,
    # as every node that did not restart refuses it; otherwise the restarted one would accept a double slash.
    genesis = genesis4(workers=[V], params={"unbonding_period": 200, "evidence_max_age": 150})
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis)
    _commit_next(chain)
    evidence = _equivocation(chain, 1)
    _commit_next(chain, evidence=[evidence])
    punished_at = chain.height
    while chain.height < punished_at + 120:
        _commit_next(chain)
    assert chain.pending_evidence([evidence]) == []
    chain.store.close()
    again = open_chain(db, genesis)
    assert again.height == chain.height and again.root == chain.root
    assert again.pending_evidence([evidence]) == []
    blk, _ = next_block(again)
    forged = dataclasses.replace(
        blk, evidence=(evidence,), header=dataclasses.replace(blk.header, evidence_hash=b.evidence_hash([evidence]))
    )
    with pytest.raises(b.BadEvidence, match=f"already punished at height {punished_at}"):
        again.validate_block(forged)
    again.store.close()


def _forged_with(chain: Chain, evidence: b.Evidence) -> b.Block:
    """The next block with ``evidence`` put in after it was built (its header's evidence hash made to match)."""
    blk, _ = next_block(chain)
    return dataclasses.replace(
        blk, evidence=(evidence,), header=dataclasses.replace(blk.header, evidence_hash=b.evidence_hash([evidence]))
    )


def test_case7_a_node_started_from_a_later_snapshot_refuses_the_offence_again(tmp_path) -> None:
    # A node that state-syncs never saw the block that punished the offence, yet must refuse it as the others do:
    # the punished offences are part of the state its snapshot carries (and the root the snapshot is checked by).
    from ledger.statesync import offer_for, restore

    genesis = genesis4(workers=[V], params={"unbonding_period": 200, "evidence_max_age": 150})
    chain = open_chain(tmp_path / "src.db", genesis, snapshot_every=10)
    _commit_next(chain)
    evidence = _equivocation(chain, 1)
    _commit_next(chain, evidence=[evidence])
    punished_at = chain.height
    assert chain.state.punished == {evidence.key: punished_at}
    while chain.height < 21:
        _commit_next(chain)
    height, data = chain.store.latest_snapshot_bytes(20)
    assert height == 20
    offer, chunks = offer_for(height, data)
    (block, commit), = chain.get_blocks(height, height)
    state = restore(offer, chunks, chain.store.get_block(height)[2])
    assert state.punished == {evidence.key: punished_at}
    joiner = open_chain(tmp_path / "joiner.db", genesis, snapshot_every=10)
    joiner.store.install_snapshot(block, commit, chain.store.get_block(height)[2], data)
    joiner.store.close()
    joiner = open_chain(tmp_path / "joiner.db", genesis, snapshot_every=10)
    assert joiner.store.first_height == 20
    joiner.commit_block(*chain.get_blocks(21, 21)[0])
    assert joiner.root == chain.root
    assert joiner.pending_evidence([evidence]) == []
    with pytest.raises(b.BadEvidence, match=f"already punished at height {punished_at}"):
        joiner.validate_block(_forged_with(joiner, evidence))
    with pytest.raises(b.BadEvidence, match=f"already punished at height {punished_at}"):
        chain.validate_block(_forged_with(chain, evidence))


def test_case7_the_state_forgets_an_offence_once_its_evidence_is_too_old_to_carry() -> None:
    genesis = genesis4(workers=[V], params={"unbonding_period": 30, "evidence_max_age": 20})
    chain = Chain(genesis)
    _commit_next(chain)
    evidence = _equivocation(chain, 1)
    _commit_next(chain, evidence=[evidence])
    root_with = chain.root
    while chain.height < 20:  # a block at 21 may still carry evidence from height 1
        _commit_next(chain)
        assert evidence.key in chain.state.punished
    _commit_next(chain)  # at 21: the next block refuses evidence from height 1 as too old
    assert chain.state.punished == {}
    with pytest.raises(b.BadEvidence, match="older than 20 blocks"):
        chain.validate_block(_forged_with(chain, evidence))
    assert root_with != chain.root
