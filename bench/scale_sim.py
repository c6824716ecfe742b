"""Scale by simulation, in one process under a mock clock: gossip over 10..1,000 nodes, consensus with 4..100
validators, both on ``p2pnet.testing.MemoryNetwork`` (the real Host, gossip and discovery code; links carry whole
frames with a delay and jitter, no Noise).

    .venv/bin/python -m bench.scale_sim                       # full run, writes bench/results/scale_sim.{md,png}
    .venv/bin/python -m bench.scale_sim --gossip 10,100 --validators 4,10 --no-write   # a quick look

Gossip: N hosts join one by one, each knowing one random earlier host (bootstrap), and peer exchange plus
discovery grow the graph; once every mesh holds at least D_lo peers, an idle window measures background traffic
(keepalives, heartbeats), then M messages are published from random nodes over a window of the same length.
Figures per published message are the publish window minus the idle window, so they are what a message costs.

Consensus: V validators, each a Host + ``ledger.chain.Chain`` (in memory) + the node's own
``bootstrap.driver.ConsensusDriver`` with ``NodeConfig.test()`` timeouts, talking over the ``dacn/consensus/1``
gossip topic with the node's validator (decode, then check the signature) -- the node's real path, minus the
store, the mempool traffic and the API. Blocks are empty (header + the previous commit). Figures are per committed
block, measured between the first and the last of K commits at validator 0.

Virtual time is what the network and the timeouts take (CPU time does not advance a mock clock); CPU seconds are
real, for the whole simulated network on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing

from bootstrap.consensus import ConsensusDriver
from bootstrap.errors import WireError
from bootstrap.gossip import TOPIC_CONSENSUS, ProposalMsg, decode_consensus
from bootstrap.home import NodeConfig
from ledger.chain import Chain, CommittedBlock
from ledger.crypto import signing_key_from_seed
from ledger.genesis import Genesis, GenesisWorker
from p2pnet import Host, HostConfig, PeerId, ValidationResult
from p2pnet import testing as p2ptesting
from p2pnet.testing import LinkConfig, MemoryNetwork

TOPIC = "scale"
GENESIS_TIME_MS = 1_767_225_600_000
LINK = LinkConfig(delay=0.010, jitter=0.010)  # 10..20 ms one way, reordering
RESULTS = Path(__file__).parent / "results"


def sim_host_config() -> HostConfig:
    """The p2pnet simulation preset: test timers, but heartbeats and discovery at a pace 1,000 hosts can afford."""
    cfg = HostConfig.test(discovery_interval=0.5, px_interval=1.0, keepalive_interval=1.0, idle_timeout=10.0)
    cfg.gossip.heartbeat_interval = 0.5
    return cfg


# --------------------------------------------------------------------------------------------- measuring


class ByteMeter:
    """Counts frames and bytes each host sends on a MemoryNetwork (the network counts frames, not bytes).

    A byte is the frame plus its 4-byte length prefix; over TCP, Noise adds 16 bytes per transport message
    (several frames share one when a sender batches).
    """

    def __init__(self) -> None:
        self.frames: dict[PeerId, int] = {}
        self.bytes: dict[PeerId, int] = {}

    def totals(self) -> tuple[int, int]:
        return sum(self.frames.values()), sum(self.bytes.values())

    @contextlib.contextmanager
    def installed(self) -> Iterator[ByteMeter]:
        """Wrap the in-memory endpoint's ``send_frames`` for the duration (one simulation at a time)."""
        endpoint = p2ptesting._Endpoint
        original = endpoint.send_frames
        frames, nbytes = self.frames, self.bytes

        async def send_frames(ep: p2ptesting._Endpoint, batch: list[bytes]) -> None:
            frames[ep.local] = frames.get(ep.local, 0) + len(batch)
            nbytes[ep.local] = nbytes.get(ep.local, 0) + sum(len(f) + 4 for f in batch)
            await original(ep, batch)

        endpoint.send_frames = send_frames  # type: ignore[method-assign]
        try:
            yield self
        finally:
            endpoint.send_frames = original  # type: ignore[method-assign]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


