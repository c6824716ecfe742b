"""The in-memory network under a mock clock: hundreds of hosts, lossy links, partitions."""

import random

import trio

from p2pnet import HostConfig
from p2pnet.testing import LinkConfig, MemoryNetwork


def _sim_config() -> HostConfig:
    cfg = HostConfig.test(discovery_interval=0.5, px_interval=1.0, keepalive_interval=1.0, idle_timeout=10.0)
    cfg.gossip.heartbeat_interval = 0.5
    return cfg


async def _build(net: MemoryNetwork, n: int, nursery: trio.Nursery, rng: random.Random, topic: str = "t"):
    hosts, inboxes = [], []
    for i in range(n):
        cfg = _sim_config()
        if i:
            # each new node knows one earlier node; peer exchange does the rest
            cfg.bootstrap = [str(hosts[rng.randrange(i)].listen_addrs[0])]
        host = net.host(config=cfg)
        inboxes.append(host.gossip.subscribe(topic))
        await nursery.start(host.run)
        hosts.append(host)
    return hosts, inboxes


def _drain(inbox) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(inbox.receive_nowait().data)
        except trio.WouldBlock:
            return out


async def test_200_nodes_full_delivery_bounded_duplicates(autojump_clock) -> None:
    n, m = 200, 20
    rng = random.Random(7)
    net = MemoryNetwork(seed=7, default_link=LinkConfig(delay=0.005, jitter=0.005))
    async with trio.open_nursery() as nursery:
        hosts, inboxes = await _build(net, n, nursery, rng)
        await trio.sleep(8)
        degrees = [len(h.peers()) for h in hosts]
        assert min(degrees) >= 4, degrees  # discovery grew the graph beyond the bootstrap tree
        assert all(len(h.gossip.mesh["t"]) >= 4 for h in hosts)
        publishers = [rng.randrange(n) for _ in range(m)]
        for k, p in enumerate(publishers):
            assert await hosts[p].gossip.publish("t", b"msg %d" % k) >= 4
            await trio.sleep(0.05)
        await trio.sleep(3)
        for i, inbox in enumerate(inboxes):
            got = set(_drain(inbox))
            expected = {b"msg %d" % k for k, p in enumerate(publishers) if p != i}
            assert got == expected, f"node {i} missed {len(expected - got)}"
        d_hi = hosts[0].config.gossip.D_hi
        worst = max(h.gossip.counters["t"].duplicates for h in hosts)
        assert worst <= m * (d_hi + 1)  # never more copies than mesh links (+1 from a flooding publisher)
        nursery.cancel_scope.cancel()


async def test_lossy_reordering_links_still_deliver_everything(autojump_clock) -> None:
    n, m = 30, 30
    rng = random.Random(3)
    net = MemoryNetwork(seed=3, default_link=LinkConfig(delay=0.01, jitter=0.02, loss=0.1, duplicate=0.05))
    async with trio.open_nursery() as nursery:
        hosts, inboxes = await _build(net, n, nursery, rng)
        await trio.sleep(8)
        for k in range(m):
            await hosts[k % n].gossip.publish("t", b"m%d" % k)
            await trio.sleep(0.02)
        await trio.sleep(5)  # a few heartbeats of IHAVE/IWANT repair
        assert net.stats.lost > 0 and net.stats.duplicated > 0
        assert sum(h.gossip.iwant_served for h in hosts) > 0  # some copies came by IHAVE/IWANT repair
        for i, inbox in enumerate(inboxes):
            got = set(_drain(inbox))
            assert got == {b"m%d" % k for k in range(m) if k % n != i}, f"node {i}"
        nursery.cancel_scope.cancel()


