"""Block pruning in the store (``BlockStore(keep_blocks=K)``): for any snapshot interval ``E``, kept snapshots
``S`` and kept blocks ``K``, the store holds a consecutive run of blocks ending at the head, never more than
``max(K, (S - 1) * E) + E`` of them (and the bound is reached), always the newest ``K + 1`` and the block at every
kept snapshot; a store closed at any height reopens at the same height and root as the never-pruned chain; ``K =
0`` keeps every block; full replay of a pruned store raises the typed :class:`BlocksPruned`; and the file stops
growing once pruning runs."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.block import Block, Commit
from ledger.chain import Chain
from ledger.store import BlocksPruned, BlockStore, StoreError, open_chain, replay
from tests.ledger.chainkit import genesis4, next_block, users

HEIGHTS = 30


@cache
def reference() -> tuple[list[tuple[Block, Commit]], list[bytes]]:
    """A never-pruned chain of ``HEIGHTS`` blocks of transfers (kept in memory, no store): its blocks with their
    commits, and the state root after each height (index 0: genesis)."""
    chain = Chain(genesis4())
    a, b, c = users(3)
    blocks, roots = [], [chain.root]
    for i in range(HEIGHTS):
        block, commit = next_block(chain, [a.transfer(b.account, 1 + i), b.transfer(c.account, 2)])
        chain.commit_block(block, commit)
        blocks.append((block, commit))
        roots.append(chain.root)
    return blocks, roots


def bound(every: int, keep_snapshots: int, keep_blocks: int) -> int:
    """The most blocks a pruning store holds (``keep_snapshots`` >= 1, ``keep_blocks`` >= 1). At a snapshot write at
    height ``H`` the oldest kept snapshot is at least ``H - (S - 1) * E`` (snapshots are at most ``E`` apart), so
    the blocks from ``min(oldest, H - K)`` on number at most ``max(K, (S - 1) * E) + 1``; the ``E - 1`` writes
    before the next snapshot add one block each."""
    return max(keep_blocks, (keep_snapshots - 1) * every) + every


def check_store(store: BlockStore, top: int, every: int, keep_snapshots: int, keep_blocks: int) -> int:
    """Assert what a store at height ``top`` must hold; returns its number of blocks."""
    lo, hi, rows = store.db.execute("SELECT MIN(height), MAX(height), COUNT(*) FROM blocks").fetchone()
    snaps = [h for (h,) in store.db.execute("SELECT height FROM snapshots ORDER BY height")]
    assert hi == top and rows == hi - lo + 1, (lo, hi, rows)  # consecutive up to the head
    assert store.first_height == lo
    if snaps:
        assert lo <= snaps[0], (lo, snaps)  # every kept snapshot has its block and every block after it
    if keep_blocks == 0:
        assert lo == 1  # an archive store keeps every block
    else:
        assert lo <= max(1, top - keep_blocks)  # the newest keep_blocks + 1 are always there
        if keep_snapshots:
            assert rows <= bound(every, keep_snapshots, keep_blocks), (rows, every, keep_snapshots, keep_blocks)
    if keep_snapshots:
        assert len(snaps) <= keep_snapshots
    return int(rows)


@given(every=st.integers(1, 6), keep_snapshots=st.integers(0, 4), keep_blocks=st.integers(0, 12),
       n=st.integers(0, HEIGHTS), crashes=st.sets(st.integers(1, HEIGHTS), max_size=4))
def test_a_pruning_store_stays_bounded_and_reopens_at_the_never_pruned_root(
        every: int, keep_snapshots: int, keep_blocks: int, n: int, crashes: set[int]) -> None:
    blocks, roots = reference()
    settings = {"snapshot_every": every, "keep_snapshots": keep_snapshots, "keep_blocks": keep_blocks}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "chain.db"
        chain = open_chain(db, genesis4(), **settings)
        for h in range(1, n + 1):
            chain.commit_block(*blocks[h - 1])
            check_store(chain.store, h, every, keep_snapshots, keep_blocks)
            if h in crashes or h == n:  # a crash after this commit: close, and open the store again
                chain.store.close()
                chain = open_chain(db, genesis4(), **settings)
                assert (chain.height, chain.root) == (h, roots[h])
                assert chain.last_header is not None and chain.last_header.hash() == blocks[h - 1][0].hash()
                assert chain.first_height == chain.store.first_height
                assert chain.get_blocks(chain.first_height - 1, h) == []  # not a tail that reads as asked for
        first = chain.first_height
        chain.store.close()
        if first > 1:
            with pytest.raises(BlocksPruned) as exc:
                replay(db, genesis4())
            assert exc.value.first_height == first and f"pruned below {first}" in str(exc.value)
        else:
            report = replay(db, genesis4())
            assert report.ok and report.checked_to == n and report.final_root == roots[n]


@pytest.mark.parametrize(("every", "keep_snapshots", "keep_blocks"), [(3, 2, 5), (2, 4, 3), (4, 1, 1)])
def test_the_bound_is_reached_and_the_file_stops_growing(
        tmp_path: Path, every: int, keep_snapshots: int, keep_blocks: int) -> None:
    chain = open_chain(tmp_path / "chain.db", genesis4(), snapshot_every=every, keep_snapshots=keep_snapshots,
                       keep_blocks=keep_blocks)
    a, b = users(2)
    most, pages = 0, {}
    for h in range(1, 121):
        block, commit = next_block(chain, [a.transfer(b.account, 1)])
        chain.commit_block(block, commit)
        most = max(most, check_store(chain.store, h, every, keep_snapshots, keep_blocks))
        if h in (60, 120):
            pages[h] = chain.store.db.execute("PRAGMA page_count").fetchone()[0]
    assert most == bound(every, keep_snapshots, keep_blocks)
    assert chain.first_height > 100
    assert pages[120] <= pages[60] + 2, pages  # freed pages are reused: the file does not grow with the chain


def test_an_archive_store_keeps_every_block_and_bad_settings_are_refused(tmp_path: Path) -> None:
    blocks, roots = reference()
    chain = open_chain(tmp_path / "archive.db", genesis4(), snapshot_every=2, keep_snapshots=1, keep_blocks=0)
    for pair in blocks:
        chain.commit_block(*pair)
    assert chain.first_height == 1 and len(chain.get_blocks(1, HEIGHTS, limit=HEIGHTS)) == HEIGHTS
    chain.store.close()
    report = replay(tmp_path / "archive.db", genesis4())
    assert report.ok and report.final_root == roots[-1]
    with pytest.raises(StoreError, match="keep_blocks"):
        BlockStore(tmp_path / "x.db", keep_blocks=-1)
