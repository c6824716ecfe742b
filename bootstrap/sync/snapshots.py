"""State sync over the network: serving this node's newest stored snapshot in chunks on ``/dacn/snapshot/1``, and,
for a node that starts with an empty store, fetching one from its peers, checking it (``ledger.statesync``) and
installing it in the store, so that block sync only has the blocks after it left to fetch.

A joiner asks every connected peer for its offer, tries the highest snapshot first (the one most peers offer among
equals), checks blocks ``h`` and ``h + 1`` and their commits, then fetches the chunks from every peer offering the
same snapshot at once, each checked on arrival; a peer that sends a bad chunk or a lying offer is banned and its
chunks go to the others. When no peer offers a snapshot that checks out, the node replays from genesis as before.
Progress goes to the node's log (what ``dacn node`` prints).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bootstrap.gossip import PROTO_SYNC
from ledger.block import Block, Commit
from ledger.chain import Chain
from ledger.errors import DecodeError
from ledger.genesis import Genesis
from ledger.state import State
from ledger.statesync import SnapshotOffer, SnapshotRejected, check_chunk, offer_for, restore, verify_anchor
from ledger.store import BlockStore, SnapshotGone
from ledger.sync import Blocks, GetBlocks, decode_sync_message
from p2pnet import Host, P2PError, PeerId
from p2pnet.errors import BadRequest, PeerBusy

log = logging.getLogger("bootstrap.node")

PROTO_SNAPSHOT = "/dacn/snapshot/1"
OFFER_PEERS = 16  # peers asked for an offer
PARALLEL_CHUNKS = 4  # chunk requests in flight at once, spread over the offering peers
REQUEST_TIMEOUT_S = 20.0
MAX_TRIES_PER_CHUNK = 6
BAN_S = 3600.0


class SnapshotServer:
    """Answers ``["offer"]`` with the newest stored snapshot whose next block is committed (so its anchor can be
    checked), and ``["chunk", height, index]`` with that chunk. The offer is built once per snapshot: one
    snapshot's bytes are kept in memory while it is the newest."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._offer: tuple[SnapshotOffer, list[bytes]] | None = None
        self._building = trio.Lock()

    def _newest(self) -> int | None:
        store = self.chain.store
        if store is None:
            return None
        return store.latest_snapshot_height(self.chain.height - 1)  # type: ignore[attr-defined]

    async def offer(self) -> tuple[SnapshotOffer, list[bytes]] | None:
        """The offer and chunks of the newest servable snapshot; a new snapshot's chunks are hashed once, off the
        event loop."""
        height = self._newest()
        if height is None:
            return None
        async with self._building:
            if self._offer is None or self._offer[0].height != height:
                store = self.chain.store

                def build() -> tuple[SnapshotOffer, list[bytes]]:  # the file's read and the hashing, off the loop
                    return offer_for(height, store.read_snapshot(height))  # type: ignore[union-attr]

                try:
                    self._offer = await trio.to_thread.run_sync(build)
                except SnapshotGone:  # a newer snapshot replaced it meanwhile: that one is offered next time
                    return self._offer
        return self._offer

    async def serve(self, peer: PeerId, payload: Any) -> bytes:
        if not isinstance(payload, list) or not payload:
            raise BadRequest("snapshot: expected [\"offer\"] or [\"chunk\", height, index]")
        got = await self.offer()
        if payload[0] == "offer" and len(payload) == 1:
            return got[0].encode() if got is not None else b""
        if payload[0] == "chunk" and len(payload) == 3 and all(type(x) is int for x in payload[1:]):
            if got is None or got[0].height != payload[1]:
                raise BadRequest(f"snapshot: no snapshot at height {payload[1]} here (ask for the offer again)")
            if not 0 <= payload[2] < len(got[1]):
                raise BadRequest(f"snapshot: no chunk {payload[2]} (the snapshot has {len(got[1])})")
            return got[1][payload[2]]
        raise BadRequest("snapshot: expected [\"offer\"] or [\"chunk\", height, index]")


@dataclass
class SyncProgress:
    """What a state sync did, for the log and the tests."""

    height: int | None = None
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    peers_banned: list[str] = field(default_factory=list)
    reason: str = ""
    state: State | None = field(default=None, repr=False)  # the verified state, for the node to open at once


