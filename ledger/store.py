"""The block and state store: sqlite in WAL mode, the one module of the ledger that touches disk.

Each committed block is written in one sqlite transaction together with its commit, the state root after it, the
new height, and (every ``snapshot_every`` blocks) the row of a full state snapshot, with the snapshots and blocks
that fall out of retention deleted. The snapshot's bytes are a file beside the database (``<db>-snapshots/``),
written and synced before the transaction that names it: sqlite would write them twice (into its log, then into
the database), 0.5-0.8 s for the 133 MB of a million accounts against ~0.1-0.2 s for the file. A file no row
names (a crash between the two, or after a row's delete and before its file's) is removed by the next
:func:`open_chain`. So a process killed at any moment leaves either the whole block or none of it, and
:func:`open_chain` restarts at the last committed height by loading the newest snapshot and replaying the blocks
after it (checking each replayed root against the stored one). :func:`replay` recomputes every root from genesis
and reports the first mismatch; on a store that does not start at genesis it raises :class:`BlocksPruned`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ledger.block import Block, BlockError, Commit
from ledger.chain import INITIAL_HEIGHT, Chain, execute_block
from ledger.crypto import blake2b256
from ledger.encoding import pack
from ledger.errors import DecodeError, LedgerError
from ledger.genesis import Genesis, genesis_state
from ledger.mempool import Mempool
from ledger.state import State, decode_state, encode_state, state_root
from ledger.types import Height

SCHEMA_VERSION = 2  # 2: snapshot bytes in files, their rows in ``snapshots (height, size)``


class StoreError(LedgerError):
    """Root of store errors."""


class WrongGenesis(StoreError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"store belongs to genesis {got.hex()[:16]}, not {expected.hex()[:16]}")
        self.expected, self.got = expected, got


class StoreCorrupt(StoreError):
    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"store corrupt at height {height}: {reason}")
        self.height, self.reason = height, reason


class BlocksPruned(StoreError):
    """Blocks below ``first_height`` are not in this store: pruned (``keep_blocks``), or never fetched by a node
    that joined by state sync. Not corruption: what needs them must ask a node that keeps them."""

    def __init__(self, height: int, first_height: int) -> None:
        super().__init__(f"block {height} is not kept here: this store holds blocks from height {first_height} on "
                         f"(pruned below {first_height}; an archive node, keep_blocks = 0, keeps every block)")
        self.height, self.first_height = height, first_height


class SnapshotGone(StoreError):
    """A snapshot pruned (a newer one replaced it) between finding it and reading it: ask again."""

    def __init__(self, height: int) -> None:
        super().__init__(f"the snapshot at height {height} was pruned meanwhile (a newer one replaced it)")
        self.height = height


class NotSequential(StoreError):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"store expects height {expected}, got {got}")
        self.expected, self.got = expected, got


def snapshot_dir(db_path: str | Path) -> Path:
    """The folder of the snapshot files of the store at ``db_path``."""
    return Path(f"{db_path}-snapshots")


def snapshot_file(db_path: str | Path, height: Height) -> Path:
    """Where the store at ``db_path`` keeps the bytes of its snapshot at ``height`` (its row is in the database)."""
    return snapshot_dir(db_path) / f"{height:012d}.snap"


def read_snapshot(db_path: str | Path, height: Height) -> bytes:
    """The bytes of the snapshot at ``height`` of the store at ``db_path``, checked against its row as it stands
    now, read on a connection of its own (so any thread or process may call it, beside the store's writer).
    ``SnapshotGone`` when no row names it any more (a newer snapshot pruned it since the caller chose it);
    ``StoreCorrupt`` when its row is there and the file is missing or not the size the row says."""
    path = snapshot_file(db_path, height)
    try:
        data: bytes | None = path.read_bytes()
    except FileNotFoundError:
        data = None
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT size FROM snapshots WHERE height = ?", (height,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise SnapshotGone(height)
    if data is None:
        raise StoreCorrupt(height, f"snapshot file {path} is missing")
    if len(data) != int(row[0]):
        raise StoreCorrupt(height, f"snapshot file {path} holds {len(data)} bytes, its row says {row[0]}")
    return data


_GENESIS_HASHES: dict[int, tuple[Genesis, bytes]] = {}


def genesis_hash(genesis: Genesis) -> bytes:
    """Identifies the chain a store belongs to: BLAKE2b of the genesis state's canonical encoding. Remembered per
    genesis object (a few): it builds and encodes the whole genesis state, seconds at a million accounts, and a
    node opening its store asks more than once."""
    got = _GENESIS_HASHES.get(id(genesis))
    if got is not None and got[0] is genesis:
        return got[1]
    digest = blake2b256(pack([genesis.chain_id, encode_state(genesis_state(genesis))]))
    if len(_GENESIS_HASHES) >= 4:
        _GENESIS_HASHES.clear()
    _GENESIS_HASHES[id(genesis)] = (genesis, digest)  # the reference keeps the id from being reused
    return digest


class BlockStore:
    """Blocks, commits, roots and periodic snapshots in one sqlite file.

    Only the newest ``keep_snapshots`` snapshots are kept; 0 keeps every one. With ``keep_blocks`` > 0, each
    snapshot write also deletes the blocks below ``min(oldest kept snapshot, height - keep_blocks)``: a restart
    always finds the block at every kept snapshot and every block after it, and the newest ``keep_blocks`` blocks
    stay for peers to block-sync from. With ``E = snapshot_every``, ``S = keep_snapshots`` >= 1 and
    ``K = keep_blocks`` >= 1 the store holds at most ``max(K, (S - 1) * E) + E`` blocks and ``S`` snapshots
    (``docs/STATE_TREE.md``), and sqlite reuses the freed pages, so the file stops growing. ``keep_blocks = 0``
    keeps every block, as an archive node does (with ``keep_snapshots = 0``); it is the default here because
    deleting history is the node's decision (``bootstrap.home.NodeConfig.keep_blocks``), not the library's."""

    def __init__(self, path: str | Path, *, snapshot_every: int = 100, keep_snapshots: int = 3,
                 keep_blocks: int = 0, synchronous: str = "FULL") -> None:
        if snapshot_every < 1:
            raise StoreError("snapshot_every must be at least 1")
        if keep_snapshots < 0:
            raise StoreError("keep_snapshots must be 0 (keep every one) or more")
        if keep_blocks < 0:
            raise StoreError("keep_blocks must be 0 (keep every block) or more")
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise StoreError(f"unknown synchronous mode {synchronous!r}")
        self.path = Path(path)
        self.snapshot_every = snapshot_every
        self.keep_snapshots = keep_snapshots
        self.keep_blocks = keep_blocks
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.snapshot_dir = snapshot_dir(self.path)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS blocks (
                height INTEGER PRIMARY KEY, hash BLOB NOT NULL, block BLOB NOT NULL,
                commit_ BLOB NOT NULL, state_root BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS snapshots (height INTEGER PRIMARY KEY, size INTEGER NOT NULL);
            """
        )
        schema = self._meta("schema")
        if schema is not None and schema != pack(SCHEMA_VERSION):
            self.db.close()
            raise StoreError(f"{self.path} was written by another version of dacn (store schema "
                             f"{schema.hex()}, this one reads {SCHEMA_VERSION}); move it away and start the node "
                             "again: it state-syncs from its peers, or replays from genesis")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------------------------- meta

    def _meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def init_genesis(self, genesis: Genesis) -> None:
        """Bind an empty store to a genesis, or check that a used one belongs to it."""
        gh = genesis_hash(genesis)
        existing = self._meta("genesis_hash")
        if existing is None:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO meta VALUES ('genesis_hash', ?)", (gh,))
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (pack(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        elif existing != gh:
            raise WrongGenesis(gh, existing)

    @property
    def height(self) -> Height:
        """The last committed height (``INITIAL_HEIGHT - 1`` when empty)."""
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return INITIAL_HEIGHT - 1 if row[0] is None else int(row[0])

    # ---------------------------------------------------------------------------------------- writing

    def save_block(self, block: Block, commit: Commit, state: State, root: bytes) -> None:
        """Write a block, its commit, the root after it (and maybe a snapshot) in one transaction."""
        expected = self.height + 1
        if block.height != expected:
            raise NotSequential(expected, block.height)
        snapshot = encode_state(state) if block.height % self.snapshot_every == 0 else None
        self._write(block, commit, root, snapshot)

    def snapshot_path(self, height: Height) -> Path:
        return snapshot_file(self.path, height)

    def _write_snapshot_file(self, height: Height, data: bytes) -> None:
        """The snapshot's bytes, durable under their final name before any row names them: written to a temporary
        name, synced, renamed, and the directory synced (so the rename survives a power cut too)."""
        self.snapshot_dir.mkdir(exist_ok=True)
        final = self.snapshot_path(height)
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.snapshot_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, block: Block, commit: Commit, root: bytes, snapshot: bytes | None) -> None:
        """A block, its commit and root, and the snapshot after it if any, in one transaction; with a snapshot,
        the snapshots and blocks past retention go in the same transaction (a crash never leaves fewer than kept,
        nor a kept snapshot without its block and every block after it), and the files of the snapshots it
        deleted go after it."""
        if snapshot is not None:
            self._write_snapshot_file(block.height, snapshot)
        gone: list[int] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (block.height, block.hash(), block.encode(), commit.encode(), root),
            )
            if snapshot is not None:
                gone = self._name_snapshot(block.height, len(snapshot))
                if self.keep_blocks:
                    self._prune_blocks(block.height)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self._remove_snapshot_files(gone)

    def _name_snapshot(self, height: Height, size: int) -> list[Height]:
        """Inside the block's transaction: the row of the snapshot just written, and the rows past the newest
        ``keep_snapshots`` deleted; returns the heights deleted, whose files go once the transaction commits."""
        self.db.execute("INSERT INTO snapshots VALUES (?, ?)", (height, size))
        if not self.keep_snapshots:
            return []
        gone = [int(h) for (h,) in self.db.execute(
            "SELECT height FROM snapshots ORDER BY height DESC LIMIT -1 OFFSET ?", (self.keep_snapshots,))]
        self.db.executemany("DELETE FROM snapshots WHERE height = ?", [(h,) for h in gone])
        return gone

    def _remove_snapshot_files(self, heights: Iterable[Height]) -> None:
        for h in heights:
            self.snapshot_path(h).unlink(missing_ok=True)

    def remove_unnamed_snapshots(self) -> list[Path]:
        """Remove the snapshot files no row names, at heights this store has committed (a file at a later height
        may be one a running writer is about to name); what a crash between a file and its row leaves. Only the
        store's writer calls it (:func:`open_chain`)."""
        if not self.snapshot_dir.is_dir():
            return []
        named = {int(h) for (h,) in self.db.execute("SELECT height FROM snapshots")}
        top = self.height
        removed = []
        for path in self.snapshot_dir.iterdir():
            stem = path.name.split(".", 1)[0]
            if not stem.isdigit() or path.suffix not in (".snap", ".tmp"):
                continue  # not ours
            h = int(stem)
            if h <= top and (h not in named or path.suffix == ".tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def _prune_blocks(self, height: Height) -> None:
        """Delete the blocks below both the oldest kept snapshot (open_chain and proofs replay from any kept
        snapshot, checking it against its block's root) and ``height - keep_blocks`` (what peers may still ask
        for). Only at snapshot writes, so one delete covers ``snapshot_every`` blocks. The freed pages are reused
        by the next writes; a VACUUM would rewrite the whole file on the commit path, so none is run."""
        oldest = self.db.execute("SELECT MIN(height) FROM snapshots").fetchone()[0]
        cutoff = min(int(oldest), height - self.keep_blocks)  # the snapshot just written is there
        self.db.execute("DELETE FROM blocks WHERE height < ?", (cutoff,))

    def install_snapshot(self, block: Block, commit: Commit, root: bytes, snapshot: bytes) -> None:
        """Start an empty store at a state-synced snapshot: block ``h`` with its commit and the root after it,
        and the snapshot taken after it, in one transaction (``ledger.statesync`` checked them). Blocks below
        ``h`` are not stored: this node never saw them."""
        if self.height != INITIAL_HEIGHT - 1:
            raise StoreError(f"a snapshot can only start an empty store; this one is at height {self.height}")
        self._write(block, commit, root, snapshot)

    # ---------------------------------------------------------------------------------------- reading

    @property
    def first_height(self) -> Height:
        """The lowest stored block: 1, the height a state-synced store started at, or the lowest kept after
        pruning (``INITIAL_HEIGHT`` for an empty store). Every block from it to :attr:`height` is stored."""
        row = self.db.execute("SELECT MIN(height) FROM blocks").fetchone()
        return INITIAL_HEIGHT if row[0] is None else int(row[0])

    def latest_snapshot_height(self, at_most: Height) -> Height | None:
        """The height of the newest stored snapshot at or below ``at_most`` (without reading it)."""
        row = self.db.execute("SELECT MAX(height) FROM snapshots WHERE height <= ?", (at_most,)).fetchone()
        return None if row[0] is None else int(row[0])

    def latest_snapshot_bytes(self, at_most: Height) -> tuple[Height, bytes] | None:
        """The newest stored snapshot at or below ``at_most``, still encoded (what state sync serves)."""
        row = self.db.execute(
            "SELECT height FROM snapshots WHERE height <= ? ORDER BY height DESC LIMIT 1", (at_most,)
        ).fetchone()
        return None if row is None else (int(row[0]), self.read_snapshot(int(row[0])))

    def read_snapshot(self, height: Height) -> bytes:
        """:func:`read_snapshot` of this store (any thread may call it: it does not use this connection)."""
        return read_snapshot(self.path, height)

    def block_hash(self, height: Height) -> bytes | None:
        """The hash of the stored block at ``height``, read from its column (the block is not decoded)."""
        row = self.db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_block(self, height: Height) -> tuple[Block, Commit, bytes] | None:
        row = self.db.execute("SELECT block, commit_, state_root FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            return None
        return Block.decode(bytes(row[0])), Commit.decode(bytes(row[1])), bytes(row[2])

    def get_blocks(self, from_height: Height, to_height: Height) -> list[tuple[Block, Commit]]:
        """The stored blocks ``from_height..to_height`` with their commits, consecutive from ``from_height``; none
        when ``from_height`` is below :attr:`first_height` (a tail starting elsewhere than asked would read as
        the blocks asked for)."""
        if from_height < self.first_height:
            return []
        rows = self.db.execute(
            "SELECT block, commit_ FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
            (from_height, to_height),
        ).fetchall()
        return [(Block.decode(bytes(b)), Commit.decode(bytes(c))) for b, c in rows]

    def latest_snapshot(self, at_most: Height) -> tuple[Height, State] | None:
        got = self.latest_snapshot_bytes(at_most)
        if got is None:
            return None
        try:
            return got[0], decode_state(got[1])
        except DecodeError as exc:
            raise StoreCorrupt(got[0], f"snapshot does not decode ({exc}); a store written by another version "
                                       "of dacn is started afresh: move it away, and the node state-syncs") from exc


def replay_stored(state: State, blocks: Iterable[tuple[Block, bytes]]) -> State:
    """Execute stored blocks on ``state`` in order, each with the state root stored after it, and check every
    root: ``StoreCorrupt`` names the first height that does not execute or does not reach its root. The blocks
    were fully checked before they were stored, so their signatures are not checked again."""
    for block, root in blocks:
        try:
            execute_block(state, block, check_signatures=False)
        except BlockError as exc:
            raise StoreCorrupt(block.height, f"stored block does not execute: {exc}") from exc
        if state_root(state) != root:
            raise StoreCorrupt(block.height, "replayed state root differs from the stored one")
    return state


def open_chain(
    path: str | Path, genesis: Genesis, *, snapshot_every: int = 100, keep_snapshots: int = 3, keep_blocks: int = 0,
    mempool: Mempool | None = None, restored: State | None = None,
) -> Chain:
    """Open (or create) a store and rebuild the chain at its last committed height: snapshot, then replay.
    ``restored`` is the state of the store's newest snapshot already in memory (state sync just checked and
    installed it): it is used instead of decoding the snapshot again, after the same root check."""
    store = BlockStore(path, snapshot_every=snapshot_every, keep_snapshots=keep_snapshots, keep_blocks=keep_blocks)
    store.init_genesis(genesis)
    store.remove_unnamed_snapshots()
    top = store.height
    if restored is not None and store.latest_snapshot_height(top) == restored.height:
        snap: tuple[Height, State] | None = (restored.height, restored)
    else:
        snap = store.latest_snapshot(top)
    if snap is None:
        if store.first_height > INITIAL_HEIGHT:  # pruning and state sync both leave a snapshot at or above it
            raise StoreCorrupt(store.first_height, "no stored snapshot to start from, and the blocks before this "
                                                   "one are not kept")
        base, state = INITIAL_HEIGHT - 1, genesis_state(genesis)
    else:
        base, state = snap
        stored = store.get_block(base)
        if stored is None or state_root(state) != stored[2]:
            raise StoreCorrupt(base, "snapshot does not match the stored state root")
    last = store.get_block(base) if base >= INITIAL_HEIGHT else None
    for h in range(base + 1, top + 1):
        got = store.get_block(h)
        if got is None:
            raise StoreCorrupt(h, "block missing")
        replay_stored(state, [(got[0], got[2])])
        last = got
    return Chain(
        genesis,
        state=state,
        last_header=None if last is None else last[0].header,
        last_commit=None if last is None else last[1],
        store=store,
        mempool=mempool,
    )


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of :func:`replay`: how far it got, and the first height whose root disagreed (if any)."""

    checked_to: Height
    final_root: bytes
    mismatch_height: Height | None = None
    expected_root: bytes | None = None
    got_root: bytes | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch_height is None


def replay(path: str | Path, genesis: Genesis) -> ReplayReport:
    """Recompute every state root from genesis and compare with the stored roots and the next headers. A store
    that does not start at genesis (pruned, or state-synced) raises :class:`BlocksPruned`: it cannot be checked
    from genesis, and that is not a fault of the store (a gap above its first block is, and is reported)."""
    store = BlockStore(path)
    try:
        store.init_genesis(genesis)
        if store.first_height > INITIAL_HEIGHT:
            raise BlocksPruned(INITIAL_HEIGHT, store.first_height)
        state = genesis_state(genesis)
        root = state_root(state)
        top = store.height
        for h in range(INITIAL_HEIGHT, top + 1):
            got = store.get_block(h)
            if got is None:
                return ReplayReport(h - 1, root, h, None, None, "block missing")
            block, _commit, stored_root = got
            if block.header.state_root != root:
                return ReplayReport(h - 1, root, h - 1, block.header.state_root, root, "next header's state root")
            try:
                execute_block(state, block, check_signatures=True)
            except BlockError as exc:
                return ReplayReport(h - 1, root, h, stored_root, None, f"block does not execute: {exc}")
            root = state_root(state)
            if root != stored_root:
                return ReplayReport(h - 1, root, h, stored_root, root, "stored state root")
        return ReplayReport(top, root)
    finally:
        store.close()
