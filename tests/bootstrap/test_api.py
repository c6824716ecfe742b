"""The REST API against a real single-validator Node (sqlite on disk, hypercorn on a loopback port, HTTP through
the project's own urllib client in a thread): the seed's bodies, amounts, the error shape, chain endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.cli import ApiRequestError, NodeClient
from bootstrap.home import Keystore, NodeConfig, devnet_genesis, init_home
from bootstrap.home.layout import DEVNET_PARAMS
from bootstrap.node import Node
from ledger.tx import Transfer, TransferFrom, make_tx

# The seed README's curl bodies, byte for byte in meaning.
SEED_WORKER = {"worker_id": "test_worker", "gpu_type": "RTX 4090", "compute_capacity": 82.6, "stake_amount": 150}
SEED_CLIENT = {"client_address": "test_client", "initial_balance": 1000}
SEED_JOB = {"client_address": "test_client", "model_type": "linear_regression", "reward": 50}


@asynccontextmanager
async def running_node(home: Path, **overrides: Any) -> AsyncIterator[tuple[Node, NodeClient]]:
    cfg = NodeConfig.test(api_listen="127.0.0.1:0", **overrides)
    node = Node(home, cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        assert node.api_address is not None
        host, port = node.api_address
        try:
            yield node, NodeClient(f"http://{host}:{port}", timeout=30.0)
        finally:
            node.stop()


async def call(client: NodeClient, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
    """(status, JSON body) of one request, made in a thread so the node's loop keeps serving."""

    def go() -> tuple[int, Any]:
        try:
            return 200, client.request(method, path, body, query=query or None)
        except ApiRequestError as exc:
            return exc.status, {"error": exc.error, "detail": exc.detail}

    return await trio.to_thread.run_sync(go)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home", config=NodeConfig.test(), chain_id="api-test")
    return tmp_path / "home"


@pytest.fixture
def home_with_peer(tmp_path: Path) -> Path:
    """A home whose genesis also stakes a second keystore key, ``peer``, as a worker of its own: a genesis worker
    names no operator, while a wallet registered through this node's API is run by this node, and the ledger never
    gives two keys of one operator roles on one job (so the node key and ``test_worker`` never pair up)."""
    home = tmp_path / "home"
    ks = Keystore(home / "keys")
    node, peer, faucet = (bytes(ks.create(n).verify_key) for n in ("node", "peer", "faucet"))
    init_home(home, config=NodeConfig.test(), genesis=devnet_genesis([node], [node, peer], faucet,
                                                                     chain_id="api-test"))
    return home


def assert_error(status: int, doc: Any, expected: int, *words: str) -> None:
    assert status == expected, doc
    assert set(doc) == {"error", "detail"}, doc
    for w in words:
        assert w in doc["error"], (w, doc)