async def test_partition_then_heal(autojump_clock) -> None:
    n = 20
    rng = random.Random(5)
    net = MemoryNetwork(seed=5, default_link=LinkConfig(delay=0.005))
    async with trio.open_nursery() as nursery:
        hosts, inboxes = await _build(net, n, nursery, rng)
        await trio.sleep(6)
        left, right = hosts[:10], hosts[10:]
        net.partition([[h.peer_id for h in left], [h.peer_id for h in right]])
        await left[0].gossip.publish("t", b"during")
        await trio.sleep(2)
        assert all(_drain(inboxes[i]) == [b"during"] for i in range(1, 10))
        assert all(_drain(inboxes[i]) == [] for i in range(10, 20))
        assert net.stats.partitioned > 0
        net.heal()
        await trio.sleep(15)  # idle links time out; discovery redials across the old cut
        await right[0].gossip.publish("t", b"after")
        await trio.sleep(2)
        for i in range(n):
            if i != 10:
                assert _drain(inboxes[i]) == [b"after"], f"node {i}"
        nursery.cancel_scope.cancel()


async def test_seen_cache_is_bounded(autojump_clock) -> None:
    net = MemoryNetwork(seed=1)
    cfg = _sim_config()
    cfg.gossip.seen_max = 1000
    host = net.host(config=cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        host.gossip.subscribe("t")
        for i in range(1500):
            assert await host.gossip.publish("t", b"%d" % i) == 0  # nobody to send to, still remembered
        assert len(host.gossip.seen) == 1000
        assert host.gossip.seen_evicted == 500
        assert await host.gossip.publish("t", b"1499") == 0 and host.gossip.counters["t"].published == 1500
        nursery.cancel_scope.cancel()


async def test_publisher_outside_the_mesh_uses_fanout(autojump_clock) -> None:
    rng = random.Random(11)
    net = MemoryNetwork(seed=11, default_link=LinkConfig(delay=0.005))
    async with trio.open_nursery() as nursery:
        hosts, inboxes = await _build(net, 20, nursery, rng)
        cfg = _sim_config()
        cfg.gossip.flood_publish = False
        cfg.target_peers = 12
        cfg.bootstrap = [str(hosts[0].listen_addrs[0])]
        outsider = net.host(config=cfg)
        await nursery.start(outsider.run)
        await trio.sleep(6)
        assert "t" not in outsider.gossip.mesh and len(outsider.peers()) > outsider.config.gossip.D
        reached = await outsider.gossip.publish("t", b"from outside")
        assert reached == outsider.config.gossip.D  # fanout: D peers, not every peer
        assert len(outsider.gossip.fanout["t"]) == reached
        await trio.sleep(2)
        assert all(_drain(inbox) == [b"from outside"] for inbox in inboxes)
        nursery.cancel_scope.cancel()


async def test_penalties_decay_to_zero(autojump_clock) -> None:
    net = MemoryNetwork(seed=2)
    host = net.host(config=_sim_config())
    other = net.host(config=_sim_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(other.run)
        await host.dial(other.listen_addrs[0])
        host.gossip.penalize(other.peer_id, 1.0, "test")
        assert host.gossip.score(other.peer_id) < 0
        await trio.sleep(200 * host.config.gossip.heartbeat_interval)
        assert host.gossip.score(other.peer_id) == 0.0  # not a vanishing negative that bars it from the mesh
        nursery.cancel_scope.cancel()


async def test_a_new_connection_learns_the_peers_neighbours_at_once(autojump_clock) -> None:
    """Peer exchange runs on every new connection, not only on the periodic timer: a node whose own timers are an
    hour away still learns, as soon as b connects to it, that b knows a (so losing b cannot cut it off)."""
    net = MemoryNetwork(seed=11, default_link=LinkConfig(delay=0.005))
    async with trio.open_nursery() as nursery:
        a = net.host(config=_sim_config())
        await nursery.start(a.run)
        c = net.host(config=HostConfig.test(discovery_interval=3600.0, px_interval=3600.0))
        await nursery.start(c.run)
        b_cfg = _sim_config()
        b_cfg.bootstrap = [str(a.listen_addrs[0]), str(c.listen_addrs[0])]
        b = net.host(config=b_cfg)
        await nursery.start(b.run)
        with trio.fail_after(5):
            while not (a.peer_id in b.peers() and c.peer_id in b.peers()):
                await trio.sleep(0.05)
            while a.peer_id not in c.peer_table.records:
                await trio.sleep(0.05)
        assert a.peer_id not in c.peers()  # learnt through b, not by a connection of its own
        nursery.cancel_scope.cancel()
