"""The agent's trio shell without a real node: waiting for a compute pool that is still starting, measuring
seconds per block for the planner, standing offers, and (issue 14) claims from failed fetches and runs, the node's
caps on each run, the duty lane, declines, and the openings file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from bootstrap.agent import LocalDevice, WorkerAgent
from bootstrap.agent.claims import NO_ARTIFACT
from bootstrap.agent.faults import forged
from bootstrap.agent.planner import CLAIM_BLOCKS, Opening
from bootstrap.home import AgentConfig
from compute.canonical import JobResult
from compute.dataset import encode_dataset, synthetic
from compute.executor import execute
from compute.pool import JobFailure, JobOutcome, JobRequest
from compute.spec import MODELS, make_spec
from ledger.tx import CommitResult, ConfirmArtifact, RevealResult, compute_commitment, compute_fingerprint
from ledger.verdict import ERROR, OVER_LIMIT, RESULT, UNAVAILABLE

CPU = LocalDevice("cpu", "test-cpu", 16_384, 100, frozenset(MODELS))


def agent_on(pool_size: int) -> tuple[WorkerAgent, SimpleNamespace]:
    node = SimpleNamespace(pool=None, pool_ready=trio.Event(), config=SimpleNamespace(pool_size=pool_size),
                           faulty=None)
    return WorkerAgent(node, AgentConfig(), device=CPU, fetch_timeout_s=30.0), node


async def test_a_run_waits_for_a_pool_that_is_still_starting() -> None:
    agent, node = agent_on(pool_size=2)
    assert agent.planner.parallel_runs == 2  # one run per pool worker
    got: list[object] = []

    async def ask() -> None:
        got.append(await agent._pool())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still waiting: the pool has not started
        node.pool = "the pool"
        node.pool_ready.set()
    assert got == ["the pool"]


async def test_a_node_without_a_pool_is_told_so_at_once() -> None:
    agent, _ = agent_on(pool_size=0)
    with trio.fail_after(1):
        assert await agent._pool() is None


async def test_block_time_is_measured_from_the_heights_the_agent_sees(mock_clock: trio.testing.MockClock) -> None:
    agent, _ = agent_on(pool_size=1)
    assert agent.planner.block_time_s == 1.0  # the default before anything is measured
    agent._note_height(10)
    mock_clock.jump(10.0)
    agent._note_height(10)  # the same height again: no block, nothing learnt
    agent._note_height(15)  # 5 blocks in 10 s
    assert agent.planner.block_time_s == 0.8 * 1.0 + 0.2 * 2.0
    for h in range(16, 60):
        mock_clock.jump(0.25)
        agent._note_height(h)
    assert abs(agent.planner.block_time_s - 0.25) < 0.01


# ---- standing offers ------------------------------------------------------------------------------------------
def offering_node(pool_size: int, offer_until: int = 0) -> tuple[WorkerAgent, SimpleNamespace]:
    """A fake node whose key is the genesis worker w1 (offer standing through ``offer_until``); it records what
    the agent signs."""
    from tests.ledger.factories import account, make_state

    state = make_state(workers=["w1"])
    state.workers[account("w1")].offer_price, state.workers[account("w1")].offer_until = 20, offer_until
    posted: list[object] = []

    async def sign_and_submit(name: str, payload: object, **_: object) -> str:
        posted.append(payload)
        return "ab" * 32

    node = SimpleNamespace(pool=None, pool_ready=trio.Event(), config=SimpleNamespace(pool_size=pool_size),
                           faulty=None, state=state, account_of=lambda name: account("w1"),
                           sign_and_submit=sign_and_submit, posted=posted)
    node.pool_ready.set()
    return WorkerAgent(node, AgentConfig(offer_price=20, offer_blocks=20), device=CPU), node


async def test_a_coordinating_agent_with_a_pool_offers_and_stopping_withdraws() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1)
    await agent.scan(bidding=True)
    assert node.posted == [Offer(20, node.state.height + 20)]
    assert agent.status()["offering"] is True
    node.state.workers[agent.local_keys()[0].account].offer_until = node.state.height + 20  # it landed
    agent.stop()
    assert agent.can_offer() is False
    await agent.scan(bidding=False)
    assert node.posted[-1] == Offer(0, 0)


async def test_no_offer_without_a_compute_pool_or_after_the_pool_failed() -> None:
    agent, node = offering_node(pool_size=0)
    await agent.scan(bidding=True)
    assert node.posted == []
    agent, node = offering_node(pool_size=1)
    node.pool_failed = True
    await agent.scan(bidding=True)
    assert node.posted == []


def test_a_node_without_a_pool_neither_bids_nor_fetches_open_jobs_specs() -> None:
    """It could not run a job it won; and every open job would cost it a spec fetch from its peers."""
    from bootstrap.agent.planner import FetchSpec, LocalKey
    from tests.bootstrap.test_agent_planner import open_job
    from tests.ledger.factories import account

    chain, job_id = open_job(workers=("w1",))
    with_pool, _ = agent_on(pool_size=1)
    without, _ = agent_on(pool_size=0)
    keys = [LocalKey("w1", account("w1"))]
    assert with_pool.planner.plan(chain.state, keys, with_pool.memory, bidding=True) == [
        FetchSpec(job_id, chain.state.jobs[job_id].params_digest)]
    assert without.planner.plan(chain.state, keys, without.memory, bidding=True) == []


async def test_no_offer_while_the_compute_pool_is_still_starting() -> None:
    """An offer is assigned a job at once; a pool still importing could miss that job's commit deadline."""
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1)
    node.pool_ready = trio.Event()
    await agent.scan(bidding=True)
    assert node.posted == [] and agent.can_offer() is False
    node.pool_ready.set()
    await agent.scan(bidding=True)
    assert node.posted == [Offer(20, node.state.height + 20)]


