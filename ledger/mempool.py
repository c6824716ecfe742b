"""The mempool: admitted transactions waiting for a block, bounded, deduplicated and ordered by fee then nonce.

Admission decodes the bytes, verifies the signature once (the tx id goes into ``verified`` so block execution
skips the check), and checks chain id, nonce, fee and balance against the committed state plus the sender's
pending txs. A sender's pending nonces are always contiguous from its state nonce, so every pending tx can run
once its predecessors have.

Bounds and eviction: at most ``max_txs`` txs and ``max_bytes`` bytes. When a newcomer does not fit, the cheapest
*last* pending tx of any sender (the tail of a nonce run, so no gap opens) is evicted if its fee is strictly lower
than the newcomer's, repeatedly until the newcomer fits; otherwise the newcomer is refused with
:class:`MempoolFull`. After each commit, :meth:`Mempool.update` drops included and stale txs and re-checks the
rest against the new state: only the senders whose accounts the block wrote, when the chain says which, and a
sender whose balance covers all its pending fees and spends at once without looking at each tx.

High-water marks (``high_water_permille`` of each bound): above them a newcomer that could not displace
anything (a pending tx paying no more than the cheapest pending tail, a queued tx no closer to its turn than the
farthest queued) is refused with the same back-pressure errors before its signature is checked, and so is
whatever the state alone refuses (stale nonce, low fee, a balance that cannot pay): a flood of junk or of txs
beyond capacity costs a lookup per tx, not a signature verification. Both refusals are counted.

Early nonces: gossip can reorder a sender's txs (a relayed copy overtakes the direct one), so a tx whose nonce is
ahead of the sender's next one waits in a per-sender *future queue* instead of being refused. It is checked
like any other (signature, chain id, fee, nonce not in the past, balance against the committed state) and
promoted into the pending txs as soon as its turn comes: when the missing nonce is admitted, or when
:meth:`Mempool.update` adopts a state that moved the sender's nonce on. Bounds: a tx may be at most
``future_window`` nonces ahead of its sender's next one (further raises :class:`BadNonce`, as does a nonce below
the state's), so no sender queues more than that; in all at most ``max_future_txs`` txs and ``max_future_bytes``
bytes wait. When a newcomer does not fit, the queued tx farthest ahead of its sender's next nonce (the one least
likely to become runnable soon; ties: lower fee, then higher tx id) is evicted if the newcomer is strictly
closer to its turn, repeatedly until it fits; otherwise the newcomer is refused with :class:`FutureQueueFull`.
Every eviction and every queued tx dropped (superseded by another tx for its nonce, or invalid when its turn
came) is counted, and the last ``gone_kept`` txs that left without being included are remembered with the reason
(:meth:`Mempool.gone_reason`), so a client can learn that its tx was dropped and why, and resubmit.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledger.errors import BadNonce, InsufficientFunds, InvalidTx, LedgerError
from ledger.rules import check_tx
from ledger.state import State
from ledger.tx import MAX_TX_BYTES, SignedTx, decode_signed_tx, verify_tx_signature
from ledger.types import AccountId


class MempoolError(LedgerError):
    """Root of mempool refusals that are not the transaction's own fault."""


class AlreadyInMempool(MempoolError):
    def __init__(self, tx_id: bytes) -> None:
        super().__init__(f"tx {tx_id.hex()[:16]} is already in the mempool")
        self.tx_id = tx_id


class MempoolFull(MempoolError):
    """No room, and nothing cheaper than the newcomer could be evicted."""

    def __init__(self, what: str, limit: int, fee: int) -> None:
        super().__init__(f"mempool {what} limit {limit} reached and no pending tx pays less than fee {fee}")
        self.what, self.limit, self.fee = what, limit, fee


class FutureQueueFull(MempoolError):
    """The future-nonce queue is at its bound and no queued tx is farther from its turn than the newcomer."""

    def __init__(self, what: str, limit: int, gap: int) -> None:
        super().__init__(f"future-nonce queue {what} limit {limit} reached and no queued tx is more than {gap} "
                         f"nonces ahead")
        self.what, self.limit, self.gap = what, limit, gap


