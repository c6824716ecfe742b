"""The API's connection budget over real sockets: one address holds at most its share of connections, the node at
most its total, a refused connection reads a clear HTTP answer instead of a reset, and a slot comes back when its
connection closes (issue 17, case 3)."""

from __future__ import annotations

import json
import socket
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.api.server import ConnectionGate, serve_gated


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI app: the lifespan protocol, and 200 "ok" for any request."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _config() -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    config.keep_alive_timeout = 60  # a slot must come back when its client goes, not when this timer ends
    return config


async def _connect(port: int, source: str) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def _read_answer(stream: trio.SocketStream) -> bytes:
    """One HTTP answer: its head and a body of its content-length."""
    data = b""
    with trio.fail_after(5):
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(body) >= length:
                    return data
            chunk = await stream.receive_some(65536)
            if not chunk:
                return data
            data += chunk


async def _get(stream: trio.SocketStream) -> bytes:
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return await _read_answer(stream)


async def _wait_open(gate: ConnectionGate, n: int) -> None:
    with trio.fail_after(5):
        while gate.open != n:
            await trio.sleep(0.01)  # polls the gate's own count: the server admits on its side of the accept


async def test_one_address_holds_its_share_and_the_node_its_total() -> None:
    gate = ConnectionGate(per_ip=3, total=5)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_gated, _hello, _config(), gate)
        port = int(binds[0].rsplit(":", 1)[1])
        # three connections that send nothing (a slowloris) from one address fill its share
        held = [await _connect(port, "127.0.0.2") for _ in range(3)]
        await _wait_open(gate, 3)
        extra = await _connect(port, "127.0.0.2")
        answer = await _read_answer(extra)
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"retry-after: 5" in answer.lower()
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["detail"] == {"kind": "too_many_connections", "limit": "per_ip"}
        assert gate.refused["per_ip"] == 1 and gate.open == 3
        # another address is still served while the first is at its share
        honest = await _connect(port, "127.0.0.1")
        assert (await _get(honest)).startswith(b"HTTP/1.1 200 ")
        other = await _connect(port, "127.0.0.3")
        await _wait_open(gate, 5)
        # the node is full: a fourth address gets 503
        late = await _connect(port, "127.0.0.4")
        answer = await _read_answer(late)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert gate.refused["total"] == 1
        # a closed connection gives its slot back, to the same address
        await held.pop().aclose()
        await _wait_open(gate, 4)
        again = await _connect(port, "127.0.0.2")
        assert (await _get(again)).startswith(b"HTTP/1.1 200 ")
        for s in (*held, honest, other, again, extra, late):
            await s.aclose()
        await _wait_open(gate, 0)
        assert dict(gate.by_ip) == {}, "an address with no connection left an entry behind"
        nursery.cancel_scope.cancel()


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=200))
def test_gate_bookkeeping_matches_its_open_connections(ops: list[tuple[bool, int]]) -> None:
    """Whatever order connections open and close in, the gate's counts are those of the connections it admitted,
    no address is over its share, and the total is never exceeded."""
    gate = ConnectionGate(per_ip=2, total=5)
    admitted: list[str] = []
    for opening, who in ops:
        ip = f"10.0.0.{who}"
        if opening:
            if gate.admit(ip) is None:
                admitted.append(ip)
        elif ip in admitted:
            admitted.remove(ip)
            gate.release(ip)
        assert gate.open == len(admitted) <= 5
        assert all(n == admitted.count(a) <= 2 for a, n in gate.by_ip.items())
        assert set(gate.by_ip) == set(admitted)


async def test_a_refused_connection_never_reaches_the_app() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["client"][0])
        await _hello(scope, receive, send)

    gate = ConnectionGate(per_ip=1, total=10)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_gated, app, _config(), gate)
        port = int(binds[0].rsplit(":", 1)[1])
        first = await _connect(port, "127.0.0.5")
        await _wait_open(gate, 1)
        second = await _connect(port, "127.0.0.5")
        assert (await _get(second)).startswith(b"HTTP/1.1 429 ")
        assert seen == []
        assert (await _get(first)).startswith(b"HTTP/1.1 200 ")
        assert seen == ["127.0.0.5"]
        await first.aclose()
        await second.aclose()
        nursery.cancel_scope.cancel()
