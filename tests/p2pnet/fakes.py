"""A host stub for driving one gossip router by hand: every RPC it sends is recorded, every ban too."""

from __future__ import annotations

import random
from typing import Any

from p2pnet import Identity
from p2pnet.config import GossipConfig
from p2pnet.framing import GossipRPC
from p2pnet.gossip import Gossip
from p2pnet.identity import PeerId


class FakeConn:
    """A connection that keeps what is queued on it (the RPC objects themselves: ``FakeHost._encode`` is a
    no-op)."""

    def __init__(self) -> None:
        self.sent: list[GossipRPC] = []

    def try_send_encoded(self, data: Any) -> bool:
        self.sent.append(data)
        return True

    async def send_within(self, data: Any, timeout: float) -> bool:
        self.sent.append(data)
        return True


class FakeHost:
    """What :class:`p2pnet.gossip.Gossip` needs of a host, with bans recorded instead of enforced."""

    def __init__(self) -> None:
        self._connections: dict[PeerId, FakeConn] = {}
        self.bans: list[tuple[PeerId, str]] = []

    def connect(self, peer: PeerId | None = None) -> PeerId:
        peer = peer or Identity.generate().peer_id
        self._connections[peer] = FakeConn()
        return peer

    def _encode(self, msg: Any) -> Any:
        return msg

    def ban(self, peer: PeerId, reason: str, duration: float | None = None) -> None:
        self.bans.append((peer, reason))

    def _px_entries(self, exclude: PeerId | None, limit: int) -> list[tuple[bytes, list[str]]]:
        return []

    def _learn_peers(self, entries: list[Any], source: PeerId, via: str) -> int:
        return 0


def router(config: GossipConfig | None = None) -> tuple[Gossip, FakeHost]:
    """A router over a fake host (call ``host.connect()`` for peers, then ``gossip.add_peer``)."""
    host = FakeHost()
    return Gossip(host, config or GossipConfig(), random.Random(0)), host  # type: ignore[arg-type]