async def test_seed_basic_flow(home: Path) -> None:
    async with running_node(home) as (node, client):
        # pre: the chain runs, no test_worker yet
        status, health = await call(client, "GET", "/health")
        assert status == 200 and health["status"] == "healthy" and health["validator"] is True
        assert (await call(client, "GET", "/worker/test_worker/status"))[0] == 404
        supply_before = (await call(client, "GET", "/network/stats"))[1]["total_supply"]

        status, w = await call(client, "POST", "/worker/register", SEED_WORKER)
        assert status == 200, w
        assert w["status"] == "committed" and w["height"] >= 1 and len(w["tx_id"]) == 64
        assert w["declared"] == {"gpu_type": "RTX 4090", "compute_capacity": 82.6}
        assert w["measured"]["device_kind"] in ("cpu", "gpu") and w["measured"]["capacity"] >= 0
        acct = node.account_of("test_worker")
        assert node.state.workers[acct].stake == 150
        assert node.state.workers[acct].device_name == "RTX 4090"

        status, ws = await call(client, "GET", "/worker/test_worker/status")
        assert status == 200 and ws["stake"] == 150 and ws["declared"]["compute_capacity"] == 82.6
        assert ws["worker_id"] == str(node.display_id(acct)) and ws["name"] == "test_worker"
        # the same worker by peer id and by hex account
        assert (await call(client, "GET", f"/worker/{ws['worker_id']}/status"))[1]["stake"] == 150
        assert (await call(client, "GET", f"/worker/{acct.hex()}/status"))[1]["stake"] == 150
        status, all_workers = await call(client, "GET", "/workers")
        assert status == 200 and all_workers["count"] == 2  # the node's own key (genesis) and test_worker

        status, c = await call(client, "POST", "/client/register", SEED_CLIENT)
        assert status == 200 and c["balance"] == 1000, c
        status, bal = await call(client, "GET", "/client/test_client/balance")
        assert bal["balance"] == 1000 and bal["escrowed"] == 0
        # registering again tops up to the same balance: idempotent, no second faucet transfer
        status, again = await call(client, "POST", "/client/register", SEED_CLIENT)
        assert status == 200 and again["balance"] == 1000 and again["funding"] is None

        status, j = await call(client, "POST", "/job/submit", SEED_JOB)
        assert status == 200, j
        assert j["tx_status"] == "committed" and len(j["job_id"]) == 64
        job = node.state.jobs[bytes.fromhex(j["job_id"])]
        fee = job.verification_fee
        assert job.reward == 50 and job.model == "linear_regression"
        status, bal = await call(client, "GET", "/client/test_client/balance")
        assert bal["balance"] == 1000 - 50 - fee - node.state.params.min_fee  # escrow plus the tx fee
        assert bal["escrowed"] == 50 + fee

        status, js = await call(client, "GET", f"/job/{j['job_id']}/status")
        assert status == 200 and js["job_id"] == j["job_id"] and js["status"] in ("open", "assigned", "revealing")
        status, pending = await call(client, "GET", "/jobs/pending")
        assert j["job_id"] in [x["job_id"] for x in pending["jobs"]]
        status, jobs = await call(client, "GET", "/jobs")
        assert jobs["count"] == 1

        status, trig = await call(client, "POST", "/network/coordination/trigger")
        assert status == 200 and "summary" in trig
        status, stats = await call(client, "GET", "/network/stats")
        assert status == 200
        assert stats["total_workers"] == 2 and stats["total_jobs"] == 1
        assert stats["total_supply"] == supply_before  # registrations and escrow move tokens, never mint them
        status, clients = await call(client, "GET", "/clients")
        assert "test_client" in [x["name"] for x in clients["clients"]]