async def build_network(
    net: MemoryNetwork, n: int, nursery: trio.Nursery, rng: random.Random, topics: list[str]
) -> tuple[list[Host], list[dict[str, trio.MemoryReceiveChannel]]]:
    """``n`` hosts, each bootstrapping from one random earlier host; returns hosts and their subscriptions."""
    hosts: list[Host] = []
    subs: list[dict[str, trio.MemoryReceiveChannel]] = []
    for i in range(n):
        cfg = sim_host_config()
        if i:
            cfg.bootstrap = [str(hosts[rng.randrange(i)].listen_addrs[0])]
        host = net.host(config=cfg)
        subs.append({t: host.gossip.subscribe(t) for t in topics})
        await nursery.start(host.run)
        hosts.append(host)
    return hosts, subs


async def wait_for_mesh(hosts: list[Host], topic: str, *, limit: float = 60.0) -> float:
    """Sleep (virtual time) until every host's mesh for ``topic`` holds at least D_lo peers; the time taken."""
    t0 = trio.current_time()
    d_lo = hosts[0].config.gossip.D_lo
    need = min(d_lo, len(hosts) - 1)
    while trio.current_time() - t0 < limit:
        if all(len(h.gossip.mesh.get(topic, ())) >= need for h in hosts):
            return trio.current_time() - t0
        await trio.sleep(0.5)
    raise RuntimeError(f"meshes did not reach {need} peers within {limit} s of virtual time")


# ------------------------------------------------------------------------------------------------- gossip


@dataclass
class GossipResult:
    """One gossip run; per-message figures are net of the idle window's background traffic."""

    nodes: int
    messages: int
    size: int
    delivered: int  # (message, receiver) pairs delivered
    expected: int
    copies_per_node_msg: float  # gossip data frames sent (publish + forwards) per node per message
    duplicates_per_node_msg: float  # copies received after the first, per node per message
    frames_per_node_msg: float  # every frame, minus background
    bytes_per_node_msg: float  # every byte, minus background
    background_bytes_per_node_s: float
    full_p50: float  # seconds from publish until the last node has the message
    full_p99: float
    hop_p50: float  # seconds from publish to one node's delivery, over all (message, node)
    hop_p99: float
    mesh_wait: float  # virtual seconds from the last join until every mesh reached D_lo
    cpu_build: float  # real CPU seconds: joins and mesh warm-up
    cpu_publish: float  # real CPU seconds: the publish window (background included)
    churn: float = 0.0  # connections opened + closed per node during the publish window (discovery at work)
    missing: dict[int, int] = field(default_factory=dict)  # node index -> messages it never got
    worst_duplicates: int = 0  # the most duplicates one node received
    d_hi: int = 0

    @property
    def delivery_ratio(self) -> float:
        return self.delivered / self.expected if self.expected else 1.0


async def _gossip(n: int, m: int, size: int, seed: int, spacing: float, settle: float) -> GossipResult:
    rng = random.Random(seed)
    net = MemoryNetwork(seed=seed, default_link=LINK)
    meter = ByteMeter()
    cpu0 = time.process_time()
    with meter.installed():
        async with trio.open_nursery() as nursery:
            hosts, subs = await build_network(net, n, nursery, rng, [TOPIC])
            mesh_wait = await wait_for_mesh(hosts, TOPIC)
            got: list[dict[bytes, float]] = [{} for _ in range(n)]

            async def drain(i: int, inbox: trio.MemoryReceiveChannel) -> None:
                async for r in inbox:
                    got[i].setdefault(r.data, trio.current_time())

            for i, s in enumerate(subs):
                nursery.start_soon(drain, i, s[TOPIC])
            window = m * spacing + settle
            cpu1 = time.process_time()
            # Idle window: what the network costs with nothing to say.
            f0, b0 = meter.totals()
            await trio.sleep(window)
            f1, b1 = meter.totals()
            copies0 = sum(h.gossip.counters[TOPIC].sent for h in hosts)
            dups0 = [h.gossip.counters[TOPIC].duplicates for h in hosts]
            cpu2 = time.process_time()
            conns0 = sum(h.counters["connections_opened"] + h.counters["connections_closed"] for h in hosts)
            published: list[tuple[bytes, int, float]] = []
            for k in range(m):
                src = rng.randrange(n)
                data = (b"%06d:" % k).ljust(size, b".")
                published.append((data, src, trio.current_time()))
                await hosts[src].gossip.publish(TOPIC, data)
                await trio.sleep(spacing)
            await trio.sleep(settle)
            f2, b2 = meter.totals()
            cpu3 = time.process_time()
            copies = sum(h.gossip.counters[TOPIC].sent for h in hosts) - copies0
            dups = [h.gossip.counters[TOPIC].duplicates - d0 for h, d0 in zip(hosts, dups0, strict=True)]
            conns = sum(h.counters["connections_opened"] + h.counters["connections_closed"] for h in hosts) - conns0
            nursery.cancel_scope.cancel()

    delivered = 0
    hops: list[float] = []
    full: list[float] = []
    missing: dict[int, int] = {}
    for data, src, t_pub in published:
        last = 0.0
        for i in range(n):
            if i == src:
                continue
            t = got[i].get(data)
            if t is None:
                missing[i] = missing.get(i, 0) + 1
                last = math.inf
                continue
            delivered += 1
            hops.append(t - t_pub)
            last = max(last, t - t_pub)
        full.append(last)
    per = n * m
    return GossipResult(
        nodes=n,
        messages=m,
        size=size,
        delivered=delivered,
        expected=m * (n - 1),
        copies_per_node_msg=copies / per,
        duplicates_per_node_msg=sum(dups) / per,
        frames_per_node_msg=((f2 - f1) - (f1 - f0)) / per,
        bytes_per_node_msg=((b2 - b1) - (b1 - b0)) / per,
        background_bytes_per_node_s=(b1 - b0) / n / window,
        full_p50=percentile(full, 0.5),
        full_p99=percentile(full, 0.99),
        hop_p50=percentile(hops, 0.5),
        hop_p99=percentile(hops, 0.99),
        mesh_wait=mesh_wait,
        cpu_build=cpu1 - cpu0,
        cpu_publish=cpu3 - cpu2,
        churn=conns / n,
        missing=missing,
        worst_duplicates=max(dups),
        d_hi=hosts[0].config.gossip.D_hi,
    )


