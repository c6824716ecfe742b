"""The dashboard's server side: the ``/events`` stream on a real node (hello, blocks, txs, filtering, heartbeat,
clean end on disconnect), the stream body on its own (a slow reader is dropped by the bus and told so; peer
changes become events), the page and its files, ``/blocks``, and the helpers that explain and draw jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import trio

import bootstrap.dashboard.plots as plots
import bootstrap.dashboard.stream as dashboard
from bootstrap.dashboard import plot_data, sse_message
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import EventBus, Node
from bootstrap.views import timeline, why_waiting
from ledger.tx import Transfer


@asynccontextmanager
async def running_node(home: Path) -> AsyncIterator[tuple[Node, int]]:
    node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0", run_agent=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_address is not None
        try:
            yield node, node.api_address[1]
        finally:
            node.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home", config=NodeConfig.test(), chain_id="dash-test")
    return tmp_path / "home"


class SseReader:
    """A raw HTTP/1.1 client for one event stream: parses ``event:``/``data:`` blocks and ``:`` comments."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.status = 0
        self.headers = ""

    @classmethod
    async def open(cls, port: int, path: str) -> SseReader:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
                              .encode())
        r = cls(stream)
        while b"\r\n\r\n" not in r.buf:
            r.buf += await stream.receive_some()
        head, r.buf = r.buf.split(b"\r\n\r\n", 1)
        r.headers = head.decode()
        r.status = int(r.headers.split()[1])
        return r

    async def next(self) -> dict[str, Any]:
        """The next event as ``{"event": name, **data}`` or ``{"comment": text}`` (chunked framing stripped)."""
        while True:
            text = self.buf.decode(errors="replace")
            for sep in ("\n\n",):
                if sep in text:
                    block, rest = text.split(sep, 1)
                    self.buf = rest.encode()
                    lines = [ln for ln in block.splitlines() if ln and not _is_chunk_size(ln)]
                    if not lines:
                        break
                    if lines[0].startswith(":"):
                        return {"comment": lines[0][1:].strip()}
                    if lines[0].startswith("retry:"):
                        return {"retry": int(lines[0].split(":")[1])}
                    fields = dict(ln.split(": ", 1) for ln in lines if ": " in ln)
                    return {"event": fields.get("event"), **json.loads(fields.get("data", "{}"))}
            else:
                data = await self.stream.receive_some()
                if not data:
                    raise EOFError("stream ended")
                self.buf += data
                continue

    async def until(self, pred: Any, limit: int = 500) -> dict[str, Any]:
        for _ in range(limit):
            ev = await self.next()
            if pred(ev):
                return ev
        raise AssertionError("event not seen")


def _is_chunk_size(line: str) -> bool:
    try:
        int(line.strip(), 16)
        return len(line.strip()) <= 8
    except ValueError:
        return False


async def test_event_stream_on_a_real_node(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_node(home) as (node, port):
        subscribers = node.events.subscribers
        with trio.fail_after(30):
            r = await SseReader.open(port, "/events")
            assert r.status == 200 and "text/event-stream" in r.headers
            assert (await r.next()) == {"retry": 2000}
            hello = await r.next()
            assert hello["event"] == "hello" and hello["height"] >= 0 and "block" in hello["types"]
            assert node.events.subscribers == subscribers + 1
            block = await r.until(lambda e: e.get("event") == "block")
            assert block["height"] >= 1 and len(block["hash"]) == 64
            # operation: a transfer from the faucet; the stream shows it pending, then committed in a block
            tx_id = await node.sign_and_submit("faucet", Transfer(to=b"\x07" * 32, amount=5))
            pending = await r.until(lambda e: e.get("event") == "tx" and e["tx_id"] == tx_id)
            assert pending["status"] == "pending"
            committed = await r.until(lambda e: e.get("event") == "tx" and e["tx_id"] == tx_id
                                      and e["status"] == "committed")
            assert committed["height"] >= 1
            # post: closing the connection ends the stream and its bus subscription
            await r.stream.aclose()
            while node.events.subscribers > subscribers:
                await trio.sleep(0.05)

            # a filtered stream gets only what it asked for, and heartbeats while quiet
            monkeypatch.setattr(dashboard, "HEARTBEAT_S", 0.5)
            r = await SseReader.open(port, "/events?types=peer")
            await r.next()
            assert (await r.next())["types"] == ["peer"]
            assert (await r.next()) == {"comment": "heartbeat"}
            await r.stream.aclose()
            r = await SseReader.open(port, "/events?types=block,nonsense")
            while b"}" not in r.buf:
                r.buf += await r.stream.receive_some()
            assert r.status == 400 and "nonsense" in r.buf.decode()
            await r.stream.aclose()


async def test_a_slow_reader_is_dropped_and_told_so() -> None:
    bus = EventBus()
    node = SimpleNamespace(height=3, peers=lambda: [])
    streams = {"open": 1}
    chan = bus.subscribe(4)
    body = dashboard._stream(node, chan, {"block"}, streams)
    assert (await body.__anext__()) == b"retry: 2000\n\n"
    assert b"event: hello" in await body.__anext__()
    # pre: the reader stops reading; the node publishes on (never blocking) and the bus drops it
    for h in range(10):
        bus.publish({"type": "block", "height": h})
    assert bus.dropped_subscribers == 1 and bus.subscribers == 0
    # post: what was buffered is delivered, then a "dropped" event, then the stream ends
    tail = b"".join([chunk async for chunk in body])
    assert tail.count(b"event: block") == 4 and tail.endswith(sse_message(
        {"type": "dropped", "reason": "fell behind the node's event bus"}))
    assert streams["open"] == 0


async def test_peer_changes_become_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "PEER_CHECK_S", 0.01)
    peers: list[dict[str, str]] = []
    node = SimpleNamespace(height=1, peers=lambda: list(peers))
    bus = EventBus()
    body = dashboard._stream(node, bus.subscribe(8), {"peer"}, {"open": 1})
    await body.__anext__()
    await body.__anext__()
    peers.append({"peer_id": "12D3KooWpeerA"})
    got = await body.__anext__()
    assert b'"change":"connected"' in got and b"12D3KooWpeerA" in got
    peers.clear()
    got = await body.__anext__()
    assert b'"change":"disconnected"' in got and b'"peers":0' in got
    await body.aclose()