async def test_jobs_are_served_in_pages_with_counts_and_a_cursor(home: Path) -> None:
    async with running_node(home) as (node, client):
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        ids = []
        for _ in range(4):
            status, j = await call(client, "POST", "/job/submit", SEED_JOB)
            assert status == 200, j
            ids.append(j["job_id"])
        expected = [j.job_id.hex() for j in sorted(node.state.jobs.values(),
                                                   key=lambda j: (j.submitted_at, j.job_id), reverse=True)]
        assert sorted(expected) == sorted(ids)
        seen, cursor = [], None
        while True:
            status, page = await call(client, "GET", "/jobs", limit=3, **({"cursor": cursor} if cursor else {}))
            assert status == 200, page
            assert page["count"] == 4 and sum(page["counts"].values()) == 4 and len(page["jobs"]) <= 3
            seen += [j["job_id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected  # newest first, each job once
        status, oldest = await call(client, "GET", "/jobs", order="oldest", limit=500)
        assert [j["job_id"] for j in oldest["jobs"]] == expected[::-1] and oldest["next_cursor"] is None
        # statuses move on as blocks commit: compare each answer with its own counts
        some = next(iter(page["counts"]))
        status, filtered = await call(client, "GET", "/jobs", status=some)
        assert filtered["count"] == filtered["counts"].get(some, 0)
        assert {j["status"] for j in filtered["jobs"]} <= {some} and len(filtered["jobs"]) == filtered["count"]
        status, pending = await call(client, "GET", "/jobs/pending", limit=2)
        assert status == 200 and pending["count"] == sum(
            n for s, n in pending["counts"].items() if s not in ("verified", "failed", "refunded"))
        stats = (await call(client, "GET", "/network/stats"))[1]
        assert stats["total_jobs"] == 4 and sum(stats["jobs_by_status"].values()) == 4
        assert_error(*await call(client, "GET", "/jobs", status="done"), 400, "unknown job status")
        assert_error(*await call(client, "GET", "/jobs", cursor="nonsense"), 400, "cursor")
        assert (await call(client, "GET", "/jobs", limit=0))[0] == 400
        assert (await call(client, "GET", "/jobs", limit=501))[0] == 400
        assert (await call(client, "GET", "/jobs", order="sideways"))[0] == 400


async def test_a_finished_job_past_its_retention_leaves_pages_counts_and_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DEVNET_PARAMS, "job_retention_blocks", 3)
    init_home(tmp_path / "h", config=NodeConfig.test(), chain_id="retention-test")
    async with running_node(tmp_path / "h") as (node, client):
        blocks = node.events.subscribe()
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        status, j = await call(client, "POST", "/job/submit", SEED_JOB)
        assert status == 200, j
        jid = bytes.fromhex(j["job_id"])
        ended = None
        with trio.fail_after(60):  # one worker key: no verifier can be drawn, so the job is refunded
            async for ev in blocks:
                if ev["type"] != "block":
                    continue
                job = node.state.jobs.get(jid)
                if job is not None and job.is_terminal and ended is None:
                    ended = job.deadline
                    page = (await call(client, "GET", "/jobs"))[1]
                    assert page["count"] == 1 and page["counts"] == {job.status: 1}
                if job is None:
                    break
        assert ended is not None and node.height >= ended + 3
        page = (await call(client, "GET", "/jobs"))[1]
        assert page["count"] == 0 and page["jobs"] == [] and page["counts"] == {}
        assert (await call(client, "GET", "/network/stats"))[1]["total_jobs"] == 0
        assert_error(*await call(client, "GET", f"/job/{jid.hex()}/status"), 404, "leaves the state 3 blocks")


def verified_balance(home: Path, answer: dict) -> tuple[int, int]:
    """The height and balance a ``/proof/account`` answer proves, checked against the home's validator set."""
    from bootstrap.home import load_home_genesis
    from ledger.lightclient import StateProof, verify_state_proof

    genesis = load_home_genesis(home)
    got = verify_state_proof(StateProof.decode(bytes.fromhex(answer["proof"])), chain_id=genesis.chain_id,
                             validators=genesis.validators)
    return got.height, got.record.balance  # type: ignore[union-attr]


async def test_a_proof_at_a_past_height_shows_that_state_and_verifies(home: Path) -> None:
    async with running_node(home, snapshot_every=5, keep_snapshots=2) as (node, client):
        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=30, min_height=6))
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        then = node.height
        assert (await call(client, "POST", "/client/register", {**SEED_CLIENT, "initial_balance": 1500}))[0] == 200
        assert node.height > then

        def verified(answer: dict) -> tuple[int, int]:
            return verified_balance(home, answer)

        status, past = await call(client, "GET", "/proof/account/test_client", height=then)
        assert status == 200, past
        assert verified(past) == (then, 1000) and past["record"]["balance"] == 1000
        status, now = await call(client, "GET", "/proof/account/test_client")
        assert status == 200 and verified(now)[1] == 1500
        assert (await call(client, "GET", "/proof/account/test_client", height=then))[1]["proof"] == past["proof"]
        assert_error(*await call(client, "GET", "/proof/account/test_client", height=2), 404, "not kept")
        assert_error(*await call(client, "GET", "/proof/account/test_client", height=node.height + 50), 400, "above")


async def test_an_archive_node_proves_heights_below_its_first_snapshot_from_genesis(home: Path) -> None:
    # keep_snapshots = 0 and every block kept: the state at any height can be rebuilt, the first snapshot_every
    # heights from genesis (a replay no longer than from any snapshot).
    async with running_node(home, snapshot_every=50, keep_snapshots=0) as (node, client):
        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=30, min_height=3))
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        then = node.height
        assert then < 50  # below the first snapshot
        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=30, min_height=then + 2))
        status, past = await call(client, "GET", "/proof/account/test_client", height=then)
        assert status == 200, past
        assert verified_balance(home, past) == (then, 1000)


async def test_submit_takes_an_assignment_mode_offers_by_default(home: Path) -> None:
    async with running_node(home) as (node, client):
        status, _ = await call(client, "POST", "/client/register", {**SEED_CLIENT, "client_address": "modes"})
        assert status == 200
        job = {**SEED_JOB, "client_address": "modes"}
        status, bad = await call(client, "POST", "/job/submit", {**job, "assign": "fastest"})
        assert status == 400 and "assign" in str(bad)
        for body in (job, {**job, "assign": "bids"}):
            status, j = await call(client, "POST", "/job/submit", body)
            assert status == 200 and j["tx_status"] == "committed", j
            # one worker key and no compute pool here: no offer stands, so "offers" falls back to a bid window
            assert j["status"] == "open" and node.state.jobs[bytes.fromhex(j["job_id"])].history[0][0] == "open"


