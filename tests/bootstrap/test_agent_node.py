"""The worker agent inside a real Node: one validator whose node key and extra keystore keys are all workers.

Real parts throughout: sqlite on disk, the consensus driver on a real clock, the compute pool's child process, the
blob store. The verifier must be another account than the worker, so each node here holds at least two worker
keys; with three, a ``random-results`` key is caught by the referee.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.agent import WorkerAgent
from bootstrap.home import Keystore, NodeConfig, devnet_genesis, init_home
from bootstrap.node import Node
from compute.canonical import decode_artifact
from ledger.state import FAILED, REFUNDED, VERIFIED, total_supply
from ledger.tx import Bid

pytestmark = pytest.mark.slow  # each test starts a node and a compute child (~3-10 s on 2 cores)

JOB_TIMEOUT_S = 60
PARAMS = {"default_bid_window": 3, "default_commit_window": 60, "default_reveal_window": 30}


def make_home(tmp_path: Path, workers: list[str]) -> tuple[Path, dict[str, bytes]]:
    """A one-validator home whose node key and ``workers`` keystore keys are staked workers; ``alice`` is funded
    (as the faucet account, which has no other rights)."""
    home = tmp_path / "node"
    ks = Keystore(home / "keys")
    accounts = {name: bytes(ks.create(name).verify_key) for name in ["node", *workers, "alice"]}
    genesis = devnet_genesis([accounts["node"]], [accounts["node"], *(accounts[w] for w in workers)],
                             accounts["alice"], chain_id="agent-test", params=PARAMS)
    init_home(home, config=NodeConfig.test(pool_size=1), genesis=genesis)
    return home, accounts


@asynccontextmanager
async def running(home: Path, faulty: str | None = None) -> AsyncIterator[Node]:
    node = Node(home, NodeConfig.load(home), faulty=faulty)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            with trio.fail_after(60):
                await node.pool_ready.wait()
            yield node
        finally:
            node.stop()


async def wait_terminal(node: Node, job_id: bytes, events: Any) -> list[str]:
    """Follow the job's status events until it ends; returns the statuses seen."""
    seen: list[str] = []
    with trio.fail_after(JOB_TIMEOUT_S):
        async for ev in events:
            if ev.get("type") == "job" and ev.get("job_id") == job_id.hex():
                seen.append(ev["status"])
                if ev["status"] in (VERIFIED, FAILED, REFUNDED):
                    return seen
    raise AssertionError(f"event stream ended; job statuses seen: {seen}")


async def test_a_job_goes_to_verified_with_the_node_key_and_a_keystore_key(tmp_path: Path) -> None:
    home, acct = make_home(tmp_path, ["w2"])
    async with running(home) as node:
        # pre
        assert isinstance(node.agent, WorkerAgent)
        assert {k.name for k in node.agent.local_keys()} >= {"node", "w2", "alice"}
        supply = total_supply(node.state)
        before = {n: node.state.balance(a) for n, a in acct.items()}
        events = node.events.subscribe()
        # operation
        res = await node.submit_job("alice", "linear_regression", None, None, reward=100, verification_fee=20)
        job_id = bytes.fromhex(res["job_id"])
        seen = await wait_terminal(node, job_id, events)
        # post
        job = node.state.jobs[job_id]
        # the accepted artifact is confirmed by the verifier before anyone is paid
        assert seen == ["open", "assigned", "revealing", "confirming", "verified"], seen
        assert {job.worker, job.verifier} == {acct["node"], acct["w2"]}
        assert job.price == 80  # bid_permille 800 of the reward
        assert node.state.balance(acct["alice"]) == before["alice"] - 1 - job.price - 20  # fee, price, verifier fee
        assert total_supply(node.state) == supply
        for a in (job.worker, job.verifier):
            assert node.state.workers[a].jobs_done == 1 and node.state.workers[a].reputation > 500
        # the full result is kept: the artifact under the digest the ledger recorded, the JobResult beside it
        artifact = node.blobs.get(job.result_artifact)
        assert artifact is not None and decode_artifact(artifact).model == "linear_regression"
        result = node.agent.result_for(job_id)
        assert result is not None and result.summary == job.result_summary
        status = node.agent.status()
        assert status["running"] is True and status["counters"]["runs_ok"] == 1
        assert status["counters"]["commits"] == 2 and status["counters"]["reveals"] == 2
        assert status["counters"]["confirms"] == 1