async def test_page_files_and_recent_blocks(home: Path) -> None:
    from tests.bootstrap.test_api_hardening import http

    async with running_node(home) as (node, port):
        url = f"http://127.0.0.1:{port}"
        while node.height < 3:
            await trio.sleep(0.05)

        def fetch(path: str) -> tuple[int, str, str]:
            import urllib.error
            import urllib.request

            try:
                with urllib.request.urlopen(url + path, timeout=10) as resp:
                    return resp.status, resp.headers["content-type"], resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers["content-type"], exc.read().decode()

        status, kind, page = await trio.to_thread.run_sync(fetch, "/dashboard")
        assert status == 200 and kind.startswith("text/html") and "/static/dashboard.js" in page
        assert "new EventSource" in (await trio.to_thread.run_sync(fetch, "/static/dashboard.js"))[2]
        assert (await trio.to_thread.run_sync(fetch, "/static/dashboard.css"))[1].startswith("text/css")
        status, kind, _ = await trio.to_thread.run_sync(fetch, "/static/secrets.txt")
        assert status == 404 and kind == "application/json"
        status, doc = await trio.to_thread.run_sync(http, "GET", f"{url}/")
        assert doc["dashboard"] == "/dashboard"
        status, doc = await trio.to_thread.run_sync(http, "GET", f"{url}/blocks?limit=2")
        assert status == 200 and doc["count"] == 2
        first, second = doc["blocks"]
        assert first["height"] == second["height"] + 1
        assert first["block_time_ms"] == first["time_ms"] - second["time_ms"] >= 0
        status, doc = await trio.to_thread.run_sync(http, "GET", f"{url}/blocks?limit=0")
        assert status == 400 and "limit" in doc["error"]


# ------------------------------------------------------------------------------------------------ helpers


def _state(*workers: Any, min_stake: int = 100) -> Any:
    return SimpleNamespace(workers={bytes([i]) * 32: w for i, w in enumerate(workers)},
                           params=SimpleNamespace(min_stake=min_stake))


def _worker(kind: str = "cpu", stake: int = 1000, memory_mb: int = 4096) -> Any:
    return SimpleNamespace(device_kind=kind, stake=stake, memory_mb=memory_mb)


def _job(**kw: Any) -> Any:
    base = dict(status="open", bids={}, bid_deadline=12, device="any", min_memory_mb=0, history=[("open", 5)],
                submitted_at=5, worker=None, verifier=None, referee=None, panel=[], check="", commits={},
                reveals={})
    return SimpleNamespace(**{**base, **kw})