async def test_a_job_no_run_could_do_is_refused_before_any_tx_and_the_run_time_and_window_are_taken(
        home: Path) -> None:
    async with running_node(home) as (node, client):
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        blobs_before = len(node.blobs.digests())
        blobs20 = {"synthetic": {"kind": "blobs", "n_samples": 20, "n_features": 2}}
        one_class = {"X": [[1.0], [2.0], [3.0], [4.0]], "y": [0, 0, 0, 0]}
        refused = [
            ({"model_type": "kmeans", "params": {"k": 50}, "dataset": blobs20}, "params.k", "20 samples"),
            ({"model_type": "pca", "params": {"n_components": 3}, "dataset": blobs20}, "params.n_components", "2"),
            ({"model_type": "kmeans", "params": {"k": 200},
              "dataset": {"synthetic": {"kind": "blobs", "n_samples": 500, "n_features": 2}}}, "summary", "410"),
            ({"model_type": "logistic_regression", "dataset": one_class}, "dataset", "two classes"),
        ]
        for body, field, word in refused:
            status, doc = await call(client, "POST", "/job/submit", {**SEED_JOB, **body})
            assert_error(status, doc, 400, word)
            assert doc["detail"]["field"] == field, doc
        # a run longer than the default window fits: the error names the window it needs and the extra fee
        chain = node.state.params
        needed = chain.commit_blocks_needed(30_000)
        extra = (needed - chain.default_commit_window) * chain.window_fee_per_block
        status, doc = await call(client, "POST", "/job/submit", {**SEED_JOB, "time_limit_ms": 30_000})
        assert_error(status, doc, 400, "commit_window", f"{needed} blocks", f"includes {extra}")
        assert doc["detail"]["commit_window_needed"] == needed and doc["detail"]["extra_fee"] == extra
        assert node.state.jobs == {} and len(node.blobs.digests()) == blobs_before  # no tx, nothing stored
        balance = node.state.balance(node.account_of("test_client"))
        status, j = await call(client, "POST", "/job/submit", {**SEED_JOB, "time_limit_ms": 30_000,
                                                               "commit_window": needed})
        assert status == 200 and j["tx_status"] == "committed", j
        job = node.state.jobs[bytes.fromhex(j["job_id"])]
        assert (job.time_limit_ms, job.commit_window) == (30_000, needed)
        assert node.spec_of(job.params_digest).limits.time_limit_ms == 30_000  # the spec says what the job says
        paid = balance - node.state.balance(node.account_of("test_client"))
        assert paid == job.reward + job.verification_fee + node.config.default_fee + extra


async def test_amounts_are_whole_tokens(home: Path) -> None:
    async with running_node(home) as (node, client):
        status, doc = await call(client, "POST", "/client/register",
                                 {"client_address": "whole", "initial_balance": 150.0})
        assert status == 200 and doc["balance"] == 150
        for bad in (150.5, True, "150", -1, 2**64):
            status, doc = await call(client, "POST", "/client/register",
                                     {"client_address": "frac", "initial_balance": bad})
            assert_error(status, doc, 400, "initial_balance")
        # nothing changed: the key was not even created
        assert not node.keystore.exists("frac")
        status, doc = await call(client, "POST", "/worker/register", {**SEED_WORKER, "stake_amount": 150.5})
        assert_error(status, doc, 400, "stake_amount")
        assert doc["detail"][0]["field"] == "stake_amount"
        assert not node.keystore.exists("test_worker")


