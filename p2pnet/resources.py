"""What a peer may take from this host: request budgets per peer and protocol, and inbound slots per address.

A stranger on a fast link once had 40,832 sync requests served (410 MB to one peer) with no quota, byte account or
penalty. :class:`RequestBudgets` gives each (peer, protocol) two token buckets, one of requests and one of answer
bytes; a request that finds either empty is answered "busy" (with a retry hint) without running its handler, and a
peer that keeps asking while busy is penalised and, after ``busy_strikes`` refusals, disconnected and banned for
a while. The honest pace (a syncing node asks for one range at a time) stays far inside the defaults.

:func:`address_group` names the group an inbound address belongs to (its IP, and its /24 or /64), for the
host's per-IP and per-subnet slot limits.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

BUSY_PREFIX = "busy:"
"""Error text of a refused request; the requesting side raises :class:`p2pnet.errors.PeerBusy` for it."""


@dataclass(slots=True)
class TokenBucket:
    """``rate`` units per second up to ``burst``; a charge after the fact may take the level below zero."""

    rate: float
    burst: float
    level: float
    last: float

    def refill(self, now: float) -> None:
        self.level = min(self.burst, self.level + (now - self.last) * self.rate)
        self.last = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now)."""
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate


@dataclass(slots=True)
class _PeerBudget:
    buckets: dict[str, tuple[TokenBucket, TokenBucket]] = field(default_factory=dict)
    strikes: int = 0


class RequestBudgets:
    """Per-peer, per-protocol request and byte budgets with strike counting; entries go when the peer does."""

    def __init__(self, *, rate: float, burst: float, bytes_rate: float, bytes_burst: float,
                 busy_strikes: int) -> None:
        self.rate, self.burst = rate, burst
        self.bytes_rate, self.bytes_burst = bytes_rate, bytes_burst
        self.busy_strikes = busy_strikes
        self._peers: dict[bytes, _PeerBudget] = {}
        self.served = 0
        self.refused = 0
        self.bytes_served = 0

    def _buckets(self, peer: bytes, protocol: str, now: float) -> tuple[_PeerBudget, TokenBucket, TokenBucket]:
        pb = self._peers.get(peer)
        if pb is None:
            pb = self._peers[peer] = _PeerBudget()
        pair = pb.buckets.get(protocol)
        if pair is None:
            if len(pb.buckets) >= 64:  # a peer naming endless protocols cannot grow this table
                protocol = "*"
                pair = pb.buckets.get(protocol)
            if pair is None:
                pair = pb.buckets[protocol] = (TokenBucket(self.rate, self.burst, self.burst, now),
                                               TokenBucket(self.bytes_rate, self.bytes_burst, self.bytes_burst, now))
        reqs, byts = pair
        reqs.refill(now)
        byts.refill(now)
        return pb, reqs, byts

    def admit(self, peer: bytes, protocol: str, now: float) -> float | None:
        """None if the request may run (one request taken), else the seconds to wait before asking again."""
        pb, reqs, byts = self._buckets(peer, protocol, now)
        if reqs.level >= 1 and byts.level > 0:
            reqs.level -= 1
            pb.strikes = max(0, pb.strikes - 1)
            self.served += 1
            return None
        pb.strikes += 1
        self.refused += 1
        return max(reqs.wait_s(1), byts.wait_s(1))

    def charge(self, peer: bytes, protocol: str, nbytes: int, now: float) -> None:
        """Account an answer's size against the peer's byte budget (its next requests wait if it went below 0)."""
        _pb, _reqs, byts = self._buckets(peer, protocol, now)
        byts.level -= nbytes
        self.bytes_served += nbytes

    def strikes(self, peer: bytes) -> int:
        """Refusals not yet worked off by requests within budget."""
        pb = self._peers.get(peer)
        return pb.strikes if pb is not None else 0

    def over_strikes(self, peer: bytes) -> bool:
        return self.strikes(peer) >= self.busy_strikes

    def forget(self, peer: bytes) -> None:
        self._peers.pop(peer, None)

    def __len__(self) -> int:
        return len(self._peers)


def address_group(host: str) -> tuple[str, str] | None:
    """``(ip, subnet)`` of a remote address: the /24 of an IPv4 address, the /64 of an IPv6 one; None if
    ``host`` is not an IP address."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ip), str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False
