"""Committed tx/s and median block time for 4 simulated validators with a 10k-tx backlog, beside raw verify rate.

Run: ``.venv/bin/python -m bench.chain_throughput [--txs 10000]``. The 4 validators share one process and one
core under a trio MockClock (timeouts cost no wall time), so the figures are CPU throughput of the whole pipeline
(mempool admission with signature checks, proposal building, speculative execution, votes, commits) for all four
nodes together; the raw Ed25519 verify rate is measured in the same run for the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import trio
import trio.testing

from ledger import consensus as c
from ledger.chain import Chain
from ledger.crypto import verify
from ledger.tx import signing_message
from tests.ledger.chainkit import genesis4, users, validator_keys
from tests.ledger.sim import LinkFaults, SimNetwork, SimNode


class TimedChain(Chain):
    """Records the wall time of each commit."""

    commit_times: list[float]

    def commit(self, block, commit) -> None:  # type: ignore[no-untyped-def]
        super().commit(block, commit)
        self.commit_times.append(time.perf_counter())


def verify_rate(txs, chain_id: str, seconds: float = 1.0) -> float:
    msgs = [(t.sender, signing_message(chain_id, t.body_bytes), t.signature) for t in txs[:2000]]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for pk, m, s in msgs:
            verify(pk, m, s)
        n += len(msgs)
    return n / (time.perf_counter() - t0)


async def run(n_txs: int, block_txs: int):
    g = genesis4()
    ws = users(8)
    txs = [ws[i % 8].transfer(ws[(i + 3) % 8].account, 1) for i in range(n_txs)]
    keys = validator_keys()
    net = SimNetwork(random.Random(0), LinkFaults(1, 5))
    acct = {bytes(k.verify_key): i for i, k in enumerate(keys)}
    nodes, chains = [], []
    t_admit = time.perf_counter()
    for i, k in enumerate(keys):
        chain = TimedChain(g)
        chain.commit_times = []
        for t in txs:
            chain.mempool.add(t.encode())
        chains.append(chain)
        m = c.ConsensusMachine(
            chain_id=g.chain_id,
            validators=g.validators,
            height=1,
            value_id=chain.value_id,
            validate=chain.validate,
            signing_key=k,
            config=c.test_config(),
        )
        nodes.append(SimNode(i, m, chain, net, acct, key=k))
    admit_s = time.perf_counter() - t_admit
    for n in nodes:
        orig = n.app.build
        n.app.build = lambda h, r, p, now, ev, orig=orig: orig(h, r, p, now, ev, max_txs=block_txs)  # type: ignore
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        for n in nodes:
            await nursery.start(n.run)
        while sum(len(b.txs) for b, _ in chains[0].get_blocks(1, chains[0].height, limit=10**6)) < n_txs:
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    wall = time.perf_counter() - t0
    times = chains[0].commit_times
    gaps = [b - a for a, b in zip([t0, *times], times, strict=False)]
    return {
        "txs": n_txs,
        "blocks": chains[0].height,
        "admit_tx_s": 4 * n_txs / admit_s,
        "commit_tx_s": n_txs / wall,
        "median_block_ms": statistics.median(gaps) * 1000,
        "verify_s": verify_rate(txs, g.chain_id),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=10_000)
    ap.add_argument("--block-txs", type=int, default=2_000)
    args = ap.parse_args()
    r = trio.run(run, args.txs, args.block_txs, clock=trio.testing.MockClock(autojump_threshold=0))
    print("| figure | value |\n| --- | --- |")
    print(f"| backlog (txs, in each of 4 mempools) | {r['txs']:,} |")
    print(f"| blocks to drain it (max {args.block_txs} txs/block) | {r['blocks']} |")
    print(f"| mempool admission, 4 nodes (decode+verify+checks), tx/s | {r['admit_tx_s']:,.0f} |")
    print(f"| committed tx/s, 4 validators on one core (consensus+execution) | {r['commit_tx_s']:,.0f} |")
    print(f"| median block time, wall ms | {r['median_block_ms']:.1f} |")
    print(f"| raw Ed25519 verify/s (same run) | {r['verify_s']:,.0f} |")
    print(f"| committed tx/s ÷ verify/s | {r['commit_tx_s'] / r['verify_s']:.2f} |")


if __name__ == "__main__":
    main()
