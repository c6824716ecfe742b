"""Block sync as requests and responses the node layer carries: ``GetBlocks`` and ``Blocks``.

A node that is behind asks a peer for a range of blocks; the peer answers with each block and the commit that
finalised it. The requester checks every commit's signatures (more than 2/3 of the validators, for exactly that
block) before validating and applying the block, so a lying peer can waste a round trip but never change state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.block import MAX_BLOCK_BYTES, Block, BlockError, Commit
from ledger.chain import Chain
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError
from ledger.types import Height

MAX_BLOCKS_PER_RESPONSE = 16
MAX_RESPONSE_BYTES = MAX_BLOCKS_PER_RESPONSE * (MAX_BLOCK_BYTES // 4)
_GET, _BLOCKS = 1, 2


@dataclass(frozen=True)
class GetBlocks:
    """Ask for committed blocks ``from_height..to_height`` inclusive (the answer may be shorter)."""

    from_height: Height
    to_height: Height

    def encode(self) -> bytes:
        return pack([_GET, self.from_height, self.to_height])


@dataclass(frozen=True)
class Blocks:
    """Consecutive committed blocks, each with its commit."""

    blocks: tuple[tuple[Block, Commit], ...]

    def encode(self) -> bytes:
        return pack([_BLOCKS, [[b.to_wire(), c.to_wire()] for b, c in self.blocks]])


def decode_sync_message(data: bytes) -> GetBlocks | Blocks:
    """Decode an untrusted sync message; raises :class:`DecodeError` naming the bad field."""
    obj = unpack(data, max_size=MAX_RESPONSE_BYTES, field="sync")
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int):
        raise DecodeError("sync", "expected [kind, ...]")
    if obj[0] == _GET:
        if len(obj) != 3 or not all(isinstance(x, int) and x >= 0 for x in obj[1:]):
            raise DecodeError("sync.get_blocks", "expected [1, from_height, to_height]")
        if obj[2] < obj[1]:
            raise DecodeError("sync.get_blocks", f"to_height {obj[2]} is below from_height {obj[1]}")
        return GetBlocks(obj[1], obj[2])
    if obj[0] == _BLOCKS:
        if len(obj) != 2 or not isinstance(obj[1], list):
            raise DecodeError("sync.blocks", "expected [2, [[block, commit], ...]]")
        if len(obj[1]) > MAX_BLOCKS_PER_RESPONSE:
            raise DecodeError("sync.blocks", f"more than {MAX_BLOCKS_PER_RESPONSE} blocks")
        pairs = []
        for i, item in enumerate(obj[1]):
            if not isinstance(item, list) or len(item) != 2:
                raise DecodeError(f"sync.blocks[{i}]", "expected [block, commit]")
            pairs.append((Block.from_wire(item[0]), Commit.from_wire(item[1])))
        return Blocks(tuple(pairs))
    raise DecodeError("sync.kind", f"unknown sync message kind {obj[0]}")


def serve(chain: Chain, request: GetBlocks) -> Blocks:
    """Answer a request from what this node has committed (possibly nothing)."""
    return Blocks(tuple(chain.get_blocks(request.from_height, request.to_height, limit=MAX_BLOCKS_PER_RESPONSE)))


@dataclass
class SyncResult:
    applied: list[Height] = field(default_factory=list)
    error: BlockError | None = None


@dataclass
class BlockSyncer:
    """Sans-IO catch-up: says what to ask for, and applies verified answers to the chain."""

    chain: Chain
    target: Height = 0

    def note_peer_height(self, height: Height) -> GetBlocks | None:
        """A peer is at ``height`` (it is deciding that height); ask for what we miss, if anything."""
        self.target = max(self.target, height - 1)
        return self.next_request()

    def next_request(self) -> GetBlocks | None:
        if self.chain.height >= self.target:
            return None
        start = self.chain.next_height
        return GetBlocks(start, min(self.target, start + MAX_BLOCKS_PER_RESPONSE - 1))

    def on_blocks(self, response: Blocks) -> SyncResult:
        """Apply the blocks that extend our chain, in order; stop at the first that fails, naming why."""
        result = SyncResult()
        for block, commit in response.blocks:
            if block.height < self.chain.next_height:
                continue  # already have it (we may have decided it ourselves meanwhile)
            try:
                self.chain.apply_synced_block(block, commit)
            except BlockError as exc:
                result.error = exc
                break
            result.applied.append(block.height)
        return result
