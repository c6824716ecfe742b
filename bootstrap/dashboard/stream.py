"""The dashboard's live stream: the node's event bus as server-sent events (``block``, ``tx``, ``job``, ``peer``),
with a heartbeat comment every few seconds. A client that falls behind is dropped by the bus and its stream ends
(the browser reconnects and reloads its snapshot). The bus has no peer events of its own, so each stream compares
the node's peer set once a second and emits ``peer`` events for the differences."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any

import trio

HEARTBEAT_S = 5.0
PEER_CHECK_S = 1.0
MAX_STREAMS = 32
# One remote address may hold this many of them, so a single client cannot take every slot (loopback callers,
# trusted like the API trusts them, share only the total).
MAX_STREAMS_PER_CLIENT = 4
STREAM_BUFFER = 2048
EVENT_KINDS = ("block", "tx", "job", "peer")


def sse_message(event: dict[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>`` and the event as one JSON ``data`` line."""
    kind = str(event.get("type", "message"))
    return f"event: {kind}\ndata: {json.dumps(event, separators=(',', ':'), default=str)}\n\n".encode()


def is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def _stream(node: Any, channel: Any, wanted: set[str], streams: dict[str, Any],
                  client: str | None = None) -> AsyncIterator[bytes]:
    """The body of one ``/events`` response. Yields happen outside every cancel scope (trio's rule for
    generators); the bus subscription is closed however the stream ends."""
    try:
        known = {p["peer_id"] for p in node.peers()}
        yield b"retry: 2000\n\n"
        yield sse_message({"type": "hello", "height": node.height, "peers": len(known), "types": sorted(wanted)})
        quiet_s = 0.0
        async with channel:
            while True:
                batch: list[dict[str, Any]] = []
                ended = False
                with trio.move_on_after(PEER_CHECK_S):
                    try:
                        batch.append(await channel.receive())
                        while len(batch) < 256:
                            batch.append(channel.receive_nowait())
                    except trio.WouldBlock:
                        pass
                    except trio.EndOfChannel:
                        ended = True
                if "peer" in wanted:
                    now = {p["peer_id"] for p in node.peers()}
                    for pid in sorted(now - known):
                        batch.append({"type": "peer", "change": "connected", "peer_id": pid, "peers": len(now)})
                    for pid in sorted(known - now):
                        batch.append({"type": "peer", "change": "disconnected", "peer_id": pid, "peers": len(now)})
                    known = now
                out = b"".join(sse_message(e) for e in batch if e.get("type") in wanted)
                if ended:
                    # The bus dropped this subscriber (it fell behind); say so and end: the client reconnects.
                    yield out + sse_message({"type": "dropped", "reason": "fell behind the node's event bus"})
                    return
                if out:
                    quiet_s = 0.0
                    yield out
                else:
                    quiet_s += PEER_CHECK_S
                    if quiet_s >= HEARTBEAT_S:
                        quiet_s = 0.0
                        yield b": heartbeat\n\n"
    finally:
        streams["open"] -= 1
        if client is not None:
            per = streams["by_client"]
            per[client] -= 1
            if per[client] <= 0:
                del per[client]
