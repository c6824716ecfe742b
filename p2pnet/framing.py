"""Length-prefixed MessagePack frames, sans-IO, and the typed messages of our wire protocol.

A frame is a 4-byte big-endian length and that many bytes of MessagePack. :class:`FrameDecoder` takes bytes in
any split (``receive_data``) and hands back whole frames (``next_frame``), refusing a frame over the cap as soon
as its header arrives. :func:`decode_message` turns a frame into one of the message classes below, and never
raises anything but :class:`~p2pnet.errors.ProtocolError` on bad input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

from p2pnet.errors import FrameTooLarge, LocalProtocolError, MessageTooLarge, ProtocolError, TruncatedFrame

DEFAULT_MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")


def frame_header(length: int) -> bytes:
    """The 4-byte length prefix of a frame of ``length`` bytes."""
    return _HEADER.pack(length)


def join_frames(frames: list[bytes]) -> bytes:
    """Several encoded messages as one byte string of frames, ready for one ``send_all``."""
    parts: list[bytes] = []
    pack = _HEADER.pack
    for f in frames:
        parts.append(pack(len(f)))
        parts.append(f)
    return b"".join(parts)


class FrameDecoder:
    """Splits a byte stream into frames; sans-IO (feed with ``receive_data``, drain with ``next_frame``)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the stream."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]  # compact now and then, not on every frame
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None until more bytes arrive; :class:`FrameTooLarge` if over the cap."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (length,) = _HEADER.unpack_from(buf, pos)
        if length > self.max_frame:
            raise FrameTooLarge(length, self.max_frame)
        end = pos + 4 + length
        if len(buf) < end:
            return None
        self._pos = end
        return bytes(buf[pos + 4 : end])

    def frames(self) -> list[bytes]:
        """Every whole frame now buffered."""
        out = []
        while (f := self.next_frame()) is not None:
            out.append(f)
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame."""
        return len(self._buf) - self._pos

    def end_of_stream(self) -> None:
        """Call at EOF: :class:`TruncatedFrame` if the stream stopped inside a frame."""
        if self.pending:
            raise TruncatedFrame(self.pending)


# --- messages -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Hello:
    """First message on a connection: where the sender listens (for peer exchange) and its agent."""

    listen_addrs: list[str]
    agent: str = ""


@dataclass(slots=True)
class Ping:
    """Keepalive, so a quiet but healthy connection is not closed as idle."""


@dataclass(slots=True)
class Goodbye:
    """The sender is closing the connection, and why."""

    reason: str


@dataclass(slots=True)
class Request:
    """A request on a named protocol; answered by a :class:`Response` with the same id."""

    id: int
    protocol: str
    payload: Any


@dataclass(slots=True)
class Response:
    """The answer to request ``id``: ``ok`` with a payload, or not ok with an error text."""

    id: int
    ok: bool
    payload: Any


@dataclass(slots=True)
class GossipMessage:
    """A published message: its topic and opaque data."""

    topic: str
    data: bytes


@dataclass(slots=True)
class GossipRPC:
    """One gossip exchange: subscription changes, messages, and control (IHAVE/IWANT/GRAFT/PRUNE)."""

    subscriptions: list[tuple[str, bool]] = field(default_factory=list)
    messages: list[GossipMessage] = field(default_factory=list)
    ihave: list[tuple[str, list[bytes]]] = field(default_factory=list)
    iwant: list[bytes] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    # (topic, peer exchange: list of (peer id bytes, addresses))
    prune: list[tuple[str, list[tuple[bytes, list[str]]]]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.subscriptions or self.messages or self.ihave or self.iwant or self.graft or self.prune)


Message = Hello | Ping | Goodbye | Request | Response | GossipRPC

_packer_default = msgpack.Packer(use_bin_type=True)


def encode_message(msg: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The MessagePack bytes of ``msg`` (without length prefix); :class:`MessageTooLarge` over the cap."""
    if isinstance(msg, GossipRPC):
        obj: list[Any] = [
            "g",
            [[t, s] for t, s in msg.subscriptions],
            [[m.topic, m.data] for m in msg.messages],
            [[t, ids] for t, ids in msg.ihave],
            msg.iwant,
            msg.graft,
            [[t, [[p, a] for p, a in px]] for t, px in msg.prune],
        ]
    elif isinstance(msg, Request):
        obj = ["q", msg.id, msg.protocol, msg.payload]
    elif isinstance(msg, Response):
        obj = ["r", msg.id, msg.ok, msg.payload]
    elif isinstance(msg, Ping):
        obj = ["p"]
    elif isinstance(msg, Hello):
        obj = ["h", msg.listen_addrs, msg.agent]
    elif isinstance(msg, Goodbye):
        obj = ["x", msg.reason]
    else:
        raise TypeError(f"not a p2pnet message: {type(msg).__name__}")
    try:
        data = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"payload is not MessagePack-encodable: {exc}") from None
    if len(data) > max_frame:
        raise MessageTooLarge(len(data), max_frame)
    return data


