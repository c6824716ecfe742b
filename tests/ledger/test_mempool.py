"""Mempool admission, dedupe, bounds and eviction, reaping order, re-check after commit, and the future-nonce
queue (reordered arrival, its bounds and eviction, promotion on admission and after a commit)."""

from __future__ import annotations

import contextlib
import random

import pytest

from ledger.chain import Chain
from ledger.crypto import blake2b256
from ledger.errors import BadNonce, BadSignature, DecodeError, FeeTooLow, InsufficientFunds, LedgerError
from ledger.mempool import (
    AlreadyInMempool,
    FutureQueueFull,
    Mempool,
    MempoolConfig,
    MempoolFull,
    NonceQueued,
)
from ledger.rules import check_tx
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
    with pytest.raises(BadNonce) as exc:  # beyond the future window (a nearer early nonce is queued)
        mp.add(a.transfer(b.account, 1, nonce=1 + mp.config.future_window + 1).encode())
    assert (exc.value.expected, exc.value.got) == (1, 1 + mp.config.future_window + 1)
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
    mpb, (a2, _b2, c2, *_) = pool(max_bytes=2 * len(a.transfer(c.account, 1, nonce=0).encode()),
                                high_water_permille=1000)
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


def test_update_keeps_the_run_that_still_holds_with_its_fees_and_bytes():
    """After a block took a sender's first txs and left it poorer, the pending txs that still run stay, in
    order, and the pool's fee sums, byte count and next nonce match what is left."""
    mp, (a, b, *_) = pool()
    txs = [a.transfer(b.account, 1) for _ in range(5)]
    other = b.transfer(a.account, 3)
    for t in (*txs, other):
        mp.add(t.encode())
    # the block: a's first two txs, and a balance that now covers the fees of only two more
    state = mp.state.copy()
    acc = state.w_account(a.account)
    acc.nonce, acc.balance = 2, 2
    dropped = mp.update(state, [txs[0].tx_id, txs[1].tx_id])
    assert dropped == 3  # two included, one no longer covered
    assert [t.tx_id for t in mp.by_sender[a.account]] == [txs[2].tx_id, txs[3].tx_id]
    assert txs[4].tx_id not in mp and other.tx_id in mp and len(mp) == 3
    assert mp.pending_fees == {a.account: 2, b.account: 1}
    assert mp.bytes == sum(len(t.encode()) for t in (txs[2], txs[3], other))
    assert mp.next_nonce(a.account) == 4
    assert [t.tx_id for t in mp.reap(10, 1 << 20) if t.sender == a.account] == [txs[2].tx_id, txs[3].tx_id]


# ---- the future-nonce queue -----------------------------------------------------------------------------------
def test_reordered_arrival_is_queued_then_admitted_in_nonce_order():
    mp, (a, b, *_) = pool()
    txs = [a.transfer(b.account, 1) for _ in range(5)]
    admissions = {}
    for i in (3, 1, 4):
        admissions[i] = mp.admit(txs[i].encode())
        assert admissions[i].queued and mp.is_queued(txs[i].tx_id) and txs[i].tx_id not in mp
    assert len(mp) == 0 and len(mp.queued) == 3 and mp.reap(10, 10**6) == []
    first = mp.admit(txs[0].encode())
    assert not first.queued and first.promoted == (txs[1],)  # 2 is still missing: 3 and 4 wait
    assert [t.nonce for t in mp.by_sender[a.account]] == [0, 1] and len(mp.queued) == 2
    second = mp.admit(txs[2].encode())
    assert second.promoted == (txs[3], txs[4])
    assert [t.tx_id for t in mp.reap(10, 10**6)] == [t.tx_id for t in txs]
    assert len(mp.queued) == 0 and mp.queued_bytes == 0 and mp.promoted == 3
    assert (mp.queued_evicted, mp.queued_dropped) == (0, 0)