class StateSyncer:
    """One state sync for a node with an empty store (see the module docstring)."""

    def __init__(self, host: Host, genesis: Genesis, store_path: Path, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.genesis = genesis
        self.store_path = store_path
        self.clock = clock
        self.progress = SyncProgress()

    async def run(self, wait_s: float) -> SyncProgress:
        """Wait up to ``wait_s`` for peers, then sync from the best offer that checks out (or give up)."""
        started = self.clock()
        with trio.move_on_after(wait_s):
            while not self.host.peers():
                await trio.sleep(0.1)  # the host dials its bootstrap peers in the background
        offers = await self._offers()
        if not offers:
            self.progress.reason = ("no peer reachable" if not self.host.peers()
                                    else "no peer offers a snapshot yet")
        # Highest first, then the most peers; ties by peer id, so that a run does not depend on answer order.
        ranked = sorted(((o, sorted(ps, key=PeerId.to_bytes)) for o, ps in offers.values()),
                        key=lambda g: (-g[0].height, -len(g[1]), g[1][0].to_bytes()))
        for offer, peers in ranked:
            try:
                if await self._sync_from(offer, peers):
                    break
            except SnapshotRejected as exc:
                self.progress.reason = str(exc)
                log.warning("state sync: %s; trying another offer", exc)
        self.progress.seconds = self.clock() - started
        return self.progress

    async def _offers(self) -> dict[bytes, tuple[SnapshotOffer, list[PeerId]]]:
        groups: dict[bytes, tuple[SnapshotOffer, list[PeerId]]] = {}

        async def ask(peer: PeerId) -> None:
            try:
                raw = await self.host.request(peer, PROTO_SNAPSHOT, ["offer"], timeout=5.0)
                if not raw:
                    return
                offer = SnapshotOffer.decode(raw)
            except (P2PError, DecodeError, TypeError) as exc:
                log.info("state sync: no offer from %s: %s", peer.short(), exc)
                return
            groups.setdefault(offer.digest, (offer, []))[1].append(peer)

        async with trio.open_nursery() as n:
            for peer in self.host.peers()[:OFFER_PEERS]:
                n.start_soon(ask, peer)
        return groups

    def _ban(self, peer: PeerId, why: str) -> None:
        self.progress.peers_banned.append(peer.short())
        self.host.ban(peer, f"state sync: {why}", BAN_S)

    async def _request(self, peer: PeerId, protocol: str, payload: Any) -> Any:
        for _ in range(3):
            try:
                return await self.host.request(peer, protocol, payload, timeout=REQUEST_TIMEOUT_S)
            except PeerBusy as exc:  # over its budget there: wait as told rather than lose the peer
                await trio.sleep(min(max(exc.retry_after_s, 0.05), 5.0))
        raise P2PError(f"{peer.short()} stayed busy")

    async def _anchor(self, offer: SnapshotOffer, peers: list[PeerId]) -> tuple[Block, Commit, bytes] | None:
        for peer in peers:
            try:
                raw = await self._request(peer, PROTO_SYNC, GetBlocks(offer.height, offer.height + 1).encode())
                resp = decode_sync_message(raw) if isinstance(raw, bytes) else None
                if not isinstance(resp, Blocks) or len(resp.blocks) != 2:
                    raise DecodeError("sync", f"expected blocks {offer.height} and {offer.height + 1}")
                (block, commit), (nxt, nxt_commit) = resp.blocks
                root = verify_anchor(offer, block, commit, nxt.header, nxt_commit, chain_id=self.genesis.chain_id,
                                     validators=self.genesis.validators)
                return block, commit, root
            except SnapshotRejected as exc:
                self._ban(peer, str(exc))
            except (P2PError, DecodeError) as exc:
                log.info("state sync: anchor from %s failed: %s", peer.short(), exc)
        return None

    async def _sync_from(self, offer: SnapshotOffer, peers: list[PeerId]) -> bool:
        n = len(offer.chunk_hashes)
        log.info("state sync: snapshot at height %d (%.1f MB, %d chunks) offered by %d peer%s",
                 offer.height, offer.size / 1e6, n, len(peers), "" if len(peers) == 1 else "s")
        anchor = await self._anchor(offer, peers)
        if anchor is None:
            self.progress.reason = f"no peer proved the snapshot at height {offer.height}"
            return False
        block, commit, root = anchor
        chunks: list[bytes | None] = [None] * n
        live = [p for p in peers if not self.host.is_banned(p)]
        tries = [0] * n
        done = 0
        next_report = 0.1
        limiter = trio.CapacityLimiter(PARALLEL_CHUNKS)

        async def fetch(index: int) -> None:
            nonlocal done, next_report
            async with limiter:
                while chunks[index] is None and live and tries[index] < MAX_TRIES_PER_CHUNK:
                    peer = live[(index + tries[index]) % len(live)]  # chunks spread over the peers
                    tries[index] += 1
                    try:
                        data = await self._request(peer, PROTO_SNAPSHOT, ["chunk", offer.height, index])
                        if not isinstance(data, bytes):
                            raise DecodeError("snapshot.chunk", "expected bytes")
                        check_chunk(offer, index, data)
                    except SnapshotRejected as exc:
                        self._ban(peer, str(exc))
                        if peer in live:
                            live.remove(peer)
                        continue
                    except (P2PError, DecodeError) as exc:
                        log.info("state sync: chunk %d from %s failed: %s", index, peer.short(), exc)
                        continue
                    chunks[index] = data
                    done += 1
                    self.progress.chunks, self.progress.bytes = done, self.progress.bytes + len(data)
                    if done / n >= next_report or done == n:
                        log.info("state sync: %d of %d chunks (%.0f%%)", done, n, 100 * done / n)
                        next_report = done / n + 0.1

        async with trio.open_nursery() as nursery:
            for index in range(n):
                nursery.start_soon(fetch, index)
        if any(c is None for c in chunks):
            self.progress.reason = f"could not fetch every chunk of the snapshot at height {offer.height}"
            return False
        parts = [c for c in chunks if c is not None]
        try:
            state = await trio.to_thread.run_sync(restore, offer, parts, root)  # decode + full root: off the loop
        except SnapshotRejected:
            for p in peers:  # every peer offering it vouched for a snapshot the commit does not fix
                if not self.host.is_banned(p):
                    self._ban(p, f"offered a snapshot at height {offer.height} that does not match its commit")
            raise
        store = BlockStore(self.store_path)
        try:
            store.init_genesis(self.genesis)
            store.install_snapshot(block, commit, root, b"".join(parts))
        finally:
            store.close()
        self.progress.height = offer.height
        self.progress.state = state
        log.info("state sync: verified the state at height %d (root %s…); block sync goes on from %d",
                 offer.height, root.hex()[:16], offer.height + 1)
        return True


def store_is_empty(path: Path) -> bool:
    """Whether the chain store at ``path`` holds no block (or does not exist yet)."""
    if not Path(path).exists():
        return True
    store = BlockStore(path)
    try:
        return store.height < 1
    finally:
        store.close()