def run_gossip(
    n: int, m: int = 20, *, size: int = 300, seed: int = 1, spacing: float = 0.05, settle: float = 2.0
) -> GossipResult:
    """Simulate ``n`` gossip nodes and ``m`` published messages of ``size`` bytes under a mock clock."""
    return trio.run(_gossip, n, m, size, seed, spacing, settle, clock=trio.testing.MockClock(autojump_threshold=0))


# ---------------------------------------------------------------------------------------------- consensus


@dataclass
class ConsensusResult:
    """One consensus run; per-block figures span the first to the last of ``blocks`` commits at validator 0."""

    validators: int
    blocks: int
    seconds_per_block: float  # virtual
    frames_per_block: float  # network-wide
    bytes_per_block: float  # network-wide
    cpu_per_block: float  # real CPU seconds, whole network
    rounds_over_zero: int  # committed blocks that needed more than round 0
    first_commit: float  # virtual seconds from the drivers' start to the first commit at validator 0
    mesh_wait: float
    agree: bool  # every validator committed the same hash at every height up to ``blocks``
    committed: list[list[bytes]] = field(default_factory=list)  # per validator: block hashes by height


def validator_keys(v: int, seed: int = 0):  # -> list[SigningKey]
    """Deterministic validator keys for a simulated chain."""
    return [signing_key_from_seed(b"scale-sim/%d/%d" % (seed, i)) for i in range(v)]


def consensus_validator(chain: Chain):  # -> Callable[[PeerId, bytes], ValidationResult]
    """The node's gossip validator for consensus messages: decode, known signer, valid signature."""
    cid = chain.chain_id

    def validate(peer: PeerId, data: bytes) -> ValidationResult:
        try:
            msg = decode_consensus(data)
        except WireError:
            return ValidationResult.REJECT
        if isinstance(msg, ProposalMsg):
            p = msg.proposal
            ok = p.proposer in chain.validators and p.verify(cid) and msg.block.hash() == p.block_hash
        else:
            ok = msg.vote.validator in chain.validators and msg.vote.verify(cid)
        return ValidationResult.ACCEPT if ok else ValidationResult.REJECT

    return validate


