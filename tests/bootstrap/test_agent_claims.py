"""Issue 14 in the planner: honest claims instead of stalls, declines with reasons, the node's caps in bids and
offers, and the duty lane. Lifecycles run over the ledger's test ``Chain`` (which refuses any invalid tx), with the
in-test shell of ``test_agent_planner``."""

from __future__ import annotations

import pytest

from bootstrap.agent import AgentMemory, Planner, RunRecord, parse_faults
from bootstrap.agent.claims import (
    NO_ARTIFACT,
    SPEC_MEMORY_MISMATCH,
    SPEC_TIME_LIMIT_MISMATCH,
    SUMMARY_TOO_LONG,
    describe_claim,
    failure_claim,
    spec_mismatch,
)
from bootstrap.agent.planner import CLAIM_BLOCKS, PostBid, PostCommit, PostOffer, PostReveal, RunJob, claim_record
from compute.errors import SpecError, error_code
from compute.pool import JobFailure
from compute.spec import make_spec
from ledger.state import ASSIGNED, FAILED, VERIFIED
from ledger.tx import SubmitJob, compute_commitment
from ledger.verdict import ERROR, OVER_LIMIT, UNAVAILABLE
from tests.bootstrap.test_agent_planner import (
    ARTIFACT,
    CPU,
    DATASET,
    SPEC,
    TRUE_SUMMARY,
    SimNode,
    fast,
    key,
    known,
    open_job,
    open_jobs,
    simulate_jobs,
    submit,
)
from tests.ledger.factories import Chain, Wallet, account, make_state

NAMES = ("w1", "w2", "w3")


def _name(acct: bytes) -> str:
    return next(n for n in NAMES if account(n) == acct)


def assigned(spec=SPEC, params=None, commit: int = 10, workers=NAMES, bidder: str = "w1"):
    """A job bid on by ``bidder`` alone and assigned; returns the chain, job id, and the worker and verifier keys."""
    chain = Chain(make_state(workers=list(workers), params=params))
    stx = submit(Wallet("alice"), spec=spec, commit=commit)
    chain.block(stx)
    chain.block(Wallet(bidder).bid(stx.tx_id, 800))
    chain.blocks(2)
    job = chain.state.jobs[stx.tx_id]
    assert job.status == ASSIGNED
    return chain, stx.tx_id, key(_name(job.worker)), key(_name(job.verifier))


def commits_of(actions):
    return [a for a in actions if isinstance(a, PostCommit)]


# ---- claims ---------------------------------------------------------------------------------------------------
def test_unavailable_is_retried_every_block_and_claimed_only_near_the_commit_deadline():
    chain, job_id, wk, _ = assigned()
    planner, memory = Planner(CPU), known()
    deadline = chain.state.jobs[job_id].deadline
    memory.unavailable[job_id] = (chain.state.height, "no peer serves the dataset")
    assert planner.plan(chain.state, [wk], memory) == []  # not again in the block it failed
    while deadline - chain.state.height > CLAIM_BLOCKS:
        chain.block()
        actions = planner.plan(chain.state, [wk], memory)
        if deadline - chain.state.height > CLAIM_BLOCKS:
            assert [type(a) for a in actions] == [RunJob]  # a slow provider still gets its chance
            memory.unavailable[job_id] = (chain.state.height, "no peer serves the dataset")
    [commit] = commits_of(actions)
    o = commit.opening
    assert (o.outcome, o.summary, o.artifact_digest) == (UNAVAILABLE, (), NO_ARTIFACT)
    assert commit.commitment == compute_commitment(job_id, wk.account, [], NO_ARTIFACT, o.salt, UNAVAILABLE)
    chain.block(Wallet(wk.name, nonce=chain.state.nonce(wk.account)).sign(_payload(commit)))
    assert wk.account in chain.state.jobs[job_id].commits  # the ledger takes it before the deadline


def _payload(action):
    from bootstrap.agent.planner import payload_for

    return payload_for(action)


