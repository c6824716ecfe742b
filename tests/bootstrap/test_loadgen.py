"""The load generator and the batch endpoint it uses, against a real single-validator Node in this process
(sqlite on disk, the API on a loopback port): funding from the faucet home, every offered tx committed and
counted once, rejections by reason, and typed errors for bad settings."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.cli.loadgen import SINK, LoadConfig, LoadgenError, LoadReport, account_keys, run_load
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node
from ledger.state import total_supply
from ledger.tx import Transfer, make_tx


@asynccontextmanager
async def running_node(home: Path, **overrides: Any) -> AsyncIterator[tuple[Node, str]]:
    node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0", **overrides))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_address is not None
        try:
            yield node, f"http://{node.api_address[0]}:{node.api_address[1]}"
        finally:
            node.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home", config=NodeConfig.test(), chain_id="loadgen-test")
    return tmp_path / "home"


async def test_loadgen_funds_offers_and_sees_every_tx_committed(home: Path) -> None:
    async with running_node(home) as (node, url):
        supply = total_supply(node.state)
        cfg = LoadConfig([url], rate=60, duration=1.5, accounts=4, faucet_home=home, batch_ms=50, settle_s=20)
        report = await run_load(cfg)
        # pre: 90 offered → post: all accepted, all committed, each counted once, latency for each
        assert report.offered == 90
        assert report.accepted == 90 and not report.rejections and not report.send_errors
        assert report.committed == 90 and report.uncommitted == 0
        assert len(report.committed_ids) == 90 and len(report.latencies_ms) == 90
        assert 0 < report.percentile_ms(0.5) <= report.percentile_ms(0.99)
        assert report.committed_tps > 0 and report.last_height >= report.first_height
        # the sink received exactly 90 × amount; money was moved, never made
        assert node.state.balance(SINK) == 90
        assert total_supply(node.state) == supply
        # a second run reuses the (already funded) accounts at their current nonces
        again = await run_load(LoadConfig([url], rate=40, duration=0.5, accounts=4, settle_s=20))
        assert again.committed == again.offered == 20
        assert node.state.balance(SINK) == 110


async def test_a_full_mempool_defers_txs_instead_of_losing_them(home: Path) -> None:
    """Offered faster than a 24-tx mempool drains: the node answers 429 for what does not fit, the load generator
    keeps those txs and sends them again, and every offered tx commits (none dropped, no nonce gap left)."""
    async with running_node(home, mempool_max_txs=24) as (node, url):
        cfg = LoadConfig([url], rate=400, duration=1.0, accounts=4, faucet_home=home, batch_ms=50, settle_s=40,
                         resend_s=0.5)
        report = await run_load(cfg)
        assert report.deferred.get("mempool_full", 0) > 0, report.to_dict()
        assert not report.rejections, report.rejections
        assert report.committed == report.offered == 400 and report.uncommitted == 0
        assert node.state.balance(SINK) == 400


async def test_transfers_are_signed_before_the_clock_starts_and_posted_to_every_node(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing happens before the first load batch is posted (it used to share the run's time with posting), and
    every node URL gets its accounts' batches (here the same node twice, one poster each)."""
    from bootstrap.cli import loadgen

    events: list[tuple[str, int]] = []
    real_make_tx, real_call = loadgen.make_tx, loadgen._call

    def make_tx(*args: Any, **kw: Any) -> Any:
        events.append(("sign", 0))
        return real_make_tx(*args, **kw)

    async def call(h: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if path == "/txs":
            events.append(("post", id(h)))
        return await real_call(h, method, path, body)

    monkeypatch.setattr(loadgen, "make_tx", make_tx)
    monkeypatch.setattr(loadgen, "_call", call)
    async with running_node(home) as (_node, url):
        # pre: accounts funded by an earlier run, so every POST /txs below carries load transfers
        cfg = LoadConfig([url, url], rate=100, duration=1.0, accounts=4, faucet_home=home, batch_ms=50, settle_s=20)
        await run_load(cfg)
        events.clear()
        report = await run_load(cfg)
    assert report.offered == report.committed == 100 and report.signed_late == 0
    first_post = next(i for i, (what, _) in enumerate(events) if what == "post")
    assert [what for what, _ in events[:first_post]] == ["sign"] * 100
    assert all(what == "post" for what, _ in events[first_post:])
    assert len({conn for what, conn in events if what == "post"}) == 2


async def test_accounts_of_a_node_that_cannot_be_reached_fail_over_and_every_tx_commits(home: Path) -> None:
    """Each account sends to one node; half of them are given a URL nothing listens on, and their txs go to the
    other node soon after the refused connection, so every offered tx commits; admitted latency is measured from
    the POST that was accepted."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with running_node(home) as (_node, url):
        report = await run_load(LoadConfig([url, dead], rate=100, duration=1.0, accounts=4, batch_ms=50,
                                           faucet_home=home, settle_s=30))
    assert sum(report.send_errors.values()) > 0, report.to_dict()
    assert report.committed == report.offered == 100 and report.uncommitted == report.admitted_uncommitted == 0
    assert len(report.admitted_latencies_ms) == 100
    # the accounts that failed over waited for the refused POST first: their offer latency is the longer one
    assert report.percentile_ms(0.99, admitted=True) <= report.percentile_ms(0.99)


def test_prepared_transfers_keep_each_accounts_nonces_and_sign_late_when_they_run_out() -> None:
    from bootstrap.cli.loadgen import Account, Prepared

    accounts = [Account(k, nonce=5 * i) for i, k in enumerate(account_keys(b"p", 3))]
    prepared = Prepared(accounts, "c", amount=1, fee=1)
    prepared.sign(4)
    got = prepared.take(3) + prepared.take(4)
    assert [(k, n) for k, n, _, _ in got] == [(0, 0), (1, 5), (2, 10), (0, 1), (1, 6), (2, 11), (0, 2)]
    assert prepared.signed_late == 3 and not prepared.ready
    assert len({tid for _, _, tid, _ in got}) == 7
    assert [a.nonce for a in accounts] == [3, 7, 12]


def test_prepared_transfers_pay_the_named_recipients_in_turn_and_bad_ones_are_refused() -> None:
    from bootstrap.cli.loadgen import SINK, Account, Prepared
    from ledger.tx import decode_signed_tx

    recipients = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    accounts = [Account(k, nonce=0) for k in account_keys(b"r", 2)]
    prepared = Prepared(accounts, "c", amount=1, fee=1, recipients=recipients)
    prepared.sign(7)
    paid = [decode_signed_tx(bytes.fromhex(h)).tx.payload.to for _, _, _, h in prepared.take(7)]
    assert paid == [*recipients, *recipients, recipients[0]]
    plain = Prepared([Account(account_keys(b"s", 1)[0], nonce=0)], "c", amount=1, fee=1)
    plain.sign(2)
    assert {decode_signed_tx(bytes.fromhex(h)).tx.payload.to for _, _, _, h in plain.take(2)} == {SINK}
    with pytest.raises(LoadgenError) as err:
        LoadConfig(["http://127.0.0.1:1"], rate=1, duration=1, recipients=(b"short",)).validate()
    assert err.value.field == "recipients"


async def test_unfunded_accounts_without_a_faucet_home_are_refused(home: Path) -> None:
    async with running_node(home) as (_node, url):
        with pytest.raises(LoadgenError) as err:
            await run_load(LoadConfig([url], rate=10, duration=1, accounts=2, seed=b"fresh"))
        assert err.value.field == "faucet_home"


async def test_batch_endpoint_reports_each_item(home: Path) -> None:
    from bootstrap.cli.loadgen import _call, _Http, load_faucet_key

    async with running_node(home) as (node, url):
        faucet = load_faucet_key(home)
        cid = node.chain.chain_id  # type: ignore[union-attr]
        ok = make_tx(Transfer(to=SINK, amount=5), faucet, cid, nonce=node.next_nonce(bytes(faucet.verify_key)), fee=1)
        wrong_chain = make_tx(Transfer(to=SINK, amount=5), faucet, "other-chain", nonce=ok.nonce + 1, fee=1)
        h = _Http(url, 10.0)
        try:
            status, doc = await _call(h, "POST", "/txs", {"txs": [ok.encode().hex(), "zz", wrong_chain.encode().hex(),
                                                                  ok.encode().hex()]})
            assert status == 200, doc
            res = doc["results"]
            assert [r["status"] for r in res] == ["pending", "rejected", "rejected", "rejected"]
            assert res[0]["tx_id"] == ok.tx_id.hex()
            assert "hex" in res[1]["error"]
            assert res[2]["detail"]["kind"] == "BadSignature"
            assert res[3]["detail"]["kind"] == "AlreadyInMempool"
            assert (doc["accepted"], doc["rejected"]) == (1, 3)
            status, doc = await _call(h, "POST", "/txs", {"txs": ["00"] * 5000})
            assert status == 400 and "txs" in str(doc["detail"]), doc  # over the batch bound: refused whole
        finally:
            h.close()


@pytest.mark.parametrize(("overrides", "field"), [
    ({"node_urls": []}, "node"),
    ({"node_urls": ["ftp://x"]}, "node"),
    ({"rate": 0}, "rate"),
    ({"rate": math.nan}, "rate"),
    ({"duration": -1}, "duration"),
    ({"accounts": 0}, "accounts"),
    ({"batch_ms": 0}, "batch_ms"),
    ({"amount": 0}, "amount"),
    ({"fee": -1}, "fee"),
    ({"faucet_home": Path("/nonexistent")}, "faucet_home"),
])
def test_bad_settings_raise_typed(overrides: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"node_urls": ["http://127.0.0.1:1"], "rate": 10, "duration": 1}
    with pytest.raises(LoadgenError) as err:
        LoadConfig(**{**base, **overrides}).validate()
    assert err.value.field == field


def test_accounts_are_deterministic_and_distinct() -> None:
    a, b = account_keys(b"s", 5), account_keys(b"s", 5)
    assert [bytes(k) for k in a] == [bytes(k) for k in b]
    assert len({bytes(k.verify_key) for k in a}) == 5
    assert bytes(account_keys(b"t", 1)[0]) != bytes(a[0])


def test_report_percentiles() -> None:
    r = LoadReport(rate=1, duration=1, latencies_ms=[float(i) for i in range(1, 101)])
    assert r.percentile_ms(0.5) == 50 and r.percentile_ms(0.99) == 99
    assert math.isnan(LoadReport(rate=1, duration=1).percentile_ms(0.5))


async def test_a_node_out_of_admission_time_answers_busy_per_item_and_admits_nothing(home: Path) -> None:
    """Once admission has used its share of the loop, the rest of a batch is refused before any work as a
    retryable ``node_busy`` with a wait (the load generator defers such txs, it does not drop them); a single
    ``POST /tx`` gets a 429 with Retry-After. Then, the bucket refilled, the same bytes are admitted."""
    from bootstrap.cli.loadgen import RETRYABLE, _call, _Http, load_faucet_key
    from bootstrap.txs.governor import AdmissionGovernor

    async with running_node(home) as (node, url):
        faucet = load_faucet_key(home)
        cid = node.chain.chain_id  # type: ignore[union-attr]
        n0 = node.next_nonce(bytes(faucet.verify_key))
        stxs = [make_tx(Transfer(to=SINK, amount=1), faucet, cid, nonce=n0 + i, fee=1) for i in range(3)]
        clock = [0.0]
        gov = AdmissionGovernor(share=0.5, burst_s=0.1, clock=lambda: clock[0])
        gov.charge(1.0)  # a second of admission work just done: 0.9 s of debt, 1.8 s to wait out
        node.txs.governor = gov
        h = _Http(url, 10.0)
        try:
            status, doc = await _call(h, "POST", "/txs", {"txs": [s.encode().hex() for s in stxs]})
            assert status == 200 and doc["accepted"] == 0, doc
            kinds = {r["detail"]["kind"] for r in doc["results"]}
            assert kinds == {"node_busy"} and kinds <= RETRYABLE
            assert all(0 < r["detail"]["retry_after_s"] <= 5 for r in doc["results"])
            assert all(s.tx_id not in node.mempool for s in stxs)  # type: ignore[operator]
            assert gov.refused == 3
            status, doc = await _call(h, "POST", "/tx", {"tx": stxs[0].encode().hex()})
            assert status == 429 and doc["detail"]["kind"] == "node_busy", doc
            clock[0] += 2.0  # the debt waited out
            status, doc = await _call(h, "POST", "/txs", {"txs": [s.encode().hex() for s in stxs]})
            assert status == 200 and doc["accepted"] == 3, doc
        finally:
            h.close()


def test_the_backlog_gate_admits_what_the_chain_commits_in_its_wait_and_refuses_the_rest_retryably() -> None:
    """Little's law at the edge: the limit is the recent commit rate times ``max_wait_s`` (a floor before any
    rate is known), and a refusal says how long until the excess has committed."""
    from bootstrap.errors import NodeBusy
    from bootstrap.txs.governor import BacklogGate

    clock = [0.0]
    gate = BacklogGate(max_wait_s=2.0, floor=100, clock=lambda: clock[0])
    assert gate.rate() is None and gate.limit() == 100
    gate.check(99)  # under the floor
    with pytest.raises(NodeBusy) as busy:
        gate.check(100, n_txs=7)
    assert gate.refused == 7 and 0 < busy.value.retry_after_s <= 5
    for _ in range(5):  # 1,000 txs a second
        gate.note_block(500)
        clock[0] += 0.5
    gate.note_block(500)
    assert gate.rate() == pytest.approx(1000) and gate.limit() == 2000
    gate.check(1999)
    with pytest.raises(NodeBusy) as busy:
        gate.check(3000)
    assert busy.value.retry_after_s == pytest.approx(1.25)  # 1,000 txs over the limit at 1,000 a second, + 0.25
    assert BacklogGate(max_wait_s=0).limit() is None  # off
    BacklogGate(max_wait_s=0, floor=1).check(10**9)
    from bootstrap.home import NodeConfig
    from bootstrap.txs.governor import DEFAULT_MAX_WAIT_S

    # One default, whichever way a node gets its gate (from its config, or with none).
    assert NodeConfig().max_backlog_s == DEFAULT_MAX_WAIT_S == BacklogGate().max_wait_s == 1.5


async def test_a_node_whose_backlog_is_full_refuses_submissions_with_retry_after_then_admits_them(
        home: Path) -> None:
    """``POST /tx`` and ``POST /txs`` meet the backlog gate before any work: a 429 ``node_busy`` with a wait,
    the txs untouched and counted; once the backlog is under the limit again the same bytes are admitted."""
    from bootstrap.cli.loadgen import _call, _Http, load_faucet_key
    from bootstrap.txs.governor import BacklogGate

    async with running_node(home) as (node, url):
        faucet = load_faucet_key(home)
        cid = node.chain.chain_id  # type: ignore[union-attr]
        n0 = node.next_nonce(bytes(faucet.verify_key))
        stxs = [make_tx(Transfer(to=SINK, amount=1), faucet, cid, nonce=n0 + i, fee=1) for i in range(3)]
        gate = BacklogGate(max_wait_s=2.0, floor=1)
        limit = [0]  # full: even an empty mempool is at the limit
        gate.limit = lambda: limit[0]  # type: ignore[method-assign]
        node.txs.backlog = gate
        h = _Http(url, 10.0)
        try:
            status, doc = await _call(h, "POST", "/tx", {"tx": stxs[0].encode().hex()})
            assert status == 429 and doc["detail"]["kind"] == "node_busy", doc
            assert 0 < doc["detail"]["retry_after_s"] <= 5
            status, doc = await _call(h, "POST", "/txs", {"txs": [s.encode().hex() for s in stxs]})
            assert status == 200 and doc["accepted"] == 0, doc
            assert {r["detail"]["kind"] for r in doc["results"]} == {"node_busy"}
            assert all(s.tx_id not in node.mempool for s in stxs)  # type: ignore[operator]
            assert node.counters["txs_refused_backlog"] == 4 and gate.refused == 4
            assert node.counters["txs_refused_busy"] == 0  # each refusal is counted under its one reason
            limit[0] = 10  # the waiting txs committed
            status, doc = await _call(h, "POST", "/txs", {"txs": [s.encode().hex() for s in stxs]})
            assert status == 200 and doc["accepted"] == 3, doc
            for s in stxs:
                await node.wait_for_tx(s.tx_id.hex(), 30.0)
        finally:
            h.close()