async def _consensus(v: int, blocks: int, seed: int, limit: float) -> ConsensusResult:
    rng = random.Random(seed)
    net = MemoryNetwork(seed=seed, default_link=LINK)
    keys = validator_keys(v, seed)
    validators = [bytes(k.verify_key) for k in keys]
    genesis = Genesis(
        chain_id="scale-sim",
        genesis_time=GENESIS_TIME_MS,
        allocations={},
        validators=validators,
        workers=[GenesisWorker(a, 1_000, "cpu") for a in validators],  # each validator's bond, as genesis requires
    )
    node_cfg = NodeConfig.test()
    meter = ByteMeter()
    committed: list[list[bytes]] = [[] for _ in range(v)]
    rounds: list[int] = []
    marks: list[tuple[float, float, int, int]] = []  # validator 0's commits: (virtual t, cpu, frames, bytes)
    done = trio.Event()

    def clock_ms() -> int:
        return GENESIS_TIME_MS + 1 + int(trio.current_time() * 1000)

    with meter.installed():
        async with trio.open_nursery() as nursery:
            hosts: list[Host] = []
            chains = [Chain(genesis) for _ in range(v)]
            inboxes = []
            for i in range(v):
                cfg = sim_host_config()
                if i:
                    cfg.bootstrap = [str(hosts[rng.randrange(i)].listen_addrs[0])]
                host = net.host(config=cfg)
                inboxes.append(host.gossip.subscribe(TOPIC_CONSENSUS, consensus_validator(chains[i])))
                await nursery.start(host.run)
                hosts.append(host)
            mesh_wait = await wait_for_mesh(hosts, TOPIC_CONSENSUS)

            def on_commit(i: int, cb: CommittedBlock) -> None:
                committed[i].append(cb.block.hash())
                if i == 0:
                    rounds.append(cb.block.header.round)
                    marks.append((trio.current_time(), time.process_time(), *meter.totals()))
                if min(len(c) for c in committed) >= blocks:
                    done.set()

            async def feed(driver: ConsensusDriver, inbox: trio.MemoryReceiveChannel) -> None:
                async for r in inbox:
                    driver.feed(decode_consensus(r.data))  # the validator accepted it: it decodes

            t_start = trio.current_time()
            for i in range(v):
                host = hosts[i]

                async def publish(data: bytes, host: Host = host) -> None:
                    await host.gossip.publish(TOPIC_CONSENSUS, data)

                driver = ConsensusDriver(
                    chains[i],
                    config=node_cfg.consensus(),
                    publish=publish,
                    on_commit=lambda cb, i=i: on_commit(i, cb),
                    signing_key=keys[i],
                    rebroadcast_ms=node_cfg.rebroadcast_ms,
                    clock_ms=clock_ms,
                )
                nursery.start_soon(feed, driver, inboxes[i])
                await nursery.start(driver.run)
            with trio.move_on_after(limit):
                await done.wait()
            nursery.cancel_scope.cancel()

    if len(marks) < 2:
        raise RuntimeError(f"{v} validators committed {len(marks)} blocks in {limit} s of virtual time")
    (t1, c1, f1, b1), (tk, ck, fk, bk) = marks[0], marks[min(blocks, len(marks)) - 1]
    k = min(blocks, len(marks)) - 1
    heights = min(len(c) for c in committed)
    agree = heights >= blocks and all(c[:blocks] == committed[0][:blocks] for c in committed)
    return ConsensusResult(
        validators=v,
        blocks=k + 1,
        seconds_per_block=(tk - t1) / k,
        frames_per_block=(fk - f1) / k,
        bytes_per_block=(bk - b1) / k,
        cpu_per_block=(ck - c1) / k,
        rounds_over_zero=sum(1 for r in rounds[:blocks] if r > 0),
        first_commit=t1 - t_start,
        mesh_wait=mesh_wait,
        agree=agree,
        committed=committed,
    )


def run_consensus(v: int, blocks: int = 6, *, seed: int = 1, limit: float = 120.0) -> ConsensusResult:
    """Simulate ``v`` validators until each has committed ``blocks`` blocks (or ``limit`` virtual seconds)."""
    return trio.run(_consensus, v, blocks, seed, limit, clock=trio.testing.MockClock(autojump_threshold=0))


# ------------------------------------------------------------------------------------------------ report


