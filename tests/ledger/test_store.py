"""The sqlite store: reopen at the last height, snapshots plus replay, replay reports, and SIGKILL crashes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.state import state_root_uncached
from ledger.store import (
    BlockStore,
    NotSequential,
    SnapshotGone,
    StoreCorrupt,
    StoreError,
    WrongGenesis,
    open_chain,
    read_snapshot,
    replay,
    snapshot_file,
)
from tests.ledger.chainkit import genesis4, next_block, users

ROOT = Path(__file__).resolve().parents[2]


def grow(chain, n: int) -> None:
    a, b = users(2)
    a.next_nonce = chain.state.nonce(a.account)
    for _ in range(n):
        block, commit = next_block(chain, [a.transfer(b.account, 3)])
        chain.commit_block(block, commit)


def test_reopen_resumes_at_last_height_with_the_same_root(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=4)
    grow(chain, 10)
    root, height, last_hash = chain.root, chain.height, chain.last_header.hash()
    chain.store.close()
    again = open_chain(db, genesis4(), snapshot_every=4)
    assert (again.height, again.root, again.last_header.hash()) == (height, root, last_hash)
    assert again.root == state_root_uncached(again.state)
    assert again.last_commit is not None and again.last_commit.height == height
    grow(again, 2)  # and it keeps going
    assert again.height == 12
    assert [b.height for b, _ in again.get_blocks(3, 5)] == [3, 4, 5]


def test_only_the_newest_snapshots_are_kept_unless_archive(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=2, keep_snapshots=2)
    grow(chain, 11)
    rows = [h for (h,) in chain.store.db.execute("SELECT height FROM snapshots ORDER BY height")]
    assert rows == [8, 10]
    root = chain.root
    chain.store.close()
    again = open_chain(db, genesis4(), snapshot_every=2, keep_snapshots=2)  # restores from 10, replays 11
    assert (again.height, again.root) == (11, root)
    assert state_root_uncached(again.state) == root
    grow(again, 40)  # 20 snapshots more, each replacing the oldest
    assert again.store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 2
    archive = open_chain(tmp_path / "archive.db", genesis4(), snapshot_every=2, keep_snapshots=0)
    grow(archive, 11)
    assert [h for (h,) in archive.store.db.execute("SELECT height FROM snapshots ORDER BY height")] == [
        2, 4, 6, 8, 10]
    with pytest.raises(StoreError, match="keep_snapshots"):
        BlockStore(tmp_path / "x.db", keep_snapshots=-1)


def test_wrong_genesis_and_out_of_order_writes_are_refused(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4())
    grow(chain, 1)
    chain.store.close()
    with pytest.raises(WrongGenesis):
        open_chain(db, genesis4(chain_id="another-chain"))
    chain = open_chain(db, genesis4())
    block, commit = next_block(chain)
    chain.store.save_block(block, commit, chain.state, chain.root)
    with pytest.raises(NotSequential):
        chain.store.save_block(block, commit, chain.state, chain.root)


def test_replay_reports_the_first_mismatch(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=1000)
    grow(chain, 6)
    chain.store.close()
    report = replay(db, genesis4())
    assert report.ok and report.checked_to == 6 and report.final_root == chain.root
    con = sqlite3.connect(db)
    con.execute("UPDATE blocks SET state_root = ? WHERE height = 4", (b"\x07" * 32,))
    con.commit()
    con.close()
    report = replay(db, genesis4())
    assert not report.ok and report.mismatch_height == 4 and report.expected_root == b"\x07" * 32
    with pytest.raises(StoreCorrupt) as exc:
        open_chain(db, genesis4())
    assert exc.value.height == 4


def test_corrupt_snapshot_is_detected(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=2)
    grow(chain, 4)
    chain.store.close()
    other = open_chain(tmp_path / "other.db", genesis4(), snapshot_every=2)
    grow(other, 1)
    from ledger.state import encode_state

    wrong = encode_state(other.state)
    snapshot_file(db, 4).write_bytes(wrong)
    con = sqlite3.connect(db)
    con.execute("UPDATE snapshots SET size = ? WHERE height = 4", (len(wrong),))
    con.commit()
    con.close()
    with pytest.raises(StoreCorrupt, match="does not match the stored state root"):
        open_chain(db, genesis4(), snapshot_every=2)
    snapshot_file(db, 4).write_bytes(wrong[:-1])  # cut short
    with pytest.raises(StoreCorrupt, match="its row says"):
        open_chain(db, genesis4(), snapshot_every=2)
    snapshot_file(db, 4).unlink()
    with pytest.raises(StoreCorrupt, match="is missing"):
        open_chain(db, genesis4(), snapshot_every=2)


def test_snapshot_files_no_row_names_are_removed_and_a_later_one_is_left(tmp_path):
    """A crash between a snapshot's file and its row leaves a file no row names; so does one after a row's delete
    and before its file's. The next open removes those at committed heights; a file above the store's height may
    be a running writer's next one (``dacn replay`` opens the store beside the node) and stays."""
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=2, keep_snapshots=2)
    grow(chain, 8)
    files = sorted(p.name for p in snapshot_file(db, 0).parent.iterdir())
    assert files == [snapshot_file(db, h).name for h in (6, 8)]  # the pruned snapshots' files went with them
    chain.store.close()
    for h in (2, 9, 10):
        snapshot_file(db, h).write_bytes(b"left by a crash")
    snapshot_file(db, 4).with_suffix(".tmp").write_bytes(b"half written")
    again = open_chain(db, genesis4(), snapshot_every=2, keep_snapshots=2)
    assert again.height == 8
    assert sorted(p.name for p in snapshot_file(db, 0).parent.iterdir()) == [
        snapshot_file(db, h).name for h in (6, 8, 9, 10)]
    grow(again, 2)  # the snapshot at 10 is written again, over the stale file
    assert again.store.latest_snapshot(10)[1].height == 10
    again.store.close()


