"""One authenticated connection to a peer: a bounded send queue drained by one writer task that coalesces frames
into one ``send_all``, a reader task that decodes and dispatches, request/response bookkeeping, keepalive, idle
and write timeouts, and a per-peer frame rate limit that pushes back instead of dropping.

A :class:`FrameTransport` moves already-encoded messages; :class:`NoiseTransport` is the TCP one (Noise + 4-byte
length frames), :mod:`p2pnet.testing` has the in-memory one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from p2pnet.errors import (
    ConnectionClosed,
    FrameError,
    LocalProtocolError,
    P2PError,
    PeerBusy,
    RemoteError,
    RemoteProtocolError,
    RequestTimeout,
)
from p2pnet.framing import (
    FrameDecoder,
    Goodbye,
    Message,
    Ping,
    Request,
    Response,
    decode_message,
    encode_message,
    join_frames,
)
from p2pnet.identity import PeerId
from p2pnet.noise import NoiseSession
from p2pnet.resources import BUSY_PREFIX

log = logging.getLogger("p2pnet.connection")

_BATCH_BYTES = 256 * 1024
_RECEIVE_BYTES = 256 * 1024


class FrameTransport(Protocol):
    """Moves encoded messages to and from one authenticated peer. ``tie`` is a value both ends of the connection
    share and no other connection has (the Noise handshake hash), so both sides resolve duplicates alike."""

    tie: bytes

    async def send_frames(self, frames: list[bytes]) -> None: ...

    async def receive_frames(self) -> list[bytes]:
        """The next frames; :class:`ConnectionClosed` at a clean end of stream."""
        ...

    async def aclose(self) -> None: ...


class NoiseTransport:
    """Frames over a Noise session over a trio stream: one encrypt and one ``send_all`` per batch."""

    def __init__(self, stream: trio.abc.Stream, session: NoiseSession, max_frame: int) -> None:
        self.stream = stream
        self.session = session
        self.decoder = FrameDecoder(max_frame)
        self.tie = session.handshake_hash

    async def send_frames(self, frames: list[bytes]) -> None:
        try:
            await self.stream.send_all(self.session.encrypt(join_frames(frames)))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(f"send failed: {exc!r}") from None

    async def receive_frames(self) -> list[bytes]:
        decoder, session = self.decoder, self.session
        while True:
            # What the session holds already comes first: the handshake's last read may have carried frames
            # after Noise message 3, and those must not wait for the remote to send more.
            while (plain := session.next_plaintext()) is not None:
                decoder.receive_data(plain)
            frames = decoder.frames()
            if frames:
                return frames
            try:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(f"receive failed: {exc!r}") from None
            if not data:
                if session.pending:
                    raise FrameError(f"stream ended inside a noise message ({session.pending} bytes)")
                decoder.end_of_stream()
                raise ConnectionClosed("remote closed the stream")
            session.receive_data(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass(slots=True)
class ConnectionLimits:
    """The per-connection knobs, taken from HostConfig."""

    max_frame: int
    send_queue: int
    keepalive_interval: float
    idle_timeout: float
    write_timeout: float
    rate_limit: float
    rate_burst: float
    max_concurrent_requests: int


class _Pending:
    __slots__ = ("error", "event", "ok", "payload")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.ok = False
        self.payload: Any = None
        self.error: P2PError | None = None


Dispatch = Callable[["Connection", Message], Awaitable[None]]
RequestServer = Callable[["Connection", Request], Awaitable[Response]]


class Connection:
    """A live connection; created by the Host after the handshake and run in the Host's nursery."""

    def __init__(
        self,
        transport: FrameTransport,
        peer_id: PeerId,
        *,
        outbound: bool,
        remote_addr: str,
        limits: ConnectionLimits,
        dispatch: Dispatch,
        serve_request: RequestServer,
    ) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.outbound = outbound
        self.remote_addr = remote_addr
        self.limits = limits
        self._dispatch = dispatch
        self._serve_request = serve_request
        self._send, self._recv = trio.open_memory_channel[bytes](limits.send_queue)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._busy = 0
        self.closed = trio.Event()
        self.close_reason: str | None = None
        self.close_error: P2PError | None = None
        self.last_received = trio.current_time()
        self.listen_addrs: list[str] = []
        self.agent = ""
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self._tokens = limits.rate_burst
        self._tokens_at = trio.current_time()

    def __repr__(self) -> str:
        return f"Connection({self.peer_id.short()}, {'out' if self.outbound else 'in'}, {self.remote_addr})"

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run reader, writer and keepalive until closed; always closes the transport on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._nursery = nursery
                if self.close_reason is not None:
                    # Closed before it ran (a duplicate replaced while starting): it must not come alive as a
                    # zombie the remote still uses; close the transport so the remote sees it go.
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._guard, self._writer)
                nursery.start_soon(self._guard, self._reader)
                nursery.start_soon(self._guard, self._keepalive)
                task_status.started()
        finally:
            if self.close_reason is None:
                self.close_reason = "host stopped"
            for slot in self._pending.values():
                slot.error = ConnectionClosed(self.close_reason)
                slot.event.set()
            self._send.close()
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                try:
                    await self.transport.aclose()
                except Exception as exc:  # already broken: nothing more to do than say so
                    log.debug("%r: close failed: %r", self, exc)
            self.closed.set()

    def close(self, reason: str, error: P2PError | None = None) -> None:
        """Close with a reason (logged once); safe to call many times."""
        if self.close_reason is None:
            self.close_reason = reason
            self.close_error = error
            level = logging.WARNING if isinstance(error, RemoteProtocolError) else logging.INFO
            log.log(level, "closing %r: %s", self, reason)
        if self._scope is not None:
            self._scope.cancel()

    async def close_gracefully(self, reason: str) -> None:
        """Tell the remote why (best effort, bounded) and close. Idempotent: on a connection already closing or
        closed it only makes sure it is closed (pruning and shutdown may race the remote's own close)."""
        if self.close_reason is None:
            with trio.move_on_after(0.5):
                try:
                    await self.send(Goodbye(reason))
                    # let the writer flush the goodbye before the scope is cancelled
                    while self._recv.statistics().current_buffer_used:
                        await trio.sleep(0.01)
                except P2PError as exc:  # closed under us (the remote left first): nothing more to say
                    log.debug("%r: no goodbye sent (%s)", self, exc)
        self.close(reason)

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except ConnectionClosed as exc:
            self.close(exc.reason, exc)
        except P2PError as exc:
            self.close(f"{type(exc).__name__}: {exc}", exc)
        except Exception as exc:
            # a bug reached by one peer's traffic closes that connection, not the whole node
            log.exception("%r: internal error", self)
            self.close(f"internal error: {type(exc).__name__}: {exc}")

    # --- sending --------------------------------------------------------------------------------------------

    def encode(self, msg: Message) -> bytes:
        return encode_message(msg, self.limits.max_frame)

    async def send(self, msg: Message) -> None:
        """Queue ``msg``, waiting while the queue is full (back-pressure)."""
        await self.send_encoded(self.encode(msg))

    async def send_encoded(self, data: bytes) -> None:
        if self.close_reason is not None:
            raise ConnectionClosed(self.close_reason)
        try:
            await self._send.send(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed(self.close_reason or "closed") from None

    def try_send_encoded(self, data: bytes) -> bool:
        """Queue without waiting; False (and counted in ``dropped``, logged) if the queue is full or closed."""
        if self._put_nowait(data):
            return True
        self._count_drop("send queue full")
        return False

    def _put_nowait(self, data: bytes) -> bool:
        try:
            self._send.send_nowait(data)
            return True
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False

    def _count_drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
            log.warning("%r: %s, %d frames dropped so far", self, why, self.dropped)

    async def send_within(self, data: bytes, timeout: float) -> bool:
        """Queue, waiting at most ``timeout`` for room (back-pressure); False, counted and logged, if not."""
        if self._put_nowait(data):
            return True
        if self.close_reason is not None:
            return False
        with trio.move_on_after(timeout):
            try:
                await self._send.send(data)
                return True
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
        self._count_drop(f"send queue stayed full for {timeout}s")
        return False

    async def _writer(self) -> None:
        recv = self._recv
        transport = self.transport
        write_timeout = self.limits.write_timeout
        while True:
            try:
                first = await recv.receive()
            except trio.EndOfChannel:
                return
            batch = [first]
            size = len(first)
            while size < _BATCH_BYTES:
                try:
                    f = recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(f)
                size += len(f)
            with trio.move_on_after(write_timeout) as cs:
                await transport.send_frames(batch)
            if cs.cancelled_caught:
                raise ConnectionClosed(f"slow reader: a {size}-byte write took over {write_timeout}s")
            self.frames_out += len(batch)

    # --- receiving ------------------------------------------------------------------------------------------

    async def _reader(self) -> None:
        transport = self.transport
        max_frame = self.limits.max_frame
        rate, burst = self.limits.rate_limit, self.limits.rate_burst
        while True:
            frames = await transport.receive_frames()
            now = trio.current_time()
            self.last_received = now
            self.frames_in += len(frames)
            # token bucket: over the rate we stop reading, which pushes back on the sender's TCP window
            self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate) - len(frames)
            self._tokens_at = now
            if self._tokens < 0:
                await trio.sleep(-self._tokens / rate)
            for frame in frames:
                msg = decode_message(frame, max_frame)
                if isinstance(msg, Response):
                    self._on_response(msg)
                elif isinstance(msg, Request):
                    self._on_request(msg)
                elif isinstance(msg, Ping):
                    pass
                elif isinstance(msg, Goodbye):
                    raise ConnectionClosed(f"remote said goodbye: {msg.reason}")
                else:
                    await self._dispatch(self, msg)

    def _on_response(self, msg: Response) -> None:
        slot = self._pending.get(msg.id)
        if slot is None:
            log.debug("%r: response to unknown or timed-out request %d", self, msg.id)
            return
        slot.ok, slot.payload = msg.ok, msg.payload
        slot.event.set()

    def _on_request(self, msg: Request) -> None:
        assert self._nursery is not None
        if self._busy >= self.limits.max_concurrent_requests:
            # answer rather than queue without bound or drop silently
            busy = f"{BUSY_PREFIX} too many requests in flight; retry after 0.1 s"
            self.try_send_encoded(self.encode(Response(msg.id, False, busy)))
            return
        self._busy += 1
        self._nursery.start_soon(self._answer, msg)

    async def _answer(self, msg: Request) -> None:
        try:
            response = await self._serve_request(self, msg)
            try:
                data = self.encode(response)
            except LocalProtocolError as exc:
                data = self.encode(Response(msg.id, False, f"response not sendable: {exc}"))
            await self.send_encoded(data)
        except ConnectionClosed:
            pass
        finally:
            self._busy -= 1

    async def _keepalive(self) -> None:
        interval = self.limits.keepalive_interval
        idle = self.limits.idle_timeout
        ping = self.encode(Ping())
        while True:
            await trio.sleep(interval)
            if trio.current_time() - self.last_received > idle:
                raise ConnectionClosed(f"idle for over {idle}s")
            self.try_send_encoded(ping)

    # --- requests -------------------------------------------------------------------------------------------

    async def request(self, protocol: str, payload: Any, timeout: float) -> Any:
        """Send a request and wait for its response; :class:`RequestTimeout`, :class:`RemoteError`."""
        if self.close_reason is not None:
            raise ConnectionClosed(self.close_reason)
        rid = self._next_id
        self._next_id += 1
        slot = _Pending()
        self._pending[rid] = slot
        try:
            data = self.encode(Request(rid, protocol, payload))
            with trio.move_on_after(timeout if timeout > 0 else math.inf) as cs:
                await self.send_encoded(data)
                await slot.event.wait()
            if cs.cancelled_caught:
                raise RequestTimeout(protocol, timeout)
        finally:
            self._pending.pop(rid, None)
        if slot.error is not None:
            raise slot.error
        if not slot.ok:
            message = str(slot.payload)[:500]
            if message.startswith(BUSY_PREFIX):
                raise PeerBusy(protocol, message)
            raise RemoteError(protocol, message)
        return slot.payload
