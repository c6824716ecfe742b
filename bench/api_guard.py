"""What the API guard costs per request: a trivial ASGI app called directly vs. behind ``bootstrap.api.Guard``
(loopback GET; remote POST with a 1 KiB body, which the guard buffers, rate-limits and token-checks), and what one
server-sent event costs to encode. Medians of repeated batches, measured side by side in one run.

    .venv/bin/python -m bench.api_guard
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import trio

from bootstrap.api import ApiSettings, Guard
from bootstrap.dashboard import sse_message

BATCH = 2000
ROUNDS = 7


async def trivial(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def scope_for(method: str, client: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:5000"), (b"content-length", str(len(body)).encode())]
    if method == "POST":
        headers += [(b"authorization", b"Bearer t0ken"), (b"content-type", b"application/json")]
    return {"type": "http", "method": method, "path": "/x", "headers": headers, "client": (client, 1)}


async def per_request_us(app: Any, method: str, client: str, body: bytes) -> float:
    scope = scope_for(method, client, body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    samples = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(BATCH):
            await app(scope, receive, send)
        samples.append((time.perf_counter() - t0) / BATCH * 1e6)
    return statistics.median(samples)


async def main() -> None:
    open_guard = Guard(trivial, ApiSettings())
    token_guard = Guard(trivial, ApiSettings(token="t0ken", loopback_hosts_only=False, write_rate_per_s=1e9,
                                             write_burst=10**9))
    body = b"x" * 1024
    rows = []
    for label, method, client, guarded in (("GET, loopback", "GET", "127.0.0.1", open_guard),
                                           ("POST 1 KiB, remote, token + rate limit", "POST", "203.0.113.9",
                                            token_guard)):
        raw = await per_request_us(trivial, method, client, body if method == "POST" else b"")
        with_guard = await per_request_us(guarded, method, client, body if method == "POST" else b"")
        rows.append((label, raw, with_guard))
    event = {"type": "block", "height": 123456, "hash": "ab" * 32, "txs": 17, "state_root": "cd" * 32,
             "time_ms": 1_700_000_000_000, "proposer": "12D3KooW" + "x" * 44}
    samples = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(BATCH):
            sse_message(event)
        samples.append((time.perf_counter() - t0) / BATCH * 1e6)
    print("| request | bare ASGI app (µs) | behind the guard (µs) | guard cost (µs) |")
    print("| --- | ---: | ---: | ---: |")
    for label, raw, guarded in rows:
        print(f"| {label} | {raw:.1f} | {guarded:.1f} | {guarded - raw:.1f} |")
    print(f"\nencoding one block event for /events: {statistics.median(samples):.1f} µs (median of {ROUNDS} × {BATCH})")


if __name__ == "__main__":
    trio.run(main)