async def test_shutdown_withdraws_a_live_offer_best_effort() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1, offer_until=50)
    await agent._withdraw_offers_on_exit()
    assert node.posted == [Offer(0, 0)]


async def test_withdraw_offers_posts_and_waits_for_the_commit() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1, offer_until=50)
    waited: list[str] = []

    async def wait_for_tx(tx_id: str, timeout: float) -> dict[str, str]:
        waited.append(tx_id)
        return {"status": "committed"}

    node.wait_for_tx = wait_for_tx
    agent.stop()
    assert await agent.withdraw_offers() == ["ab" * 32] and waited == ["ab" * 32]
    assert node.posted == [Offer(0, 0)]
    await agent.scan(bidding=False)  # the withdrawal is in flight: the scan does not post another
    assert node.posted == [Offer(0, 0)]


# ---- claims, caps and the duty lane (issue 14) ----------------------------------------------------------------
DS = synthetic("regression", 50, 2, seed=1)
SPEC = make_spec("linear_regression", {}, DS.digest, min_memory_mb=0, time_limit_ms=5_000, memory_limit_mb=1024)


class FakePool:
    """A compute pool whose runs answer ``outcome`` (a result of the real run by default); the first ``block``
    runs never finish (a long job)."""

    def __init__(self, outcome: JobOutcome | None = None, block: int = 0) -> None:
        self.outcome = outcome or JobOutcome(1, result=execute(SPEC, DS))
        self.block = block
        self.requests: list[JobRequest] = []

    async def run(self, request: JobRequest) -> JobOutcome:
        self.requests.append(request)
        if len(self.requests) <= self.block:
            await trio.sleep_forever()
        return self.outcome


def claims_node(chain: Any, name: str, pool: FakePool, *, serves: bool = True, pool_size: int = 2,
                more_blobs: dict[bytes, bytes] | None = None, spec: Any = None, ds: Any = None,
                **config: Any) -> tuple[WorkerAgent, SimpleNamespace]:
    """An agent whose node key is the test worker ``name`` on ``chain``; it records every payload it signs, and
    its peers serve the spec and data (``SPEC`` and ``DS`` unless given; and ``more_blobs``), or nothing."""
    from bootstrap.errors import BlobNotFound
    from tests.ledger.factories import account

    spec, ds = spec or SPEC, ds or DS
    blobs = {spec.digest: spec.encode(), ds.digest: encode_dataset(ds), **(more_blobs or {})}
    posted: list[object] = []

    async def sign_and_submit(key_name: str, payload: object, **_: object) -> str:
        posted.append(payload)
        return "cd" * 32

    async def fetch_blob(digest: bytes, *, max_size: int) -> bytes:
        if not serves or digest not in blobs:
            raise BlobNotFound(digest, 3, "no peer has it")
        return blobs[digest]

    node = SimpleNamespace(pool=pool, pool_ready=trio.Event(), config=SimpleNamespace(pool_size=pool_size),
                           faulty=None, state=chain.state, account_of=lambda _: account(name),
                           sign_and_submit=sign_and_submit, fetch_blob=fetch_blob, posted=posted, blobs=None)
    agent = WorkerAgent(node, AgentConfig(auto_coordinate=False, **config), device=CPU)
    if serves:  # decoded already: no worker thread, so a run ends within the scan that started it
        agent._datasets[ds.digest] = ds
    return agent, node


