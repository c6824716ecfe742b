"""Transactions in and out of this node: local submission, admission bookkeeping, and where a tx ended up.

:class:`TxDesk` admits txs submitted here (by the API, the agent, the CLI) to the mempool and gossips them; it
is told of every admission (local or from gossip) and every committed block, and from that answers "where is my
tx": committed at a height, rejected with a reason, or still pending.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from bootstrap.errors import NodeBusy, NodeError, NodeNotRunning
from bootstrap.gossip import TOPIC_TX, TOPIC_TXS, split_tx_batches
from bootstrap.home import NODE_KEY
from bootstrap.txs.governor import CHUNK_TXS, DEFAULT_MAX_WAIT_S, AdmissionGovernor, BacklogGate
from ledger.chain import CommittedBlock
from ledger.errors import BadNonce, LedgerError
from ledger.mempool import Admission
from ledger.tx import Payload, SignedTx, decode_signed_tx, make_tx

log = logging.getLogger("bootstrap.node")

# How many committed tx ids (→ height) the node remembers for wait_for_tx after the fact.
TX_INDEX_SIZE = 200_000
REJECTED_KEPT = 10_000  # reasons remembered for txs that were dropped


class TxDesk:
    """One node's tx desk. ``node`` is the facade it reads (mempool, chain, keystore, config, events, counters,
    display ids); ``publish(topic, data)`` gossips and is None until the host runs."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.publish: Callable[[str, bytes], Awaitable[None]] | None = None
        self.heights: OrderedDict[bytes, int] = OrderedDict()
        self._waiters: dict[bytes, trio.Event] = {}
        self._rejected: OrderedDict[bytes, str] = OrderedDict()
        # Txs committed as failed (their fee paid, nothing else done): the error each receipt carries.
        self._failed: OrderedDict[bytes, str] = OrderedDict()
        # Waited-on txs that were in our mempool at some point: only those can be declared dropped.
        self._was_pending: set[bytes] = set()
        self.governor = AdmissionGovernor()
        config = getattr(node, "config", None)
        self.backlog = BacklogGate(max_wait_s=getattr(config, "max_backlog_s", DEFAULT_MAX_WAIT_S))

    def rejected_reason(self, tx_id: bytes) -> str | None:
        """Why a tx was dropped (one this node waited on) or failed in its block, if it was or did."""
        failed = self._failed.get(tx_id)
        if failed is not None:
            return f"failed in block {self.heights.get(tx_id, '?')}: {failed}"
        return self._rejected.get(tx_id)

    def _in_pool(self, tx_id: bytes) -> bool:
        mempool = self.node.mempool
        return mempool is not None and (tx_id in mempool or mempool.is_queued(tx_id))

    # ------------------------------------------------------------------------------------------- bookkeeping

    def note_admission(self, admission: Admission) -> None:
        """Bookkeeping for txs that became pending: waiters may now learn of a drop, watchers see them."""
        now_pending = admission.promoted if admission.queued else (admission.tx, *admission.promoted)
        if admission.queued and admission.tx.tx_id in self._waiters:
            self._was_pending.add(admission.tx.tx_id)
        for stx in now_pending:
            if stx.tx_id in self._waiters:
                self._was_pending.add(stx.tx_id)
            self.node.events.publish({"type": "tx", "tx_id": stx.tx_id.hex(), "kind": stx.kind,
                                      "status": "pending", "sender": self.node.display_id(stx.sender)})

    def on_commit(self, cb: CommittedBlock) -> None:
        """Index a committed block's txs, wake their waiters, and declare dropped what can no longer commit."""
        mempool = self.node.mempool
        assert mempool is not None
        block = cb.block
        height = block.height
        self.backlog.note_block(len(block.tx_ids))
        for tx_id in block.tx_ids:
            self.heights[tx_id] = height
            self._was_pending.discard(tx_id)
            ev = self._waiters.pop(tx_id, None)
            if ev is not None:
                ev.set()
        while len(self.heights) > TX_INDEX_SIZE:
            self.heights.popitem(last=False)
        for receipt in cb.receipts:
            if receipt.error is not None:
                self._failed[receipt.tx_id] = receipt.error
        while len(self._failed) > REJECTED_KEPT:
            self._failed.popitem(last=False)
        # Txs we are waiting on that the mempool dropped after this commit can no longer be included (the
        # mempool promoted queued txs whose turn came when the chain updated it).
        for tx_id in list(self._waiters):
            if tx_id in mempool or mempool.is_queued(tx_id):
                self._was_pending.add(tx_id)
            elif tx_id in self._was_pending:
                self._rejected[tx_id] = f"dropped from the mempool after height {height}: no longer valid"
                self._was_pending.discard(tx_id)
                self._waiters.pop(tx_id).set()
        while len(self._rejected) > REJECTED_KEPT:
            self._rejected.popitem(last=False)

    # ------------------------------------------------------------------------------------------- submission

    def _admit_local(self, stx: SignedTx) -> None:
        """Admit a tx submitted here (typed ledger errors if it is bad), without gossiping it yet."""
        mempool = self.node.mempool
        if mempool is None or self.publish is None:
            raise NodeNotRunning("the node is not running")
        admission = mempool.admit_tx(stx)  # decoded once, by the caller
        self.node.counters["txs_submitted"] += 1
        self.note_admission(admission)

    async def submit_tx(self, stx: SignedTx) -> str:
        """Admit a signed tx to the mempool (typed ledger errors if it is bad; ``NodeBusy`` while admission has
        used its share of the loop) and gossip it; its id in hex."""
        self._check_backlog(1)
        try:
            self.governor.check()
        except NodeBusy:
            self.node.counters["txs_refused_busy"] += 1
            raise
        t0 = time.perf_counter()
        try:
            self._admit_local(stx)
        finally:
            self.governor.charge(time.perf_counter() - t0)
        assert self.publish is not None
        await self.publish(TOPIC_TX, stx.encode())
        return stx.tx_id.hex()

    async def submit_txs(self, stxs: Sequence[SignedTx]) -> list[str | LedgerError | NodeBusy]:
        """``POST /txs``: admit each tx in order, then gossip the admitted ones as ``dacn/txs/1`` batches (split
        to the wire bounds). Per tx, its id in hex or the ledger error that refused it; one bad tx does not stop
        the rest. Admission goes in chunks with a yield to the loop between them, and once it has used its share
        of the loop (``governor``) the rest of the batch is refused as ``NodeBusy``, retryable, untouched."""
        if self.node.mempool is None or self.publish is None:
            raise NodeNotRunning("the node is not running")
        out: list[str | LedgerError | NodeBusy] = []
        admitted: list[bytes] = []
        for start in range(0, len(stxs), CHUNK_TXS):
            chunk = stxs[start:start + CHUNK_TXS]
            if start:
                await trio.sleep(0)  # consensus and gossip run between chunks
            try:
                self._check_backlog(len(stxs) - start)  # counted under txs_refused_backlog
                try:
                    self.governor.check(len(stxs) - start)
                except NodeBusy:
                    self.node.counters["txs_refused_busy"] += len(stxs) - start
                    raise
            except NodeBusy as busy:
                out.extend(busy for _ in stxs[start:])
                break
            t0 = time.perf_counter()
            for stx in chunk:
                try:
                    self._admit_local(stx)
                except LedgerError as exc:
                    out.append(exc)
                    continue
                out.append(stx.tx_id.hex())
                admitted.append(stx.encode())
            self.governor.charge(time.perf_counter() - t0)
        if admitted:
            batches = split_tx_batches(admitted)
            # Shielded: these txs are in our mempool already, and a client hanging up must not leave them
            # unannounced (publish waits at most the gossip forward timeout per peer).
            with trio.CancelScope(shield=True):
                for data in batches:
                    await self.publish(TOPIC_TXS, data)
            self.node.counters["tx_batches_out"] += len(batches)
            self.node.counters["tx_batch_txs_out"] += len(admitted)
        return out

    def _check_backlog(self, n_txs: int) -> None:
        """Refuse ``n_txs`` submitted txs (``NodeBusy``, counted) while the runnable txs waiting here already
        reach what the chain commits in ``max_backlog_s`` (``governor.BacklogGate``). Txs queued behind a nonce
        gap do not count: they cannot run before the tx that fills the gap, and refusing that tx because of them
        would keep them waiting for ever (the future queue has bounds of its own)."""
        mempool = self.node.mempool
        if mempool is None:
            return
        try:
            self.backlog.check(len(mempool), n_txs)
        except NodeBusy:
            self.node.counters["txs_refused_backlog"] += n_txs
            raise

    async def submit_raw_tx(self, raw: bytes) -> str:
        """``POST /tx``: an externally signed tx's bytes (decoded and checked like gossip)."""
        return await self.submit_tx(decode_signed_tx(raw))

    def next_nonce(self, account: bytes) -> int:
        """The nonce a new tx from ``account`` needs: committed nonce plus its pending txs here."""
        assert self.node.mempool is not None
        return self.node.mempool.next_nonce(account)

    async def sign_and_submit(self, key_name: str, payload: Payload, *, fee: int | None = None) -> str:
        """Sign ``payload`` with keystore key ``key_name`` (created on first use) at the next nonce, submit it."""
        stx = await self.sign_and_admit(key_name, payload, fee=fee)
        await self.publish_admitted(stx)
        return stx.tx_id.hex()

    async def sign_and_admit(self, key_name: str, payload: Payload, *, fee: int | None = None) -> SignedTx:
        """Sign ``payload`` as :meth:`sign_and_submit` does and admit it to the local mempool (typed ledger errors
        if it is refused), without gossiping it yet: the caller does what must come first, then
        :meth:`publish_admitted`."""
        node = self.node
        keystore, chain = node.keystore, node.chain
        if keystore is None or chain is None:
            raise NodeNotRunning("the node is not running")
        key = keystore.get_or_create(key_name) if key_name != NODE_KEY else keystore.load(NODE_KEY)
        account = bytes(key.verify_key)
        use_fee = max(node.state.params.min_fee, node.config.default_fee) if fee is None else fee
        for attempt in range(3):
            stx = make_tx(payload, key, chain.chain_id, nonce=self.next_nonce(account), fee=use_fee)
            try:
                self._admit_local(stx)
                return stx
            except BadNonce:
                # Another node used the same shared key (the devnet faucet) at this nonce; take the next one.
                if attempt == 2:
                    raise
                await trio.sleep(0)
        raise AssertionError("unreachable")

    async def publish_admitted(self, stx: SignedTx) -> None:
        """Gossip a tx already admitted here (see :meth:`sign_and_admit`)."""
        assert self.publish is not None
        await self.publish(TOPIC_TX, stx.encode())

    def _in_block(self, tx_id: bytes, tx_id_hex: str) -> dict[str, Any] | None:
        """``committed`` at its height, or ``failed`` there (in a block, its fee paid, nothing else done); None
        if this node has not indexed it in a block."""
        height = self.heights.get(tx_id)
        if height is None:
            return None
        if tx_id in self._failed:
            return {"status": "failed", "tx_id": tx_id_hex, "height": height, "reason": self._failed[tx_id]}
        return {"status": "committed", "tx_id": tx_id_hex, "height": height}

    def tx_status(self, tx_id_hex: str) -> dict[str, Any]:
        """Where a tx is now, as this node knows it: ``committed`` (at a height) or ``failed`` in its block (fee
        paid, nothing else done), ``pending`` (in the mempool, runnable), ``queued`` (its nonce is ahead: it waits
        for ``waiting_for_nonce``), ``dropped`` with the reason (evicted, superseded, no longer valid: the client
        may sign again and resubmit), or ``unknown`` (never seen here, or committed before the last
        ``TX_INDEX_SIZE`` txs)."""
        tx_id = _tx_id(tx_id_hex)
        out: dict[str, Any] = {"tx_id": tx_id_hex.lower()}
        mempool = self.node.mempool
        settled = self._in_block(tx_id, out["tx_id"])
        if settled is not None:
            return settled
        if mempool is not None:
            stx = mempool.txs.get(tx_id)
            if stx is not None:
                return {**out, "status": "pending", "sender": self.node.display_id(stx.sender), "nonce": stx.nonce,
                        "fee": stx.fee, "mempool_size": len(mempool)}
            stx = mempool.queued.get(tx_id)
            if stx is not None:
                return {**out, "status": "queued", "sender": self.node.display_id(stx.sender), "nonce": stx.nonce,
                        "fee": stx.fee, "waiting_for_nonce": mempool.next_nonce(stx.sender)}
            reason = mempool.gone_reason(tx_id)
            if reason is not None:
                return {**out, "status": "dropped", "reason": reason, "resubmit": True}
        reason = self._rejected.get(tx_id)
        if reason is not None:
            return {**out, "status": "dropped", "reason": reason, "resubmit": True}
        return {**out, "status": "unknown",
                "reason": f"not seen by this node, or committed before the last {TX_INDEX_SIZE} txs it indexes"}

    async def wait_for_tx(self, tx_id_hex: str, timeout: float) -> dict[str, Any]:
        """Wait until the tx is committed (or known rejected), at most ``timeout`` seconds."""
        tx_id = _tx_id(tx_id_hex)
        ev: trio.Event | None = None
        if tx_id not in self.heights and tx_id not in self._rejected:
            ev = self._waiters.setdefault(tx_id, trio.Event())
            if self._in_pool(tx_id):
                self._was_pending.add(tx_id)
            with trio.move_on_after(timeout):
                await ev.wait()
        settled = self._in_block(tx_id, tx_id_hex)
        if settled is not None:
            return settled
        if tx_id in self._rejected:
            return {"status": "rejected", "tx_id": tx_id_hex, "reason": self._rejected[tx_id]}
        in_pool = self._in_pool(tx_id)
        if ev is not None and self._waiters.get(tx_id) is ev and not in_pool:
            del self._waiters[tx_id]  # nobody waits any more (another waiter re-adds it)
            self._was_pending.discard(tx_id)
        return {"status": "pending", "tx_id": tx_id_hex, "in_mempool": in_pool}


def _tx_id(text: str) -> bytes:
    """32 bytes from a tx id's 64 hex characters, or a typed error naming what was given."""
    try:
        tx_id = bytes.fromhex(text)
    except ValueError:
        raise NodeError(f"tx id must be 64 hex characters, got {text!r:.80}") from None
    if len(tx_id) != 32:
        raise NodeError(f"tx id must be 64 hex characters, got {text!r:.80}")
    return tx_id

