"""An in-memory network for tests and simulations: the same Host, gossip, request/response and discovery code,
over links with per-link delay, jitter (reordering), loss, duplication and partitions, under any trio clock
(``trio.testing.MockClock(autojump_threshold=0)`` runs hundreds of nodes in virtual time).

Links carry whole frames, so loss and duplication act on messages, as they would on a lossy datagram network;
the Noise handshake is skipped (the network itself vouches for each end's identity), which is what makes loss
survivable and simulations cheap. Use real sockets (``Host`` with its default TCP transport) to test Noise.

    net = MemoryNetwork(seed=1, default_link=LinkConfig(delay=0.01))
    host = net.host(Identity.generate(), HostConfig.test())
    await nursery.start(host.run)
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from p2pnet.config import HostConfig
from p2pnet.connection import FrameTransport
from p2pnet.errors import ConnectionClosed, DialError, PeerIdMismatch
from p2pnet.host import Host
from p2pnet.identity import Identity, PeerId
from p2pnet.multiaddr import Multiaddr


@dataclass(frozen=True)
class LinkConfig:
    """One direction of a link: base delay, extra uniform jitter (reorders), loss and duplication rates."""

    delay: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0


@dataclass
class NetworkStats:
    """What the simulated network did to frames (its own deliberate drops, counted here)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    partitioned: int = 0


_TIES = itertools.count(1)


class _Endpoint:
    """One end of an in-memory connection: a heap of frames keyed by delivery time."""

    def __init__(self, net: MemoryNetwork, local: PeerId, remote: PeerId) -> None:
        self.net = net
        self.local = local
        self.remote = remote
        self.peer: _Endpoint | None = None
        self.tie = b""
        self._heap: list[tuple[float, int, bytes]] = []
        self._wake = trio.Event()
        self._closed = False
        self._eof = False

    async def send_frames(self, frames: list[bytes]) -> None:
        peer = self.peer
        if self._closed or peer is None or peer._closed:
            raise ConnectionClosed("memory link closed")
        net = self.net
        link = net.link(self.local, self.remote)
        now = trio.current_time()
        blocked = net.is_partitioned(self.local, self.remote)
        rng = net.rng
        for f in frames:
            net.stats.sent += 1
            if blocked:
                net.stats.partitioned += 1
                continue
            if link.loss and rng.random() < link.loss:
                net.stats.lost += 1
                continue
            copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
            if copies == 2:
                net.stats.duplicated += 1
            for _ in range(copies):
                at = now + link.delay + (rng.random() * link.jitter if link.jitter else 0.0)
                heapq.heappush(peer._heap, (at, next(net._seq), f))
        peer._wake.set()

    async def receive_frames(self) -> list[bytes]:
        while True:
            if self._closed:
                raise ConnectionClosed("memory link closed locally")
            now = trio.current_time()
            heap = self._heap
            if heap and heap[0][0] <= now:
                out = []
                while heap and heap[0][0] <= now:
                    out.append(heapq.heappop(heap)[2])
                self.net.stats.delivered += len(out)
                return out
            if self._eof and not heap:
                raise ConnectionClosed("remote closed the memory link")
            self._wake = trio.Event()
            with trio.move_on_after(heap[0][0] - now if heap else math.inf):
                await self._wake.wait()

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        if self.peer is not None:
            self.peer._eof = True
            self.peer._wake.set()


class MemoryTransport:
    """The transport of one Host on a :class:`MemoryNetwork`; its address is ``/memory/<n>``."""

    def __init__(self, net: MemoryNetwork) -> None:
        self.net = net
        self.host: Host | None = None
        self.port = 0

    async def listen(
        self,
        host: Host,
        addrs: list[Multiaddr],
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.host = host
        self.port = next(self.net._ports)
        self.net._listeners[self.port] = self
        try:
            task_status.started([Multiaddr("memory", "", self.port)])
            await trio.sleep_forever()
        finally:
            self.net._listeners.pop(self.port, None)

    async def dial(self, host: Host, addr: Multiaddr) -> tuple[FrameTransport, PeerId, str]:
        if addr.kind != "memory":
            raise DialError(addr, "a memory host can only dial /memory addresses")
        target = self.net._listeners.get(addr.port)
        if target is None or target.host is None or target.host._nursery is None:
            raise DialError(addr, "nobody listens there")
        remote = target.host
        if self.net.is_partitioned(host.peer_id, remote.peer_id):
            raise DialError(addr, "partitioned")
        if addr.peer_id is not None and addr.peer_id != remote.peer_id:
            raise PeerIdMismatch(addr.peer_id, remote.peer_id)
        refusal = remote._admit_inbound()
        if refusal is not None:
            raise DialError(addr, f"refused: {refusal}")
        await trio.sleep(self.net.link(host.peer_id, remote.peer_id).delay * 2)  # a handshake's round trip
        mine = _Endpoint(self.net, host.peer_id, remote.peer_id)
        theirs = _Endpoint(self.net, remote.peer_id, host.peer_id)
        mine.peer, theirs.peer = theirs, mine
        # Unique per connection without drawing from the seeded RNG (that would shift every later draw).
        mine.tie = theirs.tie = next(_TIES).to_bytes(8, "big")
        remote._nursery_start_soon(
            functools.partial(remote._adopt, theirs, host.peer_id, outbound=False, remote_addr=f"memory:{self.port}")
        )
        return mine, remote.peer_id, f"memory:{addr.port}"


@dataclass
class MemoryNetwork:
    """A simulated network of Hosts; links default to ``default_link`` unless set with :meth:`set_link`."""

    seed: int = 0
    default_link: LinkConfig = field(default_factory=LinkConfig)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.stats = NetworkStats()
        self._links: dict[tuple[PeerId, PeerId], LinkConfig] = {}
        self._groups: dict[PeerId, int] | None = None
        self._listeners: dict[int, MemoryTransport] = {}
        self._ports = itertools.count(1)
        self._seq = itertools.count()

    def host(self, identity: Identity | None = None, config: HostConfig | None = None) -> Host:
        """A Host on this network (run it with ``await nursery.start(host.run)``)."""
        cfg = config if config is not None else HostConfig.test()
        cfg.listen_addrs = ["/memory/0"]
        ident = identity if identity is not None else Identity.from_seed(self.rng.randbytes(32))
        return Host(ident, cfg, transport=MemoryTransport(self), seed=self.rng.randrange(2**32))

    def link(self, a: PeerId, b: PeerId) -> LinkConfig:
        """The settings for frames from ``a`` to ``b``."""
        return self._links.get((a, b), self.default_link)

    def set_link(self, a: PeerId, b: PeerId, config: LinkConfig, *, both_ways: bool = True) -> None:
        self._links[(a, b)] = config
        if both_ways:
            self._links[(b, a)] = config

    def partition(self, groups: Iterable[Iterable[PeerId]]) -> None:
        """Split the network: frames between different groups are dropped (peers in no group are cut off)."""
        self._groups = {}
        for i, g in enumerate(groups):
            for p in g:
                self._groups[p] = i

    def heal(self) -> None:
        """End the partition."""
        self._groups = None

    def is_partitioned(self, a: PeerId, b: PeerId) -> bool:
        if self._groups is None:
            return False
        ga, gb = self._groups.get(a), self._groups.get(b)
        return ga is None or ga != gb