def commitments(node: SimpleNamespace) -> list[bytes]:
    return [p.commitment for p in node.posted if isinstance(p, CommitResult)]


async def scan_settled(agent: WorkerAgent) -> None:
    """One scan, then let the runs it started finish (or block)."""
    await agent.scan(bidding=False)
    await trio.testing.wait_all_tasks_blocked()


def assigned_to(worker: str) -> tuple[Any, bytes]:
    from tests.bootstrap.test_agent_planner import submit
    from tests.ledger.factories import Chain, Wallet, make_state

    chain = Chain(make_state(workers=["w1", "w2"]))
    stx = submit(Wallet("alice"), spec=SPEC)
    chain.block(stx)
    chain.block(Wallet(worker).bid(stx.tx_id, 500))
    chain.blocks(2)
    assert chain.state.jobs[stx.tx_id].status == "assigned"
    return chain, stx.tx_id


async def test_a_spec_nobody_serves_is_claimed_unavailable_a_few_blocks_before_the_deadline() -> None:
    from tests.ledger.factories import Wallet, account

    chain, job_id = assigned_to("w1")
    agent, node = claims_node(chain, "w1", FakePool(), serves=False)
    deadline = chain.state.jobs[job_id].deadline
    async with trio.open_nursery() as nursery:
        agent._nursery = nursery
        await scan_settled(agent)
        assert job_id in agent.memory.unavailable and commitments(node) == []
        tries = 1
        while deadline - chain.state.height > CLAIM_BLOCKS:
            assert commitments(node) == []  # still retrying: a slow provider gets its chance
            chain.block()
            await scan_settled(agent)
            tries += 1
        assert len(commitments(node)) == 1 and tries > 3
    salt = agent.memory.salt(job_id, account("w1"))
    assert commitments(node) == [compute_commitment(job_id, account("w1"), [], NO_ARTIFACT, salt, UNAVAILABLE)]
    assert agent.counters["claims"] == 1 and agent.status()["counters"]["claims"] == 1
    chain.block(Wallet("w1", nonce=chain.state.nonce(account("w1"))).sign(node.posted[-1]))  # the ledger takes it
    assert account("w1") in chain.state.jobs[job_id].commits


@pytest.mark.parametrize(("failure", "outcome", "summary"), [
    (JobFailure("spec", "k exceeds the rows", "params.k", 142), ERROR, [142]),
    (JobFailure("result", "summary contains NaN", code=300), ERROR, [300]),
    (JobFailure("timeout", "exceeded 1500 ms"), OVER_LIMIT, []),
    (JobFailure("memory", "memory limit of 512 MB exceeded"), OVER_LIMIT, []),
])
async def test_a_run_that_fails_deterministically_or_over_its_limits_is_claimed_at_once(
        failure: JobFailure, outcome: int, summary: list[int]) -> None:
    from tests.ledger.factories import account

    chain, job_id = assigned_to("w1")
    pool = FakePool(JobOutcome(1, failure=failure))
    agent, node = claims_node(chain, "w1", pool, max_job_time_ms=1_500, max_job_memory_mb=512)
    async with trio.open_nursery() as nursery:
        agent._nursery = nursery
        await scan_settled(agent)  # the run
        await scan_settled(agent)  # the commit, in the same block
    salt = agent.memory.salt(job_id, account("w1"))
    assert commitments(node) == [compute_commitment(job_id, account("w1"), summary, NO_ARTIFACT, salt, outcome)]
    # the run went to the pool under the node's caps, below the spec's own limits
    assert [(r.time_limit_ms, r.memory_limit_mb) for r in pool.requests] == [(1_500, 512)]


async def test_a_crashed_run_is_retried_and_never_claimed() -> None:
    chain, job_id = assigned_to("w1")
    agent, node = claims_node(chain, "w1", FakePool(JobOutcome(1, failure=JobFailure("crashed", "died"))))
    async with trio.open_nursery() as nursery:
        agent._nursery = nursery
        for _ in range(4):
            await scan_settled(agent)
            chain.block()
    assert commitments(node) == [] and agent.memory.run_failures[job_id][0] == 3  # max_run_attempts


