"""What writing one state snapshot costs the commit path as the state grows: its bytes as a file beside the
store, synced before the row that names it (``ledger.store``, today) against the same bytes as a blob in the
sqlite store's WAL (before), side by side in one process on the state ``bench.state_root`` builds (N funded
accounts plus N × 0.1 finished jobs).

    .venv/bin/python -m bench.snapshot_write [--sizes 10000,100000,1000000] [--runs 7]

For each size: the state and its first root, then ``runs`` rounds, each touching 1,500 accounts and encoding the
snapshot (``encode_state``, timed apart: both ways pay it), then writing it both ways in alternating order:

* *file*: ``BlockStore._write`` with a snapshot: the file written, fsynced, renamed and its folder fsynced, then the
  block's transaction with the snapshot's row, keeping 3 (the oldest file unlinked after the commit);
* *blob*: the schema-1 store's way, the same bytes inserted into a ``snapshots (height, state)`` table of a WAL
  database with ``synchronous=FULL`` in the block's transaction, keeping 3, with sqlite's automatic checkpoint.

Wall-clock medians (the write waits on the disk, so CPU time would miss it); the machine is shared.
Writes bench/results/snapshot_write.md.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from bench.state_root import build_state, finished_job, touch
from ledger.state import encode_state, state_root
from ledger.store import BlockStore

RESULTS = Path(__file__).resolve().parent / "results" / "snapshot_write.md"
KEEP = 3


class _Blob:
    """The schema-1 way: snapshot bytes as a blob row of the WAL database, pruned in the same transaction."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE blocks (height INTEGER PRIMARY KEY, block BLOB NOT NULL)")
        self.db.execute("CREATE TABLE snapshots (height INTEGER PRIMARY KEY, state BLOB NOT NULL)")

    def write(self, height: int, block: bytes, data: bytes) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO blocks VALUES (?, ?)", (height, block))
        self.db.execute("INSERT INTO snapshots VALUES (?, ?)", (height, data))
        self.db.execute("DELETE FROM snapshots WHERE height NOT IN "
                        "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)", (KEEP,))
        self.db.execute("COMMIT")


class _FileStore(BlockStore):
    """``BlockStore``'s own snapshot write, fed raw rows (the bench has no signed blocks to store)."""

    def write(self, height: int, block: bytes, data: bytes) -> None:
        self._write_snapshot_file(height, data)
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, ?)", (height, bytes(32), block, b"", bytes(32)))
        gone = self._name_snapshot(height, len(data))
        self.db.execute("COMMIT")
        self._remove_snapshot_files(gone)

def measure(n: int, runs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    state, accounts, _ = build_state(n, int(n * 0.1), finished_job(), rng)
    state_root(state)
    enc: list[float] = []
    times: dict[str, list[float]] = {"file": [], "blob": []}
    size = 0
    block = rng.randbytes(60_000)  # about a block of 1,500 transfers
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        stores = {"file": _FileStore(Path(tmp) / "file.db", keep_snapshots=KEEP), "blob": _Blob(Path(tmp) / "blob.db")}
        for i in range(runs):
            touch(state, accounts, 1500, rng)
            state_root(state)
            t = time.perf_counter()
            data = encode_state(state)
            enc.append(time.perf_counter() - t)
            size = len(data)
            for way in (("file", "blob") if i % 2 == 0 else ("blob", "file")):
                t = time.perf_counter()
                stores[way].write(i + 1, block, data)
                times[way].append(time.perf_counter() - t)
    return {"n": n, "bytes": size, "encode": statistics.median(enc),
            **{way: statistics.median(ts) for way, ts in times.items()},
            **{f"{way}_range": (min(ts), max(ts)) for way, ts in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append(measure(n, args.runs, args.seed))
        print(rows[-1], flush=True)
    command = "python -m bench.snapshot_write" + (
        "" if (args.sizes, args.runs) == ("10000,100000,1000000", 7) else f" --sizes {args.sizes} --runs {args.runs}")
    lines = [
        "# snapshot_write: one state snapshot written on the commit path, as a file (today) and as a sqlite blob",
        "",
        f"Command: `{command}`",
        "",
        f"{machine_line()}; the files on the repository's disk.",
        "",
        f"Each size: N accounts and N × 0.1 finished jobs; {args.runs} rounds of 1,500 touched accounts, the "
        "snapshot encoded, then written both ways in alternating order (the module docstring says how). "
        "Wall-clock medians, with the range.",
        "",
        "| accounts | snapshot MB | encode_state ms | file: write ms | blob: write ms | file ÷ blob |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        f_lo, f_hi = r["file_range"]
        b_lo, b_hi = r["blob_range"]
        lines.append(f"| {r['n']:,} | {r['bytes'] / 1e6:.1f} | {r['encode'] * 1e3:.0f} | {r['file'] * 1e3:.0f} "
                     f"({f_lo * 1e3:.0f}–{f_hi * 1e3:.0f}) | {r['blob'] * 1e3:.0f} ({b_lo * 1e3:.0f}–{b_hi * 1e3:.0f}) "
                     f"| {r['file'] / r['blob']:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