async def test_bad_input_gets_one_error_shape(home: Path) -> None:
    async with running_node(home) as (node, client):
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        height_before = node.height
        cases: list[tuple[str, str, Any, int, str]] = [
            ("GET", "/job/" + "ab" * 32 + "/status", None, 404, "unknown job"),
            ("GET", "/job/nothex/status", None, 400, "job_id"),
            ("GET", "/job/abcd/status", None, 400, "job_id"),
            ("GET", "/worker/nobody/status", None, 404, "nobody"),
            ("GET", "/client/nobody/balance", None, 404, "nobody"),
            ("GET", "/no/such/route", None, 404, "Not Found"),
            ("GET", "/blocks/999999", None, 404, "no block"),
            ("POST", "/worker/register", {**SEED_WORKER, "extra": 1}, 400, "extra"),
            ("POST", "/worker/register", {"gpu_type": "x", "stake_amount": 150}, 400, "worker_id"),
            ("POST", "/worker/register", {**SEED_WORKER, "worker_id": "../etc"}, 400, "worker_id"),
            ("POST", "/worker/register", {**SEED_WORKER, "stake_amount": 1}, 400, "minimum stake"),
            ("POST", "/job/submit", {**SEED_JOB, "model_type": "astrology"}, 400, "model"),
            ("POST", "/job/submit", {**SEED_JOB, "params": {"alpha": -1}}, 400, "params.alpha"),
            ("POST", "/job/submit", {**SEED_JOB, "client_address": "ghost"}, 404, "client_address"),
            ("POST", "/job/submit", {**SEED_JOB, "dataset": {"csv": "a,b\n1,2\n", "X": [[1.0]]}}, 400, "exactly one"),
            ("POST", "/tx", {"tx": "zz"}, 400, "tx"),
            ("POST", "/tx", {"tx": "00ff"}, 400, "tx"),
        ]
        for method, path, body, expected, word in cases:
            status, doc = await call(client, method, path, body)
            assert_error(status, doc, expected, word)
        assert not node.keystore.exists(SEED_WORKER["worker_id"])  # refused registrations left no key behind
        # a client that cannot pay: the ledger's typed error, with the shortfall
        await call(client, "POST", "/client/register", {"client_address": "poor", "initial_balance": 10})
        status, doc = await call(client, "POST", "/job/submit", {**SEED_JOB, "client_address": "poor"})
        assert_error(status, doc, 400)
        assert doc["detail"]["kind"] == "insufficient_funds" and doc["detail"]["shortfall"] > 0
        assert node.state.jobs == {}
        # registering the same worker twice
        assert (await call(client, "POST", "/worker/register", SEED_WORKER))[0] == 200
        status, doc = await call(client, "POST", "/worker/register", SEED_WORKER)
        assert_error(status, doc, 409, "already")
        assert node.height >= height_before


async def test_chain_endpoints_and_external_tx(home: Path) -> None:
    async with running_node(home) as (node, client):
        status, idx = await call(client, "GET", "/")
        assert status == 200
        for endpoint in ("POST /worker/register", "GET /worker/{worker_id}/status", "GET /workers",
                         "POST /client/register", "GET /client/{address}/balance", "GET /clients",
                         "POST /job/submit", "GET /job/{job_id}/status", "GET /jobs", "GET /jobs/pending",
                         "GET /network/stats", "POST /network/coordination/start",
                         "POST /network/coordination/stop", "POST /network/coordination/trigger", "GET /health",
                         "GET /chain/head", "GET /blocks/{height}", "GET /peers", "GET /job/{job_id}/result",
                         "POST /tx"):
            assert endpoint in idx["endpoints"], endpoint

        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=20, min_height=1))
        status, head = await call(client, "GET", "/chain/head")
        assert status == 200 and len(head["state_root"]) == 64 and head["chain_id"] == "api-test"
        status, block = await call(client, "GET", "/blocks/1")
        assert status == 200 and block["height"] == 1
        status, peers = await call(client, "GET", "/peers")
        assert status == 200 and peers["count"] == 0

        # an externally signed transfer from the faucet (a wallet outside the node signs it)
        faucet = node.keystore.load("faucet")
        to = bytes(node.keystore.get_or_create("payee").verify_key)
        stx = make_tx(Transfer(to=to, amount=7), faucet, node.state.chain_id,
                      nonce=node.state.nonce(bytes(faucet.verify_key)), fee=node.state.params.min_fee)
        before = node.state.balance(to)
        status, doc = await call(client, "POST", "/tx", {"tx": stx.encode().hex()}, wait=20)
        assert status == 200 and doc["status"] == "committed" and doc["tx_id"] == stx.tx_id.hex(), doc
        assert node.state.balance(to) == before + 7
        # its block lists it in full by default, and by id alone with ?txs=ids (same order, nothing else)
        status, full = await call(client, "GET", f"/blocks/{doc['height']}")
        assert status == 200 and "tx_ids" not in full
        assert {"tx_id": stx.tx_id.hex(), "kind": "transfer", "nonce": stx.nonce}.items() <= next(
            t for t in full["txs"] if t["tx_id"] == stx.tx_id.hex()).items()
        status, ids = await call(client, "GET", f"/blocks/{doc['height']}", txs="ids")
        assert status == 200 and "txs" not in ids and ids["tx_ids"] == [t["tx_id"] for t in full["txs"]]
        assert {k: v for k, v in ids.items() if k != "tx_ids"} == {k: v for k, v in full.items() if k != "txs"}
        status, err = await call(client, "GET", "/blocks/1", txs="kinds")
        assert status == 400, err
        # the same tx again is a replay: refused, nothing moves
        status, doc = await call(client, "POST", "/tx", {"tx": stx.encode().hex()})
        assert 400 <= status < 500 and set(doc) == {"error", "detail"}
        assert node.state.balance(to) == before + 7

        # coordination switches
        status, doc = await call(client, "POST", "/network/coordination/stop")
        assert status == 200 and doc["coordination"] is False
        status, doc = await call(client, "POST", "/network/coordination/start")
        assert status == 200 and doc["coordination"] is True