def confirming(published: JobResult, spec: Any = None, ds: Any = None) -> tuple[Any, bytes]:
    """A job (``SPEC`` on ``DS`` unless given) w1 worked on and w2 verified, both revealing the honest summary, w1
    naming ``published``'s artifact and w2 its own honest run's: accepted, now waiting for w2's confirmation."""
    from tests.bootstrap.test_agent_planner import submit
    from tests.ledger.factories import Chain, Wallet, account, make_state

    spec, ds = spec or SPEC, ds or DS
    honest = execute(spec, ds)
    chain = Chain(make_state(workers=["w1", "w2"], params={"confirm_window": 4}))
    stx = submit(Wallet("alice"), spec=spec)
    chain.block(stx)
    job_id = stx.tx_id
    chain.block(Wallet("w1").bid(job_id, 500))
    chain.blocks(2)
    wallets = {n: Wallet(n, nonce=chain.state.nonce(account(n))) for n in ("w1", "w2")}
    digest = {"w1": published.artifact_digest, "w2": honest.artifact_digest}
    summary = list(honest.summary)
    chain.block(*(w.sign(CommitResult(job_id, compute_commitment(job_id, w.account, summary, digest[n], b"s" * 16),
                                      compute_fingerprint(job_id, summary))) for n, w in wallets.items()))
    chain.block()
    chain.block(*(w.sign(RevealResult(job_id, summary, digest[n], b"s" * 16)) for n, w in wallets.items()))
    job = chain.state.jobs[job_id]
    assert (job.status, job.confirmers, job.result_artifact) == ("confirming", [account("w2")],
                                                                 published.artifact_digest)
    return chain, job_id


