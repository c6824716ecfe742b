"""Mempool admission, dedupe, bounds and eviction, reaping order, and re-check after commit."""

from __future__ import annotations

import pytest

from ledger.chain import Chain
from ledger.errors import BadNonce, BadSignature, DecodeError, FeeTooLow, InsufficientFunds
from ledger.mempool import AlreadyInMempool, Mempool, MempoolConfig, MempoolFull
from ledger.tx import SignedTx
from tests.ledger.chainkit import genesis4, next_block, users
from tests.ledger.factories import Wallet, make_state


def pool(**cfg) -> tuple[Mempool, list[Wallet]]:
    state = make_state(balances={f"user-{i}": 1_000_000 for i in range(6)})
    return Mempool(state.chain_id, state, MempoolConfig(**cfg)), users(6)


def test_admission_checks_each_rule():
    mp, (a, b, *_) = pool()
    stx = a.transfer(b.account, 10)
    mp.add(stx.encode())
    assert stx.tx_id in mp and stx.tx_id in mp.verified
    with pytest.raises(AlreadyInMempool):
        mp.add(stx.encode())
    with pytest.raises(DecodeError):
        mp.add(b"\x92\x01")
    with pytest.raises(BadNonce) as exc:
        mp.add(a.transfer(b.account, 1, nonce=5).encode())
    assert (exc.value.expected, exc.value.got) == (1, 5)
    with pytest.raises(FeeTooLow):
        mp.add(b.transfer(a.account, 1, fee=0).encode())
    with pytest.raises(InsufficientFunds):
        mp.add(b.transfer(a.account, 10**9, nonce=0).encode())
    other_chain = Wallet("user-2", chain_id="another-chain").transfer(a.account, 1)
    with pytest.raises(BadSignature):
        mp.add(other_chain.encode())
    forged = SignedTx(stx.tx, stx.body_bytes, bytes(64))
    with pytest.raises(BadSignature):
        mp.add(forged.encode())
    assert len(mp) == 1


def test_reap_orders_by_fee_then_nonce_and_respects_limits():
    mp, (a, b, c, *_) = pool()
    a0, a1 = a.transfer(c.account, 1, fee=1), a.transfer(c.account, 1, fee=50)
    b0 = b.transfer(c.account, 1, fee=10)
    for t in (a0, a1, b0):
        mp.add(t.encode())
    # a1 pays most but needs a0 first; b0 beats a0.
    assert [t.tx_id for t in mp.reap(10, 10**6)] == [b0.tx_id, a0.tx_id, a1.tx_id]
    assert len(mp.reap(2, 10**6)) == 2
    assert mp.reap(10, len(b0.encode())) == [b0]


def test_full_pool_evicts_cheapest_tail_or_refuses():
    mp, (a, b, c, *_) = pool(max_txs=2)
    mp.add(a.transfer(c.account, 1, fee=5).encode())
    mp.add(b.transfer(c.account, 1, fee=3).encode())
    with pytest.raises(MempoolFull):
        mp.add(c.transfer(a.account, 1, fee=3).encode())
    rich = c.transfer(a.account, 1, fee=4, nonce=0)
    mp.add(rich.encode())
    assert len(mp) == 2 and mp.evicted == 1 and rich.tx_id in mp
    assert all(t.sender != b.account for t in mp.txs.values())
    mpb, (a2, _b2, c2, *_) = pool(max_bytes=2 * len(a.transfer(c.account, 1, nonce=0).encode()))
    mpb.add(a2.transfer(c2.account, 1, fee=2).encode())
    mpb.add(a2.transfer(c2.account, 1, fee=2).encode())
    with pytest.raises(MempoolFull) as exc:
        mpb.add(c2.transfer(a2.account, 1, fee=2).encode())
    assert exc.value.what == "bytes"


def test_update_after_commit_drops_included_and_invalidated():
    chain = Chain(genesis4())
    a, b = users(2)
    t0 = a.transfer(b.account, 1)
    block, commit = next_block(chain, [t0])
    t1 = a.transfer(b.account, 1)
    chain.mempool.add(t1.encode())
    stale = Wallet("user-0", nonce=0).transfer(b.account, 2)  # same nonce as t0, a different tx
    chain.commit_block(block, commit)
    assert t0.tx_id not in chain.mempool and t1.tx_id in chain.mempool
    with pytest.raises(BadNonce):
        chain.mempool.add(stale.encode())
    # A block that spends the sender's balance makes its pending tx invalid: re-check drops it.
    spender = Wallet("user-1")
    pending = spender.transfer(a.account, 1)
    chain.mempool.add(pending.encode())
    other = Chain(genesis4())
    assert other.mempool is not chain.mempool
    dropped = chain.mempool.update(chain.state, [])
    assert dropped == 0
    chain.state.w_account(spender.account).balance = 0
    assert chain.mempool.update(chain.state, []) == 1 and pending.tx_id not in chain.mempool