def test_queue_bounds_nonce_window_and_duplicates():
    mp, (a, b, *_) = pool(future_window=3)
    at_edge = a.transfer(b.account, 1, nonce=3)
    assert mp.admit(at_edge.encode()).queued
    with pytest.raises(BadNonce) as exc:  # too far ahead of the sender's next nonce
        mp.add(a.transfer(b.account, 1, nonce=4).encode())
    assert (exc.value.expected, exc.value.got) == (0, 4)
    with pytest.raises(AlreadyInMempool):
        mp.add(at_edge.encode())
    with pytest.raises(NonceQueued) as dup:  # another tx for a nonce that already has one waiting
        mp.add(a.transfer(b.account, 2, nonce=3).encode())
    assert (dup.value.nonce, dup.value.queued_tx_id) == (3, at_edge.tx_id)
    with pytest.raises(FeeTooLow):
        mp.add(b.transfer(a.account, 1, nonce=2, fee=0).encode())
    with pytest.raises(InsufficientFunds):  # an early tx is still checked against the balance
        mp.add(b.transfer(a.account, 10**9, nonce=2).encode())
    with pytest.raises(BadSignature):
        mp.add(Wallet("user-2", chain_id="another-chain").transfer(a.account, 1, nonce=2).encode())
    assert len(mp.queued) == 1
    # the window moves with the sender's pending txs
    mp.add(a.transfer(b.account, 1, nonce=0).encode())
    assert mp.admit(a.transfer(b.account, 1, nonce=4).encode()).queued


def test_full_queue_evicts_the_farthest_ahead_and_counts_it_or_refuses():
    mp, (a, b, c, *_) = pool(max_future_txs=2)
    far = a.transfer(c.account, 1, nonce=5)
    near = b.transfer(c.account, 1, nonce=1)
    mp.add(far.encode())
    mp.add(near.encode())
    closer = c.transfer(a.account, 1, nonce=3)  # gap 3 < far's gap 5: far goes
    mp.add(closer.encode())
    assert mp.queued_evicted == 1 and not mp.is_queued(far.tx_id)
    assert mp.is_queued(near.tx_id) and mp.is_queued(closer.tx_id)
    with pytest.raises(FutureQueueFull) as exc:  # as far as the farthest one queued: refused, nothing evicted
        mp.add(a.transfer(c.account, 1, nonce=3).encode())
    assert (exc.value.what, exc.value.limit, exc.value.gap) == ("count", 2, 3)
    with pytest.raises(FutureQueueFull):
        mp.add(a.transfer(c.account, 1, nonce=9).encode())
    assert mp.queued_evicted == 1 and len(mp.queued) == 2
    size = len(near.encode())
    mpb, (a2, b2, c2, *_) = pool(max_future_bytes=2 * size)
    mpb.add(a2.transfer(c2.account, 1, nonce=4).encode())
    mpb.add(b2.transfer(c2.account, 1, nonce=2).encode())
    with pytest.raises(FutureQueueFull) as exc:
        mpb.add(c2.transfer(a2.account, 1, nonce=4).encode())
    assert exc.value.what == "bytes"
    mpb.add(c2.transfer(a2.account, 1, nonce=1).encode())
    assert mpb.queued_evicted == 1 and mpb.queued_bytes <= 2 * size


def test_eviction_measures_gaps_from_the_senders_next_nonce_now():
    mp, (a, b, c, d, *_) = pool(max_txs=1, max_future_txs=2)
    mp.add(a.transfer(d.account, 1, nonce=0, fee=1).encode())
    a3 = a.transfer(d.account, 1, nonce=3, fee=5)  # 2 ahead of a's next nonce (1)
    b2 = b.transfer(d.account, 1, nonce=2, fee=1)  # 2 ahead too, and cheaper: the victim for now
    mp.add(a3.encode())
    mp.add(b2.encode())
    mp.add(c.transfer(d.account, 1, nonce=0, fee=5).encode())  # the full pool evicts a's pending tx ...
    assert mp.evicted == 1 and a.account not in mp.by_sender  # ... so a3 is now 3 ahead, the farthest
    mp.add(d.transfer(a.account, 1, nonce=1).encode())
    assert mp.queued_evicted == 1 and not mp.is_queued(a3.tx_id) and mp.is_queued(b2.tx_id)