def decode_message(frame: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """Decode and check one frame; :class:`ProtocolError` (carrying the reason) for anything malformed."""
    if len(frame) > max_frame:
        raise ProtocolError(f"frame of {len(frame)} bytes over the limit {max_frame}")
    try:
        obj = msgpack.unpackb(
            frame,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except Exception as exc:  # msgpack raises a zoo of types (ValueError, ExtraData, FormatError, …)
        raise ProtocolError(f"not MessagePack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise ProtocolError("a message is a list starting with its kind")
    kind = obj[0]
    n = len(obj)
    if kind == "g" and n == 7:
        return _decode_gossip(obj)
    if kind == "q" and n == 4:
        if not _is_u64(obj[1]) or not isinstance(obj[2], str) or len(obj[2]) > 256:
            raise ProtocolError("request needs an id (uint) and a protocol (str ≤ 256)")
        return Request(obj[1], obj[2], obj[3])
    if kind == "r" and n == 4:
        if not _is_u64(obj[1]) or not isinstance(obj[2], bool):
            raise ProtocolError("response needs an id (uint) and an ok flag (bool)")
        return Response(obj[1], obj[2], obj[3])
    if kind == "p" and n == 1:
        return Ping()
    if kind == "h" and n == 3:
        addrs, agent = obj[1], obj[2]
        if not _is_str_list(addrs, 32, 512) or not isinstance(agent, str) or len(agent) > 256:
            raise ProtocolError("hello needs listen addresses (≤ 32 str) and an agent (str)")
        return Hello(addrs, agent)
    if kind == "x" and n == 2:
        if not isinstance(obj[1], str):
            raise ProtocolError("goodbye needs a reason (str)")
        return Goodbye(obj[1][:512])
    raise ProtocolError(f"unknown message kind {kind[:16]!r} with {n} fields")


def _is_u64(v: object) -> bool:
    return type(v) is int and 0 <= v < 2**64


def _is_str_list(v: object, max_items: int, max_len: int) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= max_items
        and all(isinstance(s, str) and len(s) <= max_len for s in v)
    )


def _is_topic(v: object) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 256


def _decode_gossip(obj: list[Any]) -> GossipRPC:
    _, subs, msgs, ihave, iwant, graft, prune = obj
    rpc = GossipRPC()
    if not isinstance(subs, list) or not isinstance(msgs, list) or not isinstance(ihave, list):
        raise ProtocolError("gossip: subscriptions, messages and ihave must be lists")
    for s in subs:
        if not (isinstance(s, list) and len(s) == 2 and _is_topic(s[0]) and isinstance(s[1], bool)):
            raise ProtocolError("gossip: a subscription is [topic, bool]")
        rpc.subscriptions.append((s[0], s[1]))
    for m in msgs:
        if not (isinstance(m, list) and len(m) == 2 and _is_topic(m[0]) and isinstance(m[1], bytes)):
            raise ProtocolError("gossip: a message is [topic, bytes]")
        rpc.messages.append(GossipMessage(m[0], m[1]))
    for h in ihave:
        if not (isinstance(h, list) and len(h) == 2 and _is_topic(h[0]) and _is_id_list(h[1])):
            raise ProtocolError("gossip: an ihave is [topic, [message ids]]")
        rpc.ihave.append((h[0], h[1]))
    if not _is_id_list(iwant):
        raise ProtocolError("gossip: iwant is a list of message ids")
    rpc.iwant = iwant
    if not isinstance(graft, list) or not all(_is_topic(t) for t in graft):
        raise ProtocolError("gossip: graft is a list of topics")
    rpc.graft = graft
    if not isinstance(prune, list):
        raise ProtocolError("gossip: prune is a list")
    for p in prune:
        if not (isinstance(p, list) and len(p) == 2 and _is_topic(p[0]) and isinstance(p[1], list)):
            raise ProtocolError("gossip: a prune is [topic, [peer exchange]]")
        px = []
        for entry in p[1][:64]:
            if not (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], bytes)
                and _is_str_list(entry[1], 8, 512)
            ):
                raise ProtocolError("gossip: a peer exchange entry is [peer id bytes, [addrs]]")
            px.append((entry[0], entry[1]))
        rpc.prune.append((p[0], px))
    return rpc


def _is_id_list(v: object) -> bool:
    return isinstance(v, list) and len(v) <= 5000 and all(isinstance(i, bytes) and len(i) <= 64 for i in v)
