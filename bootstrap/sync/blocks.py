"""Block sync: serving this node's status and blocks to peers, and catching up from the highest peer.

:class:`BlockSync` answers ``/dacn/status/1`` (height, head hash, state root) and ``/dacn/sync/1``
(``GetBlocks`` → blocks with their commits) and runs the catch-up loop: when consensus says the node is behind,
and every ``interval_s`` anyway, it asks peers for their heights and fetches what it lacks from the highest,
handing each batch to the consensus driver, which checks the commits before applying anything.

A peer serves blocks from its ``first_height`` on (above 1 when it pruned older blocks, or joined by state sync)
and says so in its status; a range that starts below that is answered with no blocks, never with a tail that
starts elsewhere. The fetcher asks only peers that have the next block it lacks; when every peer ahead of it
has pruned that block it logs what to do (start from an empty store, which state-syncs, or add a peer that
keeps every block) and keeps trying, since such a peer may connect later.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import trio

from bootstrap.errors import WireError
from bootstrap.gossip import PROTO_STATUS, PROTO_SYNC, Status
from ledger.chain import Chain
from ledger.errors import DecodeError
from ledger.sync import MAX_BLOCKS_PER_RESPONSE, Blocks, GetBlocks, decode_sync_message, serve
from p2pnet import Host, P2PError, PeerId
from p2pnet.errors import BadRequest

log = logging.getLogger("bootstrap.node")

ZERO_HASH = bytes(32)
STATUS_PEERS = 16  # peers asked for their height in one round
BLOCKS_PER_REQUEST = 16
# Encoded sync answers kept for peers that ask for the same range (a node that joins late, several catching up at
# once): committed blocks never change, so an answer is reused until it is evicted, least recently used first.
ANSWER_CACHE_BYTES = 32 * 1024 * 1024
ANSWER_CACHE_ENTRIES = 512


class BlockSync:
    """Serving and fetching blocks for one chain; ``attach`` gives it the host and driver once they exist."""

    def __init__(self, chain: Chain, counters: dict[str, int], interval_s: float) -> None:
        self.chain = chain
        self.counters = counters
        self.interval_s = interval_s
        self.host: Host | None = None
        self.driver: Any = None
        self._wake = trio.Event()
        self.seen_height = 0  # the highest consensus height a validly signed message showed us
        self._answers: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._answer_bytes = 0
        self._stuck_at = 0  # the height whose block no peer keeps, once warned about (one warning per height)

    def attach(self, host: Host, driver: Any) -> None:
        self.host, self.driver = host, driver

    def wake(self, seen_height: int = 0) -> None:
        """Consensus saw a later height: sync now rather than at the next interval."""
        self.seen_height = max(self.seen_height, seen_height)
        self._wake.set()

    def is_behind(self) -> bool:
        """Whether validators are past the height this node decides (chain height + 1): it lacks a block at least,
        so txs of accounts funded in it look unfunded here (the tx validators blame nobody for them meanwhile)."""
        return self.seen_height > self.chain.height + 1

    # ------------------------------------------------------------------------------------------- serving

    def status(self) -> Status:
        head = self.chain.last_header
        return Status(self.chain.height, head.hash() if head is not None else ZERO_HASH, self.chain.root,
                      self.chain.first_height)

    async def serve_status(self, peer: PeerId, payload: Any) -> list:
        return self.status().to_wire()

    async def serve_sync(self, peer: PeerId, payload: Any) -> bytes:
        """``GetBlocks`` → blocks with their commits; a malformed request is the peer's fault (``BadRequest``)."""
        if not isinstance(payload, bytes):
            raise BadRequest("sync: expected GetBlocks bytes")
        try:
            req = decode_sync_message(payload)
        except DecodeError as exc:
            raise BadRequest(f"sync: {exc}") from None
        if not isinstance(req, GetBlocks):
            raise BadRequest("sync: expected a GetBlocks request")
        # what the answer holds: the committed part of the range, at most one response long
        last = min(req.to_height, req.from_height + MAX_BLOCKS_PER_RESPONSE - 1, self.chain.height)
        if req.from_height < 1 or last < req.from_height:
            return serve(self.chain, req).encode()  # nothing committed there: a small answer, not kept
        if req.from_height < self.chain.first_height:
            # Pruned here (or never stored, after state sync): no blocks, as our status announced, even where an
            # answer cached before the pruning still holds them, so every such range reads the same.
            self.counters["sync_pruned_asks"] = self.counters.get("sync_pruned_asks", 0) + 1
            return Blocks(()).encode()
        key = (req.from_height, last)
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
            self.counters["sync_answers_cached"] = self.counters.get("sync_answers_cached", 0) + 1
            return answer
        answer = serve(self.chain, GetBlocks(req.from_height, last)).encode()
        self._answers[key] = answer
        self._answer_bytes += len(answer)
        while self._answer_bytes > ANSWER_CACHE_BYTES or len(self._answers) > ANSWER_CACHE_ENTRIES:
            _, old = self._answers.popitem(last=False)
            self._answer_bytes -= len(old)
        return answer

    # ------------------------------------------------------------------------------------------- fetching

    async def run(self) -> None:
        """Catch up from peers: when consensus says we are behind, and every ``interval_s`` anyway."""
        while True:
            with trio.move_on_after(self.interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.sync_once()
            except Exception as exc:  # one bad peer or a transient error must not end sync
                self.counters["sync_failures"] += 1
                log.warning("block sync round failed: %r", exc)

    async def sync_once(self) -> int:
        """Ask peers for their height and fetch missing blocks from the highest; returns blocks applied."""
        host, driver, chain = self.host, self.driver, self.chain
        assert host is not None and driver is not None
        statuses: dict[PeerId, Status] = {}

        async def ask(peer: PeerId) -> None:
            try:
                statuses[peer] = Status.from_wire(await host.request(peer, PROTO_STATUS, None, timeout=2.0))
            except (P2PError, WireError) as exc:
                log.debug("status from %s failed: %s", peer.short(), exc)

        async with trio.open_nursery() as n:
            for peer in host.peers()[:STATUS_PEERS]:
                n.start_soon(ask, peer)
        ahead = {p: s for p, s in statuses.items() if s.height > chain.height}
        heights = {p: s.height for p, s in ahead.items() if s.first_height <= chain.next_height}
        if ahead and not heights:
            self._no_peer_keeps(min(s.first_height for s in ahead.values()))
        applied = 0
        for peer, height in sorted(heights.items(), key=lambda kv: -kv[1]):
            while height > chain.height:
                start = chain.next_height
                req = GetBlocks(start, min(height, start + BLOCKS_PER_REQUEST - 1))
                self.counters["sync_requests"] += 1
                try:
                    raw = await host.request(peer, PROTO_SYNC, req.encode(), timeout=5.0)
                    resp = decode_sync_message(raw) if isinstance(raw, bytes) else None
                except (P2PError, DecodeError) as exc:
                    self.counters["sync_failures"] += 1
                    log.info("sync from %s failed: %s", peer.short(), exc)
                    break
                if resp is None or isinstance(resp, GetBlocks) or not resp.blocks:
                    break
                result = await driver.apply_synced(resp)
                applied += len(result.applied)
                if result.error is not None or not result.applied:
                    break
            if chain.height >= height:
                break
        return applied

    def _no_peer_keeps(self, lowest: int) -> None:
        """Every peer ahead of us starts above the block we need next: say so once per height, with the way out."""
        self.counters["sync_pruned_peers"] = self.counters.get("sync_pruned_peers", 0) + 1
        if self._stuck_at == self.chain.next_height:
            return
        self._stuck_at = self.chain.next_height
        log.warning("block sync: this node needs block %d, but every peer ahead of it keeps blocks from height %d "
                    "on (pruned, keep_blocks); to catch up, start this node with an empty store (it state-syncs "
                    "from a peer's snapshot) or add a peer that keeps every block (an archive node, "
                    "keep_blocks = 0)", self.chain.next_height, lowest)
