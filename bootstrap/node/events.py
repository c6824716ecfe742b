"""An in-process event bus for the API, dashboard, CLI progress and the worker agent.

Events are small JSON-friendly dicts with a ``type`` (``block``, ``tx``, ``job``, ``peer``). Publishing never
waits: each subscriber has a bounded buffer, and a subscriber that falls that far behind is dropped (its channel
closed, so its reader sees the end) and counted. A slow reader can therefore never stall the node.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

log = logging.getLogger("bootstrap.events")

EVENT_TYPES = ("block", "tx", "job", "peer")


class EventBus:
    """Fan-out of node events to any number of bounded subscribers."""

    def __init__(self, buffer: int = 1024) -> None:
        self.buffer = buffer
        self._subs: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self.published = 0
        self.dropped_subscribers = 0

    def subscribe(self, buffer: int | None = None) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """A new receive channel that gets every event published from now on (until it falls behind)."""
        size = self.buffer if buffer is None else buffer
        send, recv = trio.open_memory_channel[dict[str, Any]](size if size > 0 else math.inf)
        self._subs.append(send)
        return recv

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver ``event`` to every subscriber now; drop (and count) those whose buffer is full or closed."""
        self.published += 1
        keep: list[trio.MemorySendChannel[dict[str, Any]]] = []
        for send in self._subs:
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self.dropped_subscribers += 1
                log.warning("dropping a slow event subscriber (buffer of %d full)", send.statistics().max_buffer_size)
                send.close()
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue  # the reader went away: just forget it
            keep.append(send)
        self._subs = keep

    def close(self) -> None:
        """End every subscription (readers see end-of-channel)."""
        for send in self._subs:
            send.close()
        self._subs = []
