"""``dacn state export``: the ledger state of a home's chain at a height, as a JSON document, read from the store
while the node runs (and the error every ``dacn`` subcommand raises for bad usage)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A command that cannot go on; its message is shown to the user as is."""


def export_state(home: Path, height: int | None = None) -> dict[str, Any]:
    """The ledger state of a home's chain at ``height`` (default: the last committed) as a JSON document.

    Reads the store through a read-only sqlite connection, so it is safe while the node runs: the nearest
    snapshot at or below ``height``, then the stored blocks replayed on it, each root checked. The reads share one
    read transaction, so a snapshot write that prunes blocks meanwhile cannot take away the blocks being replayed.
    """
    from bootstrap.home import home_paths, load_home_genesis
    from ledger.block import Block
    from ledger.genesis import genesis_state
    from ledger.state import decode_state, state_root, total_supply
    from ledger.store import SnapshotGone, StoreCorrupt, read_snapshot, replay_stored
    from p2pnet import PeerId

    home = Path(home)
    genesis = load_home_genesis(home)
    path = home_paths(home)["chain"]
    if not path.exists():
        raise CliError(f"{path}: no chain store yet (the node has not run)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")  # one read transaction: every read below sees the same committed store
        top_row = db.execute("SELECT MAX(height) FROM blocks").fetchone()
        top = int(top_row[0]) if top_row[0] is not None else 0
        target = top if height is None else height
        if not 0 <= target <= top:
            raise CliError(f"--height {target}: the store holds heights 0..{top}")
        snap = db.execute("SELECT height FROM snapshots WHERE height <= ? ORDER BY height DESC LIMIT 1",
                          (target,)).fetchone()
        first = db.execute("SELECT MIN(height) FROM blocks").fetchone()[0] or 1
        if first > 1 and (snap is None or int(snap[0]) < first):  # genesis and the blocks from it are gone
            lowest = db.execute("SELECT MIN(height) FROM snapshots").fetchone()[0]
            raise CliError(f"--height {target}: the state there cannot be rebuilt from this store, which keeps "
                           f"blocks from height {first} and snapshots from height {lowest} on (older ones are "
                           f"pruned, or it joined by state sync); export a height from {lowest} on, or ask an "
                           "archive node (keep_blocks = 0, keep_snapshots = 0)")
        if snap is None:
            base, state = 0, genesis_state(genesis)
        else:
            base = int(snap[0])
            try:
                state = decode_state(read_snapshot(path, base))
            except SnapshotGone:  # the node pruned it (a newer one replaced it) after this read began
                raise CliError(f"--height {target}: the snapshot at height {base} was replaced while this command "
                               "read it; run it again") from None
            except StoreCorrupt as exc:
                raise CliError(f"{path}: {exc}") from None
        block_hash = None
        span = (base, target)
        held = db.execute("SELECT COUNT(*) FROM blocks WHERE height > ? AND height <= ?", span).fetchone()[0]
        if held != target - base:  # never a state short of the height asked for
            raise CliError(f"{path}: store corrupt: {target - base - held} of blocks {base + 1}..{target} missing")
        rows = db.execute("SELECT block, state_root FROM blocks WHERE height > ? AND height <= ? ORDER BY height", span)
        try:
            replay_stored(state, ((Block.decode(bytes(raw)), bytes(root)) for raw, root in rows))
        except StoreCorrupt as exc:
            raise CliError(str(exc)) from None
        row = db.execute("SELECT hash FROM blocks WHERE height = ?", (target,)).fetchone()
        block_hash = bytes(row[0]).hex() if row else None
    finally:
        db.close()

    def pid(acct: bytes) -> str:
        return str(PeerId.from_public_key(acct))

    return {
        "chain_id": state.chain_id,
        "height": target,
        "block_hash": block_hash,
        "state_root": state_root(state).hex(),
        "total_supply": total_supply(state),
        "slashed_pool": state.slashed_pool,
        "validators": [pid(v) for v in state.validators],
        "params": state.params.to_dict(),
        "accounts": {pid(a): {"balance": acc.balance, "nonce": acc.nonce}
                     for a, acc in sorted(state.accounts.items())},
        "workers": {pid(a): w.to_dict() for a, w in sorted(state.workers.items())},
        "jobs": {j.hex(): job.to_dict() for j, job in sorted(state.jobs.items())},
    }
