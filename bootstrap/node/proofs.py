"""State proofs for light clients: the node's half of ``GET /proof/<section>/<id>`` (``ledger.lightclient``).

The state after block ``h`` is fixed by the ``state_root`` in block ``h + 1``'s header, which exists only once
``h + 1`` commits. So a proof is cut from the committed state at once (the tree's path, the header, the record),
and the answer then waits for the next block, up to a timeout, to attach its header and commit; a chain that
stalls gets a 429 with ``Retry-After`` rather than a proof nobody could check. Cutting a proof costs one tree path
(about log2 n hashes) and holds a few kilobytes while it waits.

A proof at a past height ``h`` (below the head, so block ``h + 1`` is stored) needs the state at ``h``: the desk
rebuilds it from the newest stored snapshot at or below ``h`` and the blocks after it, off the event loop, checks
the rebuilt root against the stored one, and keeps that one state for the next proofs at the same height. A
rebuild is a decode and a full tree build (seconds at a million accounts), so one runs at a time, and after one
the next waits twice as long as it took (at least ``REBUILD_COOLDOWN_S``): whoever asks, rebuilds take at most a
third of a core. Meanwhile a request for another height is a 429 with ``Retry-After``. A height below every kept
snapshot is refused, naming what an archive node keeps (blocks are pruned only below the oldest kept snapshot,
so every height from it on can be rebuilt).
"""

from __future__ import annotations

import time
from typing import Any

import trio

from bootstrap.errors import HeightNotKept, NodeBusy
from ledger.chain import INITIAL_HEIGHT
from ledger.encoding import pack
from ledger.genesis import genesis_state
from ledger.lightclient import KEY_BYTES, StateProof
from ledger.state import State, decode_state, prove_record, record_value, state_header
from ledger.store import SnapshotGone, StoreCorrupt, replay_stored

REBUILD_COOLDOWN_S = 10.0


class ProofDesk:
    """Cuts state proofs from the node's committed state and anchors them to the next block."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._next_block = trio.Event()
        self._past: tuple[int, State] | None = None  # the last state rebuilt for a past height
        self._rebuilding = False
        self._next_rebuild = 0.0  # time.monotonic() before which no other past state is rebuilt

    def on_commit(self) -> None:
        """A block committed: wake every proof waiting for its anchor."""
        self._next_block.set()
        self._next_block = trio.Event()

    async def prove(self, section: str, raw_key: bytes, *, timeout: float, height: int | None = None) -> StateProof:
        """A proof of the record ``raw_key`` of ``section`` (present or absent) at the current height, or at a past
        ``height`` (see the module docstring)."""
        if section not in KEY_BYTES or len(raw_key) != KEY_BYTES[section]:
            raise ValueError(f"a {section} key is {KEY_BYTES.get(section)} bytes")
        node = self.node
        if height is not None and height > node.height:
            raise ValueError(f"height {height} is above the head ({node.height})")
        if height is not None and height < node.height:
            state = await self._state_at(height)
        else:
            state, height = node.state, node.height
        key: Any = (raw_key[:32], raw_key[32:]) if section == "allowance" else raw_key
        record, tree_root, proof = prove_record(state, section, key)
        packed = None if record is None else pack(record_value(section, key, record))
        header = state_header(state)
        with trio.move_on_after(timeout):
            while node.height < height + 1:
                await self._next_block.wait()
        got = node.chain.get_blocks(height + 1, height + 1)
        if not got and height + 1 < node.chain.first_height:  # a snapshot pruned it while the state was rebuilt
            raise HeightNotKept(f"block {height + 1}, which fixes the state root of height {height}, is no longer "
                                f"kept here (blocks from height {node.chain.first_height} on)")
        if not got:
            raise NodeBusy(f"block {height + 1}, which fixes the state root of height {height}, has not "
                           f"committed within {timeout:g} s", retry_after_s=2.0)
        block, commit = got[0]
        return StateProof(section, raw_key, packed, header, tree_root, proof, block.header, commit)

    async def _state_at(self, height: int) -> State:
        if self._past is not None and self._past[0] == height:
            return self._past[1]
        store = self.node.chain.store
        base = store.latest_snapshot_height(height) if store is not None else None
        # An archive node keeps every snapshot and every block: below its first snapshot (fewer than
        # snapshot_every blocks in) it rebuilds from genesis, a replay no longer than from any other snapshot.
        from_genesis = (base is None and store is not None and store.keep_snapshots == 0
                        and store.first_height == INITIAL_HEIGHT and self.node.genesis is not None)
        if not from_genesis and (base is None or base < store.first_height):
            kept = store.db.execute("SELECT MIN(height) FROM snapshots").fetchone()[0] if store else None
            raise HeightNotKept(f"the state at height {height} is not kept here (snapshots from height {kept}; an "
                                "archive node, keep_snapshots = 0 and keep_blocks = 0, keeps every one)")
        wait = self._next_rebuild - time.monotonic()
        if self._rebuilding or wait > 0:
            raise NodeBusy(f"the state at another past height ({self._past[0] if self._past else '…'}) was rebuilt "
                           "just now", retry_after_s=round(max(wait, 2.0), 1))
        self._rebuilding = True
        started = time.monotonic()
        try:
            genesis = self.node.genesis
            start = 0 if from_genesis else base
            rows = [store.get_block(h) for h in range(start + 1, height + 1)]  # (block, commit, root after it)
            stored = [(row[0], row[2]) for row in rows]

            def rebuild() -> State:  # the snapshot file's read too: 133 MB at a million accounts
                return replay_stored(genesis_state(genesis) if from_genesis else decode_state(
                    store.read_snapshot(base)), stored)

            try:
                state = await trio.to_thread.run_sync(rebuild)
            except SnapshotGone as exc:  # pruned by a newer snapshot since it was chosen
                raise NodeBusy(f"rebuilding the state at height {height}: {exc}", retry_after_s=2.0) from exc
            except StoreCorrupt as exc:  # this node's own store is at fault, not the request: a 500, logged
                raise RuntimeError(f"rebuilding the state at height {height}: {exc}") from exc
        finally:
            self._rebuilding = False
            took = time.monotonic() - started
            self._next_rebuild = time.monotonic() + max(REBUILD_COOLDOWN_S, 2 * took)
        self._past = (height, state)
        return state
