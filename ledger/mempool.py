"""The mempool: admitted transactions waiting for a block, bounded, deduplicated and ordered by fee then nonce.

Admission decodes the bytes, verifies the signature once (the tx id goes into ``verified`` so block execution
skips the check), and checks chain id, nonce, fee and balance against the committed state plus the sender's
pending txs. A sender's pending nonces are always contiguous from its state nonce, so every pending tx can run
once its predecessors have.

Bounds and eviction: at most ``max_txs`` txs and ``max_bytes`` bytes. When a newcomer does not fit, the cheapest
*last* pending tx of any sender (the tail of a nonce run, so no gap opens) is evicted if its fee is strictly lower
than the newcomer's, repeatedly until the newcomer fits; otherwise the newcomer is refused with
:class:`MempoolFull`. After each commit, :meth:`Mempool.update` drops included and stale txs and re-checks the
rest against the new state.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import BadNonce, FeeTooLow, InsufficientFunds, InvalidTx, LedgerError
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


class Mempool:
    """Pending transactions for one node, checked against ``state`` (the last committed state)."""

    def __init__(self, chain_id: str, state: State, config: MempoolConfig | None = None) -> None:
        self.chain_id = chain_id
        self.state = state
        self.config = config or MempoolConfig()
        self.txs: dict[bytes, SignedTx] = {}
        self.by_sender: dict[AccountId, list[SignedTx]] = {}
        self.bytes = 0
        self.verified: OrderedDict[bytes, None] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.txs)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self.txs

    # ---------------------------------------------------------------------------------------- admission

    def add(self, raw: bytes) -> SignedTx:
        """Admit one encoded signed tx; raises ``DecodeError``, an ``InvalidTx`` subclass or a ``MempoolError``."""
        if len(raw) > MAX_TX_BYTES:
            raise TxTooLarge(len(raw), MAX_TX_BYTES)
        stx = decode_signed_tx(raw)
        if stx.tx_id in self.txs:
            raise AlreadyInMempool(stx.tx_id)
        if stx.tx_id not in self.verified:
            verify_tx_signature(stx, self.chain_id)  # the chain id is part of the signed message
            self._remember_verified(stx.tx_id)
        pending = self.by_sender.get(stx.sender, [])
        expected = self.state.nonce(stx.sender) + len(pending)
        if stx.nonce != expected:
            raise BadNonce(stx.sender, expected, stx.nonce)
        if stx.fee < self.state.params.min_fee:
            raise FeeTooLow(self.state.params.min_fee, stx.fee)
        check_tx(self.state, stx)
        # Fees of the sender's pending txs come out of the same balance before this one runs.
        needed = sum(t.fee for t in pending) + stx.fee
        if needed > self.state.balance(stx.sender):
            raise InsufficientFunds(stx.sender, needed, self.state.balance(stx.sender))
        self._make_room(stx, len(raw))
        self._insert(stx)
        return stx

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
            self.evicted += 1

    def _insert(self, stx: SignedTx) -> None:
        self.txs[stx.tx_id] = stx
        self.by_sender.setdefault(stx.sender, []).append(stx)
        self.bytes += len(stx.encode())

    def _remove_tail(self, sender: AccountId) -> None:
        q = self.by_sender[sender]
        stx = q.pop()
        if not q:
            del self.by_sender[sender]
        del self.txs[stx.tx_id]
        self.bytes -= len(stx.encode())

    # ------------------------------------------------------------------------------------------ reaping

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

    def update(self, state: State, committed: Iterable[bytes] = ()) -> int:
        """Adopt the new committed state: drop included txs and re-check the rest. Returns how many were dropped."""
        self.state = state
        before = len(self.txs)
        for tx_id in committed:
            self.verified.pop(tx_id, None)
        for sender in list(self.by_sender):
            q = self.by_sender.pop(sender)
            for stx in q:
                del self.txs[stx.tx_id]
                self.bytes -= len(stx.encode())
            nonce = state.nonce(sender)
            fees = 0
            for stx in q:
                if stx.nonce < nonce:
                    continue
                if stx.nonce != nonce + len(self.by_sender.get(sender, [])):
                    break
                fees += stx.fee
                try:
                    check_tx(state, stx)
                except InvalidTx:
                    break
                if fees > state.balance(sender):
                    break
                self._insert(stx)
        return before - len(self.txs)