@pytest.mark.parametrize("case", ["honest", "forged", "unserved"])
async def test_a_confirmer_fetches_and_checks_the_artifact_and_confirms_only_the_accepted_result(
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    from tests.ledger.factories import Wallet, account

    honest = execute(SPEC, DS)
    published = forged(honest) if case == "forged" else honest
    chain, job_id = confirming(published)
    served = {} if case == "unserved" else {published.artifact_digest: published.artifact}
    agent, node = claims_node(chain, "w2", FakePool(), more_blobs=served)
    async with trio.open_nursery() as nursery:
        agent._nursery = nursery
        await scan_settled(agent)
        await scan_settled(agent)  # a second scan in the same block: no second check or post
    confirms = [p for p in node.posted if isinstance(p, ConfirmArtifact)]
    memo = (job_id, account("w2"), "confirm")
    if case == "honest":
        assert confirms == [ConfirmArtifact(job_id, honest.artifact_digest)] and agent.counters["confirms"] == 1
        chain.block(Wallet("w2", nonce=chain.state.nonce(account("w2"))).sign(confirms[0]))
        assert chain.state.jobs[job_id].status == "verified"
    elif case == "forged":
        # The artifact is fetched and hashes to its digest, but it is not what the summary says: never confirmed.
        assert confirms == [] and "summary" in agent.memory.refused[memo]
        assert "does not confirm the artifact" in caplog.text
    else:
        assert confirms == [] and job_id in agent.memory.confirm_failures and memo not in agent.memory.refused


MLP_DS = synthetic("classification", 120, 4, seed=3)
MLP_SPEC = make_spec("mlp_train", {"epochs": 3, "hidden": [6], "batch_size": 64}, MLP_DS.digest, min_memory_mb=0,
                     time_limit_ms=5_000, memory_limit_mb=1024)


@pytest.mark.parametrize("case", ["hidden", "honest", "own lost"])
async def test_a_confirmer_checks_the_artifact_against_its_own_run_under_a_sketch_drawn_after_the_commitment(
        case: str) -> None:
    # hidden: mlp weights moved where the job's public sketch does not look pass the accepted summary, but not the
    # confirmer's second sketch, seeded by the accepting block's hash. honest: the other backend's run of a
    # regression (other bytes, the same fit) passes both. own lost: the confirmer's own artifact cannot be had, so
    # the accepted summary alone is checked, and the node counts it.
    from bootstrap.agent.faults import hidden_move
    from compute.binding import sketch_seed
    from compute.executor import default_backend
    from tests.ledger.factories import account

    spec, ds = (MLP_SPEC, MLP_DS) if case == "hidden" else (SPEC, DS)
    mine = execute(spec, ds)  # the confirmer's own run, as ``confirming`` reveals it
    if case == "hidden":
        published = hidden_move(mine, sketch_seed(spec.digest, ds.digest))
    else:
        other = next(b for b in ("numpy", "sklearn") if b != default_backend(spec))
        published = execute(spec, ds, other)
    assert published.artifact_digest != mine.artifact_digest
    chain, job_id = confirming(published, spec, ds)
    served = {published.artifact_digest: published.artifact}
    if case != "own lost":
        served[mine.artifact_digest] = mine.artifact
    agent, node = claims_node(chain, "w2", FakePool(), more_blobs=served, spec=spec, ds=ds)
    accepted_at = chain.state.height
    node.chain = SimpleNamespace(block_hash=lambda h: b"h" * 32 if h == accepted_at else None)
    async with trio.open_nursery() as nursery:
        agent._nursery = nursery
        await scan_settled(agent)
    confirms = [p for p in node.posted if isinstance(p, ConfirmArtifact)]
    memo = (job_id, account("w2"), "confirm")
    if case == "hidden":
        assert confirms == [] and "after the artifact was committed" in agent.memory.refused[memo]
    else:
        assert confirms == [ConfirmArtifact(job_id, published.artifact_digest)]
        assert agent.counters["confirms_unsketched"] == (case == "own lost")


async def test_a_verifier_duty_runs_and_commits_while_the_nodes_own_long_job_holds_its_work_slot() -> None:
    from tests.bootstrap.test_agent_planner import submit
    from tests.ledger.factories import Wallet, account

    for pool_size, committed in ((2, True), (1, False)):
        chain, long_job = assigned_to("w1")  # w1 works on it: the run never ends
        pool = FakePool(block=1)
        agent, node = claims_node(chain, "w1", pool, pool_size=pool_size)
        async with trio.open_nursery() as nursery:
            agent._nursery = nursery
            await scan_settled(agent)
            assert agent.memory.running == {long_job}
            duty = submit(Wallet("alice", nonce=1), spec=SPEC)
            chain.block(duty)
            chain.block(Wallet("w2").bid(duty.tx_id, 500))
            chain.blocks(2)
            assert chain.state.jobs[duty.tx_id].verifier == account("w1")  # the only other worker: drawn
            await scan_settled(agent)  # the duty's run (in the duty slot, if there is one)
            await scan_settled(agent)  # its commit
            nursery.cancel_scope.cancel()
        assert (len(commitments(node)) == 1) is committed, pool_size
        assert agent.status()["limits"]["duty_slots"] == pool_size - 1


async def test_status_says_why_each_open_job_is_declined_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    from tests.bootstrap.test_agent_planner import submit
    from tests.ledger.factories import Chain, Wallet, make_state

    chain = Chain(make_state(workers=["w1", "w2"]))
    job = submit(Wallet("alice"), spec=SPEC)
    chain.block(job)
    agent, _ = claims_node(chain, "w1", FakePool(), max_job_time_ms=2_000)
    caplog.set_level(logging.INFO, logger="bootstrap.agent")
    for _ in range(3):
        await agent.scan(bidding=True)
    reason = agent.status()["declined"][job.tx_id.hex()]
    assert "5000 ms" in reason and "2000 ms" in reason
    assert sum("declines job" in r.getMessage() for r in caplog.records) == 1
    assert agent.status()["limits"]["max_job_time_ms"] == 2_000


def test_openings_files_from_before_claims_load_as_results_and_claims_round_trip(tmp_path: Path) -> None:
    agent, _ = agent_on(pool_size=1)
    agent._openings_path = tmp_path / "agent-openings.json"
    job, acct = b"j" * 32, b"a" * 32
    agent._openings_path.write_text(json.dumps([[job.hex(), acct.hex(), [1, 2], (b"d" * 32).hex(),
                                                 (b"s" * 32).hex()]]))
    agent._load_openings()
    assert agent.memory.openings[(job, acct)] == Opening((1, 2), b"d" * 32, b"s" * 32, RESULT)
    agent.memory.openings[(job, acct)] = Opening((), NO_ARTIFACT, b"s" * 32, UNAVAILABLE)
    agent._save_openings()
    agent.memory.openings.clear()
    agent._load_openings()
    assert agent.memory.openings[(job, acct)].outcome == UNAVAILABLE


def test_a_confirmers_own_artifact_it_cannot_compare_refuses_nothing() -> None:
    # The second sketch compares two runs; a confirmer whose own copy does not decode, or is another job's, has
    # nothing to compare with, and the author is not refused for the confirmer's fault.
    from bootstrap.jobs import accepted_artifact
    from ledger.state import Job

    honest = execute(SPEC, DS)
    other = execute(MLP_SPEC, MLP_DS)
    job = Job(job_id=b"j" * 32, dataset_digest=DS.digest, result_summary=list(honest.summary),
              result_artifact=honest.artifact_digest, tolerance_abs=SPEC.tolerance.abs,
              tolerance_ppm=SPEC.tolerance.ppm)
    for own in (b"not an artifact", other.artifact):
        assert accepted_artifact(job, SPEC, honest.artifact, (own, 7)).model == SPEC.model
