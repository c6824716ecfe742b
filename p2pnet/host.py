"""The Host: listens, dials, secures, keeps the connection table and its limits, serves request/response
protocols and blobs, runs gossip and discovery. One Host per node, run in the node's trio nursery.

Why this file is long: the TCP/Noise transport, the connection table it feeds, request/response, blobs and
discovery share the admission limits, bans and the dial/accept lifecycle; the resource manager of issue 17 is
where a connection manager of its own should split off.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import trio

from p2pnet.config import HostConfig
from p2pnet.connection import Connection, ConnectionLimits, FrameTransport, NoiseTransport
from p2pnet.discovery import PeerTable
from p2pnet.errors import (
    BlobDigestMismatch,
    BlobError,
    ConnectionClosed,
    DialError,
    HandshakeError,
    HandshakeTimeout,
    InvalidPeerId,
    ListenError,
    LocalProtocolError,
    P2PError,
    RemoteProtocolError,
)
from p2pnet.framing import GossipRPC, Hello, Message, Request, Response, encode_message
from p2pnet.gossip import Gossip
from p2pnet.identity import Identity, PeerId
from p2pnet.multiaddr import Multiaddr
from p2pnet.noise import NoiseHandshake, NoiseSession, generate_static_key
from p2pnet.resources import BUSY_PREFIX, RequestBudgets, address_group, is_loopback

log = logging.getLogger("p2pnet.host")

PX_PROTOCOL = "/dacn/px/1"
BLOB_PROTOCOL = "/dacn/blob/1"

RequestHandler = Callable[[PeerId, Any], Awaitable[Any]]
BlobProvider = Callable[[bytes], "bytes | None"]
# ``reader(digest, offset, length) -> (total size, bytes at offset)`` or None when the blob is not held; it is
# called on a worker thread, so it may block on disk.
BlobReader = Callable[[bytes, int, int], "tuple[int, bytes] | None"]
BLOB_READ_THREADS = 4  # blob chunks read from disk at once (off the event loop)


def blob_digest(data: bytes) -> bytes:
    """The digest blobs are named by: BLAKE2b-256."""
    return hashlib.blake2b(data, digest_size=32).digest()


class Secured(Protocol):
    """What a transport hands the Host: an authenticated frame transport, who it is, and from where."""

    transport: FrameTransport
    peer_id: PeerId
    remote_addr: str


class Transport(Protocol):
    """How a Host listens and dials: TCP + Noise (:class:`TcpTransport`) or in memory (p2pnet.testing)."""

    async def listen(
        self, host: Host, addrs: list[Multiaddr], *, task_status: trio.TaskStatus[list[Multiaddr]]
    ) -> None: ...

    async def dial(self, host: Host, addr: Multiaddr) -> tuple[FrameTransport, PeerId, str]: ...


# accept() errors that mean "out of descriptors or kernel buffers for now", not a broken listener.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF_S = 0.1


class TcpTransport:
    """TCP with the Noise XX handshake; inbound connections are admitted (limits, bans) before the handshake."""

    async def listen(
        self,
        host: Host,
        addrs: list[Multiaddr],
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners: list[trio.SocketListener] = []
        for ma in addrs:
            if ma.kind not in ("ip4", "ip6"):
                raise LocalProtocolError(f"cannot listen on {ma}: only /ip4 and /ip6")
            try:
                listeners += await trio.open_tcp_listeners(ma.port, host=ma.host)
            except OSError as exc:
                for lst in listeners:
                    await lst.aclose()
                raise ListenError("peers", str(ma), exc.strerror or str(exc)) from exc
        bound = []
        for lst in listeners:
            sockname = lst.socket.getsockname()
            ip, port = sockname[0], sockname[1]
            kind = "ip6" if ":" in ip else "ip4"
            bound.append(Multiaddr(kind, ip, port))
        async with trio.open_nursery() as nursery:
            for lst in listeners:
                nursery.start_soon(self._accept_loop, host, lst)
            task_status.started(bound)

    async def _accept_loop(self, host: Host, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_RESOURCE_ERRNOS:
                        raise
                    # Out of descriptors or buffers (a flood of idle connections, here or on the node's API):
                    # wait for some to close instead of dying, as trio's serve_listeners does.
                    log.warning("accept on %s failed: %s; retrying in %gs", listener.socket.getsockname(), exc,
                                ACCEPT_BACKOFF_S)
                    await trio.sleep(ACCEPT_BACKOFF_S)
                    continue
                host._nursery_start_soon(self._inbound, host, stream)

    async def _inbound(self, host: Host, stream: trio.SocketStream) -> None:
        try:
            peer_addr = stream.socket.getpeername()
            addr = f"{peer_addr[0]}:{peer_addr[1]}"
        except OSError:
            addr = "?"
        ip = addr.rsplit(":", 1)[0]
        refusal = host._admit_inbound(ip)
        if refusal is not None:
            log.info("refusing inbound connection from %s: %s", addr, refusal)
            await stream.aclose()
            return
        host._inbound_pending += 1
        groups = host._group_keys(ip)
        for g in groups:
            host._pending_groups[g] += 1
        try:
            session = await _handshake(host, stream, initiator=False, expected=None)
        except Exception as exc:
            # Nothing a stranger sends before the handshake completes may leave this task: a typed error is the
            # remote's doing, anything else is a bug to log, and either way only this stream closes.
            if isinstance(exc, P2PError):
                log.warning("inbound handshake from %s failed: %s", addr, exc)
            else:
                log.exception("inbound handshake from %s: internal error", addr)
            with trio.move_on_after(0.5):
                await stream.aclose()
            return
        finally:
            host._inbound_pending -= 1
            for g in groups:
                host._pending_groups[g] -= 1
                if not host._pending_groups[g]:
                    del host._pending_groups[g]
        ft = NoiseTransport(stream, session, host.config.max_frame)
        await host._adopt(ft, session.remote_peer, outbound=False, remote_addr=addr)

    async def dial(self, host: Host, addr: Multiaddr) -> tuple[FrameTransport, PeerId, str]:
        if addr.kind == "memory":
            raise DialError(addr, "a TCP host cannot dial /memory addresses")
        try:
            with trio.fail_after(host.config.handshake_timeout):
                stream = await trio.open_tcp_stream(addr.host, addr.port)
        except (OSError, trio.TooSlowError) as exc:
            raise DialError(addr, f"connect failed: {exc!r}") from None
        try:
            session = await _handshake(host, stream, initiator=True, expected=addr.peer_id)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                await stream.aclose()
            raise
        return NoiseTransport(stream, session, host.config.max_frame), session.remote_peer, f"{addr.host}:{addr.port}"


async def _handshake(
    host: Host, stream: trio.abc.Stream, *, initiator: bool, expected: PeerId | None
) -> NoiseSession:
    hs = NoiseHandshake(host.identity, initiator=initiator, expected_peer=expected, static_key=host._static_key)
    timeout = host.config.handshake_timeout
    with trio.move_on_after(timeout) as cs:
        try:
            while True:
                out = hs.bytes_to_send()
                if out:
                    await stream.send_all(out)
                if hs.complete:
                    break
                data = await stream.receive_some(65537)
                if not data:
                    raise HandshakeError("remote closed the stream during the handshake")
                hs.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise HandshakeError(f"stream broke during the handshake: {exc!r}") from None
    if cs.cancelled_caught:
        raise HandshakeTimeout(f"handshake not finished within {timeout}s")
    return hs.session()


class Host:
    """A peer on the network. Start it with ``await nursery.start(host.run)``; see :mod:`p2pnet` for the API."""

    def __init__(
        self,
        identity: Identity,
        config: HostConfig | None = None,
        *,
        transport: Transport | None = None,
        seed: int | None = None,
    ) -> None:
        self.identity = identity
        self.config = config if config is not None else HostConfig()
        self.config.validate()
        self.transport: Transport = transport if transport is not None else TcpTransport()
        self.rng = random.Random(seed)
        self._static_key = generate_static_key()
        self.gossip = Gossip(self, self.config.gossip, self.rng)
        self.peer_table = PeerTable(self.rng, self.config.dial_backoff_base, self.config.dial_backoff_max)
        self.listen_addrs: list[Multiaddr] = []
        self._connections: dict[PeerId, Connection] = {}
        self._handlers: dict[str, RequestHandler] = {PX_PROTOCOL: self._serve_px, BLOB_PROTOCOL: self._serve_blob}
        self._blobs: dict[bytes, bytes] = {}
        self._blob_provider: BlobProvider | None = None
        self._blob_reader: BlobReader | None = None
        self._blob_read_limiter = trio.CapacityLimiter(BLOB_READ_THREADS)
        self._bans: dict[PeerId, float] = {}
        self._dialing: set[PeerId] = set()
        self._bootstrap_next: dict[str, float] = {}
        self._bootstrap_failures: dict[str, int] = {}
        self._inbound_pending = 0
        self._pending_groups: Counter[str] = Counter()  # handshakes in progress per IP and per subnet
        self.protected: set[PeerId] = {PeerId.from_string(t) for t in self.config.protected_peers}
        self._protected_next: dict[PeerId, tuple[float, int]] = {}  # next dial time, failures in a row
        self.budgets = RequestBudgets(
            rate=self.config.request_rate,
            burst=self.config.request_burst,
            bytes_rate=self.config.response_bytes_rate,
            bytes_burst=self.config.response_bytes_burst,
            busy_strikes=self.config.busy_strikes,
        )
        self._nursery: trio.Nursery | None = None
        self._limits = ConnectionLimits(
            max_frame=self.config.max_frame,
            send_queue=self.config.send_queue,
            keepalive_interval=self.config.keepalive_interval,
            idle_timeout=self.config.idle_timeout,
            write_timeout=self.config.write_timeout,
            rate_limit=self.config.rate_limit,
            rate_burst=self.config.rate_burst,
            max_concurrent_requests=self.config.max_concurrent_requests,
        )
        self.counters: dict[str, int] = {
            "connections_opened": 0,
            "connections_closed": 0,
            "inbound_refused": 0,
            "dial_failures": 0,
            "protocol_errors": 0,
            "bans": 0,
            "inbound_refused_address": 0,
            "inbound_closed_unprotected": 0,
            "protected_dials": 0,
        }
        self.started = trio.Event()

    # --- public API ---------------------------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    def peers(self) -> list[PeerId]:
        """Peers with an open connection."""
        return list(self._connections)

    def connection(self, peer: PeerId) -> Connection | None:
        return self._connections.get(peer)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, then run gossip and discovery until cancelled; ``started()`` once listening."""
        cfg = self.config
        if cfg.peer_table_path:
            n = self.peer_table.load(cfg.peer_table_path)
            if n:
                log.info("%s: loaded %d peers from %s", self.peer_id.short(), n, cfg.peer_table_path)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                addrs = [Multiaddr.parse(a) for a in cfg.listen_addrs]
                if addrs:
                    bound = await nursery.start(self.transport.listen, self, addrs)
                    self.listen_addrs = [a.with_peer_id(self.peer_id) for a in bound]
                nursery.start_soon(self.gossip.run)
                nursery.start_soon(self._discovery_loop)
                self.started.set()
                task_status.started()
        finally:
            self._nursery = None
            if cfg.peer_table_path:
                self._save_table()

    def stop(self) -> None:
        """Cancel ``run`` (closing every connection)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def dial(self, addr: Multiaddr | str) -> PeerId:
        """Connect to ``addr`` (returns at once if already connected to its peer id). :class:`PeerIdMismatch`
        if the remote proves another identity than ``/p2p/<id>``; :class:`DialError` when refused or limited."""
        ma = Multiaddr.parse(addr) if isinstance(addr, str) else addr
        if self._nursery is None:
            raise LocalProtocolError("host is not running")
        if ma.peer_id is not None:
            if ma.peer_id == self.peer_id:
                raise DialError(ma, "refusing to dial ourselves")
            if ma.peer_id in self._connections:
                return ma.peer_id
            if self.is_banned(ma.peer_id):
                raise DialError(ma, "peer is banned")
        outbound = sum(1 for c in self._connections.values() if c.outbound)
        if outbound >= self.config.max_outbound:
            raise DialError(ma, f"outbound connection limit {self.config.max_outbound} reached")
        ft, peer, remote = await self.transport.dial(self, ma)
        if peer == self.peer_id:
            await ft.aclose()
            raise DialError(ma, "dialed ourselves")
        if self.is_banned(peer):
            await ft.aclose()
            raise DialError(ma, f"{peer} is banned")
        self.peer_table.add(peer, [str(ma)])
        self.peer_table.dial_succeeded(peer)
        await self._adopt(ft, peer, outbound=True, remote_addr=remote)
        if peer not in self._connections:
            raise DialError(ma, "connection closed right after the handshake")
        return peer

    def protect(self, peers: Iterable[PeerId]) -> None:
        """Set the protected peers (the validator set, persistent peers): they keep a slot whatever strangers do,
        are never pruned, and are re-dialed whenever the peer table has an address for them."""
        self.protected = {p for p in peers if p != self.peer_id}
        for p in list(self._protected_next):
            if p not in self.protected:
                del self._protected_next[p]

    def set_request_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve ``protocol``: ``await handler(peer_id, payload) -> payload``. An exception becomes a remote
        error at the caller."""
        if not protocol or len(protocol) > 256:
            raise LocalProtocolError(f"protocol id must be 1..256 characters: {protocol!r}")
        self._handlers[protocol] = handler

    async def request(self, peer: PeerId, protocol: str, payload: Any, timeout: float | None = None) -> Any:
        """Send ``payload`` on ``protocol`` to a connected peer and return its answer."""
        conn = self._connections.get(peer)
        if conn is None:
            raise ConnectionClosed(f"not connected to {peer}")
        return await conn.request(protocol, payload, self.config.request_timeout if timeout is None else timeout)

    def provide_blob(self, data: bytes) -> bytes:
        """Serve ``data`` to peers under its BLAKE2b-256 digest, which is returned."""
        digest = blob_digest(data)
        self._blobs[digest] = data
        return digest

    def set_blob_provider(self, provider: BlobProvider) -> None:
        """Serve blobs from a callback ``provider(digest) -> bytes | None`` (checked after the local store)."""
        self._blob_provider = provider

    def set_blob_reader(self, reader: BlobReader) -> None:
        """Serve blobs chunk by chunk from ``reader(digest, offset, length) -> (size, chunk) | None``, run on a
        worker thread (checked after the local store, before a provider): a chunk request then reads one chunk
        from disk, off the event loop, instead of the whole blob on it."""
        self._blob_reader = reader

    async def fetch_blob(self, peer: PeerId, digest: bytes, *, max_size: int | None = None) -> bytes:
        """Fetch a blob from ``peer`` in chunks and check its BLAKE2b-256 digest (:class:`BlobDigestMismatch`)."""
        limit = self.config.max_blob if max_size is None else max_size
        parts: list[bytes] = []
        offset = 0
        total: int | None = None
        while total is None or offset < total:
            reply = await self.request(peer, BLOB_PROTOCOL, {"d": digest, "o": offset})
            if not isinstance(reply, dict) or not isinstance(reply.get("n"), int) or not isinstance(
                reply.get("b"), bytes
            ):
                raise BlobError(f"malformed blob reply from {peer}")
            if total is None:
                total = reply["n"]
                if total > limit:
                    raise BlobError(f"blob of {total} bytes is over the limit {limit}")
            elif reply["n"] != total:
                raise BlobError(f"blob size changed mid-transfer ({total} -> {reply['n']})")
            chunk = reply["b"]
            if not chunk and offset < total:
                raise BlobError(f"empty chunk at offset {offset} of {total}")
            parts.append(chunk)
            offset += len(chunk)
        data = b"".join(parts)
        actual = blob_digest(data)
        if actual != digest or len(data) != total:
            raise BlobDigestMismatch(digest, actual)
        return data

    def ban(self, peer: PeerId, reason: str, duration: float | None = None) -> None:
        """Disconnect ``peer`` and refuse it until the ban expires."""
        until = trio.current_time() + (self.config.ban_duration if duration is None else duration)
        already = self.is_banned(peer)
        self._bans[peer] = until
        if not already:
            self.counters["bans"] += 1
            log.warning("%s: banning %s: %s", self.peer_id.short(), peer, reason)
        conn = self._connections.get(peer)
        if conn is not None:
            conn.close(f"banned: {reason}")

    def is_banned(self, peer: PeerId) -> bool:
        until = self._bans.get(peer)
        if until is None:
            return False
        if trio.current_time() >= until:
            del self._bans[peer]
            return False
        return True

    def metrics(self) -> dict[str, Any]:
        """Counters: host-level, per connection (frames in/out/dropped), and per gossip topic."""
        return {
            "host": dict(self.counters),
            "peers": len(self._connections),
            "connections": {
                str(p): {"in": c.frames_in, "out": c.frames_out, "dropped": c.dropped}
                for p, c in self._connections.items()
            },
            "topics": {t: vars(c).copy() for t, c in self.gossip.counters.items()},
            "requests": {"served": self.budgets.served, "refused_busy": self.budgets.refused,
                         "bytes_served": self.budgets.bytes_served},
            "protected": {"count": len(self.protected),
                          "connected": sum(1 for p in self.protected if p in self._connections)},
        }

    # --- internals ----------------------------------------------------------------------------------------------

    def _encode(self, msg: Message) -> bytes:
        return encode_message(msg, self.config.max_frame)

    def _nursery_start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def _group_keys(self, ip: str) -> tuple[str, ...]:
        """The slot groups an inbound address counts in (none for loopback unless ``limit_loopback``)."""
        if not self.config.limit_loopback and is_loopback(ip):
            return ()
        groups = address_group(ip)
        if groups is None:  # not an IP (the in-memory transport's "memory:N"): no address to group by
            return ()
        return ("ip " + groups[0], "net " + groups[1])

    def _admit_inbound(self, ip: str = "?") -> str | None:
        """Refuse before the handshake when the slots are full: the inbound limit (plus a reserve of one slot per
        protected peer, whose identity is only known after the handshake), and the per-IP and per-subnet limits."""
        cfg = self.config
        inbound = sum(1 for c in self._connections.values() if not c.outbound) + self._inbound_pending
        reserve = sum(1 for p in self.protected if p not in self._connections)
        if inbound >= cfg.max_inbound + reserve:
            self.counters["inbound_refused"] += 1
            return f"inbound connection limit {cfg.max_inbound} reached"
        groups = self._group_keys(ip)
        if groups:
            held: Counter[str] = Counter()
            for c in self._connections.values():
                if not c.outbound:
                    held.update(self._group_keys(c.remote_addr.rsplit(":", 1)[0]))
            for g, limit in zip(groups, (cfg.max_inbound_per_ip, cfg.max_inbound_per_subnet), strict=True):
                if held[g] + self._pending_groups[g] >= limit:
                    self.counters["inbound_refused_address"] += 1
                    return f"{limit} inbound connections from {g} already"
        return None

    async def _adopt(self, ft: FrameTransport, peer: PeerId, *, outbound: bool, remote_addr: str) -> None:
        """Register a secured connection (resolving duplicates) and start it."""
        if self._nursery is None:
            await ft.aclose()
            return
        if self.is_banned(peer):
            log.info("closing connection from banned %s", peer)
            await ft.aclose()
            return
        if not outbound and peer not in self.protected:
            # The reserve kept for protected peers is theirs: a stranger that got in on it is closed now.
            strangers = sum(1 for p, c in self._connections.items() if not c.outbound and p not in self.protected)
            if strangers >= self.config.max_inbound and peer not in self._connections:
                self.counters["inbound_closed_unprotected"] += 1
                log.info("closing inbound %s: the slots left are kept for protected peers", peer.short())
                await ft.aclose()
                return
        existing = self._connections.get(peer)
        if existing is not None:
            # Duplicates (simultaneous dials, or two dials one way): both sides must keep the same connection,
            # whatever order they saw them in, or each closes the one the other kept. Both ends share each
            # connection's handshake hash, so keep the smaller; without one, the one dialed by the smaller id.
            new_tie, old_tie = getattr(ft, "tie", b""), getattr(existing.transport, "tie", b"")
            if new_tie and old_tie:
                keep_new = new_tie < old_tie
            else:
                keep_new = outbound == (self.peer_id.public_key < peer.public_key)
            if not keep_new:
                await ft.aclose()
                return
            existing.close("replaced by a simultaneous connection")
        conn = Connection(
            ft,
            peer,
            outbound=outbound,
            remote_addr=remote_addr,
            limits=self._limits,
            dispatch=self._dispatch,
            serve_request=self._serve_request,
        )
        self._connections[peer] = conn
        self.counters["connections_opened"] += 1
        await self._nursery.start(self._run_connection, conn)
        if self.config.discovery:
            # Learn a new peer's neighbours at once: a node that joined through one bootstrap peer otherwise
            # knows nobody else until its periodic exchange picks that peer, and losing the peer can cut it off.
            self._nursery_start_soon(self._exchange_peers, peer)

    async def _run_connection(self, conn: Connection, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                log.debug("%s: connected to %r", self.peer_id.short(), conn)
                conn.try_send_encoded(
                    self._encode(Hello([str(a.without_peer_id()) for a in self.listen_addrs], self.config.agent))
                )
                self.gossip.add_peer(conn.peer_id)
                task_status.started()
        finally:
            if self._connections.get(conn.peer_id) is conn:
                del self._connections[conn.peer_id]
                self.gossip.remove_peer(conn.peer_id)
                self.peer_table.disconnected(conn.peer_id, trio.current_time())
                self.budgets.forget(conn.peer_id.to_bytes())
            self.counters["connections_closed"] += 1
            if isinstance(conn.close_error, RemoteProtocolError):
                self.counters["protocol_errors"] += 1
                self.ban(conn.peer_id, f"protocol violation: {conn.close_reason}")

    async def _dispatch(self, conn: Connection, msg: Message) -> None:
        if isinstance(msg, GossipRPC):
            await self.gossip.handle_rpc(conn.peer_id, msg)
        elif isinstance(msg, Hello):
            conn.listen_addrs, conn.agent = msg.listen_addrs, msg.agent
            if msg.listen_addrs:
                self.peer_table.add(conn.peer_id, msg.listen_addrs)

    async def _serve_request(self, conn: Connection, req: Request) -> Response:
        handler = self._handlers.get(req.protocol)
        if handler is None:
            return Response(req.id, False, f"unknown protocol {req.protocol[:64]!r}")
        peer, now = conn.peer_id.to_bytes(), trio.current_time()
        wait = self.budgets.admit(peer, req.protocol, now)
        if wait is not None:
            # Over budget: answered without running the handler. Asking on regardless is a behaviour penalty,
            # and a peer that keeps at it is cut off for a while.
            if self.budgets.over_strikes(peer):
                self.ban(conn.peer_id, f"kept asking on {req.protocol[:64]} while over its request budget",
                         self.config.busy_ban)
            elif self.budgets.strikes(peer) % 20 == 0:
                self.gossip.penalize(conn.peer_id, 1.0, f"requests on {req.protocol[:64]} over budget")
            return Response(req.id, False, f"{BUSY_PREFIX} over the request budget; retry after {wait:.2f} s")
        try:
            answer = await handler(conn.peer_id, req.payload)
            if isinstance(answer, bytes | bytearray):
                self.budgets.charge(peer, req.protocol, len(answer), now)
            elif isinstance(answer, dict) and isinstance(answer.get("b"), bytes):
                self.budgets.charge(peer, req.protocol, len(answer["b"]), now)
            return Response(req.id, True, answer)
        except P2PError as exc:
            return Response(req.id, False, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("handler for %s failed", req.protocol)
            return Response(req.id, False, f"handler failed: {type(exc).__name__}")

    # --- blobs and peer exchange --------------------------------------------------------------------------------

    async def _serve_blob(self, peer: PeerId, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("d"), bytes) or not isinstance(
            payload.get("o"), int
        ):
            raise BlobError("blob request needs {'d': digest bytes, 'o': offset int}")
        digest, offset = payload["d"], payload["o"]
        if offset < 0:
            raise BlobError(f"offset {offset} is negative")
        chunk = self.config.blob_chunk
        data = self._blobs.get(digest)
        if data is None and self._blob_reader is not None:
            reader = self._blob_reader
            got = await trio.to_thread.run_sync(reader, digest, offset, chunk, limiter=self._blob_read_limiter)
            if got is not None:
                size, part = got
                if offset > size:
                    raise BlobError(f"offset {offset} outside 0..{size}")
                return {"n": size, "b": part[:chunk]}
        if data is None and self._blob_provider is not None:
            data = self._blob_provider(digest)
        if data is None:
            raise BlobError(f"no blob {digest.hex()[:16]}")
        if not 0 <= offset <= len(data):
            raise BlobError(f"offset {offset} outside 0..{len(data)}")
        return {"n": len(data), "b": data[offset : offset + chunk]}

    def _px_entries(self, exclude: PeerId | None, limit: int) -> list[tuple[bytes, list[str]]]:
        out = []
        for p, c in self._connections.items():
            if p != exclude and c.listen_addrs:
                out.append((p.to_bytes(), c.listen_addrs[:4]))
        self.rng.shuffle(out)
        return out[:limit]

    async def _serve_px(self, peer: PeerId, payload: Any) -> list[list[Any]]:
        return [[p, a] for p, a in self._px_entries(exclude=peer, limit=32)]

    def _learn_peers(self, entries: list[Any], source: PeerId, via: str) -> int:
        """Take peer-exchange entries that ``source`` sent (``via`` says how, for logs) into the peer table, as
        new entries it vouches for: at most 64 per message, and nothing once it has used its share."""
        n = 0
        table = self.peer_table
        for entry in entries[:64]:
            if table.source_full(source):
                break
            try:
                pid_bytes, addrs = entry
                peer = PeerId.from_bytes(pid_bytes)
                if peer == self.peer_id or not isinstance(addrs, list):
                    continue
                if table.add(peer, [a for a in addrs[:8] if isinstance(a, str)], source=source) is not None:
                    n += 1
            except (InvalidPeerId, TypeError, ValueError):
                log.info("ignoring malformed peer exchange entry from %s (%s)", source.short(), via)
        return n

    # --- discovery ----------------------------------------------------------------------------------------------

    async def _discovery_loop(self) -> None:
        cfg = self.config
        last_px = -1e9
        last_save = trio.current_time()
        while True:
            now = trio.current_time()
            self._dial_protected(now)
            connected = len(self._connections)
            if not cfg.discovery:
                pass
            elif connected < cfg.target_peers:
                self._dial_bootstrap(now)
                self._dial_candidates(now, cfg.target_peers - connected - len(self._dialing))
            elif connected > cfg.max_peers:
                self._prune_peers(connected - cfg.max_peers)
            if cfg.discovery and self._connections and now - last_px >= cfg.px_interval:
                last_px = now
                self._nursery_start_soon(self._exchange_peers, self.rng.choice(list(self._connections)))
                # explore: one extra random peer while below the midpoint, so that clusters formed by the
                # bootstrap order keep meeting each other instead of settling into separate components
                if connected < (cfg.target_peers + cfg.max_peers) // 2:
                    self._dial_candidates(now, 1)
            if cfg.peer_table_path and now - last_save >= cfg.save_interval:
                last_save = now
                self._save_table()
            await trio.sleep(cfg.discovery_interval)

    def _dial_candidates(self, now: float, want: int) -> None:
        for peer in self.peer_table.candidates(now, set(self._connections) | self._dialing):
            if want <= 0:
                break
            if self.is_banned(peer):
                continue
            want -= 1
            self._dialing.add(peer)
            self._nursery_start_soon(self._dial_known, peer)

    def _dial_protected(self, now: float) -> None:
        """Dial every protected peer we are not connected to and have an address for, backing off at most
        ``protected_redial_max`` between tries: a validator must reach the others whatever discovery does."""
        for peer in self.protected:
            if peer in self._connections or peer in self._dialing or self.is_banned(peer):
                continue
            if peer not in self.peer_table.records:
                continue
            at, failures = self._protected_next.get(peer, (0.0, 0))
            if at > now:
                continue
            delay = min(self.config.dial_backoff_base * 2**failures, self.config.protected_redial_max)
            self._protected_next[peer] = (now + delay, failures + 1)
            self.counters["protected_dials"] += 1
            self._dialing.add(peer)
            self._nursery_start_soon(self._dial_known, peer)

    def _dial_bootstrap(self, now: float) -> None:
        connected_addrs = {str(a) for c in self._connections.values() for a in c.listen_addrs}
        for text in self.config.bootstrap:
            ma = Multiaddr.parse(text)
            if ma.peer_id is not None and (ma.peer_id in self._connections or ma.peer_id in self._dialing):
                continue
            if str(ma.without_peer_id()) in connected_addrs or self._bootstrap_next.get(text, 0.0) > now:
                continue
            self._bootstrap_next[text] = now + 1e9  # in flight; _dial_bootstrap_one sets the real time
            self._nursery_start_soon(self._dial_bootstrap_one, text)

    async def _dial_bootstrap_one(self, text: str) -> None:
        try:
            await self.dial(text)
            self._bootstrap_failures[text] = 0
            self._bootstrap_next[text] = trio.current_time() + self.config.dial_backoff_base
        except P2PError as exc:
            failures = self._bootstrap_failures.get(text, 0) + 1
            self._bootstrap_failures[text] = failures
            delay = min(self.config.dial_backoff_base * 2**failures, self.config.dial_backoff_max)
            self._bootstrap_next[text] = trio.current_time() + delay * self.rng.uniform(0.8, 1.2)
            self.counters["dial_failures"] += 1
            log.info("bootstrap dial %s failed (%s); retry in %.1fs", text, exc, delay)

    async def _dial_known(self, peer: PeerId) -> None:
        try:
            rec = self.peer_table.records.get(peer)
            if rec is None:
                return
            errors = []
            for a in list(rec.addrs):
                try:
                    await self.dial(Multiaddr.parse(a).with_peer_id(peer))
                    return
                except P2PError as exc:
                    errors.append(str(exc))
            self.counters["dial_failures"] += 1
            delay = self.peer_table.dial_failed(peer, trio.current_time())
            log.info("dial %s failed (%s); retry in %.1fs", peer.short(), "; ".join(errors)[:300], delay)
        finally:
            self._dialing.discard(peer)

    async def _exchange_peers(self, peer: PeerId) -> None:
        try:
            entries = await self.request(peer, PX_PROTOCOL, None)
        except P2PError as exc:
            log.info("peer exchange with %s failed: %s", peer.short(), exc)
            return
        if isinstance(entries, list):
            self._learn_peers(entries, peer, "px")

    def _prune_peers(self, excess: int) -> None:
        """Close the ``excess`` least useful peers: never a protected one; outside the mesh and lowest score first."""
        in_mesh = set().union(*self.gossip.mesh.values()) if self.gossip.mesh else set()
        ranked = sorted((p for p in self._connections if p not in self.protected),
                        key=lambda p: (p in in_mesh, self.gossip.score(p), self.rng.random()))
        for peer in ranked[:excess]:
            conn = self._connections.get(peer)
            if conn is not None:
                self._nursery_start_soon(conn.close_gracefully, "pruned: over the peer limit")

    def _save_table(self) -> None:
        path = self.config.peer_table_path
        if not path:
            return
        for p, c in self._connections.items():
            if c.listen_addrs:
                self.peer_table.add(p, c.listen_addrs)
        try:
            self.peer_table.save(path)
        except OSError as exc:
            log.warning("could not save the peer table to %s: %s", path, exc)
