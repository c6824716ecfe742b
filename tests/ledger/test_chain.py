"""Building, validating, executing and committing blocks over the real ledger state."""

from __future__ import annotations

import dataclasses

import pytest

from ledger import block as b
from ledger import chain as chain_module
from ledger.chain import Chain, execute_block
from ledger.consensus import proposer_for
from ledger.crypto import blake2b256
from ledger.state import state_root, state_root_uncached
from tests.ledger.chainkit import genesis4, next_block, sign_commit, users, validator_keys
from tests.ledger.factories import account


def test_block_with_transfers_commits_and_moves_the_state():
    chain = Chain(genesis4())
    alice, bob = users(2)
    root0 = chain.root
    block, commit = next_block(chain, [alice.transfer(bob.account, 500), alice.transfer(bob.account, 7)])
    assert len(block.txs) == 2 and block.header.state_root == root0
    out = chain.commit_block(block, commit)
    assert chain.height == 1 and chain.state.balance(bob.account) == 10_000_507
    assert out.state_root == state_root_uncached(chain.state) != root0
    assert len(chain.mempool) == 0
    block2, commit2 = next_block(chain)
    assert block2.header.prev_hash == block.hash() and block2.header.state_root == out.state_root
    assert block2.last_commit == commit
    chain.commit_block(block2, commit2)


def test_proposer_keeps_a_tx_that_pays_its_fee_but_fails_and_charges_it():
    """Every tx pays or is refused: the second transfer could pay its fee but not its amount once the first was
    in, so it is in the block as a failed tx, its nonce used and its fee paid, and nothing else moved."""
    chain = Chain(genesis4())
    alice, bob = users(2)
    first = alice.transfer(bob.account, 9_000_000)
    second = alice.transfer(bob.account, 2_000_000)  # admitted alone, cannot spend after the first
    chain.mempool.add(first.encode())
    chain.mempool.add(second.encode())
    block, commit = next_block(chain)
    assert block.tx_ids == (first.tx_id, second.tx_id)
    out = chain.commit_block(block, commit)
    assert [r.ok for r in out.receipts] == [True, False]
    assert "InsufficientFunds" in (out.receipts[1].error or "")
    assert chain.state.nonce(alice.account) == 2
    assert chain.state.balance(alice.account) == 10_000_000 - 9_000_000 - first.fee - second.fee
    assert chain.state.balance(bob.account) == 10_000_000 + 9_000_000


def test_proposer_leaves_out_a_tx_that_cannot_pay_for_itself_and_refills_the_block():
    """A tx whose fee its sender cannot pay once an earlier one is in is left out with the sender's later txs,
    and the block is filled from the other senders instead (capped at max_txs)."""
    chain = Chain(genesis4())
    alice, bob, carol = users(3)
    chain.mempool.add(alice.transfer(bob.account, 10_000_000 - 1, fee=1).encode())  # leaves nothing for fees
    chain.mempool.add(alice.transfer(bob.account, 0, fee=1).encode())  # cannot pay its fee after the first
    chain.mempool.add(alice.transfer(bob.account, 0, fee=1).encode())  # needs the one before
    carols = [carol.transfer(bob.account, i + 1) for i in range(3)]
    for stx in carols:
        chain.mempool.add(stx.encode())
    block = _build(chain, max_txs=3)
    assert len(block.txs) == 3
    senders = [tx_id in {c.tx_id for c in carols} for tx_id in block.tx_ids]
    assert senders.count(True) == 2  # one slot for alice's first, two for carol: alice's unpayable two refilled


def _fresh_pair():
    chain = Chain(genesis4())
    alice, bob = users(2)
    block, commit = next_block(chain, [alice.transfer(bob.account, 5)])
    other = Chain(genesis4())
    return chain, other, block, commit


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda h: dataclasses.replace(h, height=2), b.WrongHeight),
        (lambda h: dataclasses.replace(h, prev_hash=b"\x01" * 32), b.BadPrevHash),
        (lambda h: dataclasses.replace(h, state_root=b"\x02" * 32), b.BadStateRoot),
        (lambda h: dataclasses.replace(h, tx_root=b"\x03" * 32), b.BadTxRoot),
        (lambda h: dataclasses.replace(h, proposer=account("validator-3")), b.WrongProposer),
        (lambda h: dataclasses.replace(h, chain_id="other"), b.WrongChain),
        (lambda h: dataclasses.replace(h, time_ms=1), b.BadTime),
        (lambda h: dataclasses.replace(h, validators_hash=b"\x04" * 32), b.BadValidatorsHash),
    ],
)
def test_header_mismatches_raise_typed_errors(change, error):
    _, other, block, _ = _fresh_pair()
    bad = dataclasses.replace(block, header=change(block.header))
    with pytest.raises(error):
        other.validate_block(bad)
    assert other.validate(1, bad) is False
    other.validate_block(block)  # the original is fine


