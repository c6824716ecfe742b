"""The guard in front of every route: Host and Origin checks, CORS for allowed origins, the bearer token and the
per-client rate limit on writes, the request size limit, and a last-resort JSON 500; and the API token kept in
the node's home."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bootstrap.api.bodies import MAX_BODY_BYTES, jsonable
from bootstrap.api.errors import error_for
from bootstrap.api.limits import THREAD_ABOVE, BodyShapeError, check_json_body, limit_for

log = logging.getLogger("dacn.api")

TOKEN_FILE = "api_token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal, bracketed IPv6, or ``localhost``) names this machine's loopback."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def token_required(bind_host: str) -> bool:
    """Write endpoints need the bearer token when the API listens anywhere but loopback (``0.0.0.0`` included):
    the listener, not the caller's address, decides, so a local reverse proxy cannot open the node to the world."""
    return not is_loopback(bind_host)


def ensure_api_token(home: str | Path) -> tuple[str, bool]:
    """The node's API token from ``<home>/api_token`` (mode 0600), created on first use; ``(token, created)``."""
    path = Path(home) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token, False
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token, True


@dataclass
class ApiSettings:
    """How one API listener defends itself (see :func:`settings_for`)."""

    token: str | None = None
    """Bearer token for write endpoints; ``None`` leaves them open (a loopback listener)."""
    loopback_hosts_only: bool = True
    """Refuse requests whose ``Host`` is not a loopback name: a page on another site that rebinds its DNS name to
    127.0.0.1 then cannot reach a loopback node."""
    allowed_origins: tuple[str, ...] = ()
    """Cross-origin callers allowed besides the node's own origin (CORS, and writes from a browser)."""
    write_rate_per_s: float = 10.0
    write_burst: int = 60
    rate_limit_loopback: bool = False
    """Local callers are trusted like the token trusts them; remote ones share one bucket per address."""
    max_body_bytes: int = MAX_BODY_BYTES
    """A cap over every endpoint's own (``bootstrap.api.limits``); the smaller of the two applies."""
    max_rate_clients: int = 10_000
    max_connections_per_ip: int = 128
    """Open TCP connections from one address, loopback included (``bootstrap.api.server.ConnectionGate``)."""
    max_connections: int | None = None
    """Open TCP connections in all; ``None``: half of the process's descriptor limit, at most 4,096."""