def test_a_fetch_still_hanging_near_the_deadline_is_claimed_but_a_run_computing_is_not():
    chain, job_id, wk, _ = assigned()
    planner = Planner(CPU)
    chain.blocks(chain.state.jobs[job_id].deadline - chain.state.height - CLAIM_BLOCKS)
    fetching = known()
    fetching.running.add(job_id)
    fetching.fetching_jobs.add(job_id)
    [commit] = commits_of(planner.plan(chain.state, [wk], fetching))
    assert commit.opening.outcome == UNAVAILABLE
    computing = known()
    computing.running.add(job_id)  # fetched, now in the pool: its result may still come in time
    assert planner.plan(chain.state, [wk], computing) == []
    failing = known()  # transient failures (a crashed pool) are no claim: the node stalls if they persist
    failing.run_failures[job_id] = (3, chain.state.height - 2, "worker died")
    assert planner.plan(chain.state, [wk], failing) == []


def test_a_spec_that_disagrees_with_its_job_is_claimed_as_an_error_at_once_and_not_bid_on():
    other_limit = make_spec("linear_regression", {}, DATASET, memory_limit_mb=1024, min_memory_mb=0,
                            time_limit_ms=4_000)
    chain, job_id = open_job()
    job = chain.state.jobs[job_id]
    assert spec_mismatch(job, other_limit)[0] == SPEC_TIME_LIMIT_MISMATCH
    assert spec_mismatch(job, make_spec("linear_regression", {}, DATASET, time_limit_ms=5_000))[0] == \
        SPEC_MEMORY_MISMATCH
    memory = known()
    memory.specs[SPEC.digest] = other_limit  # what this node fetched under the job's spec digest
    plan = Planner(CPU).decide(chain.state, [key("w1")], memory)
    assert plan.actions == [] and "time limit" in plan.declined[job_id]
    chain, job_id, wk, vk = assigned()
    memory = AgentMemory(secret=b"s" * 32)
    memory.specs[SPEC.digest] = other_limit
    commits = commits_of(Planner(CPU).plan(chain.state, [wk, vk], memory))
    assert [(c.opening.outcome, c.opening.summary) for c in commits] == [(ERROR, (SPEC_TIME_LIMIT_MISMATCH,))] * 2


def test_a_result_too_long_for_the_chain_is_claimed_as_an_error():
    chain, job_id, wk, _ = assigned(params={"max_summary_len": 2})
    memory = known()
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)  # three values
    [commit] = commits_of(Planner(CPU).plan(chain.state, [wk], memory))
    assert (commit.opening.outcome, commit.opening.summary) == (ERROR, (SUMMARY_TOO_LONG,))


@pytest.mark.parametrize(("failure", "claim"), [
    (JobFailure("spec", "k exceeds rows", "params.k", 142), (ERROR, [142])),
    (JobFailure("spec", "k exceeds rows", "params.k"), (ERROR, [error_code(SpecError("params.k", ""))])),
    (JobFailure("dataset", "NaN", code=200), (ERROR, [200])),
    (JobFailure("result", "summary contains NaN", code=300), (ERROR, [300])),
    (JobFailure("timeout", "exceeded 5000 ms"), (OVER_LIMIT, [])),
    (JobFailure("memory", "limit exceeded"), (OVER_LIMIT, [])),
    (JobFailure("crashed", "worker died"), None),
    (JobFailure("backend", "no CUDA here"), None),
    (JobFailure("execution", "numerical failure"), None),
    (JobFailure("execution", "a capped logistic run did not converge", code=306), (ERROR, [306])),
    (JobFailure("execution", "overflows int64 at precision 6", code=302), (ERROR, [302])),
    (JobFailure("protocol", "bad frame"), None),
])
def test_pool_failures_are_claims_only_when_every_honest_run_would_fail_alike(failure, claim):
    assert failure_claim(failure) == claim


def test_claims_from_runs_are_committed_at_once_and_faults_leave_them_alone():
    chain, job_id, wk, _ = assigned()
    memory = known()
    memory.results[job_id] = claim_record(OVER_LIMIT, reason="exceeded 5000 ms")
    [commit] = commits_of(Planner(CPU, faults=parse_faults("random-results")).plan(chain.state, [wk], memory))
    assert (commit.opening.outcome, commit.opening.summary) == (OVER_LIMIT, ())
    assert describe_claim(ERROR, [SUMMARY_TOO_LONG]).startswith("error 1006 (")