def test_block_with_a_tx_that_cannot_pay_for_itself_is_invalid_and_changes_nothing():
    chain = Chain(genesis4())
    alice, bob = users(2)
    bad_tx = alice.transfer(bob.account, 1, nonce=5)  # a nonce alice has not reached: it cannot be applied
    good, _ = next_block(chain)
    bad = b.make_block(
        chain_id=good.header.chain_id,
        height=1,
        round_=0,
        prev_hash=good.header.prev_hash,
        time_ms=good.header.time_ms,
        proposer=good.header.proposer,
        state_root=good.header.state_root,
        validators=chain.validators,
        txs=[bad_tx.encode()],
        last_commit=None,
    )
    root = state_root(chain.state)
    with pytest.raises(b.BadBlockTx) as exc:
        chain.validate_block(bad)
    assert exc.value.index == 0
    assert state_root(chain.state) == root and chain.state.balance(alice.account) == 10_000_000


def test_second_block_needs_a_valid_commit_for_the_first():
    chain, other, block, commit = _fresh_pair()
    chain.commit_block(block, commit)
    other.commit_block(block, commit)
    nxt, _ = next_block(chain)
    for last in (
        sign_commit(block, validator_keys(), signers=2),  # 2 of 4 is not more than 2/3
        dataclasses.replace(commit, block_hash=b"\x05" * 32),
    ):
        forged = b.make_block(
            chain_id=nxt.header.chain_id,
            height=2,
            round_=0,
            prev_hash=nxt.header.prev_hash,
            time_ms=nxt.header.time_ms,
            proposer=nxt.header.proposer,
            state_root=nxt.header.state_root,
            validators=other.validators,
            txs=[],
            last_commit=last,
        )
        with pytest.raises(b.BadCommit):
            other.validate_block(forged)


def test_speculative_validation_is_undone_for_a_different_block():
    chain = Chain(genesis4())
    alice, bob = users(2)
    b1, _ = next_block(chain, [alice.transfer(bob.account, 100)])
    chain.validate_block(b1)
    empty = b.make_block(
        chain_id=b1.header.chain_id,
        height=1,
        round_=1,
        prev_hash=b1.header.prev_hash,
        time_ms=b1.header.time_ms,
        proposer=account("validator-2"),
        state_root=b1.header.state_root,
        validators=chain.validators,
        txs=[],
        last_commit=None,
    )
    commit = sign_commit(empty, validator_keys(), round_=1)
    chain.commit_block(empty, commit)
    assert chain.state.balance(bob.account) == 10_000_000  # the validated-but-not-decided transfer is gone
    assert chain.root == state_root_uncached(chain.state)