async def test_a_tx_that_fails_in_its_block_is_charged_and_reported_as_failed(home: Path) -> None:
    """A ``transfer_from`` without an allowance can pay its fee but never execute: it lands in a block as a
    failed tx (its nonce used, its fee paid), ``POST /tx`` answers 400 naming the error, and the sender's next
    tx is not stuck behind it."""
    async with running_node(home) as (node, client):
        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=20, min_height=1))
        faucet = node.keystore.load("faucet")
        me = bytes(faucet.verify_key)
        owner = bytes(node.keystore.get_or_create("owner").verify_key)
        fee = node.state.params.min_fee
        nonce = node.state.nonce(me)
        junk = make_tx(TransferFrom(owner=owner, to=me, amount=5), faucet, node.state.chain_id, nonce=nonce, fee=fee)
        before = node.state.balance(me)
        status, doc = await call(client, "POST", "/tx", {"tx": junk.encode().hex()}, wait=20)
        assert status == 400 and doc["detail"]["status"] == "failed", doc
        assert "InsufficientAllowance" in doc["error"] and doc["detail"]["height"] >= 1
        assert node.state.nonce(me) == nonce + 1 and node.state.balance(me) <= before - fee
        nxt = make_tx(Transfer(to=owner, amount=3), faucet, node.state.chain_id, nonce=nonce + 1, fee=fee)
        status, doc = await call(client, "POST", "/tx", {"tx": nxt.encode().hex()}, wait=20)
        assert status == 200 and doc["status"] == "committed", doc


async def test_no_faucet_names_the_shortfall(tmp_path: Path) -> None:
    home = tmp_path / "nofaucet"
    init_home(home, config=NodeConfig.test(), chain_id="nofaucet", with_faucet=False)
    async with running_node(home) as (node, client):
        status, doc = await call(client, "POST", "/client/register", SEED_CLIENT)
        assert_error(status, doc, 400, "short by 1000")
        assert doc["detail"]["shortfall"] == 1000
        status, doc = await call(client, "POST", "/worker/register", SEED_WORKER)
        assert_error(status, doc, 400, "no faucet")
        assert node.account_of("test_worker") not in node.state.workers


