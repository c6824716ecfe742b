"""Node throughput and commit latency: 4 validators + 1 observer in one process, real loopback sockets.

The observer signs and submits N transfers from several senders; we measure how long until all are committed
(throughput) and, per tx, submit → committed at the observer (latency). Test timeouts (NodeConfig.test()).

    .venv/bin/python -m bench.node_loopback [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import trio

from bootstrap.home import NodeConfig, make_testnet
from bootstrap.node import Node
from ledger.tx import Transfer


async def run(n_txs: int, senders: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        infos = make_testnet(5, Path(d), validators=4, config=NodeConfig.test(run_agent=False))
        async with trio.open_nursery() as nursery:
            first = Node(infos[0].home, infos[0].config)
            await nursery.start(first.run)
            boot = str(first.host.listen_addrs[0])  # type: ignore[union-attr]
            nodes = [first]
            for info in infos[1:]:
                node = Node(info.home, replace(info.config, bootstrap=[boot]))
                await nursery.start(node.run)
                nodes.append(node)
            obs = nodes[4]
            while obs.height < 2 or len(obs.peers()) < 4:
                await trio.sleep(0.05)
            names = [f"s{i}" for i in range(senders)]
            for name in names:
                account = bytes(obs.keystore.get_or_create(name).verify_key)  # type: ignore[union-attr]
                tx = await obs.sign_and_submit("faucet", Transfer(account, 10_000))
                await obs.wait_for_tx(tx, 30)
            h0 = obs.height
            sent: dict[str, float] = {}
            done: dict[str, float] = {}
            events = obs.events.subscribe(buffer=0)
            t0 = time.perf_counter()

            async def watch() -> None:
                async for ev in events:
                    if ev["type"] == "tx" and ev["status"] == "committed" and ev["tx_id"] in sent:
                        done.setdefault(ev["tx_id"], time.perf_counter())
                        if len(done) == n_txs:
                            return

            nursery.start_soon(watch)
            for i in range(n_txs):
                tx = await obs.sign_and_submit(names[i % senders], Transfer(bytes([i % 250 + 1]) * 32, 1))
                sent[tx] = time.perf_counter()
            with trio.fail_after(120):
                while len(done) < n_txs:
                    await trio.sleep(0.05)
            t1 = time.perf_counter()
            lat = sorted(done[t] - sent[t] for t in sent)
            blocks = obs.height - h0
            for n in nodes:
                n.stop()
    return {"txs": n_txs, "seconds": t1 - t0, "tx_per_s": n_txs / (t1 - t0), "blocks": blocks,
            "lat_median_ms": 1000 * statistics.median(lat), "lat_p90_ms": 1000 * lat[int(0.9 * len(lat))]}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rows = [trio.run(run, n, s) for s in (1, 8)]
    print("| senders | txs | seconds | tx/s | blocks | latency median ms | latency p90 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, r in zip((1, 8), rows, strict=True):
        print(f"| {s} | {r['txs']} | {r['seconds']:.2f} | {r['tx_per_s']:.0f} | {r['blocks']} | "
              f"{r['lat_median_ms']:.0f} | {r['lat_p90_ms']:.0f} |")


if __name__ == "__main__":
    main()