def test_the_reveal_opens_the_claim_that_was_committed():
    chain, job_id, wk, vk = assigned()
    memory = known()
    memory.results[job_id] = claim_record(ERROR, [142])
    commits = commits_of(Planner(CPU).plan(chain.state, [wk, vk], memory))
    txs = []
    for c in commits:
        memory.openings[(job_id, c.key.account)] = c.opening
        txs.append(Wallet(c.key.name, nonce=chain.state.nonce(c.key.account)).sign(_payload(c)))
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)  # a late result changes nothing
    chain.block(*txs)
    chain.block()  # the check draw
    reveals = Planner(CPU).plan(chain.state, [wk, vk], memory)
    assert [type(a) for a in reveals] == [PostReveal, PostReveal]
    assert all(r.opening.outcome == ERROR and r.opening.summary == (142,) for r in reveals)


# ---- whole lifecycles -----------------------------------------------------------------------------------------
def _assigned_chain(workers=NAMES, bidder: str = "w1"):
    chain = Chain(make_state(workers=list(workers)))
    stx = submit(Wallet("alice"))
    chain.block(stx)
    chain.block(Wallet(bidder).bid(stx.tx_id, 500))
    return chain, stx.tx_id


def test_nobody_can_fetch_the_spec_the_job_fails_unavailable_with_the_trouble_share_and_nobody_slashed():
    chain, job_id = _assigned_chain()
    before = {n: (chain.state.balance(account(n)), chain.state.workers[account(n)].stake,
                  chain.state.workers[account(n)].reputation) for n in NAMES}
    nodes = [SimNode(Planner(CPU), [key(n)], fetch_fails=True) for n in NAMES]
    simulate_jobs(chain, nodes, [job_id])
    job = chain.state.jobs[job_id]
    assert (job.status, job.verdict) == (FAILED, "unavailable")
    trouble = chain.state.params.trouble_permille
    for n, node in zip(NAMES, nodes, strict=True):
        w = chain.state.workers[account(n)]
        pay = {job.worker: job.price, job.verifier: job.verification_fee}.get(account(n), 0) * trouble // 1000
        assert chain.state.balance(account(n)) == before[n][0] + pay - len(node.posted)  # one token a tx
        assert (w.stake, w.reputation, w.jobs_failed) == (before[n][1], before[n][2], 0)
    assert {p.split(":")[0] for node in nodes for p in node.posted} <= {"PostCommit", "PostReveal"}


def test_a_spec_failing_on_its_data_everywhere_ends_as_a_spec_error_and_nobody_is_slashed():
    chain, job_id = _assigned_chain()
    stakes = {n: chain.state.workers[account(n)].stake for n in NAMES}
    nodes = [SimNode(Planner(CPU), [key(n)], claim=(ERROR, [142])) for n in NAMES]
    simulate_jobs(chain, nodes, [job_id])
    job = chain.state.jobs[job_id]
    assert (job.status, job.verdict, job.result_summary) == (FAILED, "spec_error", [142])
    assert all(chain.state.workers[account(n)].stake == stakes[n] for n in NAMES)


def test_a_worker_that_could_not_fetch_is_not_slashed_when_the_others_ran_it():
    chain, job_id = _assigned_chain()
    stake = chain.state.workers[account("w1")].stake
    nodes = [SimNode(Planner(CPU), [key("w1")], fetch_fails=True), SimNode(Planner(CPU), [key("w2")]),
             SimNode(Planner(CPU), [key("w3")])]
    simulate_jobs(chain, nodes, [job_id])
    job = chain.state.jobs[job_id]
    assert (job.status, job.verdict, job.worker) == (VERIFIED, "worker_unable", account("w1"))
    assert chain.state.workers[account("w1")].stake == stake
    assert job.result_summary == TRUE_SUMMARY


