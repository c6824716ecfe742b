"""The API's guard: the token decision and file, bearer auth on writes off loopback, Host and Origin checks, CORS,
per-client write rate limits, body size limits (with and without Content-Length), and JSON errors (never an HTML
500). Most cases are real ASGI calls into ``create_app`` with a chosen client address (the guard answers before
any route touches the node); the last test binds a real node's API to 0.0.0.0 and talks to it over loopback."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.api import (
    TOKEN_FILE,
    ApiSettings,
    RateLimiter,
    create_app,
    ensure_api_token,
    is_loopback,
    settings_for,
    token_required,
)
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node
from ledger.errors import InvalidField
from ledger.mempool import FutureQueueFull, MempoolFull

REMOTE = ("203.0.113.7", 40000)
LOCAL = ("127.0.0.1", 40000)
HOST = "127.0.0.1:5000"


class FakeNode:
    """Enough of a node for the guard's tests: no route below reaches it."""

    home = "/nonexistent"


async def asgi_call(app: Any, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                    client: tuple[str, int] = REMOTE, host: str = HOST, chunks: list[bytes] | None = None,
                    content_length: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the ASGI app, as hypercorn would deliver it; (status, headers, body)."""
    hdrs = {"host": host, **(headers or {})}
    parts = chunks if chunks is not None else [body]
    if content_length and chunks is None:
        hdrs["content-length"] = str(len(body))
    if body or chunks:
        hdrs.setdefault("content-type", "application/json")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.1"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
        "client": client, "server": ("127.0.0.1", 5000),
    }
    pending = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []
    done = trio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, out


def assert_error(status: int, body: bytes, expected: int, word: str) -> dict[str, Any]:
    assert status == expected, body
    doc = json.loads(body)
    assert set(doc) == {"error", "detail"} and word in doc["error"], doc
    return doc


# ------------------------------------------------------------------------------------------------ decisions


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost"])
def test_loopback_listeners_need_no_token(host: str) -> None:
    assert is_loopback(host) and not token_required(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "10.1.2.3", "2001:db8::1", "example.com", ""])
def test_other_listeners_need_the_token(host: str) -> None:
    assert not is_loopback(host) and token_required(host)


def test_token_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    assert not (tmp_path / TOKEN_FILE).exists()
    token, created = ensure_api_token(tmp_path)
    assert created and len(token) >= 40
    assert stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode) == 0o600
    again, created_again = ensure_api_token(tmp_path)
    assert again == token and not created_again


def test_settings_follow_the_listener(tmp_path: Path) -> None:
    node = FakeNode()
    node.home = str(tmp_path)  # type: ignore[assignment]
    open_ = settings_for(node, "127.0.0.1")
    assert open_.token is None and open_.loopback_hosts_only
    assert not (tmp_path / TOKEN_FILE).exists()
    guarded = settings_for(node, "0.0.0.0")
    assert guarded.token == (tmp_path / TOKEN_FILE).read_text().strip()
    assert not guarded.loopback_hosts_only


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [100.0]
    rl = RateLimiter(rate=2.0, burst=3, max_clients=2, clock=lambda: now[0])
    assert [rl.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.check("a") == pytest.approx(0.5)
    assert rl.check("b") == 0.0  # buckets are per client
    now[0] += 0.5
    assert rl.check("a") == 0.0 and rl.check("a") > 0
    rl.check("c")  # a third client pushes out the least recently seen ("b"): memory stays bounded
    assert len(rl._buckets) == 2 and "b" not in rl._buckets
    assert rl.limited == 2


# ------------------------------------------------------------------------------------------------ the guard


async def test_writes_off_loopback_need_the_bearer_token() -> None:
    app = create_app(FakeNode(), ApiSettings(token="s3cret-token", loopback_hosts_only=False))
    # no token, a wrong one, a malformed header: 401 with the one error shape, before any body is read
    status, hdrs, body = await asgi_call(app, "POST", "/worker/register", body=b"{}")
    assert_error(status, body, 401, "Bearer")
    assert hdrs["www-authenticate"].startswith("Bearer")
    for auth in ("Bearer wrong", "Basic s3cret-token", "s3cret-token", "Bearer "):
        status, _, body = await asgi_call(app, "POST", "/worker/register", body=b"{}",
                                          headers={"authorization": auth})
        assert_error(status, body, 401, "Bearer")
    # the right token reaches the route (which then rejects the empty body, naming the field)
    status, _, body = await asgi_call(app, "POST", "/worker/register", body=b"{}",
                                      headers={"authorization": "Bearer s3cret-token"})
    assert "worker_id" in assert_error(status, body, 400, "worker_id")["error"]
    # reads stay open
    status, _, body = await asgi_call(app, "GET", "/openapi.json")
    assert status == 200 and "/worker/register" in json.loads(body)["paths"]


async def test_loopback_writes_are_open_and_other_hosts_refused() -> None:
    app = create_app(FakeNode(), ApiSettings())
    status, _, body = await asgi_call(app, "POST", "/client/register", body=b"{}", client=LOCAL)
    assert_error(status, body, 400, "client_address")
    for host in ("localhost:5000", "[::1]:5000", "127.0.0.1"):
        status, _, _ = await asgi_call(app, "GET", "/openapi.json", host=host, client=LOCAL)
        assert status == 200, host
    # a page whose DNS name was rebound to 127.0.0.1 still sends its own name as Host
    status, _, body = await asgi_call(app, "GET", "/openapi.json", host="evil.example:5000", client=LOCAL)
    assert_error(status, body, 421, "Host")


async def test_cors_only_for_the_nodes_own_origin() -> None:
    app = create_app(FakeNode(), ApiSettings(allowed_origins=("http://dash.example",)))
    own = f"http://{HOST}"
    status, hdrs, _ = await asgi_call(app, "GET", "/openapi.json", headers={"origin": own}, client=LOCAL)
    assert status == 200 and hdrs["access-control-allow-origin"] == own
    status, hdrs, _ = await asgi_call(app, "GET", "/openapi.json", headers={"origin": "http://evil.example"},
                                      client=LOCAL)
    assert status == 200 and "access-control-allow-origin" not in hdrs  # the browser hides the answer
    # a cross-site form POST needs no preflight, so the guard refuses the write itself
    status, _, body = await asgi_call(app, "POST", "/network/coordination/trigger",
                                      headers={"origin": "http://evil.example"}, client=LOCAL)
    assert_error(status, body, 403, "origin")
    preflight = {"origin": "http://dash.example", "access-control-request-method": "POST"}
    status, hdrs, _ = await asgi_call(app, "OPTIONS", "/job/submit", headers=preflight, client=LOCAL)
    assert status == 204 and hdrs["access-control-allow-origin"] == "http://dash.example"
    assert "authorization" in hdrs["access-control-allow-headers"]
    status, _, body = await asgi_call(app, "OPTIONS", "/job/submit",
                                      headers={**preflight, "origin": "http://evil.example"}, client=LOCAL)
    assert_error(status, body, 403, "origin")


async def test_writes_are_rate_limited_per_remote_client() -> None:
    app = create_app(FakeNode(), ApiSettings(write_rate_per_s=0.5, write_burst=3, loopback_hosts_only=False))
    for _ in range(3):
        status, _, _ = await asgi_call(app, "POST", "/client/register", body=b"{}")
        assert status == 400
    status, hdrs, body = await asgi_call(app, "POST", "/client/register", body=b"{}")
    doc = assert_error(status, body, 429, "too many")
    assert int(hdrs["retry-after"]) == doc["detail"]["retry_after_s"] == 2
    # another client has its own bucket; reads are not limited; loopback callers are trusted by default
    assert (await asgi_call(app, "POST", "/client/register", body=b"{}", client=("198.51.100.2", 1)))[0] == 400
    assert (await asgi_call(app, "GET", "/openapi.json"))[0] == 200
    for _ in range(10):
        assert (await asgi_call(app, "POST", "/client/register", body=b"{}", client=LOCAL))[0] == 400
    status, _, _ = await asgi_call(create_app(FakeNode(), ApiSettings(write_rate_per_s=0.5, write_burst=1,
                                                                      rate_limit_loopback=True)),
                                   "POST", "/client/register", body=b"{}", client=LOCAL)
    assert status == 400


async def test_unauthenticated_writes_do_not_spend_the_token_holders_rate() -> None:
    """A stranger sharing an address with the token holder (a NAT, a proxy) sends writes without the token: each
    is a 401 and none counts against the address's write budget, so the token holder is never answered 429."""
    app = create_app(FakeNode(), ApiSettings(token="s3cret-token", loopback_hosts_only=False, write_rate_per_s=0.5,
                                             write_burst=3))
    for _ in range(20):
        status, _, body = await asgi_call(app, "POST", "/client/register", body=b"{}")
        assert_error(status, body, 401, "Bearer")
    for _ in range(3):
        status, _, body = await asgi_call(app, "POST", "/client/register", body=b"{}",
                                          headers={"authorization": "Bearer s3cret-token"})
        assert_error(status, body, 400, "client_address")
    status, _, body = await asgi_call(app, "POST", "/client/register", body=b"{}",
                                      headers={"authorization": "Bearer s3cret-token"})
    assert_error(status, body, 429, "too many")  # its own writes still count


async def test_bodies_are_limited_with_or_without_content_length() -> None:
    app = create_app(FakeNode(), ApiSettings(max_body_bytes=1000))
    big = b'{"client_address": "' + b"a" * 2000 + b'"}'
    status, _, body = await asgi_call(app, "POST", "/client/register", body=big, client=LOCAL)
    assert_error(status, body, 413, "exceeds")
    # chunked: no Content-Length, the guard counts what arrives
    status, _, body = await asgi_call(app, "POST", "/client/register", chunks=[big[:600], big[600:]],
                                      client=LOCAL, content_length=False)
    assert_error(status, body, 413, "exceeds")
    status, _, body = await asgi_call(app, "POST", "/client/register", body=b'{"client_address": "bad name!"}',
                                      client=LOCAL)
    assert_error(status, body, 400, "client_address")
    status, _, body = await asgi_call(app, "POST", "/client/register", body=b"{not json", client=LOCAL)
    assert_error(status, body, 400, "")


@pytest.mark.parametrize(("exc", "kind"), [(FutureQueueFull("txs", 10, 3), "future_queue_full"),
                                           (MempoolFull("txs", 10, 1), "mempool_full")])
async def test_a_full_mempool_or_future_queue_is_a_retryable_429_with_retry_after(exc: Exception, kind: str) -> None:
    """Back-pressure, not a verdict: a client told 429 with Retry-After sends the same tx again (a 400 made load
    generators drop it and strand every later nonce of its sender)."""
    app = create_app(FakeNode(), ApiSettings())

    async def full() -> None:
        raise exc

    app.add_api_route("/full", full, methods=["GET"])
    status, hdrs, body = await asgi_call(app, "GET", "/full", client=LOCAL)
    doc = assert_error(status, body, 429, "limit")
    assert doc["detail"]["kind"] == kind and doc["detail"]["retry_after_s"] >= 1
    assert int(hdrs["retry-after"]) >= 1


async def test_a_bug_is_a_json_500_and_a_typed_error_its_4xx(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(FakeNode(), ApiSettings())

    async def boom() -> None:
        raise RuntimeError("a bug")

    async def bad_field() -> None:
        raise InvalidField("amount", "must be positive")

    app.add_api_route("/boom", boom, methods=["GET"])
    app.add_api_route("/bad", bad_field, methods=["GET"])
    status, hdrs, body = await asgi_call(app, "GET", "/boom", client=LOCAL)
    assert_error(status, body, 500, "internal error")
    assert hdrs["content-type"] == "application/json"
    assert "a bug" in caplog.text and "/boom" in caplog.text  # logged with its context
    status, _, body = await asgi_call(app, "GET", "/bad", client=LOCAL)
    assert assert_error(status, body, 400, "amount")["detail"]["field"] == "amount"
    status, _, body = await asgi_call(app, "GET", "/no/such/path", client=LOCAL)
    assert_error(status, body, 404, "Not Found")


def test_openapi_documents_the_error_contract() -> None:
    doc = create_app(FakeNode(), ApiSettings()).openapi()
    assert "Error" in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "422" not in codes and {"400", "404", "413"} <= codes, (method, path)
            if method == "post":
                assert {"401", "403", "429", "202"} <= codes, (method, path)
    body = doc["components"]["schemas"]["SyntheticData"]["properties"]
    assert body["n_samples"]["maximum"] == 1_000_000 and body["n_features"]["maximum"] == 1024


# ------------------------------------------------------------------------------------------------ a real node


@asynccontextmanager
async def node_on(home: Path, listen: str) -> AsyncIterator[tuple[Node, str]]:
    node = Node(home, NodeConfig.test(api_listen=listen))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_address is not None
        try:
            yield node, f"http://127.0.0.1:{node.api_address[1]}"
        finally:
            node.stop()


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_a_node_on_all_interfaces_wants_its_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, config=NodeConfig.test(), chain_id="token-test")
    assert not (home / TOKEN_FILE).exists()
    async with node_on(home, "0.0.0.0:0") as (node, url):
        token = (home / TOKEN_FILE).read_text().strip()
        assert stat.S_IMODE(os.stat(home / TOKEN_FILE).st_mode) == 0o600
        body = {"client_address": "carol", "initial_balance": 500}
        status, doc = await trio.to_thread.run_sync(http, "POST", f"{url}/client/register", body)
        assert status == 401 and set(doc) == {"error", "detail"}
        # the rejected write changed nothing: no key, no transfer
        assert not node.keystore.exists("carol") and node.counters["txs_submitted"] == 0
        status, doc = await trio.to_thread.run_sync(http, "GET", f"{url}/health")
        assert status == 200 and doc["status"] == "healthy"
        status, doc = await trio.to_thread.run_sync(lambda: http("POST", f"{url}/client/register", body, token))
        assert status == 200 and doc["balance"] == 500, doc


def test_dacn_node_prints_a_new_token_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bootstrap.cli.commands import _announce_api_token

    _announce_api_token(tmp_path, ("127.0.0.1", 5000))
    assert capsys.readouterr().err == "" and not (tmp_path / TOKEN_FILE).exists()
    _announce_api_token(tmp_path, ("0.0.0.0", 5000))
    token = (tmp_path / TOKEN_FILE).read_text().strip()
    assert f"Authorization: Bearer {token}" in capsys.readouterr().err
    _announce_api_token(tmp_path, ("0.0.0.0", 5000))
    assert capsys.readouterr().err == ""  # shown once; the file keeps it
