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
from collections import deque
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


DEFAULT_MAX_WAIT_S = 1.5
"""``max_backlog_s``'s default: at 4× the peak it held admitted txs' p99 to 3.7–4.4 s where 2.5 s gave 3.1–6.7 s,
and committed as much (bench/results/overload_ladder.md, both routings, 2026-12-08)."""


class BacklogGate:
    """Admission control by expected wait (Little's law): refuse new submissions while the txs already waiting
    here would take more than ``max_wait_s`` to commit at the rate the chain has been committing.

    Past capacity the mempool fills far beyond what the next blocks can hold, and every tx admitted then waits
    for all of those ahead of it: at 4× the peak, admitted txs waited 6.6 s at p99 with no tx refused. A refusal
    here is a retryable 429 with ``Retry-After`` (``NodeBusy``), and a client that honours it loses nothing;
    a tx admitted is one the chain is expected to commit within about ``max_wait_s`` plus a block. Each node's
    mempool holds the network's pending txs (gossip), so the gate is the same at every node. The agent's own txs
    (commits, reveals) do not pass here: the ledger slashes them when late.

    The rate is the committed txs over the last ``WINDOW`` blocks divided by the time they took; ``floor`` keeps
    room for a burst before any rate is known and while blocks are small."""

    WINDOW = 8

    def __init__(self, max_wait_s: float = DEFAULT_MAX_WAIT_S, floor: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_wait_s < 0 or floor < 1:
            raise ValueError(f"backlog wait must be >= 0 s and the floor positive, got {max_wait_s}, {floor}")
        self.max_wait_s, self.floor, self.clock = max_wait_s, floor, clock
        self._blocks: deque[tuple[float, int]] = deque(maxlen=self.WINDOW + 1)  # (time seen, txs in it)
        self.refused = 0

    def note_block(self, n_txs: int) -> None:
        """A block with ``n_txs`` txs committed now."""
        self._blocks.append((self.clock(), n_txs))

    def rate(self) -> float | None:
        """Committed txs per second over the last blocks (None until two blocks were seen)."""
        if len(self._blocks) < 2:
            return None
        span = self._blocks[-1][0] - self._blocks[0][0]
        txs = sum(n for _, n in list(self._blocks)[1:])
        return txs / span if span > 0 else None

    def limit(self) -> int | None:
        """How many txs may wait here before submissions are refused (None: no limit, the gate is off)."""
        if not self.max_wait_s:
            return None
        rate = self.rate()
        return self.floor if rate is None else max(self.floor, int(rate * self.max_wait_s))

    def check(self, waiting: int, n_txs: int = 1) -> None:
        """Raise :class:`NodeBusy` (and count ``n_txs`` refused) while ``waiting`` txs already reach the limit."""
        limit = self.limit()
        if limit is None or waiting < limit:
            return
        self.refused += n_txs
        rate = max(self.rate() or limit / max(self.max_wait_s, 1e-3), 1.0)  # none yet, or empty blocks
        wait = (waiting - limit) / rate + 0.25  # until the excess has committed
        raise NodeBusy(f"{waiting} txs already wait for a block, about {waiting / rate:.1f} s of the chain's "
                       f"recent rate", round(min(max(wait, 0.25), 5.0), 2))