# ---- declines, caps and offers --------------------------------------------------------------------------------
def test_declined_jobs_each_get_a_reason():
    chain, jobs = open_jobs(2)
    memory = known()
    capped = Planner(CPU, max_job_time_ms=4_000).decide(chain.state, [key("w1")], memory)
    assert capped.actions == [] and set(capped.declined) == set(jobs)
    assert "5000 ms" in capped.declined[jobs[0]] and "agent.max_job_time_ms" in capped.declined[jobs[0]]
    small = Planner(CPU, max_job_memory_mb=512).decide(chain.state, [key("w1")], memory)
    assert small.actions == [] and "1024 MB" in small.declined[jobs[0]]
    busy = fast(default_run_s=4.0).decide(chain.state, [key("w1")], memory)  # two 4 s runs fit in 9 s
    slow = fast(default_run_s=5.0, block_time_s=0.5).decide(chain.state, [key("w1")], memory)
    assert len(busy.actions) == 2 and busy.declined == {}
    assert slow.actions == [] and all("commit deadline" in r for r in slow.declined.values())
    own = submit(Wallet("w1"))  # a job w1 pays for itself
    chain.block(own)
    mine = fast().decide(chain.state, [key("w1")], memory)
    assert mine.declined[own.tx_id] == "no local key may work on it: is the job's client"
    lazy = Planner(CPU, max_open_bids=1).decide(chain.state, [key("w1")], memory)
    assert len(lazy.actions) == 1 and "at its limits" in next(iter(lazy.declined.values()))


def test_a_spec_that_could_not_be_fetched_is_fetched_again_later_and_says_why_meanwhile():
    chain, job_id = open_job(bid=8)
    memory = AgentMemory()
    memory.spec_problems[SPEC.digest] = (chain.state.height, "spec unavailable: no peer")
    planner = Planner(CPU, retry_after_blocks=2)
    plan = planner.decide(chain.state, [key("w1")], memory)
    assert plan.actions == [] and plan.declined == {job_id: "spec unavailable: no peer"}
    chain.blocks(2)
    assert [type(a).__name__ for a in planner.plan(chain.state, [key("w1")], memory)] == ["FetchSpec"]


def test_offers_carry_the_nodes_run_time_cap_and_are_renewed_when_it_changes():
    state = make_state(workers=["w1"])
    chain = Chain(state)
    memory = AgentMemory()
    [offer] = Planner(CPU, max_job_time_ms=30_000).plan(state, [key("w1")], memory, offering=True)
    assert isinstance(offer, PostOffer) and offer.max_time_ms == 30_000
    assert _payload(offer).max_time_ms == 30_000
    chain.block(Wallet("w1").sign(_payload(offer)))
    assert state.workers[account("w1")].offer_max_time_ms == 30_000
    assert Planner(CPU, max_job_time_ms=30_000).plan(state, [key("w1")], AgentMemory(), offering=True) == []
    [renewed] = Planner(CPU, max_job_time_ms=60_000).plan(state, [key("w1")], AgentMemory(), offering=True)
    assert renewed.max_time_ms == 60_000


def test_the_ledger_assigns_no_longer_job_from_a_capped_offer():
    state = make_state(workers=["w1", "w2"])
    chain = Chain(state)
    chain.block(Wallet("w1").offer(20, 30, 4_000), Wallet("w2").offer(20, 30, 4_000))
    tol = SPEC.tolerance
    stx = Wallet("alice").sign(SubmitJob(SPEC.model, SPEC.digest, DATASET, 1_000, 200, tol.abs, tol.ppm, "any", 0,
                                         3, 10, 5, "offers", 5_000))
    chain.block(stx)
    assert state.jobs[stx.tx_id].status == "open"  # nobody offered a 5 s run: it waits for bids


# ---- the duty lane --------------------------------------------------------------------------------------------
def _two_jobs(verifier_duty_for: str = "w1"):
    """Job A assigned to w1 as worker (a long run), job B with w1 as verifier (a duty), both to commit."""
    chain = Chain(make_state(workers=["w1", "w2"]))
    alice = Wallet("alice")
    a, b = submit(alice), submit(alice)
    chain.block(a, b)
    chain.block(Wallet("w1").bid(a.tx_id, 500), Wallet("w2").bid(b.tx_id, 500))
    chain.blocks(2)
    ja, jb = chain.state.jobs[a.tx_id], chain.state.jobs[b.tx_id]
    assert (ja.worker, jb.verifier) == (account("w1"), account("w1"))
    return chain, a.tx_id, b.tx_id