async def test_a_job_submitted_with_offers_is_assigned_at_once_and_verified_without_a_bid_phase(
        tmp_path: Path) -> None:
    home, acct = make_home(tmp_path, ["w2"])
    async with running(home) as node:
        # pre: both worker keys' agents have an offer standing
        with trio.fail_after(30):
            while not all(node.state.workers[acct[n]].offer_live_at(node.height + 1) for n in ("node", "w2")):
                await trio.sleep(0.05)
        assert node.agent.status()["offering"] is True
        events = node.events.subscribe()
        # operation
        res = await node.submit_job("alice", "linear_regression", None, None, reward=100, verification_fee=20,
                                    assign="offers")
        job_id = bytes.fromhex(res["job_id"])
        seen = await wait_terminal(node, job_id, events)
        # post: no bid phase anywhere
        job = node.state.jobs[job_id]
        assert seen == ["assigned", "revealing", "confirming", "verified"], seen
        assert [s for s, _ in job.history] == ["assigned", "revealing", "confirming", "verified"]
        assert job.history[0][1] == job.submitted_at == job.bid_deadline and job.bids == {}
        assert {job.worker, job.verifier} == {acct["node"], acct["w2"]}
        assert job.price == node.config.agent.offer_price
        view = node.job_view(job_id)
        assert view is not None and view["status"] == "verified"
        # the agent stops offering when stopped
        node.agent.stop()
        with trio.fail_after(30):
            while any(node.state.workers[acct[n]].offer_live_at(node.height + 1) for n in ("node", "w2")):
                await trio.sleep(0.05)


async def test_stopped_agent_does_not_bid_and_trigger_runs_one_scan(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, ["w2"])
    async with running(home) as node:
        node.agent.stop()
        assert node.agent.status()["running"] is False
        res = await node.submit_job("alice", "pca", {"n_components": 2}, None, reward=50, bid_window=8)
        job_id = bytes.fromhex(res["job_id"])
        with trio.fail_after(20):
            while job_id not in node.state.jobs:
                await trio.sleep(0.05)
        h = node.height
        with trio.fail_after(20):  # a few blocks pass with the job open and no bid from us
            while node.height < h + 2:
                await trio.sleep(0.05)
        assert node.state.jobs[job_id].bids == {}
        summary = await node.agent.trigger()  # the first scan fetches the spec (in the background)...
        with trio.fail_after(20):
            while not node.agent.memory.specs:
                await trio.sleep(0.05)
        summary = await node.agent.trigger()  # ...the next bids
        assert {a["action"] for a in summary["actions"]} == {"PostBid"}
        assert {a["key"] for a in summary["actions"]} == {"node", "w2"}
        with trio.fail_after(20):
            while len(node.state.jobs[job_id].bids) < 2:
                await trio.sleep(0.05)