def test_a_snapshot_read_names_a_pruned_one_apart_from_a_lost_file(tmp_path):
    """A reader (another thread, ``dacn state export``) that chose a snapshot the writer then pruned is told to ask
    again; a file lost under a row that still names it is corruption, whoever reads it."""
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4(), snapshot_every=2, keep_snapshots=1)
    grow(chain, 4)
    assert read_snapshot(db, 4) == chain.store.latest_snapshot_bytes(4)[1]
    with pytest.raises(SnapshotGone):
        read_snapshot(db, 2)  # pruned when the snapshot at 4 was written
    snapshot_file(db, 4).unlink()
    with pytest.raises(StoreCorrupt, match="is missing"):
        chain.store.read_snapshot(4)
    chain.store.close()


def test_a_store_of_another_schema_is_refused_with_what_to_do(tmp_path):
    db = tmp_path / "chain.db"
    chain = open_chain(db, genesis4())
    chain.store.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (b"\x01",))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"another version of dacn.*move it away"):
        open_chain(db, genesis4())


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_a_store_that_replays(tmp_path):
    db = tmp_path / "chain.db"
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    last_seen = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.crash_writer", str(db)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Wait until it has committed a random number of new blocks, then kill it mid-stream.
        target = rng.randint(1, 8)
        seen = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            seen = int(line)
            if seen >= last_seen + target:
                break
        # A random extra pause (not a readiness wait) so the kill lands anywhere inside the next commits.
        time.sleep(rng.random() * 0.03)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert seen > last_seen
        chain = open_chain(db, genesis4(), snapshot_every=3)
        # It opens at the last committed height (at least what it printed; a block may have landed after).
        assert chain.height >= seen
        report = replay(db, genesis4())
        assert report.ok and report.checked_to == chain.height and report.final_root == chain.root
        last_seen = chain.height
        chain.store.close()


def test_store_refuses_bad_settings(tmp_path):
    from ledger.store import StoreError

    with pytest.raises(StoreError):
        BlockStore(tmp_path / "x.db", snapshot_every=0)


def test_block_hash_is_the_committed_blocks_hash_with_or_without_a_store(tmp_path):
    from ledger.chain import Chain

    stored, memory = open_chain(tmp_path / "chain.db", genesis4()), Chain(genesis4())
    for chain in (stored, memory):
        grow(chain, 3)
        assert [chain.block_hash(h) for h in (1, 2, 3)] == [b.hash() for b, _ in chain.get_blocks(1, 3)]
        assert chain.block_hash(0) is None and chain.block_hash(4) is None
    stored.store.close()
