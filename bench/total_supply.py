"""What the total supply that ``/network/stats`` shows costs per block as the state grows: ``ledger.state.total_supply``
(a running sum kept with the state tree) beside ``total_supply_uncached`` (every record summed: what each new
height cost before), on the state ``bench.state_root`` builds (N funded accounts plus N × 0.1 finished jobs).

    .venv/bin/python -m bench.total_supply [--sizes 10000,100000,1000000] [--touched 1500]

For each size, in a fresh child process: the state and its first root; then 21 blocks, each crediting ``touched``
distinct accounts (a full block of transfers writes about that many) through ``State.w_account``. Per block, timed
apart: ``state_root`` (it brings the running sum up to date with the tree, so the keeping's cost is inside it),
then the read of ``total_supply`` (once per height, as the view does), then ``total_supply_uncached``; and, on the
same records, what keeping the sum adds to the root: each record's old tokens read from its kept snapshot bytes
and its new ones from the record (``ledger.state._tokens_kept`` and ``_tokens_in``, as ``_sync_tree`` runs them,
in a loop of their own: an upper bound, since inside the root the records' lookups are shared).
Medians; this process's CPU time (the machine's two cores are shared). Writes bench/results/total_supply.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from bench.state_root import build_state, finished_job
from ledger.state import _tokens_in, _tokens_kept, state_root, total_supply, total_supply_uncached

RESULTS = Path(__file__).resolve().parent / "results" / "total_supply.md"
BLOCKS = 21


def measure(n: int, touched: int, seed: int) -> dict[str, Any]:
    """One size's row; runs in its own child process."""
    rng = random.Random(seed)
    state, accounts, _ = build_state(n, int(n * 0.1), finished_job(), rng)
    state_root(state)
    assert total_supply(state) == total_supply_uncached(state)
    k = min(touched, n // 2)
    roots, reads, sums, keeping = [], [], [], []
    for _ in range(BLOCKS):
        sp = state.savepoint()
        state.set_height(state.height + 1)
        chosen = rng.sample(accounts, k)
        for a in chosen:
            state.w_account(a).balance += 1
        state.release(sp)
        kept = state._packed["account"]
        t = time.process_time()
        for a in chosen:  # what _sync_tree adds per record for the sum, before the root replaces the kept bytes
            _tokens_kept("account", kept[a])
            _tokens_in("account", state.accounts[a])
        keeping.append(time.process_time() - t)
        t = time.process_time()
        state_root(state)
        roots.append(time.process_time() - t)
        t = time.process_time()
        running = total_supply(state)
        reads.append(time.process_time() - t)
        t = time.process_time()
        summed = total_supply_uncached(state)
        sums.append(time.process_time() - t)
        assert running == summed
    med = statistics.median
    return {"n": n, "k": k, "root_ms": med(roots) * 1e3, "keep_ms": med(keeping) * 1e3,
            "read_us": med(reads) * 1e6, "sum_ms": med(sums) * 1e3}


def run_size(n: int, touched: int, seed: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(measure, n, touched, seed).result()


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# total_supply: the total supply /network/stats shows, per block as the state grows (ledger.state)",
        "",
        f"Command: `.venv/bin/python -m bench.total_supply --sizes {args.sizes} --touched {args.touched}`",
        "",
        machine_line(),
        "",
        "The state of `bench.state_root` (N funded accounts, 0.1 × N finished jobs). Each of 21 blocks credits k "
        "distinct accounts; medians of this process's CPU time. *Root* is `state_root` with the running sum kept "
        "inside it; *keeping* is the part of it the sum adds (each record's old tokens read from its kept bytes, its "
        "new ones from the record, timed in a loop of its own, so with lookups the root's loop shares: an upper "
        "bound); *read* is `total_supply` once the root is current; *summed* is "
        "`total_supply_uncached`, every record added up, which each new height cost the stats view before.",
        "",
        "| accounts | k touched | root ms | keeping the sum, ms | share of the root | read µs | summed ms | "
        "summed ÷ (keeping + read) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['k']:,} | {r['root_ms']:.1f} | {r['keep_ms']:.2f} | "
                     f"{r['keep_ms'] / r['root_ms']:.1%} | {r['read_us']:.1f} | {r['sum_ms']:.1f} | "
                     f"{r['sum_ms'] / (r['keep_ms'] + r['read_us'] / 1e3):,.0f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        kept = [(r["keep_ms"] + r["read_us"] / 1e3) / r["k"] * 1e3 for r in (a, b)]
        lines += ["", f"From {a['n']:,} to {b['n']:,} accounts ({b['n'] // a['n']:,}×) the summed supply grows × "
                      f"{b['sum_ms'] / a['sum_ms']:,.1f}, the kept one (keeping + read, per record written: "
                      f"{kept[0]:.2f} and {kept[1]:.2f} µs) × {kept[1] / kept[0]:.1f}, what a bigger dict's "
                      "lookups cost; it grows with the records a block writes, not with those the state holds."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="accounts, comma-separated")
    parser.add_argument("--touched", type=int, default=1500, help="accounts credited per block")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(run_size(n, args.touched, args.seed))
        print(rows[-1], flush=True)
    text = report(rows, args)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