def test_why_a_job_waits() -> None:
    assert why_waiting(_state(), _job()) == "no bids yet: no worker with enough stake is registered"
    assert why_waiting(_state(_worker(stake=5)), _job()) == "no bids yet: no worker with enough stake is registered"
    assert why_waiting(_state(_worker()), _job(device="gpu")) == "no bids yet: no worker with a GPU"
    assert why_waiting(_state(_worker("gpu")), _job(device="gpu")).startswith("no bids yet: waiting for workers")
    assert why_waiting(_state(_worker()), _job(min_memory_mb=99999)) == "no bids yet: no worker with 99999 MB of memory"
    assert why_waiting(_state(_worker()), _job(bids={b"a": 1, b"b": 2})) == "2 bids; assignment at height 12"
    assert why_waiting(_state(_worker()), _job(status="assigned")) is None


def test_timeline_steps() -> None:
    fresh = timeline(_job())
    assert [s["step"] for s in fresh] == ["submitted", "bids", "assigned", "committed", "revealed", "verified"]
    assert [s["done"] for s in fresh] == [True, False, False, False, False, False]
    done = timeline(_job(status="verified", bids={b"a": 1, b"b": 1}, worker=b"a", commits={1: 1, 2: 2},
                         reveals={1: 1, 2: 2}, history=[("open", 5), ("assigned", 8), ("revealing", 10),
                                                        ("verified", 11)]))
    assert all(s["done"] for s in done) and done[-1] == {"step": "verified", "done": True, "height": 11}
    # a check (referee, or auditor and panel) commits blind before anything is revealed
    disputed = timeline(_job(status="failed", worker=b"a", commits={1: 1, 2: 2, 3: 3}, history=[
        ("open", 5), ("assigned", 8), ("disputed", 10), ("revealing", 11), ("failed", 15)]))
    assert [s["step"] for s in disputed][-4:] == ["committed", "disputed", "revealed", "failed"]
    audited = timeline(_job(status="verified", worker=b"a", commits={1: 1, 2: 2, 3: 3}, history=[
        ("open", 5), ("assigned", 8), ("auditing", 10), ("revealing", 12), ("verified", 13)]))
    assert [s["step"] for s in audited][-3:] == ["auditing", "revealed", "verified"]


def test_a_job_assigned_at_submission_shows_an_offer_step_and_no_bid_wait() -> None:
    job = _job(status="assigned", worker=b"a", history=[("assigned", 5)], bid_deadline=5)
    steps = timeline(job)
    assert [s["step"] for s in steps] == ["submitted", "offer", "assigned", "committed", "revealed", "verified"]
    assert steps[1] == {"step": "offer", "done": True, "height": 5} and steps[2]["height"] == 5
    assert why_waiting(_state(_worker()), job) is None
    # fell back to bids (no offer fitted): an ordinary bid phase
    assert timeline(_job(history=[("open", 5)]))[1]["step"] == "bids"


def test_claims_and_their_verdicts_read_in_words() -> None:
    from bootstrap.agent.claims import SPEC_TIME_LIMIT_MISMATCH
    from bootstrap.views import reveal_outcomes, verdict_words
    from ledger.state import Job

    w, v, r = b"w" * 32, b"v" * 32, b"r" * 32
    history = [("open", 5), ("assigned", 8), ("revealing", 10), ("failed", 11)]
    job = Job(job_id=b"j" * 32, client=b"c" * 32, status="failed", verdict="unavailable", worker=w, verifier=v,
              commits={w: b"1", v: b"2"}, reveals={w: ([], bytes(32), 1), v: ([], bytes(32), 1)}, history=history,
              submitted_at=5, bids={w: 5})
    assert [(o["role"], o["outcome"]) for o in reveal_outcomes(job)] == [("worker", "unavailable"),
                                                                          ("verifier", "unavailable")]
    steps = timeline(job)
    assert steps[-2]["done"] and "worker: could not fetch" in steps[-2]["note"]
    assert steps[-1]["verdict"] == "unavailable" and "nobody could fetch" in steps[-1]["note"]
    assert "nobody was penalised" in steps[-1]["note"]
    spec_error = Job(job_id=b"k" * 32, client=b"c" * 32, status="failed", verdict="spec_error", worker=w,
                     verifier=v, reveals={w: ([SPEC_TIME_LIMIT_MISMATCH], bytes(32), 2), v: ([128], bytes(32), 2)},
                     result_summary=[SPEC_TIME_LIMIT_MISMATCH], history=history)
    assert "error 1003: the spec's time limit differs" in verdict_words("spec_error", [SPEC_TIME_LIMIT_MISMATCH])
    assert "error 128: a spec parameter" in reveal_outcomes(spec_error)[1]["words"]
    unable = Job(job_id=b"l" * 32, client=b"c" * 32, status="verified", verdict="worker_unable", worker=w,
                 verifier=v, referee=r, reveals={w: ([], bytes(32), 3), v: ([7], b"a" * 32, 0), r: ([7], b"a" * 32, 0)})
    assert [o["outcome"] for o in reveal_outcomes(unable)] == ["over_limit", "result", "result"]
    assert "could not run" in verdict_words("worker_unable") and "not penalised" in verdict_words("verifier_unable")
    assert verdict_words("some_new_verdict") == "some new verdict"


