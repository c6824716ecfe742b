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