def test_a_queued_tx_invalid_at_its_turn_is_dropped_and_counted_one_without_room_waits():
    state = make_state(balances={"poor": 10, "user-0": 1_000_000, "user-1": 1_000_000})
    mp = Mempool(state.chain_id, state, MempoolConfig(max_txs=1))
    poor = Wallet("poor")
    p0, p1 = poor.transfer(Wallet("user-0").account, 1, fee=6), poor.transfer(Wallet("user-0").account, 1, fee=6)
    assert mp.admit(p1.encode()).queued  # alone it is affordable: 6 + 1 <= 10
    assert mp.admit(p0.encode()).promoted == ()  # after p0's fee, 6 + 6 > 10
    assert not mp.is_queued(p1.tx_id) and p1.tx_id not in mp and mp.queued_dropped == 1
    # the pool is full when a queued tx's turn comes: it stays queued rather than being lost
    a, b = Wallet("user-0"), Wallet("user-1")
    b1, b0 = b.transfer(a.account, 1, nonce=1), b.transfer(a.account, 1, nonce=0, fee=9)
    mp.add(b1.encode())
    assert mp.admit(b0.encode()).promoted == ()  # b0 evicted p0 (cheaper); nothing of another sender to evict
    assert mp.evicted == 1 and mp.is_queued(b1.tx_id) and mp.queued_dropped == 1


def test_update_after_commit_promotes_queued_and_drops_superseded():
    chain = Chain(genesis4())
    a, b = users(2)
    t0, t1, t2 = (a.transfer(b.account, 1) for _ in range(3))
    other = Wallet("user-0", nonce=1).transfer(b.account, 7)  # a rival for nonce 1 that loses to t1
    observer = Mempool(chain.chain_id, chain.state)  # a node that has seen only the later txs so far
    for t in (t2, t1):
        assert observer.admit(t.encode()).queued
    block, commit = next_block(chain, [t0, t1])
    chain.commit_block(block, commit)
    observer.update(chain.state, [t0.tx_id, t1.tx_id])
    assert [t.tx_id for t in observer.by_sender[a.account]] == [t2.tx_id]  # its turn came with the commit
    assert len(observer.queued) == 0 and observer.promoted == 1
    assert observer.queued_dropped == 0  # t1 was included, not dropped
    # a queued tx whose nonce another tx took in a block is dropped, and counted
    late = Mempool(chain.chain_id, chain.state)
    with pytest.raises(BadNonce):  # below the state's nonce: refused outright
        late.add(other.encode())
    ahead = Wallet("user-0", nonce=4).transfer(b.account, 1)
    rival = Wallet("user-0", nonce=3).transfer(b.account, 9)
    late.add(ahead.encode())
    late.add(rival.encode())
    block, commit = next_block(chain, [t2, Wallet("user-0", nonce=3).transfer(b.account, 2)])
    chain.commit_block(block, commit)
    late.update(chain.state, [blake2b256(raw) for raw in block.txs])
    assert late.queued_dropped == 1 and [t.tx_id for t in late.by_sender[a.account]] == [ahead.tx_id]


@pytest.mark.parametrize("seed", range(4))
def test_the_eviction_victim_is_always_the_farthest_queued_tx(seed):
    """Random arrivals (early, next, late nonces; a small pool that evicts pending tails) against a full scan."""
    rng = random.Random(seed)
    mp, wallets = pool(max_txs=4, max_future_txs=5, future_window=6)
    dest = wallets[5].account
    for _ in range(150):
        w = rng.choice(wallets[:5])
        nonce = max(0, mp.next_nonce(w.account) + rng.randint(-1, 6))
        with contextlib.suppress(LedgerError):
            mp.add(w.transfer(dest, 1, nonce=nonce, fee=rng.randint(1, 9)).encode())
        scan = [(t.nonce - mp.next_nonce(t.sender), -t.fee, t.tx_id) for t in mp.queued.values()]
        found = mp._farthest_queued()
        if not scan:
            assert found is None
            continue
        gap, _, tx_id = max(scan)
        assert found is not None and (found[0], found[1].tx_id) == (gap, tx_id)
    assert mp.queued_evicted > 0 and mp.evicted > 0  # both kinds of eviction were exercised


