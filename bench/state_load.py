"""Committed tx/s of a 4-validator devnet whose state holds 1M funded accounts and 100,000 finished jobs, against
the same devnet with an empty state, side by side in one run (issue 15's goal: ≥ 90%).

    .venv/bin/python -m bench.state_load [--accounts 1000000] [--jobs 100000] [--pairs 2] [--rates 1500,4000]

Each variant is a fresh 4-process devnet on loopback (`pool_size = 0`: no compute workers, so nothing bids and
the nodes' cores go to the chain). Both genesis files hold the same 10,000 recipient accounts and the same job
clients; the "large" one also holds ``--accounts`` random funded accounts. On the large devnet the benchmark then
posts ``--jobs`` signed ``submit_job`` txs (the ledger's real path: escrow, the job record, its bid window) from
the clients and waits until every job has been refunded at the end of its bid window (no bidder): finished jobs
in the live state (the devnet's `job_retention_blocks` is 50,000, so none leaves it during the run). The empty
devnet gets no jobs. Then on each, the load generator (``bootstrap.cli.loadgen``, 64 senders, each to one node)
offers each rate of ``--rates`` for ``--duration`` s, every transfer paying the next of the recipients, so each
one writes a leaf of the full tree on the large devnet, and the same leaves on the empty one. The variants run
in the order empty, large, large, empty, … so drift on the shared machine falls on both.

Reported per variant: the committed tx/s at each rate (the best is the devnet's throughput), the admitted p50/p99
latency, the median block time, and the nodes' peak RSS. Writes bench/results/state_load.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.machine import machine_line
from bench.state_sync_join import _child_env, _vm_hwm_mib, add_accounts, set_config
from bootstrap.cli.client import ClientError
from bootstrap.cli.devnet import create_devnet, devnet_down, find_port_base, start_node, wait_ready
from bootstrap.cli.loadgen import RETRYABLE, LoadConfig, LoadReport, _Http, _reason, account_keys, run_load
from ledger.crypto import blake2b256
from ledger.genesis import load_genesis
from ledger.tx import SubmitJob, make_tx

RESULTS = Path(__file__).resolve().parent / "results" / "state_load.md"
GOAL = 0.90
RECIPIENTS = 10_000
CLIENTS = 1_000
REWARD, VERIFICATION_FEE = 10, 1
BATCH = 2048


def recipients() -> list[bytes]:
    return [blake2b256(b"bench-state-load-recipient" + i.to_bytes(4, "big")) for i in range(RECIPIENTS)]


def write_genesis(homes: list[Path], extra_accounts: int, jobs: int) -> tuple[str, int, int, int]:
    """Add the recipients, the job clients and ``extra_accounts`` random accounts to node 0's genesis and copy it
    to every home. Returns (chain id, min fee, allocations, bytes), read before the file grows."""
    small = load_genesis(homes[0] / "genesis.json")
    per_client = -(-jobs // CLIENTS) if jobs else 0
    client_balance = 2 * per_client * (REWARD + VERIFICATION_FEE + small.params.min_fee) + 1000
    named = [(r, 1) for r in recipients()]
    named += [(bytes(k.verify_key), client_balance) for k in account_keys(b"bench-state-load-client", CLIENTS)]
    size, _seconds = add_accounts(homes, extra_accounts, 1000, named)
    return small.chain_id, small.params.min_fee, len(small.allocations) + len(named) + extra_accounts, size


def sign_jobs(chain_id: str, fee: int, jobs: int) -> list[list[str]]:
    """``jobs`` submit_job txs, hex, one list per client in nonce order (a bid window of 2 blocks, no offers)."""
    out = []
    keys = account_keys(b"bench-state-load-client", CLIENTS)
    per_client = -(-jobs // CLIENTS)
    left = jobs
    for c, key in enumerate(keys):
        mine = []
        for n in range(min(per_client, left)):
            p = SubmitJob(model="linear_regression", params_digest=blake2b256(b"p%d-%d" % (c, n)),
                          dataset_digest=blake2b256(b"d%d-%d" % (c, n)), reward=REWARD,
                          verification_fee=VERIFICATION_FEE, tolerance_abs=0, tolerance_ppm=1000, bid_window=2,
                          assign="bids")
            mine.append(make_tx(p, key, chain_id, nonce=n, fee=fee).encode().hex())
        left -= len(mine)
        out.append(mine)
    return out


def post_jobs(urls: list[str], per_client: list[list[str]], timeout: float = 900.0) -> float:
    """Post every client's txs to its node (client k to node k mod n), resending what back-pressure deferred;
    returns the seconds until every one was admitted."""
    nodes = [_Http(u, 60.0) for u in urls]
    queues: list[list[str]] = [[] for _ in urls]
    for k, txs in enumerate(per_client):
        queues[k % len(urls)].extend(txs)
    t0 = time.monotonic()
    while any(queues):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"job txs not admitted after {timeout:.0f} s: {sum(map(len, queues))} left")
        deferred = False
        for i, node in enumerate(nodes):
            batch, queues[i] = queues[i][:BATCH], queues[i][BATCH:]
            if not batch:
                continue
            status, doc = node.call("POST", "/txs", {"txs": batch})
            if status != 200:
                queues[i] = batch + queues[i]
                deferred = True
                continue
            again = []
            for raw, res in zip(batch, doc["results"], strict=True):
                if res.get("status") == "pending":
                    continue
                if _reason(res) not in RETRYABLE:
                    raise RuntimeError(f"a job tx was refused: {res}")
                again.append(raw)
            if again:
                queues[i] = again + queues[i]
                deferred = True
        if deferred:
            time.sleep(0.5)
    return time.monotonic() - t0


def wait_refunded(url: str, jobs: int, timeout: float = 900.0) -> float:
    """Seconds until the node's job index counts ``jobs`` refunded jobs (every bid window over, no bidder)."""
    node = _Http(url, 30.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status, doc = node.call("GET", "/network/stats")
        if status == 200 and doc["jobs_by_status"].get("refunded", 0) >= jobs:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise RuntimeError(f"only {doc['jobs_by_status']} after {timeout:.0f} s")


def run_variant(name: str, extra_accounts: int, jobs: int, rates: list[float], duration: float,
                snapshot_every: int | None = None, profile: tuple[str, Path] | None = None) -> dict[str, Any]:
    """One devnet's run. ``profile`` = (py-spy executable, folder): node 1 is sampled at 100 Hz through the
    highest rate's load, into ``<folder>/<name>-<n>.txt`` (folded stacks)."""
    directory = Path(tempfile.mkdtemp(prefix=f"bench-state-load-{name}-", dir="/tmp"))
    api = find_port_base(4)
    p2p = find_port_base(4, avoid=range(api, api + 4))
    nodes = create_devnet(directory, 4, validators=4, api_port=api, p2p_port=p2p)
    homes = [Path(nd.home) for nd in nodes]
    out: dict[str, Any] = {"name": name, "accounts": extra_accounts, "jobs": jobs, "rows": []}
    try:
        chain_id, min_fee, out["allocations"], out["genesis_bytes"] = write_genesis(homes, extra_accounts, jobs)
        for h in homes:
            set_config(h, pool_size=0, **({"snapshot_every": snapshot_every} if snapshot_every else {}))
        t0 = time.monotonic()
        procs = {nd.index: start_node(directory, nd, env=_child_env()) for nd in nodes}
        wait_ready(nodes, directory=directory, timeout=900, min_height=2, procs=procs)
        out["start_s"] = time.monotonic() - t0
        urls = [nd.api_url for nd in nodes]
        if jobs:
            signed = sign_jobs(chain_id, min_fee, jobs)
            out["jobs_post_s"] = post_jobs(urls, signed)
            out["jobs_refunded_s"] = wait_refunded(urls[0], jobs)
        print(f"{name}: {out['allocations']:,} allocations, up in {out['start_s']:.0f} s"
              + (f", {jobs:,} jobs posted in {out['jobs_post_s']:.0f} s, refunded after "
                 f"{out['jobs_refunded_s']:.0f} s more" if jobs else ""), flush=True)
        for rate in rates:
            cfg = LoadConfig(urls, rate=rate, duration=duration, accounts=64, faucet_home=homes[0], settle_s=60,
                             recipients=tuple(recipients()))
            spy = None
            if profile is not None and rate == max(rates):
                profile[1].mkdir(parents=True, exist_ok=True)
                target = profile[1] / f"{name}-{len(list(profile[1].glob(name + '-*.txt')))}.txt"
                spy = subprocess.Popen([profile[0], "record", "-r", "100", "-d", str(int(duration)), "-p",
                                        str(procs[1].pid), "-f", "raw", "-o", str(target), "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            report: LoadReport = trio.run(run_load, cfg)
            if spy is not None:
                spy.wait(timeout=duration + 60)
            out["rows"].append(report)
            print(f"{name} @ {rate:.0f}: committed {report.committed_tps:.0f} tx/s, admitted p99 "
                  f"{report.percentile_ms(0.99, admitted=True) / 1000:.2f} s", flush=True)
        out["rss_mib"] = [_vm_hwm_mib(p.pid) for p in procs.values()]
        try:
            out["height"] = nodes[0].client().head()["height"]
        except ClientError:
            out["height"] = None
    finally:
        devnet_down(directory, timeout=20.0)
        shutil.rmtree(directory, ignore_errors=True)
    return out


def best_tps(v: dict[str, Any]) -> float:
    return max(r.committed_tps for r in v["rows"])


def report(runs: list[dict[str, Any]], command: str, duration: float, snapshot_every: int | None = None) -> str:
    lines = [
        "# state_load: committed tx/s with 1M accounts and 100,000 finished jobs in the state, against an empty "
        "state",
        "",
        f"Command: `{command}`",
        "",
        machine_line() + "; each variant a fresh 4-validator devnet (`pool_size = 0`, `snapshot_every = "
        f"{snapshot_every or 20}`) on these 2 cores, the load "
        f"generator beside it; {duration:.0f} s per rate, 64 senders, each to one node; every transfer pays the "
        f"next of {RECIPIENTS:,} recipients that both genesis files hold. Order: " + ", ".join(r["name"] for r in runs)
        + ".",
        "",
        "| variant | state at the load | up s | jobs posted s | rate asked | committed tx/s | admitted p50 s "
        "| admitted p99 s | median block ms | largest block | peak RSS MiB (per node) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in runs:
        state = (f"{v['allocations']:,} accounts, {v['jobs']:,} refunded jobs" if v["jobs"]
                 else f"{v['allocations']:,} accounts, no jobs")
        rss = ", ".join(f"{x:,.0f}" for x in v.get("rss_mib", []) if x is not None)
        for r in v["rows"]:
            lines.append(
                f"| {v['name']} | {state} | {v['start_s']:.0f} | {v.get('jobs_post_s', 0):.0f} | {r.rate:,.0f} "
                f"| {r.committed_tps:,.0f} | {r.percentile_ms(0.5, admitted=True) / 1000:.2f} "
                f"| {r.percentile_ms(0.99, admitted=True) / 1000:.2f} | {r.block_time_median_ms:.0f} "
                f"| {max(r.block_txs, default=0):,} | {rss} |")
    large = [best_tps(v) for v in runs if v["jobs"]]
    empty = [best_tps(v) for v in runs if not v["jobs"]]
    ratio = statistics.median(large) / statistics.median(empty)
    pairs = [f"{a / b:.2f}" for a, b in zip(large, empty, strict=False)]
    lines += [
        "",
        f"Best committed tx/s per devnet (its saturation): large state {', '.join(f'{x:,.0f}' for x in large)}; "
        f"empty {', '.join(f'{x:,.0f}' for x in empty)}. Ratio of the medians {ratio:.2f} (pairs in run order: "
        f"{', '.join(pairs)}). Goal (issue 15): ≥ {GOAL:.2f}: {'met' if ratio >= GOAL else 'not met'}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--rates", default="1500,4000")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--snapshot-every", type=int, default=None,
                    help="the nodes' snapshot_every (default: the devnet's, 20)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--profile", type=Path, default=None,
                    help="sample node 1 with py-spy through each devnet's highest rate, into this folder")
    ap.add_argument("--py-spy", default="py-spy", help="the py-spy executable (with --profile)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    order = []
    for i in range(args.pairs):
        order += [("empty", 0, 0), ("large", args.accounts, args.jobs)][:: 1 if i % 2 == 0 else -1]
    profile = (args.py_spy, args.profile) if args.profile else None
    runs = [run_variant(name, acc, jobs, rates, args.duration, args.snapshot_every, profile)
            for name, acc, jobs in order]
    command = "python -m bench.state_load" + "".join(
        f" --{k} {v}" for k, v, d in (("accounts", args.accounts, 1_000_000), ("jobs", args.jobs, 100_000),
                                      ("pairs", args.pairs, 2), ("rates", args.rates, "1500,4000"),
                                      ("duration", args.duration, 15.0),
                                      ("snapshot-every", args.snapshot_every, None)) if v != d)
    text = report(runs, command, args.duration, args.snapshot_every)
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
