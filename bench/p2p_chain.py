"""Gossip along a chain of 5 processes on loopback: delivery ratio, throughput at saturation, latency per hop.

    .venv/bin/python -m bench.p2p_chain [--messages 1000] [--size 300] [--rounds 3] [--libp2p /tmp/libp2p-bench]

Each node is ``python -m p2pnet.tools --chain`` (it dials only the previous node: no discovery, so the
message crosses 4 hops). Node 0 publishes; every message carries its publish time (``time.monotonic_ns``, one
clock for all processes), so each node knows each message's delay, and a hop's delay is the difference between
consecutive nodes. With ``--libp2p VENV`` the same work runs on py-libp2p (``bench/p2p_libp2p_peer.py`` under
that virtualenv) in the same run, for the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
from dataclasses import dataclass

import trio

from compute.device import cpu_model
from p2pnet.tools import Cluster, NodeProcess, mesh_connected

HOPS = 4


@dataclass
class RunResult:
    delivered: float  # fraction of (messages × receivers)
    throughput: float  # messages per second, first publish to last delivery at the tail
    hop_p50_ms: float
    hop_p99_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _run_once(n_nodes: int, messages: int, size: int, rate: float, node_cmd: list[str] | None) -> RunResult:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, node_cmd=node_cmd)
        try:
            nodes: list[NodeProcess] = []
            for i in range(n_nodes):
                args = ["--chain"] + (["--bootstrap", nodes[-1].addr] if i else [])
                nodes.append(await cluster.start_node(*args))
            await cluster.wait_until(lambda: mesh_connected(nodes), timeout=60)
            await nodes[0].send(f"PUB {messages} {size} {rate}")
            timeout = 30 + (messages / rate if rate else 0)
            with contextlib.suppress(trio.TooSlowError):  # lost messages: report what did arrive
                await cluster.wait_until(
                    lambda: nodes[0].published is not None and all(n.count >= messages for n in nodes[1:]),
                    timeout=timeout,
                )
            for n in nodes:
                await n.send("STATS")
            await cluster.wait_until(lambda: all(n.stats is not None for n in nodes), timeout=30)
            start_ns = int(nodes[0].published[3]) if nodes[0].published else 0
            lat = [dict(n.stats["latencies_ns"]) for n in nodes]  # seq -> ns, per node
            delivered = sum(len(x) for x in lat[1:]) / (messages * (n_nodes - 1))
            tail = nodes[-1].stats
            duration = (tail["span_ns"][1] - start_ns) / 1e9 if tail["span_ns"][1] else float("inf")
            hops: list[float] = []
            for seq in lat[-1]:
                prev = 0
                for k in range(1, n_nodes):
                    t = lat[k].get(seq)
                    if t is None:
                        break
                    hops.append((t - prev) / 1e6)
                    prev = t
            e2e = [t / 1e6 for t in lat[-1].values()]
            return RunResult(
                delivered,
                len(lat[-1]) / duration,
                _pct(hops, 0.5),
                _pct(hops, 0.99),
                _pct(e2e, 0.5),
                _pct(e2e, 0.99),
            )
        finally:
            for n in cluster.nodes:
                if n.proc.returncode is None:
                    n.proc.kill()
            nursery.cancel_scope.cancel()


async def main_async(args: argparse.Namespace) -> None:
    impls: list[tuple[str, list[str] | None]] = [("p2pnet", None)]
    if args.libp2p:
        peer_cmd = [os.path.join(args.libp2p, "bin", "python"), "bench/p2p_libp2p_peer.py"]
        impls.append((f"py-libp2p {args.libp2p_version}", peer_cmd))
    scenarios = [
        (f"{args.messages} msgs at 100 msg/s", args.messages, 100.0),
        (f"{args.messages} msgs at saturation", args.messages, 0.0),
        (f"{args.big} msgs at saturation", args.big, 0.0),
    ]
    rows = []
    results: dict[tuple[str, str], list[RunResult]] = {}
    for rnd in range(args.rounds):
        for name, cmd in impls:
            for label, count, rate in scenarios:
                if cmd is not None and count == args.big:
                    continue  # py-libp2p already loses most of 1,000 at saturation; 20,000 adds nothing
                r = await _run_once(5, count, args.size, rate, cmd)
                results.setdefault((name, label), []).append(r)
                print(f"round {rnd + 1} {name:18} {label:28} {r}", file=sys.stderr)
    for (name, label), rs in results.items():
        def med(f: str, rs: list[RunResult] = rs) -> float:
            return statistics.median(getattr(r, f) for r in rs)

        rows.append(
            f"| {name} | {label} | {med('delivered') * 100:.1f}% | {med('throughput'):,.0f} | "
            f"{med('hop_p50_ms'):.2f} | {med('hop_p99_ms'):.2f} | {med('e2e_p50_ms'):.2f} | {med('e2e_p99_ms'):.2f} |"
        )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# p2p_chain: gossip along a 5-process chain ({HOPS} hops), {args.size} B messages\n")
    print(f"Command: `.venv/bin/python -m bench.p2p_chain {' '.join(sys.argv[1:])}`\n")
    print(f"Machine: nproc={os.cpu_count()}, {cpu_model()}, shared with other engineers' test runs; {now}\n")
    print(f"Medians of {args.rounds} rounds; each round starts fresh processes.\n")
    print("| implementation | scenario | delivered | msg/s | hop p50 ms | hop p99 ms | e2e p50 ms | e2e p99 ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--big", type=int, default=20000, help="messages in the long saturation run")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--libp2p", default="", help="virtualenv with libp2p installed, for the comparison")
    parser.add_argument("--libp2p-version", default="0.8.1")
    trio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
