"""A node that prunes old blocks (``keep_blocks``) answers for them clearly: block sync serves no blocks below its
first kept height (not a tail that starts elsewhere, not an answer cached before the pruning) and says where it
starts in its status; a node that lacks blocks asks only peers that keep them, and says what to do when none
does; a joiner still state-syncs from a pruned peer; and over a running node, ``GET /blocks/{h}`` for a pruned
block is a 410 naming the lowest kept height, the block list reports it, ``dacn state export`` and proofs refuse
the heights they cannot rebuild, and a ``keep_blocks`` below the chain's evidence age is refused at start."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.cli import NodeClient, export_state
from bootstrap.cli.export import CliError
from bootstrap.gossip import PROTO_STATUS, PROTO_SYNC, Status
from bootstrap.home import make_testnet
from bootstrap.node import Node
from bootstrap.sync import BlockSync, StateSyncer
from ledger.chain import Chain
from ledger.store import open_chain
from ledger.sync import Blocks, BlockSyncer, GetBlocks, decode_sync_message
from p2pnet import PeerId
from tests.bootstrap.test_api import assert_error, call
from tests.bootstrap.test_node import fast, wait_until
from tests.bootstrap.test_state_sync import Peer, ScriptedHost
from tests.ledger.chainkit import genesis4
from tests.ledger.test_block_pruning import reference


def stored_chain(path: Path, heights: int, **settings: int) -> Chain:
    """A store-backed chain holding the first ``heights`` reference blocks."""
    chain = open_chain(path, genesis4(), **settings)
    for pair in reference()[0][:heights]:
        chain.commit_block(*pair)
    return chain


def blocks_of(answer: bytes) -> list[int]:
    got = decode_sync_message(answer)
    assert isinstance(got, Blocks)
    return [b.height for b, _ in got.blocks]


async def test_block_sync_serves_nothing_below_the_first_kept_block_and_says_where_it_starts(tmp_path: Path) -> None:
    # snapshots every 4, one kept, 3 blocks: at 28 the blocks below min(28, 28 - 3) go
    chain = stored_chain(tmp_path / "pruned.db", 30, snapshot_every=4, keep_snapshots=1, keep_blocks=3)
    assert chain.first_height == 25
    counters: dict[str, int] = {}
    sync = BlockSync(chain, counters, 1.0)
    peer: Any = object()
    assert blocks_of(await sync.serve_sync(peer, GetBlocks(1, 16).encode())) == []
    assert blocks_of(await sync.serve_sync(peer, GetBlocks(20, 30).encode())) == []  # not 25..30 for 20..30
    assert blocks_of(await sync.serve_sync(peer, GetBlocks(25, 40).encode())) == [25, 26, 27, 28, 29, 30]
    assert counters["sync_pruned_asks"] == 2
    status = Status.from_wire(await sync.serve_status(peer, None))
    assert (status.height, status.first_height) == (30, 25)
    assert Status.from_wire([30, bytes(32), bytes(32)]).first_height == 1  # a node from before first_height

    # an answer cached before a snapshot pruned its blocks is not served after
    growing = stored_chain(tmp_path / "growing.db", 20, snapshot_every=4, keep_snapshots=1, keep_blocks=3)
    sync = BlockSync(growing, {}, 1.0)
    assert growing.first_height == 17
    assert blocks_of(await sync.serve_sync(peer, GetBlocks(17, 19).encode())) == [17, 18, 19]
    for pair in reference()[0][20:24]:
        growing.commit_block(*pair)
    assert growing.first_height == 21
    assert blocks_of(await sync.serve_sync(peer, GetBlocks(17, 19).encode())) == []


class SyncHost:
    """The part of ``p2pnet.Host`` block sync uses, routing each request to a peer's own ``BlockSync``."""

    def __init__(self, peers: dict[PeerId, BlockSync]) -> None:
        self.by_id = peers
        self.asked: list[tuple[PeerId, str]] = []

    def peers(self) -> list[PeerId]:
        return list(self.by_id)

    async def request(self, peer: PeerId, protocol: str, payload: Any, timeout: float | None = None) -> Any:
        self.asked.append((peer, protocol))
        if protocol == PROTO_STATUS:
            return await self.by_id[peer].serve_status(peer, payload)
        return await self.by_id[peer].serve_sync(peer, payload)


class SyncDriver:
    """The consensus driver's part in block sync: apply verified blocks to the chain."""

    def __init__(self, chain: Chain) -> None:
        self.syncer = BlockSyncer(chain)

    async def apply_synced(self, blocks: Blocks) -> Any:
        return self.syncer.on_blocks(blocks)


def peer_id(n: int) -> PeerId:
    return PeerId.from_public_key(bytes([n]) * 32)