async def test_concurrent_faucet_use_from_two_nodes_all_lands(tmp_path: Path) -> None:
    """Two nodes share the devnet faucet key; registrations at the same moment on both still all commit."""
    from bootstrap.home import make_testnet

    infos = make_testnet(2, tmp_path / "net", config=NodeConfig.test())
    n0 = Node(infos[0].home, NodeConfig.test(api_listen="127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        await nursery.start(n0.run)
        addr = str(n0.host.listen_addrs[0])
        n1 = Node(infos[1].home, NodeConfig.test(api_listen="127.0.0.1:0", bootstrap=[addr]))
        await nursery.start(n1.run)
        clients = [NodeClient("http://{}:{}".format(*n.api_address), timeout=60.0) for n in (n0, n1)]
        with trio.fail_after(30):
            while not n0.host.peers():
                await trio.sleep(0.05)
        results: list[tuple[int, Any]] = []

        async def register(c: NodeClient, name: str) -> None:
            results.append(await call(c, "POST", "/client/register", {"client_address": name,
                                                                        "initial_balance": 100}))

        async with trio.open_nursery() as burst:
            for i in range(3):
                burst.start_soon(register, clients[0], f"a{i}")
                burst.start_soon(register, clients[1], f"b{i}")
        assert [s for s, _ in results] == [200] * 6, results
        assert sorted(d["balance"] for _, d in results) == [100] * 6
        n1.stop()
        n0.stop()


async def test_a_verified_job_result_is_served(home_with_peer: Path) -> None:
    async with running_node(home_with_peer, pool_size=1) as (node, client):
        # the node key, peer and test_worker: two of them that are not both this node's run and verify the job
        assert (await call(client, "POST", "/worker/register", SEED_WORKER))[0] == 200
        # a wallet registered here names this node as its operator (issue 13: one node, one role per job)
        assert node.state.workers[node.account_of("test_worker")].operator == node.account_of("node")
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        status, j = await call(client, "POST", "/job/submit", SEED_JOB)
        assert status == 200
        status, doc = await call(client, "GET", f"/job/{j['job_id']}/result")
        assert_error(status, doc, 404, "no accepted result")
        view = await trio.to_thread.run_sync(lambda: client.wait_job(j["job_id"], timeout=90))
        assert view["status"] == "verified", view
        status, res = await call(client, "GET", f"/job/{j['job_id']}/result")
        assert status == 200, res
        job = node.state.jobs[bytes.fromhex(j["job_id"])]
        assert res["summary"] == list(job.result_summary) and res["artifact_digest"] == job.result_artifact.hex()
        assert res["values"] == [v / 10**res["precision"] for v in res["summary"]]
        # linear regression on the default 4-feature data: 4 coefficients; the summary is R² and then the
        # fitted values at the probe rows the artifact holds, computed from those coefficients
        import numpy as np

        art = res["artifact"]
        assert len(art["coef"]) == 4 and res["summary"][0] == round(art["r2"] * 10**6)
        fitted = np.asarray(art["probe_design"], dtype=np.float64) @ np.asarray(art["coef"]) / art["target_rms"]
        assert [round(v * 10**6) for v in fitted] == res["summary"][1 : 1 + len(fitted)]


async def test_a_result_artifact_that_is_not_the_verified_one_is_refused(home_with_peer: Path) -> None:
    import numpy as np

    from compute.canonical import decode_artifact, encode_artifact

    async with running_node(home_with_peer, pool_size=1) as (node, client):
        assert (await call(client, "POST", "/worker/register", SEED_WORKER))[0] == 200
        assert (await call(client, "POST", "/client/register", SEED_CLIENT))[0] == 200
        status, j = await call(client, "POST", "/job/submit", SEED_JOB)
        assert status == 200
        view = await trio.to_thread.run_sync(lambda: client.wait_job(j["job_id"], timeout=90))
        assert view["status"] == "verified", view
        job = node.state.jobs[bytes.fromhex(j["job_id"])]
        path = node.blobs.root / job.result_artifact.hex()[:2] / job.result_artifact.hex()
        honest = path.read_bytes()
        art = decode_artifact(honest)
        url = f"/job/{j['job_id']}/result"
        assert (await call(client, "GET", url))[0] == 200

        def forged(**fields: object) -> bytes:
            return encode_artifact(art.model, art.spec_digest, art.dataset_digest, {**art.fields, **fields})

        design = np.array(art.fields["probe_design"], dtype=np.float64)
        design[0, 0] += 1.0
        # pre: the blob under the job's recorded digest replaced; operation: GET; post: 409 naming what differs
        for differs, data in (
            ("summary", forged(probe_design=design)),  # other fitted values than were verified
            ("spec_digest", encode_artifact(art.model, b"\x01" * 32, art.dataset_digest, art.fields)),
            ("dataset_digest", encode_artifact(art.model, art.spec_digest, b"\x02" * 32, art.fields)),
            ("model", encode_artifact("kmeans", art.spec_digest, art.dataset_digest, art.fields)),
            # the same meaning in other bytes (the intercept is not in the summary): not what the job named
            ("artifact_digest", forged(intercept=float(art.fields["intercept"]) + 1.0)),
        ):
            path.write_bytes(data)
            status, doc = await call(client, "GET", url)
            assert_error(status, doc, 409, "not the verified result")
            assert doc["detail"]["kind"] == "artifact_mismatch" and doc["detail"]["differs"] == differs, doc
        path.write_bytes(honest)
        status, res = await call(client, "GET", url)
        assert status == 200 and res["artifact"]["coef"] == art.fields["coef"].tolist(), res