def settings_for(node: Any, bind_host: str) -> ApiSettings:
    """The defaults for a listener on ``bind_host``: open on loopback, token and no Host check elsewhere."""
    if token_required(bind_host):
        token, _ = ensure_api_token(node.home)
        return ApiSettings(token=token, loopback_hosts_only=False)
    return ApiSettings()


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` answers how long to wait (0 when admitted)."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        self.level = min(float(self.burst), self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    """One :class:`TokenBucket` per client address, the least recently seen forgotten beyond ``max_clients``."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.limited = 0

    def check(self, client: str) -> float:
        """Seconds ``client`` must wait before its next write (0.0: go ahead, and the write is counted)."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        wait = bucket.take(now)
        if wait > 0:
            self.limited += 1
        return wait


def error_bytes(message: str, detail: Any = None) -> bytes:
    return json.dumps({"error": message, "detail": jsonable(detail)}).encode()


class Guard:
    """The ASGI layer in front of every route: Host and Origin checks, CORS for allowed origins, the bearer token
    and per-client rate limit on writes, the request size limit, and a last-resort JSON 500.

    It is plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so streamed responses such as ``/events`` pass
    through untouched and a client's disconnect reaches the handler."""

    def __init__(self, app: Any, settings: ApiSettings, counters: dict[str, int] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.limiter = RateLimiter(settings.write_rate_per_s, settings.write_burst, settings.max_rate_clients)
        self.counters = counters if counters is not None else {}
        # One body walked at a time: ``json.loads`` holds the GIL for its whole call, so parallel walks of big
        # bodies would keep the node's loop waiting for each of them in turn; one at a time it waits for one.
        self.body_checks = trio.CapacityLimiter(1)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("", 0))[0] or ""
        host = headers.get("host", "")
        extra: list[tuple[bytes, bytes]] = []

        async def reject(status: int, message: str, detail: Any = None,
                         more: list[tuple[bytes, bytes]] | None = None) -> None:
            self._count(f"rejected_{status}")
            body = error_bytes(message, detail)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *extra, *(more or [])]})
            await send({"type": "http.response.body", "body": body})

        if s.loopback_hosts_only and host and not is_loopback(host.rsplit(":", 1)[0] if "]" not in host
                                                              else host.split("]")[0] + "]"):
            await reject(421, f"Host {host!r:.80} is not this node's loopback address",
                         {"kind": "misdirected", "field": "Host"})
            return
        origin = headers.get("origin")
        origin_ok = origin is None or origin in s.allowed_origins or origin in (f"http://{host}", f"https://{host}")
        if origin is not None and origin_ok:
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if method == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            if not origin_ok:
                await reject(403, f"origin {origin!r:.80} may not call this node", {"kind": "cors", "field": "Origin"})
                return
            await send({"type": "http.response.start", "status": 204, "headers": [
                *extra, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", b"authorization, content-type"),
                (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if method in WRITE_METHODS:
            if not origin_ok:
                # A cross-site form POST is sent by browsers without a preflight; refuse it outright.
                await reject(403, f"origin {origin!r:.80} may not write to this node",
                             {"kind": "cors", "field": "Origin"})
                return
            # The token first: a stranger's unauthenticated writes must not spend the write budget of the
            # address they share with the token holder (they would then get 429 for the stranger's traffic).
            if s.token is not None:
                auth = headers.get("authorization", "")
                given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
                if not hmac.compare_digest(given.encode(), s.token.encode()):
                    await reject(401, "write endpoints on this node need 'Authorization: Bearer <token>' "
                                      "(the token is in the node's home, file api_token)",
                                 {"kind": "unauthorized", "field": "Authorization"},
                                 [(b"www-authenticate", b'Bearer realm="dacn"')])
                    return
            if s.rate_limit_loopback or not is_loopback(client):
                wait = self.limiter.check(client)
                if wait > 0:
                    retry = max(1, math.ceil(wait))
                    await reject(429, f"too many write requests from {client}; retry in {retry}s",
                                 {"kind": "rate_limited", "retry_after_s": retry},
                                 [(b"retry-after", str(retry).encode())])
                    return
        limit = limit_for(scope.get("path", ""))
        cap = min(limit.max_bytes, s.max_body_bytes)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await reject(413, f"request body of {length:.20} bytes exceeds {cap} for this endpoint",
                         {"kind": "too_large", "limit": cap})
            return
        if method in WRITE_METHODS:
            # Read the whole body here (bounded), so a chunked upload without Content-Length is limited too.
            chunks, size = [], 0
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > cap:
                    await reject(413, f"request body exceeds {cap} bytes for this endpoint",
                                 {"kind": "too_large", "limit": cap})
                    return
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
            body = b"".join(chunks)
            if limit.json:
                # Parsed and walked before any route: off the loop when it is big enough to cost anything.
                try:
                    if len(body) > THREAD_ABOVE:
                        await trio.to_thread.run_sync(check_json_body, body, limit, limiter=self.body_checks)
                    else:
                        check_json_body(body, limit)
                except BodyShapeError as exc:
                    await reject(exc.status, exc.message, exc.detail)
                    return
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive_fn = replay
        else:
            receive_fn = receive
        started = False

        async def send_wrapped(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive_fn, send_wrapped)
        except Exception as exc:  # typed errors map to their 4xx; anything else is a bug: log it, answer JSON 500
            if started:
                raise
            err = error_for(exc)
            if err.status >= 500:
                log.exception("unhandled error in %s %s", method, scope.get("path"), exc_info=exc)
            await reject(err.status, err.message, err.detail,
                         [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()])