def test_admit_tx_takes_a_decoded_tx_with_the_same_checks():
    mp, (a, b, *_) = pool()
    first, ahead = a.transfer(b.account, 10), a.transfer(b.account, 10, nonce=1)
    assert mp.get(first.tx_id) is None
    assert mp.admit_tx(ahead).queued and mp.get(ahead.tx_id) is ahead
    got = mp.admit_tx(first)
    assert not got.queued and got.promoted == (ahead,) and mp.get(first.tx_id) is first
    assert first.tx_id in mp.verified and mp.bytes == len(first.encode()) + len(ahead.encode())
    with pytest.raises(AlreadyInMempool):
        mp.admit_tx(first)
    forged = SignedTx(first.tx, first.body_bytes, bytes(64))
    with pytest.raises(BadSignature):
        mp.admit_tx(forged)


def _assert_every_pending_tx_holds(mp: Mempool) -> None:
    """What ``update`` keeps: each sender's pending run starts at its state nonce with no gap, every tx passes
    ``check_tx``, the fees together are covered, and the per-sender sums match the txs."""
    state = mp.state
    for sender, q in mp.by_sender.items():
        start = state.nonce(sender)
        assert [t.nonce for t in q] == list(range(start, start + len(q)))
        for t in q:
            check_tx(state, t)
        assert sum(t.fee for t in q) <= state.balance(sender)
        assert mp.pending_fees[sender] == sum(t.fee for t in q)
        assert mp.pending_cost[sender] == sum(t.fee + t.payload.spend() for t in q)
    assert set(mp.txs) == {t.tx_id for q in mp.by_sender.values() for t in q}
    assert set(mp.pending_fees) == set(mp.pending_cost) == set(mp.by_sender)


def _commit_on_both(producer: Chain, observer: Chain) -> None:
    """The producer builds and commits its next block; the observer validates it, then commits (so its commit
    replays the validated writes and tells its mempool which accounts they touched)."""
    block, commit = next_block(producer, [])
    observer.validate_block(block)
    observer.commit_block(block, commit)
    producer.commit_block(block, commit)


def test_update_drops_txs_of_an_owner_drained_by_someone_elses_transfer_from():
    """Only the spender's tx is in the block, yet the owner's pending txs become unaffordable: the owner's
    account was written, so it is re-checked even though it sent nothing."""
    producer, observer = Chain(genesis4()), Chain(genesis4())
    owner, spender, payee = users(3)
    producer.mempool.add(owner.approve(spender.account, 10_000_000).encode())
    _commit_on_both(producer, observer)
    pending = [owner.transfer(payee.account, 1) for _ in range(3)]
    for t in pending:
        observer.mempool.add(t.encode())
    assert [t.tx_id for t in observer.mempool.by_sender[owner.account]] == [t.tx_id for t in pending]
    drain = spender.transfer_from(owner.account, payee.account, observer.state.balance(owner.account) - 1)
    producer.mempool.add(drain.encode())
    _commit_on_both(producer, observer)
    assert observer.state.balance(owner.account) == 1  # less than any of its txs' fee and amount
    assert owner.account not in observer.mempool.by_sender and not observer.mempool.txs
    _assert_every_pending_tx_holds(observer.mempool)


