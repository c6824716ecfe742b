"""Committed tx/s at saturation on a real 4-validator devnet (4 node processes), beside the single-core signed-tx
validation ceiling measured in the same run; then small-job latency and jobs/minute with the 4 nodes' workers.

    .venv/bin/python -m bench.load_devnet [--rates 200,400,800,1600] [--duration 8] [--jobs 8]

Steps: measure the ceiling (decode + canonical check + BLAKE2b id + Ed25519 verify of signed transfers, one
core, this process); start a devnet on free ports; run ``bootstrap.loadgen`` at increasing offered rates (batches
spread over all four nodes' ``POST /txs``), stopping once committed tx/s falls below 80% of the offered rate;
then submit small jobs one at a time (submit → verified latency, in blocks too) and a burst of jobs at once
(jobs/minute with 4 workers). The devnet is stopped at the end whatever happened. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bootstrap.devnet import devnet_down, devnet_up, find_port_base
from bootstrap.loadgen import SINK, LoadConfig, account_keys, run_load
from compute.device import cpu_model
from ledger.tx import Transfer, decode_signed_tx, make_tx, verify_tx_signature


def validation_ceiling(n: int = 4000, repeats: int = 5) -> float:
    """Signed transfers validated per second on one core (decode, id, signature): the median of ``repeats``."""
    keys = account_keys(b"ceiling", 8)
    raws = [make_tx(Transfer(SINK, 1), keys[i % 8], "bench", nonce=i, fee=1).encode() for i in range(n)]
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for raw in raws:
            verify_tx_signature(decode_signed_tx(raw), "bench")
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def run_jobs(nodes: list[Any], n_burst: int) -> dict[str, float]:
    """Sequential small jobs (latency) then a burst of ``n_burst`` at once (throughput), all linear regression.
    Each node funds its own client key from the faucet (the key lives in that node's keystore)."""
    from bootstrap.client import NodeClient

    clients = [NodeClient(n.api_url, timeout=120) for n in nodes]
    for k, cl in enumerate(clients):
        cl.register_client(f"bench-jobs{k}", 100_000)
    c = clients[0]
    lat, lat_blocks = [], []
    for _ in range(3):
        h0 = c.head()["height"]
        t = time.perf_counter()
        final = c.wait_job(c.submit_job("bench-jobs0", "linear_regression", 50)["job_id"], timeout=180)
        lat.append(time.perf_counter() - t)
        lat_blocks.append(c.head()["height"] - h0)
        assert final["status"] == "verified", final
    t = time.perf_counter()
    ids = []
    for i in range(n_burst):
        k = i % len(clients)
        ids.append((k, clients[k].submit_job(f"bench-jobs{k}", "linear_regression", 50)["job_id"]))
    statuses = [clients[k].wait_job(j, timeout=300)["status"] for k, j in ids]
    burst_s = time.perf_counter() - t
    return {"latency_median_s": statistics.median(lat), "latency_blocks_median": statistics.median(lat_blocks),
            "burst": n_burst, "burst_s": burst_s, "jobs_per_min": 60 * n_burst / burst_s,
            "burst_verified": sum(s == "verified" for s in statuses)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="200,400,800,1600")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--accounts", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--no-jobs", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    ceiling = validation_ceiling()
    goal = 0.5 * cores * ceiling / 4
    rows = []
    with tempfile.TemporaryDirectory(prefix="dacn-load-") as tmp:
        d = Path(tmp) / "devnet"
        api = find_port_base(4)
        p2p = find_port_base(4, avoid=range(api, api + 4))
        try:
            nodes = devnet_up(d, 4, validators=4, api_port=api, p2p_port=p2p, timeout=180)
            for rate in (float(r) for r in args.rates.split(",")):
                cfg = LoadConfig([n.api_url for n in nodes], rate=rate, duration=args.duration,
                                 accounts=args.accounts, faucet_home=Path(nodes[0].home), settle_s=60)
                r = trio.run(run_load, cfg)
                rows.append(r)
                print(f"rate {rate:.0f}: offered {r.offered_tps:.0f}, committed {r.committed_tps:.0f} tx/s", flush=True)
                if r.committed_tps < 0.8 * rate:
                    break
            jobs = None if args.no_jobs else run_jobs(nodes, args.jobs)
        finally:
            devnet_down(d, timeout=10)
    best = max(rows, key=lambda r: r.committed_tps)
    print(f"\nMachine: nproc={cores}, {cpu_model()}, {time.strftime('%Y-%m-%d')}\n")
    print("| offered rate | offered tx/s | committed tx/s | latency p50 ms | latency p99 ms | median block ms | "
          "largest block | rejected |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.rate:.0f} | {r.offered_tps:.0f} | {r.committed_tps:.0f} | {r.percentile_ms(0.5):.0f} | "
              f"{r.percentile_ms(0.99):.0f} | {r.block_time_median_ms:.0f} | {max(r.block_txs, default=0)} | "
              f"{sum(r.rejections.values())} |")
    print("\n| figure | value |\n| --- | --- |")
    print(f"| single-core signed-tx validation ceiling, tx/s | {ceiling:,.0f} |")
    print(f"| goal: 50% of cores × ceiling ÷ 4 validators, tx/s | {goal:,.0f} |")
    print(f"| committed tx/s at saturation (best row) | {best.committed_tps:,.0f} |")
    print(f"| ratio to goal | {best.committed_tps / goal:.2f} |")
    print(f"| median block time at saturation, ms | {best.block_time_median_ms:.0f} |")
    if jobs is not None:
        print(f"| small job submit → verified, median of 3, s | {jobs['latency_median_s']:.1f} "
              f"({jobs['latency_blocks_median']:.0f} blocks) |")
        print(f"| jobs/minute, burst of {jobs['burst']} with 4 workers | {jobs['jobs_per_min']:.1f} "
              f"({jobs['burst_verified']}/{jobs['burst']} verified in {jobs['burst_s']:.0f} s) |")


if __name__ == "__main__":
    main()