async def test_a_random_results_key_is_caught_by_the_referee_slashed_and_cut(tmp_path: Path) -> None:
    home, acct = make_home(tmp_path, ["w2", "w3"])
    workers = {n: a for n, a in acct.items() if n != "alice"}
    cheat = "w3"
    async with running(home, faulty=f"random-results@{cheat}") as node:
        stake = node.state.workers[workers[cheat]].stake
        supply = total_supply(node.state)
        # The worker is drawn among the bids: make the cheat the only bidder (the stopped agent still serves its
        # verifier and referee duties).
        node.agent.stop()
        events = node.events.subscribe()
        res = await node.submit_job("alice", "kmeans", {"k": 3}, None, reward=100, bid_window=6)
        job_id = bytes.fromhex(res["job_id"])
        with trio.fail_after(20):
            while job_id not in node.state.jobs:
                await trio.sleep(0.05)
        await node.sign_and_submit(cheat, Bid(job_id, 80))
        seen = await wait_terminal(node, job_id, events)
        job = node.state.jobs[job_id]
        assert job.worker == workers[cheat]
        assert seen == ["open", "assigned", "disputed", "revealing", "confirming", "verified"], seen
        assert job.verdict == "worker_faulty"
        punished = node.state.workers[workers[cheat]]
        assert punished.stake < stake and punished.reputation < 500 and punished.jobs_failed == 1
        assert job.referee in workers.values() and job.referee != job.worker
        assert node.state.workers[job.referee].reputation > 500
        assert total_supply(node.state) == supply


async def test_openings_survive_a_restart_between_commit_and_reveal(tmp_path: Path) -> None:
    home, acct = make_home(tmp_path, ["w2"])
    # First run: both keys commit but withhold their reveals (no-reveal), then the node stops.
    async with running(home, faulty="no-reveal") as node:
        events = node.events.subscribe()
        res = await node.submit_job("alice", "linear_regression", None, None, reward=100)
        job_id = bytes.fromhex(res["job_id"])
        with trio.fail_after(JOB_TIMEOUT_S):
            async for ev in events:
                if ev.get("type") == "job" and ev.get("job_id") == job_id.hex() and ev["status"] == "revealing":
                    break
        assert node.state.jobs[job_id].reveals == {}
    saved = (home / "data" / "agent-openings.json").read_text()
    assert job_id.hex() in saved
    # Second run, honest: a fresh agent (new secret, no results in memory) reveals from the saved openings.
    async with running(home) as node:  # (the reveals may land while the pool is still starting)
        with trio.fail_after(JOB_TIMEOUT_S):
            while node.state.jobs[job_id].status == "revealing":
                await trio.sleep(0.05)
        job = node.state.jobs[job_id]
        assert job.status == VERIFIED and set(job.reveals) == {acct["node"], acct["w2"]}
        assert node.agent.counters["runs_ok"] == 0  # nothing was re-run: the openings were enough


async def test_a_worker_on_another_node_fetches_the_dataset_from_the_submitter(tmp_path: Path) -> None:
    from dataclasses import replace

    from bootstrap.home import make_testnet

    infos = make_testnet(2, tmp_path / "net", validators=1, config=NodeConfig.test(pool_size=1),
                         params=PARAMS, chain_id="agent-p2p")
    async with trio.open_nursery() as nursery:
        first = Node(infos[0].home, infos[0].config)
        await nursery.start(first.run)
        assert first.host is not None
        second = Node(infos[1].home, replace(infos[1].config, bootstrap=[str(first.host.listen_addrs[0])]))
        await nursery.start(second.run)
        try:
            with trio.fail_after(60):
                await first.pool_ready.wait()
                await second.pool_ready.wait()
                while not second.host.peers():
                    await trio.sleep(0.05)
            events = first.events.subscribe()
            res = await first.submit_job("faucet", "logistic_regression", None, None, reward=100)
            job_id = bytes.fromhex(res["job_id"])
            dataset = bytes.fromhex(res["dataset_digest"])
            assert not second.blobs.has(dataset)
            seen = await wait_terminal(first, job_id, events)
            job = first.state.jobs[job_id]
            assert seen[-1] == VERIFIED, seen
            assert {job.worker, job.verifier} == {infos[0].account, infos[1].account}
            assert second.blobs.has(dataset)  # fetched from the submitting node, digest checked
            assert second.agent.counters["runs_ok"] == 1 and first.agent.counters["runs_ok"] == 1
        finally:
            second.stop()
            first.stop()