def test_evidence_slashes_a_validator_with_worker_stake_once():
    g = genesis4(workers=["validator-1"])
    chain = Chain(g)
    k1 = validator_keys()[1]
    va = b.Vote.sign(k1, g.chain_id, b.VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    vb = b.Vote.sign(k1, g.chain_id, b.VoteType.PREVOTE, 1, 0, None)
    ev = b.Evidence.from_votes(va, vb)
    blk, com = next_block(chain)
    chain.commit_block(blk, com)
    stake_before = chain.state.workers[account("validator-1")].stake
    blk, com = next_block(chain, evidence=[ev])
    assert blk.evidence == (ev,)
    chain.commit_block(blk, com)
    assert chain.state.workers[account("validator-1")].stake < stake_before
    # The same offence is not put into, nor accepted in, a later block.
    assert chain.pending_evidence([ev]) == []
    blk3, _ = next_block(chain)
    forged = dataclasses.replace(
        blk3, evidence=(ev,), header=dataclasses.replace(blk3.header, evidence_hash=b.evidence_hash([ev]))
    )
    with pytest.raises(b.BadEvidence):
        chain.validate_block(forged)


def test_block_encoding_round_trips_and_rejects_garbage():
    _chain, _, block, commit = _fresh_pair()
    assert b.Block.decode(block.encode()) == block
    assert b.Commit.decode(commit.encode()) == commit
    with pytest.raises(b.DecodeError):
        b.Block.decode(b"\x93\x01\x02\x03")
    with pytest.raises(b.DecodeError):
        b.Block.decode(block.encode() + b"\x00")


def test_execute_block_is_all_or_nothing():
    chain = Chain(genesis4())
    alice, bob = users(2)
    ok = alice.transfer(bob.account, 1)
    bad = bob.transfer(alice.account, 1, fee=10**12)  # a fee bob cannot pay
    blk, _ = next_block(chain)
    mixed = b.make_block(
        chain_id=blk.header.chain_id,
        height=1,
        round_=0,
        prev_hash=blk.header.prev_hash,
        time_ms=blk.header.time_ms,
        proposer=blk.header.proposer,
        state_root=blk.header.state_root,
        validators=chain.validators,
        txs=[ok.encode(), bad.encode()],
        last_commit=None,
    )
    before = state_root(chain.state)
    with pytest.raises(b.BadBlockTx) as exc:
        execute_block(chain.state, mixed)
    assert exc.value.index == 1 and state_root(chain.state) == before


def test_validation_never_shows_uncommitted_effects_and_commit_reports_receipts():
    """Readers and the mempool see committed state between a prevote and the commit; the commit has receipts."""
    chain = Chain(genesis4())
    alice, bob = users(2)
    b1, commit = next_block(chain, [alice.transfer(bob.account, 100)])
    before = state_root_uncached(chain.state)
    chain.validate_block(b1)
    assert state_root_uncached(chain.state) == before
    assert chain.state.nonce(alice.account) == 0
    done = chain.commit_block(b1, commit)
    assert [r.kind for r in done.receipts] == ["transfer"]
    assert chain.state.balance(bob.account) == 10_000_000 + 100
    assert chain.root == state_root_uncached(chain.state)


def test_validate_and_commit_reuse_the_mempools_decoded_txs(monkeypatch):
    chain = Chain(genesis4())
    alice, bob = users(2)
    block, commit = next_block(chain, [alice.transfer(bob.account, 5), alice.transfer(bob.account, 6)])
    assert all(chain.mempool.get(blake2b256(raw)) is not None for raw in block.txs)

    def no_decode(raw: bytes) -> None:
        raise AssertionError("a tx the mempool holds was decoded again")

    monkeypatch.setattr(chain_module, "decode_signed_tx", no_decode)
    assert chain.validate(1, block)
    chain.commit_block(block, commit)
    assert chain.state.balance(bob.account) == 10_000_011 and len(chain.mempool) == 0


def test_a_tx_missing_from_the_mempool_is_decoded_and_checked():
    chain, other, block, commit = _fresh_pair()
    assert other.mempool.get(blake2b256(block.txs[0])) is None
    assert other.validate(1, block)
    other.commit_block(block, commit)
    assert other.root == chain.commit_block(block, commit).state_root


def test_a_validated_block_commits_by_replaying_its_writes_not_by_executing_it_again(monkeypatch):
    """Validation at prevote executed the block already; its commit replays those writes, even after other
    speculation (building a block for a later round) ran on the same state, and ends where executing ends."""
    chain, other = Chain(genesis4()), Chain(genesis4())
    alice, bob = users(2)
    newcomer = account("newcomer")
    block, commit = next_block(chain, [alice.transfer(bob.account, 5), alice.transfer(newcomer, 9),
                                       bob.transfer(alice.account, 1)])
    assert chain.validate(1, block)
    # speculation in between: the next round's proposal, built from the same mempool (and rolled back)
    chain.build(1, 1, chain.validators[2], block.header.time_ms + 1)
    runs = []
    real = chain_module.execute_block
    monkeypatch.setattr(chain_module, "execute_block", lambda *a, **k: runs.append(1) or real(*a, **k))
    done = chain.commit_block(block, commit)
    assert runs == []  # replayed, not executed
    # the same block committed by a node that never validated it (executed at commit)
    direct = other.commit_block(block, commit)
    assert runs == [1]
    assert done.state_root == direct.state_root == state_root_uncached(chain.state) == other.root
    assert done.receipts == direct.receipts and done.events == direct.events
    assert chain.state.balance(newcomer) == 9 and chain.state.nonce(alice.account) == 2
    # the next block runs on the replayed state as on the executed one
    b2, c2 = next_block(chain, [alice.transfer(newcomer, 1)])
    assert other.validate(2, b2)
    assert chain.commit_block(b2, c2).state_root == other.commit_block(b2, c2).state_root


def test_each_tx_of_a_block_is_hashed_once_for_its_root_execution_and_commit(monkeypatch):
    chain, other = Chain(genesis4()), Chain(genesis4())
    alice, bob = users(2)
    block, commit = next_block(chain, [alice.transfer(bob.account, 1), alice.transfer(bob.account, 2)])
    block = b.Block.decode(block.encode())  # as a peer receives it: nothing computed yet
    hashed = []
    real = b.blake2b256
    monkeypatch.setattr(b, "blake2b256", lambda data: hashed.append(data) or real(data))
    assert other.validate(1, block)
    other.commit_block(block, commit)
    assert block.tx_ids == tuple(real(t) for t in block.txs)
    assert sorted(d for d in hashed if d in block.txs) == sorted(block.txs)  # once each, not per use
    assert other.root == chain.commit_block(block, commit).state_root


def test_the_proposer_executes_its_own_block_once_while_building_it(monkeypatch):
    chain, other = Chain(genesis4()), Chain(genesis4())
    alice, bob = users(2)
    block, commit = next_block(chain, [alice.transfer(bob.account, 5), alice.transfer(account("fresh"), 2)])

    def no_execute(*args, **kw):
        raise AssertionError("the block was executed again")

    monkeypatch.setattr(chain_module, "execute_block", no_execute)
    checked = []
    real_check = chain._check_header_and_evidence
    monkeypatch.setattr(chain, "_check_header_and_evidence", lambda blk: checked.append(blk) or real_check(blk))
    assert chain.validate(1, block) and checked == [block]  # the header is still checked ...
    done = chain.commit_block(block, commit)  # ... and the build's writes are replayed
    monkeypatch.undo()
    direct = other.commit_block(block, commit)
    assert done.state_root == direct.state_root == state_root_uncached(chain.state)
    assert done.receipts == direct.receipts and done.events == direct.events


def _build(chain: Chain, max_txs: int) -> b.Block:
    proposer = proposer_for(chain.validators, chain.next_height, 0)
    now = (chain.last_header.time_ms if chain.last_header else 0) + 10**12
    return chain.build(chain.next_height, 0, proposer, now, max_txs=max_txs)


def _commit_next(chain: Chain, max_txs: int) -> list:
    block = _build(chain, max_txs)
    return chain.commit_block(block, sign_commit(block, validator_keys())).receipts


def test_a_flood_of_never_executable_txs_pays_for_its_slots_and_cannot_starve_honest_txs():
    """Issue 17, case 4: txs that can never execute (``transfer_from`` with no allowance) at a higher fee than
    honest ones once filled every block for free. Now each is charged its fee where it lands, honest txs commit
    as soon as the junk ahead of them is paid for, and the attacker's later nonces are not frozen."""
    chain = Chain(genesis4())
    attacker, owner, bob, honest = users(4)
    junk = [attacker.transfer_from(owner.account, bob.account, 1, fee=2) for _ in range(120)]
    for stx in junk:
        chain.mempool.add(stx.encode())
    fair = [honest.transfer(bob.account, i + 1) for i in range(30)]
    for stx in fair:
        chain.mempool.add(stx.encode())
    later = attacker.transfer(bob.account, 5, fee=2)  # behind the junk: once frozen for good
    chain.mempool.add(later.encode())
    receipts = []
    for _ in range(4):  # 151 txs, 50 a block
        receipts += _commit_next(chain, max_txs=50)
    by_id = {r.tx_id: r for r in receipts}
    assert all(stx.tx_id in by_id and not by_id[stx.tx_id].ok for stx in junk)
    assert "InsufficientAllowance" in (by_id[junk[0].tx_id].error or "")
    assert all(by_id[stx.tx_id].ok for stx in fair)
    assert by_id[later.tx_id].ok and chain.state.nonce(attacker.account) == len(junk) + 1
    assert chain.state.balance(attacker.account) == 10_000_000 - 2 * (len(junk) + 1) - 5
    assert len(chain.mempool) == 0
