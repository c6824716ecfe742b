"""Serving the API over TCP with a budget of connections: each accepted connection passes a gate before hypercorn
sees it.

Why not plain ``hypercorn.trio.serve``: hypercorn accepts every connection, and a connection that trickles a byte
every few seconds never trips its ``read_timeout``, so a stranger with a fast link could hold as many sockets as
the process has descriptors (issue 17, case 3: the node then died of ``EMFILE`` writing its sign state). The gate
holds at most ``per_ip`` connections from one address and ``total`` in all, where ``total`` is at most half of
the process's descriptor limit, so the p2p host, the store and the blob files always have descriptors left. A
connection over either cap gets a short HTTP answer (429 for one address over its share, 503 when the node is
full; both with ``Retry-After``) and is closed; it never reaches the app.

The serving loop is hypercorn 0.18's trio worker (``hypercorn.trio.run.worker_serve``) cut to plain-HTTP
listeners, with the gate around its per-connection ``TCPServer``; a test serves real sockets through it.
"""

from __future__ import annotations

import json
import resource
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from p2pnet.errors import ListenError

# Refused connections linger this long (answer sent, write side shut, the request drained) so that the client
# reads the answer instead of a reset; at most REFUSING_MAX linger at once, beyond that they are closed at once.
REFUSE_LINGER_S = 1.0
REFUSING_MAX = 64
# A connection whose client has closed its side gets this long to finish an answer in flight.
EOF_GRACE_S = 2.0


def descriptor_budget(share: float = 0.5) -> int:
    """The most API connections this process can afford: ``share`` of its soft ``RLIMIT_NOFILE``."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, int(soft * share))


@dataclass
class ConnectionGate:
    """Admission of API connections: at most ``per_ip`` open from one address and ``total`` open in all."""

    per_ip: int = 128
    total: int = 2048
    by_ip: Counter[str] = field(default_factory=Counter)
    open: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Refusals by reason: ``per_ip`` or ``total``."""

    def admit(self, ip: str) -> str | None:
        """Take a slot for a connection from ``ip``; ``None`` when admitted, else the cap it is over."""
        if self.open >= self.total:
            reason = "total"
        elif self.by_ip[ip] >= self.per_ip:
            reason = "per_ip"
        else:
            self.open += 1
            self.by_ip[ip] += 1
            return None
        self.refused[reason] += 1
        return reason

    def release(self, ip: str) -> None:
        """Give back the slot an admitted connection from ``ip`` held."""
        self.open -= 1
        left = self.by_ip[ip] - 1
        if left > 0:
            self.by_ip[ip] = left
        else:
            del self.by_ip[ip]  # an address with no connection takes no entry: the table is bounded by ``total``


def _refusal(reason: str, gate: ConnectionGate) -> bytes:
    status, text = ((429, "Too Many Requests") if reason == "per_ip" else (503, "Service Unavailable"))
    message = (f"too many connections from this address (at most {gate.per_ip} open at once)" if reason == "per_ip"
               else f"this node has {gate.total} API connections open, its most")
    body = json.dumps({"error": message, "detail": {"kind": "too_many_connections", "limit": reason}}).encode()
    return (f"HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: 5\r\nconnection: close\r\n\r\n").encode() + body


class _Refuser:
    """Answers and closes connections the gate refused, lingering on at most ``REFUSING_MAX`` at once."""

    def __init__(self) -> None:
        self.lingering = 0

    async def refuse(self, stream: trio.SocketStream, answer: bytes) -> None:
        linger = self.lingering < REFUSING_MAX
        self.lingering += linger
        try:
            with trio.move_on_after(REFUSE_LINGER_S if linger else 0.05):
                await stream.send_all(answer)
                await stream.send_eof()
                while linger and await stream.receive_some(65536):
                    pass  # drained, so the close is a FIN and the client reads the answer, not a reset
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.lingering -= linger
            await trio.aclose_forcefully(stream)


class _GatedStream:
    """The accepted stream as hypercorn's ``TCPServer`` sees it; closing it ends the connection's task at once.

    Hypercorn closes a connection's socket as soon as the client goes, but its task then waits out the
    keep-alive timer (30 s here) before it returns; a slot held until then would turn an honest client that opens
    and closes connections into a refused one, and a stranger's closed connections into lingering tasks."""

    def __init__(self, stream: trio.SocketStream, closed: trio.CancelScope) -> None:
        self._stream = stream
        self._closed = closed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # no do_handshake: hypercorn's plain-HTTP path

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        if not data:
            # the client is gone (or half-closed): an answer in flight gets EOF_GRACE_S to finish, then the
            # task ends instead of waiting out hypercorn's keep-alive timer with the slot held
            self._closed.deadline = min(self._closed.deadline, trio.current_time() + EOF_GRACE_S)
        return data

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._closed.cancel()


def _peer_ip(stream: trio.SocketStream) -> str:
    try:
        addr = stream.socket.getpeername()
    except OSError:
        return "?"
    return str(addr[0]) if isinstance(addr, tuple) else str(addr)


async def serve_gated(
    app: Any,
    config: Any,
    gate: ConnectionGate,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on ``config.bind`` (plain HTTP) with every connection admitted by ``gate``;
    ``task_status.started`` receives the bound URLs."""
    from hypercorn.trio.lifespan import Lifespan
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app

    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    refuser = _Refuser()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            try:
                sockets = config.create_sockets()
            except OSError as exc:
                raise ListenError("the API", ", ".join(config.bind), exc.strerror or str(exc)) from exc
            listeners, binds = [], []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            for sock in (*sockets.secure_sockets, *sockets.quic_sockets):
                sock.close()  # the node's API is plain HTTP on one bind; nothing else is configured
            state = ConnectionState(lifespan_state.copy())

            async def handle(stream: trio.SocketStream) -> None:
                ip = _peer_ip(stream)
                refused = gate.admit(ip)
                if refused is not None:
                    await refuser.refuse(stream, _refusal(refused, gate))
                    return
                try:
                    with trio.CancelScope() as closed:
                        await TCPServer(wrapped, config, context, state,
                                        _GatedStream(stream, closed))  # type: ignore[arg-type]
                finally:
                    gate.release(ip)

            task_status.started(binds)
            try:
                async with trio.open_nursery() as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    nursery.start_soon(partial(trio.serve_listeners, handle, listeners,
                                               handler_nursery=server_nursery))
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from error
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


__all__ = ["ConnectionGate", "descriptor_budget", "serve_gated"]
