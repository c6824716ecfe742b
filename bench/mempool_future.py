"""What the mempool's future-nonce queue costs: a sender's burst admitted in order, in reverse (every tx but the
last waits in the queue, then all are promoted at once) and shuffled; and one admission into a full queue, which
scans every sender's farthest tx for the eviction victim.

    .venv/bin/python -m bench.mempool_future
"""

from __future__ import annotations

import random
import statistics
import time

from ledger.crypto import blake2b256
from ledger.mempool import FutureQueueFull, Mempool, MempoolConfig
from ledger.tx import SignedTx
from tests.ledger.factories import Wallet, account, make_state

BURST = 2000
REPEAT = 7


def bursts_us_per_tx() -> dict[str, tuple[float, int]]:
    """Median µs per admitted tx for one sender's ``BURST`` txs arriving in order, reversed and shuffled (the
    three interleaved in every round, so machine noise hits them alike), and how many were promoted."""
    state = make_state(balances={"sender": 10**12, "dest": 0})
    w = Wallet("sender")
    raws = [w.transfer(account("dest"), 1).encode() for _ in range(BURST)]
    shuffled = list(raws)
    random.Random(7).shuffle(shuffled)
    orders = {"in order": raws, "reversed": raws[::-1], "shuffled": shuffled}
    times: dict[str, list[float]] = {o: [] for o in orders}
    promoted: dict[str, int] = {}
    for _ in range(REPEAT):
        for order, arrival in orders.items():
            mp = Mempool(state.chain_id, state)
            for raw in arrival:  # signatures verified once, outside the timing, as a node's LRU would have them
                mp.verified[blake2b256(raw)] = None
            t = time.perf_counter()
            for raw in arrival:
                mp.add(raw)
            times[order].append(time.perf_counter() - t)
            assert len(mp) == BURST and not mp.queued
            promoted[order] = mp.promoted
    return {o: (statistics.median(v) * 1e6 / BURST, promoted[o]) for o, v in times.items()}


def scan_victim(mp: Mempool) -> tuple[int, SignedTx] | None:
    """The eviction victim by a scan of every sender's farthest queued tx (how the first version found it)."""
    best = None
    for sender, q in mp.future.items():
        stx = q[max(q)]
        key = (stx.nonce - mp.next_nonce(sender), -stx.fee, stx.tx_id, stx)
        if best is None or key[:3] > best[:3]:
            best = key
    return None if best is None else (best[0], best[3])


def full_queue_us(senders: int) -> tuple[float, float, float, float]:
    """Median µs for an early tx into a queue holding one tx from each of ``senders`` senders: one that evicts
    the farthest, and one refused (no queued tx is farther); and finding the victim by a scan vs the heap."""
    names = [f"s{i}" for i in range(senders)]
    state = make_state(balances={**{n: 10**9 for n in names}, "x": 10**9, "y": 10**9, "dest": 0})
    mp = Mempool(state.chain_id, state, MempoolConfig(max_future_txs=senders))
    for i, n in enumerate(names):
        mp.add(Wallet(n).transfer(account("dest"), 1, nonce=2 + i % 50).encode())
    evict, refuse, scan, heap = [], [], [], []
    x, y = Wallet("x"), Wallet("y")
    for r in range(REPEAT):
        near = x.transfer(account("dest"), 1, nonce=1 + r).encode()  # gap 1..: closer than the farthest
        t = time.perf_counter()
        mp.add(near)
        evict.append(time.perf_counter() - t)
        far = y.transfer(account("dest"), 1, nonce=1000 + r).encode()  # farther than anything queued
        t = time.perf_counter()
        try:
            mp.add(far)
            raise AssertionError("a tx farther than every queued one was admitted into a full queue")
        except FutureQueueFull:
            refuse.append(time.perf_counter() - t)
        t = time.perf_counter()
        by_scan = scan_victim(mp)
        scan.append(time.perf_counter() - t)
        t = time.perf_counter()
        by_heap = mp._farthest_queued()
        heap.append(time.perf_counter() - t)
        assert by_scan is not None and by_heap is not None and by_scan[1] is by_heap[1]
    return tuple(statistics.median(v) * 1e6 for v in (evict, refuse, scan, heap))  # type: ignore[return-value]


def main() -> None:
    print(f"| burst of {BURST} txs, one sender | µs per tx (median of {REPEAT}) | promoted from the queue |")
    print("| --- | ---: | ---: |")
    for order, (us, promoted) in bursts_us_per_tx().items():
        print(f"| {order} | {us:.1f} | {promoted} |")
    print()
    print("| queued txs (one per sender) | admit with eviction µs | admit refused µs | victim by scan µs "
          "| victim by heap µs | scan / heap |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (1_000, 5_000, 20_000):
        ev, ref, sc, hp = full_queue_us(n)
        print(f"| {n} | {ev:.0f} | {ref:.0f} | {sc:.0f} | {hp:.1f} | {sc / hp:.0f}× |")


if __name__ == "__main__":
    main()