def test_plot_data_for_each_model() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    labels = (X[:, 0] > 0).astype(np.int32)
    km = plot_data("kmeans", X, None, {"centres": np.zeros((2, 4)), "labels": labels, "inertia": 1.5, "n_iter": 3})
    sc = km["charts"][0]
    assert sc["kind"] == "scatter" and len(sc["points"]) == km["shown"] == plots.MAX_PLOT_POINTS
    assert len(sc["centres"]) == 2 and {p[2] for p in sc["points"]} == {0.0, 1.0}
    pca = plot_data("pca", X, None, {"components": np.eye(4)[:2], "mean": np.zeros(4),
                                     "explained_variance_ratio": [0.3, 0.25]})
    assert pca["charts"][0]["points"][0][:2] == pytest.approx(list(X[0, :2]), abs=1e-6)
    assert pca["charts"][1] == {"kind": "bars", "title": "explained variance ratio", "labels": ["PC1", "PC2"],
                                "values": [0.3, 0.25]}
    x1 = X[:, :1]
    lin = plot_data("linear_regression", x1, 2 * x1[:, 0] + 1, {"coef": [2.0], "intercept": 1.0, "r2": 1.0,
                                                                 "mse": 0.0})
    (x0, y0), (xe, ye) = lin["charts"][0]["line"]
    assert y0 == pytest.approx(2 * x0 + 1) and ye == pytest.approx(2 * xe + 1)
    mlp = plot_data("mlp_train", X, labels, {"loss_curve": [1.0, 0.5, 0.25], "train_loss": 0.2, "test_loss": 0.3,
                                             "test_accuracy": 0.9})
    assert mlp["charts"][0]["points"] == [[1, 1.0], [2, 0.5], [3, 0.25]] and mlp["metrics"]["test_accuracy"] == 0.9
    log = plot_data("logistic_regression", X, labels, {"coef": [[5.0, 0, 0, 0]], "intercept": [0.0],
                                                       "accuracy": 1.0, "log_loss": 0.1})
    assert {p[2] for p in log["charts"][0]["points"]} == {0.0, 1.0}


class _StreamNode:
    """Enough of a node for /events: an event bus, no peers, height 0."""

    home = "/nonexistent"
    height = 0

    def __init__(self) -> None:
        self.events = EventBus()

    def peers(self) -> list[dict[str, str]]:
        return []


async def _open_stream(app: Any, nursery: trio.Nursery, client: tuple[str, int]) -> tuple[int, trio.Event]:
    """Open ``GET /events`` from ``client`` through the ASGI app; (status, an event that hangs it up)."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.1"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/events", "raw_path": b"/events", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"127.0.0.1:5000")], "client": client,
             "server": ("127.0.0.1", 5000)}
    hang_up, started = trio.Event(), trio.Event()
    status: list[int] = []
    first = [True]

    async def receive() -> dict[str, Any]:
        if first[0]:
            first[0] = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            started.set()

    nursery.start_soon(app, scope, receive, send)
    with trio.fail_after(5):
        await started.wait()
    return status[0], hang_up


async def test_one_remote_client_cannot_take_every_event_stream_slot() -> None:
    from bootstrap.api import ApiSettings, create_app

    app = create_app(_StreamNode(), ApiSettings(loopback_hosts_only=False))
    mallory, alice = ("203.0.113.7", 40000), ("198.51.100.2", 40000)
    async with trio.open_nursery() as nursery:
        hang_ups = []
        for _ in range(dashboard.MAX_STREAMS_PER_CLIENT):
            status, hang_up = await _open_stream(app, nursery, mallory)
            assert status == 200
            hang_ups.append(hang_up)
        assert (await _open_stream(app, nursery, mallory))[0] == 429
        status, alice_hang_up = await _open_stream(app, nursery, alice)  # another client still gets a slot
        assert status == 200
        hang_ups[0].set()  # one of mallory's streams ends: its slot is free again
        with trio.fail_after(5):
            while app.state.streams["by_client"].get(mallory[0]) != dashboard.MAX_STREAMS_PER_CLIENT - 1:
                await trio.sleep(0.01)
        status, hang_up = await _open_stream(app, nursery, mallory)
        assert status == 200
        for h in (*hang_ups, alice_hang_up, hang_up):
            h.set()
    assert app.state.streams["open"] == 0 and app.state.streams["by_client"] == {}