def gossip_table(rows: list[GossipResult]) -> str:
    head = (
        "| nodes | msgs | delivered | copies sent /node/msg | dups recv /node/msg | frames /node/msg "
        "| bytes /node/msg | idle B/node/s | full delivery p50 / p99 ms | per-node p50 / p99 ms "
        "| conn churn /node | mesh warm-up s | CPU s build | CPU s publish |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = [
        f"| {r.nodes} | {r.messages} | {100 * r.delivery_ratio:.1f}% | {r.copies_per_node_msg:.2f} "
        f"| {r.duplicates_per_node_msg:.2f} | {r.frames_per_node_msg:.2f} | {r.bytes_per_node_msg:,.0f} "
        f"| {r.background_bytes_per_node_s:,.0f} | {1000 * r.full_p50:.0f} / {1000 * r.full_p99:.0f} "
        f"| {1000 * r.hop_p50:.0f} / {1000 * r.hop_p99:.0f} | {r.churn:.2f} | {r.mesh_wait:.1f} | {r.cpu_build:.1f} "
        f"| {r.cpu_publish:.1f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def consensus_table(rows: list[ConsensusResult]) -> str:
    head = (
        "| validators | blocks | same blocks everywhere | virtual s /block | frames /block | KB /block "
        "| frames /block /validator | CPU s /block | blocks past round 0 |\n"
        "| ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = [
        f"| {r.validators} | {r.blocks} | {'yes' if r.agree else 'NO'} | {r.seconds_per_block:.3f} "
        f"| {r.frames_per_block:,.0f} | {r.bytes_per_block / 1024:,.1f} | {r.frames_per_block / r.validators:,.0f} "
        f"| {r.cpu_per_block:.2f} | {r.rounds_over_zero} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def growth_lines(g: list[GossipResult], c: list[ConsensusResult]) -> str:
    """Growth exponents between the smallest and largest sizes: figure ∝ size^k."""
    out = []

    def k(a: float, b: float, x0: int, x1: int) -> str:
        if a <= 0 or b <= 0 or x0 == x1:
            return "n/a"
        return f"{math.log(b / a) / math.log(x1 / x0):.2f}"

    if len(g) >= 2:
        a, b = g[0], g[-1]
        bytes_k = k(a.bytes_per_node_msg, b.bytes_per_node_msg, a.nodes, b.nodes)
        cpu_k = k(a.cpu_publish / a.messages, b.cpu_publish / b.messages, a.nodes, b.nodes)
        out.append(
            f"- gossip, {a.nodes} → {b.nodes} nodes: bytes/node/msg ∝ N^{bytes_k}, "
            f"full-delivery p50 ∝ N^{k(a.full_p50, b.full_p50, a.nodes, b.nodes)}, CPU per message ∝ N^{cpu_k}"
        )
    if len(c) >= 2:
        a2, b2 = c[0], c[-1]
        out.append(
            f"- consensus, {a2.validators} → {b2.validators} validators: frames/block ∝ V^"
            f"{k(a2.frames_per_block, b2.frames_per_block, a2.validators, b2.validators)}, "
            f"bytes/block ∝ V^{k(a2.bytes_per_block, b2.bytes_per_block, a2.validators, b2.validators)}, "
            f"CPU/block ∝ V^{k(a2.cpu_per_block, b2.cpu_per_block, a2.validators, b2.validators)}, "
            f"time/block ∝ V^{k(a2.seconds_per_block, b2.seconds_per_block, a2.validators, b2.validators)}"
        )
    return "\n".join(out) + "\n"


def write_plot(g: list[GossipResult], c: list[ConsensusResult], path: Path) -> str:
    """Four log-log panels; returns the file written (PNG with matplotlib, else a hand-written SVG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        svg = path.with_suffix(".svg")
        svg.write_text(_svg_plot(g, c))
        return str(svg)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ns = [r.nodes for r in g]
    vs = [r.validators for r in c]
    ax = axes[0][0]
    ax.plot(ns, [r.bytes_per_node_msg for r in g], "o-", label="bytes / node / message")
    ax.plot(ns, [r.copies_per_node_msg * 100 for r in g], "s--", label="data copies sent / node / msg (×100)")
    ax.set(xscale="log", yscale="log", xlabel="gossip nodes", title="gossip: cost per node per message")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ax.plot(ns, [1000 * r.full_p50 for r in g], "o-", label="full delivery p50")
    ax.plot(ns, [1000 * r.full_p99 for r in g], "o--", label="full delivery p99")
    ax.plot(ns, [1000 * r.hop_p50 for r in g], "s-", label="per-node delivery p50")
    ax.set(xscale="log", xlabel="gossip nodes", ylabel="virtual ms", title="gossip: time to deliver (10–20 ms links)")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    ax.plot(vs, [r.frames_per_block for r in c], "o-", label="frames / block (network)")
    ax.plot(vs, [r.bytes_per_block / 1024 for r in c], "s-", label="KB / block (network)")
    if vs:
        ax.plot(vs, [c[0].frames_per_block * (x / vs[0]) ** 2 for x in vs], ":", color="grey", label="∝ V²")
    ax.set(xscale="log", yscale="log", xlabel="validators", title="consensus: traffic per block")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(vs, [r.cpu_per_block for r in c], "o-", label="CPU s / block (one core, all validators)")
    ax.plot(vs, [r.seconds_per_block for r in c], "s-", label="virtual s / block")
    ax.set(xscale="log", yscale="log", xlabel="validators", title="consensus: time per block")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _svg_plot(g: list[GossipResult], c: list[ConsensusResult]) -> str:
    """A minimal log-log SVG of bytes/node/msg (gossip) and CPU s/block (consensus), without matplotlib."""
    w, h, pad = 420, 300, 40

    def panel(x0: int, title: str, xs: list[float], ys: list[float]) -> str:
        if len(xs) < 2 or min(ys) <= 0:
            return ""
        lx = [math.log10(x) for x in xs]
        ly = [math.log10(y) for y in ys]
        sx = (w - 2 * pad) / ((max(lx) - min(lx)) or 1)
        sy = (h - 2 * pad) / ((max(ly) - min(ly)) or 1)
        pts = " ".join(
            f"{x0 + pad + (a - min(lx)) * sx:.1f},{h - pad - (b - min(ly)) * sy:.1f}"
            for a, b in zip(lx, ly, strict=True)
        )
        labels = "".join(
            f'<text x="{x0 + pad + (a - min(lx)) * sx:.1f}" y="{h - pad + 14}" font-size="10">{x:g}</text>'
            for a, x in zip(lx, xs, strict=True)
        )
        return (
            f'<text x="{x0 + pad}" y="20" font-size="12">{title}</text>'
            f'<polyline fill="none" stroke="black" points="{pts}"/>{labels}'
        )

    body = panel(0, "gossip bytes/node/msg vs nodes", [r.nodes for r in g], [r.bytes_per_node_msg for r in g])
    body += panel(w, "consensus CPU s/block vs validators", [r.validators for r in c], [r.cpu_per_block for r in c])
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h}">{body}</svg>\n'


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {datetime.date.today()}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gossip", default="10,30,100,300,1000", help="gossip node counts")
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--size", type=int, default=300, help="bytes per gossip message (a transaction's size)")
    ap.add_argument("--validators", default="4,10,30,100", help="validator counts")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print the tables only")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.gossip.split(",") if x]
    vals = [int(x) for x in args.validators.split(",") if x]
    t0 = time.perf_counter()
    g: list[GossipResult] = []
    for n in sizes:
        r = run_gossip(n, args.messages, size=args.size, seed=args.seed)
        g.append(r)
        print(f"gossip {n}: {100 * r.delivery_ratio:.1f}% in {r.cpu_build + r.cpu_publish:.1f} CPU s", file=sys.stderr)
    c: list[ConsensusResult] = []
    for v in vals:
        rc = run_consensus(v, args.blocks, seed=args.seed)
        c.append(rc)
        print(f"consensus {v}: {rc.cpu_per_block:.2f} CPU s/block, agree={rc.agree}", file=sys.stderr)
    wall = time.perf_counter() - t0
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    cmd = f"`.venv/bin/python -m bench.scale_sim{' ' + shown if shown else ''}`"
    text = (
        "# scale_sim\n\n"
        f"Command: {cmd} (whole run: {wall:.0f} s wall)\n"
        f"Machine: {machine()}; one process, one trio loop, `trio.testing.MockClock(autojump_threshold=0)`.\n"
        f"Links: {1000 * LINK.delay:.0f} ms + up to {1000 * LINK.jitter:.0f} ms jitter one way, no loss. "
        "Hosts: `HostConfig.test()` with heartbeat 0.5 s, discovery 0.5 s, peer exchange 1 s, keepalive 1 s "
        "(the p2pnet simulation preset); mesh D=6, D_lo=4, D_hi=12, flood publish.\n\n"
        f"## Gossip: {args.messages} messages of {args.size} B from random nodes, 50 ms apart\n\n"
        + gossip_table(g)
        + "\n## Consensus: empty blocks, NodeConfig.test() timeouts (commit 150 ms), rebroadcast 500 ms\n\n"
        + consensus_table(c)
        + "\n## Growth\n\n"
        + growth_lines(g, c)
    )
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        plot = write_plot(g, c, RESULTS / "scale_sim.png")
        (RESULTS / "scale_sim.md").write_text(text + f"\nPlot: `{Path(plot).name}`\n")
        print(f"wrote {RESULTS / 'scale_sim.md'} and {plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