def test_the_nodes_own_long_run_never_takes_the_duty_slot():
    chain, a, b = _two_jobs()
    planner = Planner(CPU, parallel_runs=2, duty_slots=1)
    assert (planner.work_lanes, planner.duty_lane) == (1, 1)
    memory = known()
    memory.running.add(a)  # the long run of its own job holds the work slot
    [run] = planner.plan(chain.state, [key("w1")], memory)
    assert isinstance(run, RunJob) and run.job_id == b and run.roles == (("w1", "verifier"),)
    # the other way round: a duty running does not stop its own work from the free slot
    memory = known()
    memory.running.add(b)
    assert [r.job_id for r in planner.plan(chain.state, [key("w1")], memory)] == [a]
    # both running: nothing more; and a one-slot pool keeps no lane (its only slot runs whatever is due first)
    memory.running.add(a)
    assert planner.plan(chain.state, [key("w1")], memory) == []
    assert Planner(CPU, parallel_runs=1, duty_slots=1).duty_lane == 0


def test_with_a_long_job_running_a_verifier_duty_still_commits_in_time():
    """A fake long job (it runs past its commit deadline) holds w1's work slot; the duty drawn for w1 meanwhile
    runs in the duty lane and commits in time. With one shared slot the duty would wait and stall."""
    for lanes, duty_ok in ((2, True), (1, False)):
        chain, a, b = _two_jobs()
        node = SimNode(Planner(CPU, parallel_runs=lanes, duty_slots=1), [key("w1")], memory=known())
        node.memory.running.add(a)  # its own job, started first: it never finishes inside this test
        helper = SimNode(Planner(CPU), [key("w2")], memory=known())
        for _ in range(12):
            txs = []
            for n in (node, helper):
                for action in n.planner.plan(chain.state, n.keys, n.memory):
                    if isinstance(action, RunJob):
                        n.memory.results[action.job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)
                    elif isinstance(action, PostCommit | PostReveal):
                        if isinstance(action, PostCommit):
                            n.memory.openings[(action.job_id, action.key.account)] = action.opening
                        n.memory.posted[(action.job_id, action.key.account, type(action).__name__[4:].lower())] = \
                            chain.state.height
                        w = Wallet(action.key.name, nonce=chain.state.nonce(action.key.account)
                                   + sum(t.sender == action.key.account for t in txs))
                        txs.append(w.sign(_payload(action)))
            chain.block(*txs)
        jb = chain.state.jobs[b]
        assert (jb.status == VERIFIED) is duty_ok, (lanes, jb.status, jb.verdict)
        if not duty_ok:
            assert jb.status in (ASSIGNED, "refunded") and account("w1") not in jb.commits


def test_bids_count_only_the_nodes_own_work_when_duties_have_a_lane():
    chain, a, _ = _two_jobs()
    c = submit(Wallet("alice", nonce=2))
    chain.block(c)
    memory = known()
    memory.results[a] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)  # its own job ran; the duty (b) has not
    # At 0.7 s a block the duty is due in 5.6 s and the new job's run in 8.4 s (it starts in 2.1 s); a run costs
    # 5 s. One shared slot: the duty, then the new run, ends at 10 s, too late. With a lane the duty is not in
    # the way: the new run ends at 7.1 s.
    kw = {"default_run_s": 5.0, "block_time_s": 0.7, "max_concurrent_jobs": 3}
    shared = fast(parallel_runs=1, **kw).decide(chain.state, [key("w1")], memory)
    laned = fast(parallel_runs=2, duty_slots=1, **kw).decide(chain.state, [key("w1")], memory)
    assert not any(isinstance(x, PostBid) for x in shared.actions)
    assert "commit deadline" in shared.declined[c.tx_id]
    assert [x.job_id for x in laned.actions if isinstance(x, PostBid)] == [c.tx_id] and laned.declined == {}
