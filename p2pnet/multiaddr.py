"""Multiaddrs in text form: ``/ip4/…/tcp/…/p2p/<peer-id>``, ``/ip6/…``, ``/dns/…`` (and ``dns4``/``dns6``), plus
``/memory/<n>`` for :mod:`p2pnet.testing`'s in-memory network."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from p2pnet.errors import InvalidMultiaddr, InvalidPeerId
from p2pnet.identity import PeerId

_HOST_KINDS = ("ip4", "ip6", "dns", "dns4", "dns6")
_MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class Multiaddr:
    """A dialable address: host kind (``ip4``/``ip6``/``dns*``/``memory``), host, port, and maybe a peer id."""

    kind: str
    host: str
    port: int
    peer_id: PeerId | None = None

    @classmethod
    def parse(cls, text: str) -> Multiaddr:
        """Parse multiaddr text; :class:`InvalidMultiaddr` names what is wrong."""
        if not isinstance(text, str) or not text.startswith("/"):
            raise InvalidMultiaddr(str(text), "must start with '/'")
        if len(text) > _MAX_TEXT:
            raise InvalidMultiaddr(text[:40] + "…", f"longer than {_MAX_TEXT} characters")
        parts = text.strip("/").split("/")
        if len(parts) < 2:
            raise InvalidMultiaddr(text, "expected /<proto>/<value>…")
        kind, host = parts[0], parts[1]
        rest = parts[2:]
        if kind == "memory":
            port = _parse_int(text, host, "memory id")
            host = ""
        elif kind in _HOST_KINDS:
            host = _check_host(text, kind, host)
            if len(rest) < 2 or rest[0] != "tcp":
                raise InvalidMultiaddr(text, f"/{kind} must be followed by /tcp/<port>")
            port = _parse_int(text, rest[1], "tcp port")
            if not 0 <= port <= 65535:
                raise InvalidMultiaddr(text, f"tcp port {port} out of range")
            rest = rest[2:]
        else:
            raise InvalidMultiaddr(text, f"unsupported protocol /{kind}")
        peer_id = None
        if rest:
            if len(rest) != 2 or rest[0] != "p2p":
                raise InvalidMultiaddr(text, f"unexpected trailing components {'/'.join(rest)!r}")
            try:
                peer_id = PeerId.from_string(rest[1])
            except InvalidPeerId as exc:
                raise InvalidMultiaddr(text, f"bad /p2p component: {exc.reason}") from None
        return cls(kind, host, port, peer_id)

    def with_peer_id(self, peer_id: PeerId) -> Multiaddr:
        """This address ending in ``/p2p/<peer_id>``."""
        return Multiaddr(self.kind, self.host, self.port, peer_id)

    def without_peer_id(self) -> Multiaddr:
        """This address with no ``/p2p`` part."""
        return Multiaddr(self.kind, self.host, self.port, None)

    def __str__(self) -> str:
        base = f"/memory/{self.port}" if self.kind == "memory" else f"/{self.kind}/{self.host}/tcp/{self.port}"
        return base if self.peer_id is None else f"{base}/p2p/{self.peer_id}"


def _parse_int(text: str, value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise InvalidMultiaddr(text, f"{what} {value!r} is not a number")
    return int(value)


def _check_host(text: str, kind: str, host: str) -> str:
    try:
        if kind == "ip4":
            return str(ipaddress.IPv4Address(host))
        if kind == "ip6":
            return str(ipaddress.IPv6Address(host))
    except ValueError:
        raise InvalidMultiaddr(text, f"{host!r} is not an {kind} address") from None
    if not host or len(host) > 253 or not all(c.isalnum() or c in "-._" for c in host) or not host.isascii():
        raise InvalidMultiaddr(text, f"{host!r} is not a DNS name")
    return host
