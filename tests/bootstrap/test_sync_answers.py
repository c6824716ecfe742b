"""Block sync answers over a real chain: a range asked again is served from the answer cache (the chain is read
once), the answer is the same bytes, a range that reaches past the head is answered with what is committed and
grows once more is, and the cache stays within its bounds (issue 17: request budgets, answers cached)."""

from __future__ import annotations

import pytest

from bootstrap.sync import blocks as sync_blocks
from bootstrap.sync.blocks import BlockSync
from ledger.sync import Blocks, GetBlocks, decode_sync_message, serve
from p2pnet.errors import BadRequest
from tests.ledger.chainkit import next_block
from tests.ledger.test_sync import ahead_chain


class _CountingChain:
    """The chain as BlockSync sees it, counting the reads of stored blocks."""

    def __init__(self, chain: object) -> None:
        self.chain = chain
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.chain, name)

    def get_blocks(self, *args: object, **kw: object) -> object:
        self.reads += 1
        return self.chain.get_blocks(*args, **kw)  # type: ignore[attr-defined]


async def test_a_range_asked_twice_is_read_once_and_answers_follow_the_head() -> None:
    base = ahead_chain(5)
    chain = _CountingChain(base)
    counters: dict[str, int] = {}
    sync = BlockSync(chain, counters, 1.0)  # type: ignore[arg-type]
    peer = object()
    first = await sync.serve_sync(peer, GetBlocks(2, 40).encode())  # type: ignore[arg-type]
    again = await sync.serve_sync(peer, GetBlocks(2, 40).encode())  # type: ignore[arg-type]
    assert first == again == serve(base, GetBlocks(2, 40)).encode()
    assert chain.reads == 1 and counters["sync_answers_cached"] == 1
    answer = decode_sync_message(first)
    assert isinstance(answer, Blocks) and [b.header.height for b, _ in answer.blocks] == [2, 3, 4, 5]
    # a block more: the same request now holds it (the old answer is not served for the new head)
    block, commit = next_block(base, [])
    base.commit_block(block, commit)
    grown = decode_sync_message(await sync.serve_sync(peer, GetBlocks(2, 40).encode()))  # type: ignore[arg-type]
    assert isinstance(grown, Blocks) and [b.header.height for b, _ in grown.blocks] == [2, 3, 4, 5, 6]
    # past the head: empty, and not kept
    beyond = decode_sync_message(await sync.serve_sync(peer, GetBlocks(50, 60).encode()))  # type: ignore[arg-type]
    assert isinstance(beyond, Blocks) and beyond.blocks == ()
    with pytest.raises(BadRequest):
        await sync.serve_sync(peer, b"\xc1junk")  # type: ignore[arg-type]


async def test_the_answer_cache_stays_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_blocks, "ANSWER_CACHE_ENTRIES", 3)
    chain = ahead_chain(8)
    sync = BlockSync(chain, {}, 1.0)
    for start in range(1, 9):
        await sync.serve_sync(object(), GetBlocks(start, start).encode())  # type: ignore[arg-type]
    assert list(sync._answers) == [(6, 6), (7, 7), (8, 8)]
    assert sync._answer_bytes == sum(map(len, sync._answers.values()))