@pytest.mark.parametrize("seed", range(6))
def test_nothing_invalid_stays_pending_after_a_block(seed):
    """Random transfers, approvals, transfer_froms and rival txs for the same nonce, some seen only by the
    block's producer, some only by an observer; after each block the observer's pool holds only valid runs."""
    rng = random.Random(seed)
    producer, observer = Chain(genesis4()), Chain(genesis4())
    ws = users(5)
    for _ in range(8):
        for _ in range(rng.randrange(4, 20)):
            w, other = rng.sample(ws, 2)
            for chain in rng.choice([(producer,), (observer,), (producer, observer)]):
                nonce = chain.mempool.next_nonce(w.account)
                balance = chain.state.balance(w.account)
                kind = rng.random()
                if kind < 0.5:
                    stx = w.transfer(other.account, rng.choice([1, balance // 3, balance]), nonce=nonce,
                                     fee=rng.randrange(1, 4))
                elif kind < 0.7:
                    stx = w.approve(other.account, rng.randrange(0, 10_000_000), nonce=nonce)
                else:
                    stx = w.transfer_from(other.account, w.account,
                                          rng.randrange(0, chain.state.allowance(other.account, w.account) + 2),
                                          nonce=nonce)
                with contextlib.suppress(LedgerError):
                    chain.mempool.add(stx.encode())
        _commit_on_both(producer, observer)
        _assert_every_pending_tx_holds(observer.mempool)
        _assert_every_pending_tx_holds(producer.mempool)


def test_a_long_run_of_early_nonces_is_promoted_whole_when_the_gap_fills():
    mp, (a, b, *_) = pool()
    txs = [a.transfer(b.account, 1) for _ in range(50)]
    for t in reversed(txs[1:]):
        assert mp.admit(t.encode()).queued
    admission = mp.admit(txs[0].encode())
    assert [t.tx_id for t in admission.promoted] == [t.tx_id for t in txs[1:]]
    assert [t.tx_id for t in mp.by_sender[a.account]] == [t.tx_id for t in txs]
    assert not mp.queued and not mp.future and mp.promoted == 49 and mp.queued_dropped == 0


def test_above_high_water_what_could_not_displace_anything_is_refused_before_its_signature():
    """Back-pressure before the mark is reached: at 3 of 4 slots (high water 750 permille) a tx paying no more than
    the cheapest pending tail is refused as MempoolFull without its signature being checked (a forged one gets
    the same answer, so a flood costs no verification); one paying more still gets in, and a block that makes
    room lifts the refusal. The future queue has its own mark."""
    mp, (a, b, c, d, e, f) = pool(max_txs=4, high_water_permille=750)
    for w in (a, b, c):
        mp.add(w.transfer(f.account, 1, fee=3).encode())
    same = d.transfer(f.account, 1, fee=3)
    forged = SignedTx(same.tx, same.body_bytes, bytes(64))
    for stx in (same, forged):
        with pytest.raises(MempoolFull) as exc:
            mp.add(stx.encode())
        assert exc.value.what == "high-water" and exc.value.limit == 3
    assert mp.refused_high_water == 2 and forged.tx_id not in mp.verified and same.tx_id not in mp.verified
    richer = d.transfer(f.account, 1, fee=4, nonce=0)
    mp.add(richer.encode())  # pays more than every tail: admitted (the pool is not full, nothing evicted)
    assert richer.tx_id in mp and mp.evicted == 0 and len(mp) == 4
    # a forged tx that pays more passes the mark and is then refused for its signature
    rich_forged = e.transfer(f.account, 1, fee=9)
    with pytest.raises(BadSignature):
        mp.add(SignedTx(rich_forged.tx, rich_forged.body_bytes, bytes(64)).encode())
    # the same sender's next nonce and a replacement of a pending nonce are answered for what they are
    with pytest.raises(BadNonce):
        mp.add(a.transfer(f.account, 2, fee=3, nonce=0).encode())
    # the state alone refuses an unfunded tx before any signature check, and counts it
    broke = Wallet("nobody").transfer(f.account, 1, fee=3)
    with pytest.raises(InsufficientFunds):
        mp.add(SignedTx(broke.tx, broke.body_bytes, bytes(64)).encode())
    assert mp.refused_cheap == 1
    # the floor follows evictions: once full, a tx paying 5 evicts a fee-3 tail and the floor is still 3
    mp.add(e.transfer(f.account, 1, fee=5, nonce=0).encode())
    assert mp.evicted == 1 and len(mp) == 4
    with pytest.raises(MempoolFull):
        mp.add(f.transfer(a.account, 1, fee=3).encode())

    q, (a, b, c, *_) = pool(max_future_txs=4, high_water_permille=500)
    q.add(a.transfer(c.account, 1, nonce=5).encode())
    q.add(b.transfer(c.account, 1, nonce=2).encode())
    with pytest.raises(FutureQueueFull) as fexc:  # at the mark, as far as the farthest: refused, not evicting
        q.add(c.transfer(a.account, 1, nonce=5).encode())
    assert fexc.value.what == "high-water" and q.queued_evicted == 0
    q.add(c.transfer(a.account, 1, nonce=3).encode())  # closer to its turn than the farthest: still queued
    assert len(q.queued) == 3


def test_the_high_water_floor_is_never_above_the_cheapest_tail(seed=7):
    """The floor the mark compares against is a lower bound of the cheapest pending tail after any sequence of
    admissions, evictions and commits, so the early refusal only refuses what the full check would."""
    rng = random.Random(seed)
    chain = Chain(genesis4())
    wallets = users(6)
    mp = Mempool(chain.chain_id, chain.state, MempoolConfig(max_txs=8, high_water_permille=500))
    nonces = {w.account: 0 for w in wallets}
    for _ in range(400):
        w = rng.choice(wallets)
        stx = w.transfer(wallets[0].account, 1, fee=rng.randint(1, 9), nonce=nonces[w.account])
        try:
            mp.add(stx.encode())
            nonces[w.account] += 1
        except LedgerError:
            pass
        tails = [q[-1].fee for q in mp.by_sender.values() if q]
        if mp._floor is not None and tails:
            assert mp._floor <= min(tails)
        if rng.random() < 0.1:
            mp.update(chain.state)
            nonces = {a: mp.next_nonce(a) for a in nonces}


def test_a_tx_that_leaves_without_being_included_is_remembered_with_why():
    """Evicted, superseded, no longer valid and evicted from the queue: each is told apart, and a tx that was
    included is not reported gone. The record is bounded."""
    from ledger.mempool import EVICTED, EVICTED_QUEUED, STALE, SUPERSEDED

    mp, (a, b, c, *_) = pool(max_txs=2, max_future_txs=1, gone_kept=3)
    cheap = b.transfer(c.account, 1, fee=3)
    mp.add(a.transfer(c.account, 1, fee=5).encode())
    mp.add(cheap.encode())
    mp.add(c.transfer(a.account, 1, fee=4, nonce=0).encode())
    assert mp.gone_reason(cheap.tx_id) == EVICTED
    far = a.transfer(c.account, 1, nonce=9)
    mp.add(far.encode())
    mp.add(b.transfer(c.account, 1, nonce=2).encode())  # closer to its turn: far is evicted
    assert mp.gone_reason(far.tx_id) == EVICTED_QUEUED
    # a's pending nonce-0 tx was superseded by another nonce-0 tx committed elsewhere; c's is no longer covered
    mine = next(t for t in mp.txs.values() if t.sender == a.account)
    theirs = next(t for t in mp.txs.values() if t.sender == c.account)
    state = mp.state.copy()
    state.w_account(a.account).nonce = 1
    state.w_account(c.account).balance = 0
    mp.update(state, [])
    assert mp.gone_reason(mine.tx_id) == SUPERSEDED and mp.gone_reason(theirs.tx_id) == STALE
    assert mp.gone_reason(cheap.tx_id) is None and len(mp.gone) == 3  # the oldest forgotten beyond gone_kept
    mp2, (a2, b2, *_) = pool()
    kept = a2.transfer(b2.account, 1)
    mp2.add(kept.encode())
    state2 = mp2.state.copy()
    state2.w_account(a2.account).nonce = 1
    mp2.update(state2, [kept.tx_id])
    assert kept.tx_id not in mp2 and mp2.gone_reason(kept.tx_id) is None
