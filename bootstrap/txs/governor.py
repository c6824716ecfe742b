"""How much of the node's time admitting submitted txs may take, so consensus and gossip always get the rest.

Admission (decoding, the signature check, the mempool's bookkeeping) runs on the node's one event loop, and
under a load past capacity it would take all of it: consensus messages then wait behind admissions, rounds time
out, and the committed rate falls as the offered rate rises (a 4x overload committed a quarter of the peak).
:class:`AdmissionGovernor` is a token bucket of loop time: it refills at ``share`` seconds per second up to
``burst_s``, each admission chunk is charged what it took, and while the bucket is empty a submission is refused
with :class:`~bootstrap.errors.NodeBusy` (a retryable 429) before any work is done on it. Gossip from peers is
not governed here: it is bounded per peer by the gossip layer, and a node must keep up with the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bootstrap.errors import NodeBusy

CHUNK_TXS = 256  # txs admitted between two yields to the event loop (~15 ms of signature checks here)


class AdmissionGovernor:
    """A bucket of event-loop seconds for admitting submitted txs."""

    def __init__(self, share: float = 0.5, burst_s: float = 0.25,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not 0 < share <= 1 or burst_s <= 0:
            raise ValueError(f"admission share must be in (0, 1] and burst positive, got {share}, {burst_s}")
        self.share, self.burst_s, self.clock = share, burst_s, clock
        self.level = burst_s
        self._stamp = clock()
        self.refused = 0  # submitted txs refused as busy

    def _refill(self) -> float:
        now = self.clock()
        self.level = min(self.burst_s, self.level + (now - self._stamp) * self.share)
        self._stamp = now
        return now

    def check(self, n_txs: int = 1) -> None:
        """Raise :class:`NodeBusy` (and count ``n_txs`` refused) while the bucket is empty."""
        self._refill()
        if self.level <= 0:
            self.refused += n_txs
            wait = max(0.1, -self.level / self.share + 0.05)
            raise NodeBusy("admitting submitted transactions", round(min(wait, 5.0), 2))

    def charge(self, seconds: float) -> None:
        """Admission work took ``seconds`` of loop time (the bucket may go below zero: the debt is waited out)."""
        self._refill()
        self.level -= max(0.0, seconds)


class BacklogGate:
    """Admission of submitted txs stops while the chain's backlog (runnable txs in the mempool, which gossip
    fills from every node) is more than the chain commits in ``target_s`` at its recent rate (never below
    ``floor``): past that, a tx admitted now would wait longer than the target for a block, so the client is told
    to come back (``NodeBusy``, a retryable 429) instead of queueing behind a backlog that only grows. The rate is
    the committed txs per second over recent blocks (an exponential average)."""

    def __init__(self, target_s: float = 2.0, floor: int = 4_000, clock: Callable[[], float] = time.monotonic) -> None:
        if target_s <= 0 or floor < 1:
            raise ValueError(f"backlog target must be positive and floor at least 1, got {target_s}, {floor}")
        self.target_s, self.floor, self.clock = target_s, floor, clock
        self.rate = 0.0  # committed tx/s, averaged over recent blocks
        self._last: float | None = None
        self.refused = 0

    def on_commit(self, n_txs: int) -> None:
        """A block of ``n_txs`` committed."""
        now = self.clock()
        if self._last is not None and now > self._last:
            seen = n_txs / (now - self._last)
            self.rate = seen if not self.rate else 0.7 * self.rate + 0.3 * seen
        self._last = now

    def limit(self) -> int:
        """The backlog above which submissions are refused."""
        return max(self.floor, int(self.rate * self.target_s))

    def check(self, backlog: int, n_txs: int = 1) -> None:
        """Raise :class:`NodeBusy` (counting ``n_txs`` refused) while ``backlog`` is at or above the limit."""
        limit = self.limit()
        if backlog >= limit:
            self.refused += n_txs
            ahead = backlog / self.rate if self.rate else self.target_s
            raise NodeBusy(f"{backlog} transactions wait for a block (about {ahead:.1f} s at the chain's recent "
                           f"rate; the node admits more below {limit})",
                           round(min(max(ahead - self.target_s, 0.5), 5.0), 2))