class NonceQueued(MempoolError):
    """Another tx of this sender already waits in the future queue for this nonce (the first one stays)."""

    def __init__(self, account: AccountId, nonce: int, queued_tx_id: bytes) -> None:
        super().__init__(f"account {account.hex()[:16]}: tx {queued_tx_id.hex()[:16]} already waits for nonce "
                         f"{nonce}")
        self.account, self.nonce, self.queued_tx_id = account, nonce, queued_tx_id


class TxTooLarge(MempoolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"tx of {size} bytes exceeds {limit}")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class MempoolConfig:
    max_txs: int = 50_000
    max_bytes: int = 64 * 1024 * 1024
    # Remembered verified signatures (tx ids); a bounded LRU so a flood cannot grow it without limit.
    max_verified: int = 200_000
    # The future-nonce queue: how far ahead of a sender's next nonce a tx may wait, and the bounds on all queued.
    future_window: int = 4096
    max_future_txs: int = 20_000
    max_future_bytes: int = 32 * 1024 * 1024
    # The high-water mark, in parts per thousand of each bound: above it, a newcomer that could not displace
    # anything is refused before its signature is checked (see ``Mempool.admit_tx``).
    high_water_permille: int = 900
    # Txs that left without being included, remembered with why (a reason string shared by all): bounded memory.
    gone_kept: int = 50_000


@dataclass(frozen=True)
class Admission:
    """What :meth:`Mempool.admit` did with a tx: ``queued`` (its nonce is ahead) or admitted as pending, and the
    sender's queued txs that its admission promoted to pending, in nonce order."""

    tx: SignedTx
    queued: bool
    promoted: tuple[SignedTx, ...] = ()


EVICTED = "evicted: the mempool was full and a tx paying a higher fee needed the room"
EVICTED_QUEUED = "evicted from the future-nonce queue by a tx closer to its turn (the queue was full)"
SUPERSEDED = "superseded: another tx with the same sender and nonce was committed"
STALE = "no longer valid against the committed state (its sender's nonce, balance or a fee it must pay changed)"
INVALID_AT_TURN = "invalid when its nonce's turn came (the committed state no longer allows it)"