async def test_a_node_behind_asks_only_peers_that_keep_its_next_block_and_says_when_none_does(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pruned = stored_chain(tmp_path / "pruned.db", 30, snapshot_every=4, keep_snapshots=1, keep_blocks=3)
    archive = stored_chain(tmp_path / "archive.db", 30, snapshot_every=4, keep_snapshots=1, keep_blocks=0)
    pruned_id, archive_id = peer_id(1), peer_id(2)
    host = SyncHost({pruned_id: BlockSync(pruned, {}, 1.0), archive_id: BlockSync(archive, {}, 1.0)})
    joiner = Chain(genesis4())
    sync = BlockSync(joiner, {"sync_requests": 0, "sync_failures": 0}, 1.0)
    sync.attach(host, SyncDriver(joiner))  # type: ignore[arg-type]
    assert await sync.sync_once() == 30 and joiner.root == reference()[1][30]
    assert (pruned_id, PROTO_SYNC) not in host.asked  # its status said it starts at 25

    alone = Chain(genesis4())
    counters = {"sync_requests": 0, "sync_failures": 0}
    sync = BlockSync(alone, counters, 1.0)
    sync.attach(SyncHost({pruned_id: BlockSync(pruned, {}, 1.0)}), SyncDriver(alone))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="bootstrap.node"):
        assert await sync.sync_once() == 0
        assert await sync.sync_once() == 0
    assert alone.height == 0 and counters["sync_pruned_peers"] == 2 and counters["sync_requests"] == 0
    warnings = [r.getMessage() for r in caplog.records if "block sync" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per height, not every round
    assert "needs block 1" in warnings[0] and "from height 25" in warnings[0] and "state-syncs" in warnings[0]
    assert "keep_blocks = 0" in warnings[0]


async def test_a_joiner_state_syncs_from_a_pruned_peer(tmp_path: Path) -> None:
    pruned = stored_chain(tmp_path / "pruned.db", 30, snapshot_every=4, keep_snapshots=1, keep_blocks=3)
    host = ScriptedHost([Peer(pruned, 1)])
    target = tmp_path / "joiner.db"
    progress = await StateSyncer(host, genesis4(), target).run(wait_s=1)  # type: ignore[arg-type]
    assert progress.height == 28, progress  # the newest snapshot with its next block, both kept
    joined = open_chain(target, genesis4(), snapshot_every=4)
    assert (joined.height, joined.root) == (28, reference()[1][28])


async def test_a_running_pruned_node_answers_for_its_pruned_blocks(tmp_path: Path) -> None:
    # Fewer blocks kept than the chain's evidence age: the punished offences are in the state, not in old blocks.
    infos = make_testnet(2, tmp_path, validators=1, params={"evidence_max_age": 8},
                         config=fast(snapshot_every=3, keep_snapshots=1, keep_blocks=4))
    node = Node(infos[0].home, replace(infos[0].config, api_listen="127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            await wait_until(lambda: node.first_height > 3, 60, "the node to prune its first blocks")
            assert node.api_address is not None
            client = NodeClient("http://{}:{}".format(*node.api_address), timeout=30.0)
            status, doc = await call(client, "GET", "/blocks/1")
            assert_error(status, doc, 410, "block 1 is not kept here", "archive node", "keep_blocks = 0")
            first = doc["detail"]["first_height"]
            assert doc["detail"]["kind"] == "block_pruned" and first > 3 and f"from height {first}" in doc["error"]
            status, block = await call(client, "GET", f"/blocks/{node.first_height}")
            assert status == 200 and block["height"] >= first
            assert_error(*await call(client, "GET", f"/blocks/{node.height + 100}"), 404, "no block")
            status, page = await call(client, "GET", "/blocks", limit=200)
            assert status == 200 and page["first_height"] >= first
            assert [b["height"] for b in page["blocks"]][-1] == page["first_height"]  # down to it, not beyond
            assert_error(*await call(client, "GET", "/proof/account/faucet", height=1), 404, "not kept")
            with pytest.raises(CliError, match="cannot be rebuilt"):
                export_state(infos[0].home, 1)
            assert export_state(infos[0].home)["height"] >= first

            # a fresh node that may not state-sync can get no block from it, and says why
            assert node.host is not None
            boot = [str(node.host.listen_addrs[0])]
            stuck = Node(infos[1].home, replace(infos[1].config, bootstrap=boot, state_sync=False))
            await nursery.start(stuck.run)
            try:
                await wait_until(lambda: stuck.counters.get("sync_pruned_peers", 0) > 0, 30,
                                 "the fresh node to find no peer with block 1")
                assert stuck.height == 0
                assert stuck.host is not None
                answer = await stuck.host.request(node.peer_id, PROTO_SYNC, GetBlocks(1, 4).encode(), timeout=5.0)
                assert blocks_of(answer) == []
            finally:
                stuck.stop()
        finally:
            node.stop()
