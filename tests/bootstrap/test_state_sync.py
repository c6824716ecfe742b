"""State sync (bootstrap.sync.snapshots): a node started with an empty store next to a running chain starts at a
peer's verified snapshot, stores no block below it, and then follows the chain to the same root; the syncer bans
a peer that sends a bad chunk or offers a snapshot its commit does not fix, and finishes from the honest ones;
with no usable offer it reports why and the node replays from genesis."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from bootstrap.gossip import PROTO_SYNC
from bootstrap.home import make_testnet
from bootstrap.node import Node
from bootstrap.sync import PROTO_SNAPSHOT, SnapshotServer, StateSyncer, store_is_empty
from ledger.statesync import offer_for
from ledger.store import open_chain
from ledger.sync import decode_sync_message, serve
from p2pnet import PeerId
from p2pnet.errors import BadRequest
from tests.bootstrap.test_node import fast, wait_until
from tests.ledger.chainkit import genesis4, next_block, users


async def test_a_late_node_starts_at_a_verified_snapshot_and_follows_the_chain(tmp_path: Path) -> None:
    infos = make_testnet(2, tmp_path, validators=1, config=fast(snapshot_every=5))
    first = Node(infos[0].home, infos[0].config)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        try:
            await wait_until(lambda: first.height >= 13, 60, "a chain with snapshots at 5 and 10")
            assert first.host is not None
            late = Node(infos[1].home, replace(infos[1].config, bootstrap=[str(first.host.listen_addrs[0])],
                                                state_sync=True, state_sync_wait_s=10))
            assert store_is_empty(late.paths["chain"])
            await nursery.start(late.run)
            try:
                progress = late.state_sync
                assert progress is not None and progress.height is not None and progress.height >= 10, progress
                assert progress.peers_banned == []
                assert late.chain is not None and late.chain.store is not None
                assert late.chain.store.first_height == progress.height  # type: ignore[attr-defined]
                assert late.chain.get_blocks(1, progress.height - 1) == []  # never replayed
                target = first.height + 2
                await wait_until(lambda: late.height >= target, 30, "the late node to follow the chain")
                ((block, _),) = first.chain.get_blocks(target, target)  # type: ignore[union-attr]
                ((mine, _),) = late.chain.get_blocks(target, target)
                assert mine.hash() == block.hash()
                # and it serves its own snapshot on: the next joiner can sync from it
                got = await late.snapshots.offer() if late.snapshots else None  # type: ignore[union-attr]
                assert got is not None and got[0].height >= progress.height
            finally:
                late.stop()
        finally:
            first.stop()


# ------------------------------------------------------------------------------------------ scripted peers


class Peer:
    """A peer as the syncer sees it: a real snapshot server over a real stored chain, optionally lying."""

    def __init__(self, chain: Any, name: int, lie: str = "") -> None:
        self.chain = chain
        self.id = PeerId.from_public_key(bytes([name]) * 32)
        self.server = SnapshotServer(chain)
        self.lie = lie

    async def answer(self, protocol: str, payload: Any) -> Any:
        if protocol == PROTO_SYNC:
            return serve(self.chain, decode_sync_message(payload)).encode()  # type: ignore[arg-type]
        got = await self.server.offer()
        assert got is not None
        if self.lie == "offer" and payload == ["offer"]:  # an offer of other bytes, self-consistent
            data = bytearray(b"".join(got[1]))
            data[-3] ^= 0x20
            return offer_for(got[0].height, bytes(data))[0].encode()
        if self.lie == "offer":
            data = bytearray(b"".join(got[1]))
            data[-3] ^= 0x20
            return offer_for(got[0].height, bytes(data))[1][payload[2]]
        answer = await self.server.serve(self.id, payload)
        if self.lie == "chunk" and payload[0] == "chunk":
            return answer[:-1] + bytes([answer[-1] ^ 1])
        return answer


class ScriptedHost:
    """The part of ``p2pnet.Host`` the syncer uses, routing each request to a scripted peer."""

    def __init__(self, peers: list[Peer]) -> None:
        self.by_id = {p.id: p for p in peers}
        self.banned: dict[PeerId, str] = {}

    def peers(self) -> list[PeerId]:
        return [p for p in self.by_id if p not in self.banned]

    def is_banned(self, peer: PeerId) -> bool:
        return peer in self.banned

    def ban(self, peer: PeerId, reason: str, duration: float | None = None) -> None:
        self.banned[peer] = reason

    async def request(self, peer: PeerId, protocol: str, payload: Any, timeout: float | None = None) -> Any:
        assert protocol in (PROTO_SYNC, PROTO_SNAPSHOT)
        return await self.by_id[peer].answer(protocol, payload)


def source_chain(tmp_path: Path, name: str) -> Any:
    chain = open_chain(tmp_path / f"{name}.db", genesis4(), snapshot_every=4)
    u = users(3)
    for i in range(9):
        chain.commit(*next_block(chain, [u[i % 3].transfer(u[(i + 1) % 3].account, 1 + i)]))
    return chain


async def test_a_lying_chunk_or_offer_gets_its_peer_banned_and_the_honest_peer_finishes(tmp_path: Path) -> None:
    for lie in ("chunk", "offer"):
        honest = source_chain(tmp_path, f"honest-{lie}")
        liar = source_chain(tmp_path, f"liar-{lie}")  # the same chain: same blocks, same snapshot
        # the syncer tries equal offers and peers in peer-id order: make the liar come first
        liar_name, honest_name = sorted((1, 2), key=lambda n: PeerId.from_public_key(bytes([n]) * 32).to_bytes())
        host = ScriptedHost([Peer(liar, liar_name, lie), Peer(honest, honest_name)])
        target = tmp_path / f"joiner-{lie}.db"
        progress = await StateSyncer(host, genesis4(), target).run(wait_s=1)  # type: ignore[arg-type]
        assert progress.height == 8, progress
        assert list(host.banned) == [PeerId.from_public_key(bytes([liar_name]) * 32)], host.banned
        joined = open_chain(target, genesis4(), snapshot_every=4)
        assert (joined.height, joined.root) == (8, honest.store.get_block(8)[2])


async def test_with_no_usable_offer_the_syncer_says_why_and_leaves_the_store_empty(tmp_path: Path) -> None:
    liar = source_chain(tmp_path, "liar")
    host = ScriptedHost([Peer(liar, 1, "offer")])
    target = tmp_path / "joiner.db"
    progress = await StateSyncer(host, genesis4(), target).run(wait_s=1)  # type: ignore[arg-type]
    assert progress.height is None and progress.reason.startswith("snapshot rejected"), progress
    assert store_is_empty(target)
    nobody = await StateSyncer(ScriptedHost([]), genesis4(), target).run(wait_s=0.2)  # type: ignore[arg-type]
    assert nobody.height is None and nobody.reason == "no peer reachable"


async def test_the_server_refuses_requests_it_cannot_answer(tmp_path: Path) -> None:
    chain = source_chain(tmp_path, "src")
    server = SnapshotServer(chain)
    offer = await server.offer()
    assert offer is not None and offer[0].height == 8  # the newest snapshot whose next block is committed
    peer = PeerId.from_public_key(bytes(32))
    for bad in (None, [], ["chunk", 4, 0], ["chunk", 8, 99], ["chunk", "8", 0], ["nonsense"]):
        try:
            await server.serve(peer, bad)
        except BadRequest:
            continue
        raise AssertionError(f"{bad!r} was answered")