class Mempool:
    """Pending transactions for one node, checked against ``state`` (the last committed state)."""

    def __init__(self, chain_id: str, state: State, config: MempoolConfig | None = None) -> None:
        self.chain_id = chain_id
        self.state = state
        self.config = config or MempoolConfig()
        self.txs: dict[bytes, SignedTx] = {}
        self.by_sender: dict[AccountId, list[SignedTx]] = {}
        # The sum of each sender's pending fees, kept with ``by_sender`` (summing per admission was quadratic).
        self.pending_fees: dict[AccountId, int] = {}
        # The sum of each sender's pending fees and spends: when the balance covers it, every pending tx of the
        # sender passes ``check_tx`` and the fees together are covered, so ``update`` need not look at each.
        self.pending_cost: dict[AccountId, int] = {}
        self.bytes = 0
        self.verified: OrderedDict[bytes, None] = OrderedDict()
        self.evicted = 0
        # The future-nonce queue: sender -> nonce -> tx, and every queued tx by id.
        self.future: dict[AccountId, dict[int, SignedTx]] = {}
        self.queued: dict[bytes, SignedTx] = {}
        self.queued_bytes = 0
        # Eviction candidates, farthest first: (-gap when pushed, fee, inverted tx id, tx id). Lazy: an entry whose
        # tx left the queue is skipped, one whose gap shrank (its sender's next nonce moved on) is pushed again.
        self._far: list[tuple[int, int, int, bytes]] = []
        self._far_stale = False  # some sender's next nonce went down: queued gaps grew, rebuild before use
        self.queued_evicted = 0  # pushed out of a full queue by a tx closer to its turn
        self.queued_dropped = 0  # superseded by another tx for the same nonce, or invalid when its turn came
        self.promoted = 0
        # Refused before the signature check: cheap state checks (stale nonce, fee, balance) and the high-water
        # marks. A flood of junk costs a dictionary lookup per tx, not an ed25519 verification.
        self.refused_cheap = 0
        self.refused_high_water = 0
        # A lower bound on the cheapest pending tail fee (None: unknown, computed on demand), kept so the
        # high-water check need not scan every sender.
        self._floor: int | None = None
        self.gone: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self.txs)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self.txs

    def get(self, tx_id: bytes) -> SignedTx | None:
        """The decoded tx with this id, pending or queued, if this mempool holds it (block execution reuses it)."""
        stx = self.txs.get(tx_id)
        return stx if stx is not None else self.queued.get(tx_id)

    # ---------------------------------------------------------------------------------------- admission

    def add(self, raw: bytes) -> SignedTx:
        """Admit one encoded signed tx (pending, or queued when its nonce is ahead); raises ``DecodeError``, an
        ``InvalidTx`` subclass or a ``MempoolError``. :meth:`admit` also says what happened."""
        return self.admit(raw).tx

    def admit(self, raw: bytes) -> Admission:
        """Check one encoded signed tx and admit it as pending or queue it; see the module docstring."""
        if len(raw) > MAX_TX_BYTES:
            raise TxTooLarge(len(raw), MAX_TX_BYTES)
        return self.admit_tx(decode_signed_tx(raw))

    def admit_tx(self, stx: SignedTx, *, expected: int | None = None) -> Admission:
        """:meth:`admit` for a tx already decoded (``decode_signed_tx`` or ``sign_tx``): the API decodes what it
        is posted to answer decode errors itself, so decoding the bytes again here was pure waste. ``expected``
        is what :meth:`precheck` of this very tx just returned, with nothing admitted or executed since (a
        relayer that triaged it first): the precheck is then not run a second time."""
        raw = stx.encode()
        if len(raw) > MAX_TX_BYTES:
            raise TxTooLarge(len(raw), MAX_TX_BYTES)
        if expected is None:
            expected = self.precheck(stx, len(raw))
        self.check_signature(stx)
        if stx.nonce > expected:
            self._queue(stx, expected, len(raw))
            return Admission(stx, queued=True)
        if stx.nonce != expected:
            raise BadNonce(stx.sender, expected, stx.nonce)
        self._check_pending(stx, len(raw), prechecked=True)
        self._insert(stx)
        return Admission(stx, queued=False, promoted=tuple(self._promote(stx.sender)))

    def precheck(self, stx: SignedTx, size: int | None = None) -> int:
        """What admission refuses without a signature check, in the same errors: a tx already here, what the
        state alone refuses (stale nonce, low fee, a balance that cannot pay), and a full pool (the high-water
        marks). Returns the sender's next nonce. A relayer of a batch runs this on each tx before it checks any
        signature, so a flood of junk or of txs beyond capacity costs no verification."""
        if stx.tx_id in self.txs or stx.tx_id in self.queued:
            raise AlreadyInMempool(stx.tx_id)
        expected = self.next_nonce(stx.sender)
        try:
            check_tx(self.state, stx)
        except InvalidTx:
            self.refused_cheap += 1
            raise
        self._check_high_water(stx, expected, len(stx.encode()) if size is None else size)
        return expected

    def check_signature(self, stx: SignedTx) -> None:
        """Verify the tx's signature (raises ``BadSignature``) unless this mempool already did; remembered, so
        neither its admission nor its block's execution verifies it again. A batch relayer checks a whole batch's
        signatures with this before admitting any of it."""
        if stx.tx_id not in self.verified:
            verify_tx_signature(stx, self.chain_id)  # the chain id is part of the signed message
            self._remember_verified(stx.tx_id)

    def next_nonce(self, sender: AccountId) -> int:
        """The nonce the sender's next pending tx needs: the state's nonce plus its pending txs."""
        return self.state.nonce(sender) + len(self.by_sender.get(sender, ()))

    def gone_reason(self, tx_id: bytes) -> str | None:
        """Why a tx this mempool held left without being included (one of the last ``gone_kept``), if it did."""
        return self.gone.get(tx_id)

    def _note_gone(self, tx_id: bytes, reason: str) -> None:
        gone = self.gone
        gone[tx_id] = reason
        if len(gone) > self.config.gone_kept:
            gone.popitem(last=False)

    def is_queued(self, tx_id: bytes) -> bool:
        """Whether ``tx_id`` waits in the future-nonce queue (``tx_id in mempool`` covers only pending txs)."""
        return tx_id in self.queued

    def _check_pending(self, stx: SignedTx, size: int, *, prechecked: bool = False) -> None:
        """The checks for the sender's next tx, and room for it (evicting cheaper tails if need be).
        ``prechecked``: :meth:`precheck` just ran ``check_tx`` on this tx against the same state (admission), so
        only what it does not cover is checked (a queued tx promoted later is checked in full)."""
        if not prechecked:
            check_tx(self.state, stx)  # the fee floor, a nonce not in the past, and the balance on its own
        # Fees of the sender's pending txs come out of the same balance before this one runs.
        needed = self.pending_fees.get(stx.sender, 0) + stx.fee
        if needed > self.state.balance(stx.sender):
            raise InsufficientFunds(stx.sender, needed, self.state.balance(stx.sender))
        self._make_room(stx, size)

    def _check_high_water(self, stx: SignedTx, expected: int, size: int) -> None:
        """Above the high-water mark, refuse a tx that could not displace anything, before its signature is
        checked: for a pending tx one paying no more than the cheapest pending tail, for a queued one a tx no
        closer to its turn than the farthest queued. Between the mark and the bound such a tx would still fit,
        but the room is kept for txs that pay more (and for txs other nodes already accepted, arriving by
        gossip, which pay more or come first); a refusal is back-pressure, answered with "retry later"."""
        cfg = self.config
        if stx.nonce < expected:
            return  # one of the sender's pending nonces: refused as BadNonce, not as back-pressure
        if stx.nonce > expected:
            gap = stx.nonce - expected
            if not (len(self.queued) * 1000 >= cfg.max_future_txs * cfg.high_water_permille
                    or (self.queued_bytes + size) * 1000 > cfg.max_future_bytes * cfg.high_water_permille):
                return
            far = self._farthest_queued()
            if far is None or far[0] <= gap:
                self.refused_high_water += 1
                if len(self.queued) + 1 > cfg.max_future_txs:
                    raise FutureQueueFull("count", cfg.max_future_txs, gap)
                if self.queued_bytes + size > cfg.max_future_bytes:
                    raise FutureQueueFull("bytes", cfg.max_future_bytes, gap)
                raise FutureQueueFull("high-water", cfg.max_future_txs * cfg.high_water_permille // 1000, gap)
            return
        if not (len(self.txs) * 1000 >= cfg.max_txs * cfg.high_water_permille
                or (self.bytes + size) * 1000 > cfg.max_bytes * cfg.high_water_permille):
            return
        if self._floor is None:
            self._floor = min((q[-1].fee for q in self.by_sender.values() if q), default=None)
        if self._floor is not None and stx.fee <= self._floor:
            self.refused_high_water += 1
            if len(self.txs) + 1 > cfg.max_txs:
                raise MempoolFull("count", cfg.max_txs, stx.fee)
            if self.bytes + size > cfg.max_bytes:
                raise MempoolFull("bytes", cfg.max_bytes, stx.fee)
            raise MempoolFull("high-water", cfg.max_txs * cfg.high_water_permille // 1000, stx.fee)

    def _remember_verified(self, tx_id: bytes) -> None:
        self.verified[tx_id] = None
        self.verified.move_to_end(tx_id)
        while len(self.verified) > self.config.max_verified:
            self.verified.popitem(last=False)

    def _make_room(self, stx: SignedTx, size: int) -> None:
        cfg = self.config
        while len(self.txs) + 1 > cfg.max_txs or self.bytes + size > cfg.max_bytes:
            what, limit = ("count", cfg.max_txs) if len(self.txs) + 1 > cfg.max_txs else ("bytes", cfg.max_bytes)
            victim = min(
                (q[-1] for s, q in self.by_sender.items() if q and s != stx.sender),
                key=lambda t: (t.fee, t.tx_id),
                default=None,
            )
            if victim is None or victim.fee >= stx.fee:
                raise MempoolFull(what, limit, stx.fee)
            self._remove_tail(victim.sender)
            self._note_gone(victim.tx_id, EVICTED)
            self._far_stale |= victim.sender in self.future
            self.evicted += 1

    def _insert(self, stx: SignedTx) -> None:
        if self._floor is not None and stx.fee < self._floor:
            self._floor = stx.fee
        self.txs[stx.tx_id] = stx
        self.by_sender.setdefault(stx.sender, []).append(stx)
        self.pending_fees[stx.sender] = self.pending_fees.get(stx.sender, 0) + stx.fee
        self.pending_cost[stx.sender] = self.pending_cost.get(stx.sender, 0) + _cost(stx)
        self.bytes += len(stx.encode())

    def _remove_tail(self, sender: AccountId) -> None:
        q = self.by_sender[sender]
        stx = q.pop()
        if not q:
            del self.by_sender[sender]
            del self.pending_fees[sender]
            del self.pending_cost[sender]
        else:
            self.pending_fees[sender] -= stx.fee
            self.pending_cost[sender] -= _cost(stx)
            if self._floor is not None and q[-1].fee < self._floor:
                self._floor = q[-1].fee  # the sender's new tail is cheaper than the floor we knew
        del self.txs[stx.tx_id]
        self.bytes -= len(stx.encode())

    # ------------------------------------------------------------------------------------------ reaping

    def iter_reap(self) -> Iterator[SignedTx]:
        """Every pending tx in block order, lazily: highest fee first among each sender's next tx, nonce order
        within a sender. The mempool must not change while the iterator is in use."""
        heap: list[tuple[int, int, bytes, AccountId, int]] = []
        for sender, q in self.by_sender.items():
            heapq.heappush(heap, (-q[0].fee, q[0].nonce, q[0].tx_id, sender, 0))
        while heap:
            _, _, _, sender, i = heapq.heappop(heap)
            q = self.by_sender[sender]
            yield q[i]
            if i + 1 < len(q):
                nxt = q[i + 1]
                heapq.heappush(heap, (-nxt.fee, nxt.nonce, nxt.tx_id, sender, i + 1))

    def reap(self, max_txs: int, max_bytes: int) -> list[SignedTx]:
        """Txs for a block: highest fee first among each sender's next tx, nonce order within a sender."""
        heap: list[tuple[int, int, bytes, AccountId, int]] = []
        for sender, q in self.by_sender.items():
            heapq.heappush(heap, (-q[0].fee, q[0].nonce, q[0].tx_id, sender, 0))
        out: list[SignedTx] = []
        size = 0
        while heap and len(out) < max_txs:
            _, _, _, sender, i = heapq.heappop(heap)
            stx = self.by_sender[sender][i]
            n = len(stx.encode())
            if size + n > max_bytes:
                continue  # this sender's later txs cannot go in without this one
            out.append(stx)
            size += n
            q = self.by_sender[sender]
            if i + 1 < len(q):
                nxt = q[i + 1]
                heapq.heappush(heap, (-nxt.fee, nxt.nonce, nxt.tx_id, sender, i + 1))
        return out

    # ------------------------------------------------------------------------------------- after commit

    def update(self, state: State, committed: Iterable[bytes] = (), touched: Iterable[AccountId] | None = None) -> int:
        """Adopt the new committed state: drop included txs, re-check the rest, promote queued txs whose turn
        came. Returns how many pending txs were dropped.

        ``touched``: every account whose record changed since the last update (the block's writes), when the
        caller knows them and ``state`` is the object this mempool already holds, mutated in place. A sender not
        among them has the nonce and balance its pending txs were checked against (and the params are the same),
        so only touched senders are re-checked. ``None``: unknown, every sender is."""
        if touched is None or state is not self.state:
            senders: Iterable[AccountId] = list(self.by_sender)
        else:
            senders = [a for a in set(touched) if a in self.by_sender]
        self.state = state
        self._floor = None  # tails changed (included, dropped): recomputed when the high-water check needs it
        before = len(self.txs)
        included = set(committed)
        for tx_id in included:
            self.verified.pop(tx_id, None)
        gaps_grew = False  # a sender's next nonce went down (pending txs invalidated): queued gaps grew
        for sender in senders:
            q = self.by_sender[sender]
            old_next = q[-1].nonce + 1
            nonce, balance = state.nonce(sender), state.balance(sender)
            # Survivors are q[first:keep]: after the txs the block included (nonces below the state's), the
            # run that still holds (contiguous nonces, each tx valid, the fees together covered). They stay
            # where they are: re-inserting every pending tx after every block was most of this method's cost.
            first, cost, fees = 0, self.pending_cost[sender], self.pending_fees[sender]
            while first < len(q) and q[first].nonce < nonce:
                cost -= _cost(q[first])
                fees -= q[first].fee
                first += 1
            if first == len(q) or (q[first].nonce == nonce and cost <= balance):
                # Pending nonces are contiguous, and a balance that covers every fee and spend at once covers
                # each tx's and the fees together (each fee met the same min_fee at admission): all hold.
                keep, kept_fees, kept_cost = len(q), fees, cost
            else:
                keep, fees, kept_fees, kept_cost = first, 0, 0, 0
                for stx in q[first:]:
                    if stx.nonce != nonce + (keep - first):
                        break
                    fees += stx.fee
                    try:
                        check_tx(state, stx)
                    except InvalidTx:
                        break
                    if fees > balance:
                        break
                    kept_fees = fees
                    kept_cost += _cost(stx)
                    keep += 1
            if first == 0 and keep == len(q):
                continue  # nothing of this sender's was included or went stale
            for stx in q[:first] + q[keep:]:
                del self.txs[stx.tx_id]
                self.bytes -= len(stx.encode())
            for stx in q[:first]:
                if stx.tx_id not in included:
                    self._note_gone(stx.tx_id, SUPERSEDED)
            for stx in q[keep:]:
                self._note_gone(stx.tx_id, STALE)
            if keep > first:
                self.by_sender[sender] = q[first:keep]
                self.pending_fees[sender] = kept_fees
                self.pending_cost[sender] = kept_cost
            else:
                del self.by_sender[sender]
                del self.pending_fees[sender]
                del self.pending_cost[sender]
            gaps_grew |= sender in self.future and self.next_nonce(sender) < old_next
        dropped = before - len(self.txs)
        self._far_stale |= gaps_grew
        for sender in list(self.future):
            self._promote(sender, included)
        return dropped

    # ------------------------------------------------------------------------------- future-nonce queue

    def _queue(self, stx: SignedTx, expected: int, size: int) -> None:
        """Keep a tx whose nonce is ahead of the sender's next one until its turn."""
        gap = stx.nonce - expected
        if gap > self.config.future_window:
            raise BadNonce(stx.sender, expected, stx.nonce)
        waiting = self.future.get(stx.sender, {}).get(stx.nonce)
        if waiting is not None:
            raise NonceQueued(stx.sender, stx.nonce, waiting.tx_id)
        # The fee floor, a nonce not in the past and a balance that covers the tx on its own today were checked
        # by the precheck that admission runs just before (check_tx).
        self._make_future_room(stx, gap, size)
        self.future.setdefault(stx.sender, {})[stx.nonce] = stx
        self.queued[stx.tx_id] = stx
        self.queued_bytes += size
        heapq.heappush(self._far, (-gap, stx.fee, _inverted(stx.tx_id), stx.tx_id))
        if len(self._far) > 2 * len(self.queued) + 64:
            self._rebuild_far()  # mostly entries of txs that left the queue

    def _make_future_room(self, stx: SignedTx, gap: int, size: int) -> None:
        cfg = self.config
        while len(self.queued) + 1 > cfg.max_future_txs or self.queued_bytes + size > cfg.max_future_bytes:
            what, limit = (("count", cfg.max_future_txs) if len(self.queued) + 1 > cfg.max_future_txs
                           else ("bytes", cfg.max_future_bytes))
            victim = self._farthest_queued()
            if victim is None or victim[0] <= gap:
                raise FutureQueueFull(what, limit, gap)
            self._unqueue(victim[1])
            self._note_gone(victim[1].tx_id, EVICTED_QUEUED)
            self.queued_evicted += 1

    def _farthest_queued(self) -> tuple[int, SignedTx] | None:
        """The queued tx farthest ahead of its sender's next nonce (ties: lower fee, then higher tx id)."""
        if self._far_stale:
            self._rebuild_far()
        far = self._far
        while far:
            neg_gap, fee, inverted, tx_id = far[0]
            stx = self.queued.get(tx_id)
            if stx is None:
                heapq.heappop(far)
                continue
            gap = stx.nonce - self.next_nonce(stx.sender)
            if gap == -neg_gap:
                return gap, stx  # every other entry's gap is at most what it was pushed with, so none is farther
            heapq.heapreplace(far, (-gap, fee, inverted, tx_id))
        return None

    def _rebuild_far(self) -> None:
        self._far_stale = False
        self._far = [(-(t.nonce - self.next_nonce(t.sender)), t.fee, _inverted(t.tx_id), t.tx_id)
                     for t in self.queued.values()]
        heapq.heapify(self._far)

    def _unqueue(self, stx: SignedTx) -> None:
        q = self.future[stx.sender]
        del q[stx.nonce]
        if not q:
            del self.future[stx.sender]
        del self.queued[stx.tx_id]
        self.queued_bytes -= len(stx.encode())

    def _promote(self, sender: AccountId, included: set[bytes] | frozenset[bytes] = frozenset()) -> list[SignedTx]:
        """Move the sender's queued txs whose turn has come into the pending txs, in nonce order.

        Queued txs below the sender's next nonce lost their turn to another tx (or were included in a block:
        those are not counted as dropped). A queued tx that fails its checks when its turn comes is dropped; one
        that finds the pool full stays queued for the next try.
        """
        out: list[SignedTx] = []
        q = self.future.get(sender)
        if not q:
            return out
        expected = self.next_nonce(sender)
        # Once, not per promoted tx: each promotion moves the next nonce on by one, past the tx it took out of
        # the queue, so no other queued nonce falls behind (making room evicts only other senders' tails).
        for nonce in [n for n in q if n < expected]:
            stale = q[nonce]
            self._unqueue(stale)
            if stale.tx_id not in included:
                self.queued_dropped += 1
                self._note_gone(stale.tx_id, SUPERSEDED)
        q = self.future.get(sender)
        while q:
            stx = q.get(expected)
            if stx is None:
                break
            try:
                self._check_pending(stx, len(stx.encode()))
            except MempoolError:
                break
            except InvalidTx:
                self._unqueue(stx)
                self.queued_dropped += 1
                self._note_gone(stx.tx_id, INVALID_AT_TURN)
                break
            self._unqueue(stx)
            self._insert(stx)
            self.promoted += 1
            out.append(stx)
            expected += 1
            q = self.future.get(sender)
        return out


def _cost(stx: SignedTx) -> int:
    """What the tx takes from its sender's balance: the fee and the payload's spend (``check_tx``'s need)."""
    return stx.fee + stx.payload.spend()


def _inverted(tx_id: bytes) -> int:
    """A key that sorts tx ids (all 32 bytes) from highest to lowest; an int, not a byte-by-byte generator, since
    every queued tx needs one."""
    return -int.from_bytes(tx_id, "big")
