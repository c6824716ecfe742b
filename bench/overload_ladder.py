"""The overload ladder (issue 17): committed tx/s and latency on a real 4-validator devnet at 1×, 2×, 4× and 8× its
saturation rate, the same accounts throughout, in one session; then the 1× run again, to show that the overload
left nothing behind.

    .venv/bin/python -m bench.overload_ladder [--probe 1500,3000,6000] [--duration 8] [--accounts 64]
        [--routing account,spread] [--backlog 0,1.5] [--out bench/results/overload_ladder.md]

Steps: start a devnet on free ports; find the saturation rate with short probe runs (the best committed tx/s of
the probes: the peak); offer 1×, 2×, 4× and 8× the peak with ``bootstrap.cli.loadgen`` (which honours the nodes'
back-pressure: a 429 with Retry-After keeps the tx and sends it again later, so nothing is dropped by the
client); then 1× again. For each rung: offered and committed tx/s, latency p50/p99 of the txs sent (submit →
seen in a block, back-pressure waits included), txs deferred by back-pressure, txs refused for their own sake, and
accepted txs never committed (goal: 0); latency both from first offer and from the accepting POST. Goals:
committed at 4× ≥ 90% of the peak, p99 of admitted txs ≤ 5 s, 0 lost, and the
run after the overload as fast as the first 1×. Writes a markdown file and prints it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import trio

from bootstrap.cli.devnet import create_devnet, devnet_down, devnet_up, find_port_base
from bootstrap.cli.loadgen import LoadConfig, LoadReport, run_load
from bootstrap.home import NodeConfig
from compute.device import cpu_model


def _row(label: str, r: LoadReport, peak: float) -> str:
    lost = r.admitted_uncommitted
    return (f"| {label} | {r.rate:,.0f} | {r.offered_tps:,.0f} | {r.committed_tps:,.0f} | "
            f"{r.committed_tps / peak:.2f} | {r.percentile_ms(0.5) / 1000:.2f} | {r.percentile_ms(0.99) / 1000:.2f} | "
            f"{r.percentile_ms(0.5, admitted=True) / 1000:.2f} | {r.percentile_ms(0.99, admitted=True) / 1000:.2f} | "
            f"{sum(r.deferred.values()):,} | {sum(r.rejections.values()):,} | {lost:,} | {r.uncommitted - lost:,} | "
            f"{max(r.block_txs, default=0):,} | {r.block_time_median_ms:.0f} |")


ROUTING = {
    "account": "each account sends to one node (account k to node k mod 4), as a wallet does",
    "spread": "whole batches go to the nodes in turn, so each sender's consecutive nonces land on every node and "
              "meet again only by gossip (`--spread`)",
}


def ladder(args: argparse.Namespace, routing: str, backlog_s: float) -> list[str]:
    """One whole ladder (probes, rungs, the 1× after) on a fresh devnet whose nodes refuse submissions past
    ``backlog_s`` of commits (``max_backlog_s``; 0: off); the markdown section for it."""
    with tempfile.TemporaryDirectory(prefix="dacn-ladder-") as tmp:
        d = Path(tmp) / "devnet"
        api = find_port_base(4)
        p2p = find_port_base(4, avoid=range(api, api + 4))
        try:
            for node in create_devnet(d, 4, validators=4, api_port=api, p2p_port=p2p):
                home = Path(node.home)
                replace(NodeConfig.load(home), max_backlog_s=backlog_s).save(home)
            nodes = devnet_up(d, 4, validators=4, api_port=api, p2p_port=p2p, timeout=180)
            urls = [n.api_url for n in nodes]

            def load(rate: float) -> LoadReport:
                cfg = LoadConfig(urls, rate=rate, duration=args.duration, accounts=args.accounts,
                                 faucet_home=Path(nodes[0].home), settle_s=args.settle, spread=routing == "spread")
                r = trio.run(run_load, cfg)
                print(f"{routing}, rate {rate:,.0f}: offered {r.offered_tps:,.0f}, committed {r.committed_tps:,.0f} "
                      f"tx/s, p99 {r.percentile_ms(0.99) / 1000:.2f} s "
                      f"(admitted {r.percentile_ms(0.99, admitted=True) / 1000:.2f} s), "
                      f"lost {r.admitted_uncommitted}, never accepted {r.uncommitted - r.admitted_uncommitted}",
                      flush=True)
                return r

            probes = [load(float(x)) for x in args.probe.split(",")]
            peak = max(r.committed_tps for r in probes)
            rungs = [(f"{m}×", load(float(m) * peak)) for m in args.ladder.split(",")]
            rungs.append(("1× after", load(peak)))
        finally:
            devnet_down(d, timeout=10)
    gate = f"max_backlog_s = {backlog_s:g}" + (" (the backlog gate off)" if not backlog_s else "")
    lines = [f"## Routing: {routing}, {gate}\n", f"{ROUTING[routing][0].upper()}{ROUTING[routing][1:]}.\n"]
    lines.append("Probes (to find the peak): " + ", ".join(
        f"{r.rate:,.0f} offered → {r.committed_tps:,.0f} committed" for r in probes) + f"; peak {peak:,.0f} tx/s.\n")
    lines.append("| rung | rate asked, tx/s | offered tx/s | committed tx/s | ÷ peak | p50 s | p99 s | admitted p50 s "
                 "| admitted p99 s | deferred (back-pressure) | refused | accepted, never committed "
                 "| offered, never accepted | largest block | median block ms |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines += [_row(label, r, peak) for label, r in rungs]
    four = dict(rungs).get("4×")
    after, first = rungs[-1][1], rungs[0][1]
    lines.append("")
    if four is not None:
        lines.append(f"Goal, committed at 4× ≥ 90% of the peak: {four.committed_tps / peak:.2f} "
                     f"({'met' if four.committed_tps >= 0.9 * peak else 'not met'}).")
        p99 = four.percentile_ms(0.99, admitted=True) / 1000
        lines.append(f"Goal, p99 latency of admitted txs at 4× ≤ 5 s: {p99:.2f} s "
                     f"({'met' if p99 <= 5 else 'not met'}).")
    lines.append(f"Goal, 0 accepted txs lost: {sum(r.admitted_uncommitted for _, r in rungs)} lost over all rungs "
                 f"({sum(r.uncommitted - r.admitted_uncommitted for _, r in rungs)} more offered and still refused "
                 "when the settle time ran out).")
    lines.append(f"After the overload: {after.committed_tps:,.0f} tx/s against {first.committed_tps:,.0f} at the "
                 f"first 1× (ratio {after.committed_tps / max(first.committed_tps, 1):.2f}).\n")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", default="1500,3000,6000", help="rates tried to find the peak, tx/s")
    ap.add_argument("--ladder", default="1,2,4,8", help="multiples of the peak offered, in order")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--accounts", type=int, default=64)
    ap.add_argument("--settle", type=float, default=90.0)
    ap.add_argument("--routing", default="account,spread",
                    help="how the load generator routes txs to the nodes, one whole ladder each, in this order: "
                         + "; ".join(f"{k}: {v}" for k, v in ROUTING.items()))
    ap.add_argument("--backlog", default="1.5",
                    help="the nodes' max_backlog_s, one whole ladder per value and routing (0: the gate off)")
    ap.add_argument("--out", default="bench/results/overload_ladder.md")
    args = ap.parse_args()
    backlogs = [float(b) for b in args.backlog.split(",") if b]
    routings = [r for r in args.routing.split(",") if r]
    for r in routings:
        if r not in ROUTING:
            ap.error(f"--routing: {r!r} is not one of {', '.join(ROUTING)}")
    lines = ["# overload_ladder\n",
             f"Command: `python -m bench.overload_ladder --probe {args.probe} --ladder {args.ladder} "
             f"--duration {args.duration:g} --accounts {args.accounts} --routing {args.routing} "
             f"--backlog {args.backlog}`. Machine: "
             f"nproc={os.cpu_count()}, {cpu_model()}, {time.strftime('%Y-%m-%d')}; the load generator runs on the "
             "same cores as the four node processes; the ladders ran one after the other in this one command, "
             "each on a fresh devnet.\n",
             "Latency is given twice: from a tx's first offer (back-pressure waits included: what the client "
             "lived through) and from the POST a node accepted (how long an admitted tx waited for the chain). "
             "'Offered' is what the load generator got through: it sends a node its next batch only once the last "
             "is answered, so a slow node lowers it.\n"]
    for r in routings:
        for b in backlogs:
            lines += ladder(args, r, b)
    text = "\n".join(lines)
    print("\n" + text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
