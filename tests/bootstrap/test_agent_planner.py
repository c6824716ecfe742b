"""The worker agent's sans-IO planner against real ledger states (built with the ledger's test factories).

The last tests drive whole job lifecycles: several "nodes" (a planner and a memory each) plan against one chain,
a tiny in-test shell turns their actions into signed txs, and the factories' ``Chain`` applies every block — it
raises on any invalid tx, so these also show the planner never posts a tx the ledger would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bootstrap.agent import AgentMemory, LocalDevice, LocalKey, Planner, RunRecord, parse_faults
from bootstrap.agent.planner import (
    FetchSpec,
    PostBid,
    PostCommit,
    PostConfirm,
    PostOffer,
    PostReveal,
    RunJob,
    claim_record,
    confirm_turn,
    payload_for,
)
from compute.spec import MODELS, make_spec
from ledger.crypto import blake2b256
from ledger.state import ASSIGNED, CONFIRMING, DISPUTED, OPEN, REFUNDED, REVEALING, VERIFIED
from ledger.tx import SubmitJob, compute_commitment
from ledger.verdict import summaries_agree
from tests.ledger.factories import Chain, Wallet, account, make_state

CPU = LocalDevice("cpu", "test-cpu", 16_384, 100, frozenset(MODELS))
DATASET = blake2b256(b"dataset")
# A job on chain must say what its spec says (``submit`` copies the time limit; no minimum memory). A run may take
# 5 s: every commit window below is at least 5 one-second blocks.
SPEC = make_spec("linear_regression", {}, DATASET, memory_limit_mb=1024, min_memory_mb=0, time_limit_ms=5_000)
TRUE_SUMMARY = [1_000_000, -2_500_000, 42]
ARTIFACT = blake2b256(b"artifact")


def key(name: str) -> LocalKey:
    return LocalKey(name, account(name))


def submit(alice: Wallet, *, spec=SPEC, reward: int = 1_000, fee: int = 200, device: str = "any", **windows):
    tol = spec.tolerance
    return alice.sign(SubmitJob(spec.model, spec.digest, spec.dataset_digest, reward, fee, tol.abs, tol.ppm,
                                device, spec.requirements.min_memory_mb, windows.get("bid", 3),
                                windows.get("commit", 10), windows.get("reveal", 5),
                                time_limit_ms=spec.limits.time_limit_ms))


def open_job(workers=("w1", "w2", "w3"), params=None, **kw):
    state = make_state(workers=workers if isinstance(workers, dict) else list(workers), params=params)
    chain = Chain(state)
    alice = Wallet("alice")
    stx = submit(alice, **kw)
    chain.block(stx)
    return chain, stx.tx_id


def known(spec=SPEC) -> AgentMemory:
    memory = AgentMemory(secret=b"s" * 32)
    memory.specs[spec.digest] = spec
    return memory


# ---- bidding --------------------------------------------------------------------------------------------------
def test_unknown_spec_is_fetched_before_any_bid():
    chain, job_id = open_job()
    memory = AgentMemory()
    actions = Planner(CPU).plan(chain.state, [key("w1")], memory)
    assert actions == [FetchSpec(job_id, SPEC.digest)]
    memory.fetching.add(SPEC.digest)
    assert Planner(CPU).plan(chain.state, [key("w1")], memory) == []  # a fetch already in flight


def test_bids_from_every_registered_eligible_key_at_the_policy_price():
    chain, job_id = open_job()
    keys = [key("w1"), key("w2"), key("alice"), key("stranger")]  # alice is the client, stranger unregistered
    actions = Planner(CPU, bid_permille=750).plan(chain.state, keys, known())
    assert actions == [PostBid(job_id, key("w1"), 750), PostBid(job_id, key("w2"), 750)]


@pytest.mark.parametrize(("permille", "reward", "price"), [(800, 1000, 800), (1, 10, 1), (1000, 7, 7), (999, 1, 1)])
def test_price_is_a_share_of_the_reward_never_above_it_never_zero(permille, reward, price):
    assert Planner(CPU, bid_permille=permille).price_for(reward) == price


def test_no_bid_when_already_bid_recently_posted_refused_or_bidding_off():
    chain, job_id = open_job()
    planner, memory = Planner(CPU, retry_after_blocks=1), known()
    chain.block(Wallet("w1").bid(job_id, 500))
    memory.posted[(job_id, account("w2"), "bid")] = chain.state.height
    memory.refused[(job_id, account("w3"), "bid")] = "not eligible"
    keys = [key("w1"), key("w2"), key("w3")]
    assert planner.plan(chain.state, keys, memory) == []
    assert planner.plan(chain.state, keys, memory, bidding=False) == []
    chain.block()  # a block after posting, w2's bid is presumed lost and posted again
    assert planner.plan(chain.state, keys, memory) == [PostBid(job_id, key("w2"), 800)]
    assert planner.plan(chain.state, keys, memory, bidding=False) == []


def test_no_bid_on_jobs_this_device_cannot_run_or_that_do_not_match_their_spec():
    gpu_spec = make_spec("linear_regression", {}, DATASET, device="gpu", memory_limit_mb=1024, min_memory_mb=0,
                         time_limit_ms=5_000)
    chain, job_id = open_job(spec=gpu_spec, device="gpu", workers={"w1": {"device_kind": "gpu"}})
    assert Planner(CPU).plan(chain.state, [key("w1")], known(gpu_spec)) == []
    gpu = LocalDevice("gpu", "cuda", 80_000, 1, frozenset(MODELS))
    assert Planner(gpu).plan(chain.state, [key("w1")], known(gpu_spec)) == [PostBid(job_id, key("w1"), 800)]
    no_torch = LocalDevice("cpu", "c", 16_384, 1, frozenset(MODELS) - {"linear_regression"})
    chain, job_id = open_job()
    assert Planner(no_torch).plan(chain.state, [key("w1")], known()) == []
    # a spec that names another dataset than the job is not bid on
    other = make_spec("linear_regression", {}, blake2b256(b"other"), memory_limit_mb=1024)
    alice = Wallet("alice", nonce=1)
    bad = alice.sign(SubmitJob("linear_regression", other.digest, DATASET, 1000, 200, 2, 10, "any", 0, 3, 10, 5))
    chain.block(bad)
    actions = Planner(CPU).plan(chain.state, [key("w1")], known(other))
    assert all(a.job_id != bad.tx_id for a in actions)


def test_no_bid_after_the_window():
    chain, job_id = open_job(bid=2)
    chain.blocks(2)  # height 3 = bid deadline: a bid posted now lands at 3, too late
    assert chain.state.jobs[job_id].bid_deadline == chain.state.height
    assert Planner(CPU).plan(chain.state, [key("w1")], known()) == []


def open_jobs(n: int, workers=("w1", "w2", "w3"), commits=None, reward: int = 1_000):
    """``n`` jobs submitted in one block (so they share a bid window), commit windows from ``commits``."""
    chain = Chain(make_state(workers=list(workers)))
    alice = Wallet("alice")
    txs = [submit(alice, reward=reward, commit=(commits[i] if commits else 10)) for i in range(n)]
    chain.block(*txs)
    return chain, [t.tx_id for t in txs]


def fast(**kw) -> Planner:
    """A planner whose run budget is exactly ``default_run_s`` seconds at one second per block."""
    return Planner(CPU, **{"default_run_s": 1.0, "run_safety": 1.0, "run_overhead_s": 0.0, **kw})


def test_open_bids_do_not_hold_a_key_to_one_job():
    chain, jobs = open_jobs(3)
    actions = fast(max_concurrent_jobs=1).plan(chain.state, [key("w1")], known())
    assert sorted(a.job_id for a in actions) == sorted(jobs) and all(isinstance(a, PostBid) for a in actions)
    # bids already on the chain or just posted do not stop the key from bidding on the rest
    planner, memory = fast(max_concurrent_jobs=1), known()
    chain.block(Wallet("w1").bid(jobs[0], 800))
    memory.posted[(jobs[1], account("w1"), "bid")] = chain.state.height
    assert [a.job_id for a in planner.plan(chain.state, [key("w1")], memory)] == [jobs[2]]


def test_max_open_bids_bounds_a_keys_bids():
    chain, _ = open_jobs(5)
    actions = fast(max_open_bids=2).plan(chain.state, [key("w1"), key("w2")], known())
    per_key = {n: sum(a.key.name == n for a in actions) for n in ("w1", "w2")}
    assert per_key == {"w1": 2, "w2": 2}


def test_a_key_with_as_many_roles_to_commit_as_allowed_does_not_bid():
    chain, job_id, job = assigned()
    worker = next(key(n) for n in ("w1", "w2", "w3") if account(n) == job.worker)
    chain.block(submit(Wallet("alice", nonce=1)))
    memory = known()
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)
    actions = fast(max_concurrent_jobs=1).plan(chain.state, [worker], memory)
    assert [type(a) for a in actions] == [PostCommit]  # its duty, and no bid: one role still to commit
    actions = fast(max_concurrent_jobs=2).plan(chain.state, [worker], memory)
    assert [type(a) for a in actions] == [PostCommit, PostBid]


def test_bids_stop_where_the_runs_could_not_all_finish_before_their_commit_deadlines():
    chain, _ = open_jobs(4, commits=[10] * 4)  # each run must be done 9 blocks after the window closes
    keys = [key("w1")]
    # 4 s a run at 1 s a block: two runs fit in 9 s, a third would not
    bids = fast(default_run_s=4.0).plan(chain.state, keys, known())
    assert len(bids) == 2
    assert len(fast(default_run_s=4.0, block_time_s=0.5).plan(chain.state, keys, known())) == 1
    assert len(fast(default_run_s=4.0, parallel_runs=2).plan(chain.state, keys, known())) == 4
    assert fast(default_run_s=10.0, block_time_s=0.5).plan(chain.state, keys, known()) == []  # no run fits
    # a run is never budgeted above its job's time limit (the pool stops it there): 10 s estimated, 5 s budgeted
    assert len(fast(default_run_s=10.0).plan(chain.state, keys, known())) == 1
    # measured run times replace the default, with the safety factor on top
    memory = known()
    memory.note_run("linear_regression", 1.0)
    planner = Planner(CPU, default_run_s=4.0, run_safety=2.0, run_overhead_s=0.0)
    assert planner.run_estimate_s("linear_regression", memory) == 2.0
    assert len(planner.plan(chain.state, keys, memory)) == 4
    memory.note_run("linear_regression", 3.0)  # the recent worst counts
    assert len(planner.plan(chain.state, keys, memory)) == 1
    # duties not yet committed use up the same time: with those bids out, nothing more fits
    planner, memory = fast(default_run_s=4.0), known()
    for b in bids:
        memory.posted[(b.job_id, account("w1"), "bid")] = chain.state.height
    assert planner.plan(chain.state, keys, memory) == []


def test_short_of_time_a_node_bids_first_on_jobs_with_the_fewest_bids():
    chain, jobs = open_jobs(3, workers=("w1", "w2", "w3"))
    chain.block(Wallet("w2").bid(jobs[0], 800), Wallet("w3").bid(jobs[1], 800))
    actions = fast(default_run_s=8.0).plan(chain.state, [key("w1")], known())  # room for one run
    assert [a.job_id for a in actions] == [jobs[2]]


def test_runs_go_one_per_free_pool_slot_earliest_commit_deadline_first():
    chain, jobs = open_jobs(3, workers=("w1", "w2"), commits=[30, 10, 20])
    w1 = Wallet("w1")
    chain.block(*(w1.bid(j, 800) for j in jobs))
    chain.blocks(2)
    assert all(chain.state.jobs[j].status == ASSIGNED for j in jobs)
    by_deadline = sorted(jobs, key=lambda j: chain.state.jobs[j].deadline)
    assert by_deadline == [jobs[1], jobs[2], jobs[0]]
    keys, memory = [key("w1"), key("w2")], known()
    [run] = Planner(CPU).plan(chain.state, keys, memory)
    assert isinstance(run, RunJob) and run.job_id == jobs[1]
    runs = Planner(CPU, parallel_runs=2).plan(chain.state, keys, memory)
    assert [r.job_id for r in runs] == [jobs[1], jobs[2]]
    memory.running.add(jobs[1])
    assert Planner(CPU).plan(chain.state, keys, memory) == []  # the one slot is busy
    assert [r.job_id for r in Planner(CPU, parallel_runs=2).plan(chain.state, keys, memory)] == [jobs[2]]


# ---- duties ---------------------------------------------------------------------------------------------------
def assigned(workers=("w1", "w2", "w3")):
    chain, job_id = open_job(workers=workers)
    chain.block(Wallet(workers[0]).bid(job_id, 800))
    chain.blocks(2)
    job = chain.state.jobs[job_id]
    assert job.status == ASSIGNED
    return chain, job_id, job


def test_assigned_keys_run_once_then_commit_with_their_own_salts():
    chain, job_id, job = assigned()
    names = {job.worker: None, job.verifier: None}
    keys = [key(n) for n in ("w1", "w2", "w3") if account(n) in names]
    memory = known()
    actions = Planner(CPU).plan(chain.state, keys, memory)
    assert len(actions) == 1 and isinstance(actions[0], RunJob)
    assert sorted(r for _, r in actions[0].roles) == ["verifier", "worker"]
    memory.running.add(job_id)
    assert Planner(CPU).plan(chain.state, keys, memory) == []  # already running
    memory.running.clear()
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)
    commits = Planner(CPU).plan(chain.state, keys, memory)
    assert [type(a) for a in commits] == [PostCommit, PostCommit]
    for c in commits:
        assert c.opening is not None and list(c.opening.summary) == TRUE_SUMMARY
        assert c.commitment == compute_commitment(job_id, c.key.account, TRUE_SUMMARY, ARTIFACT, c.opening.salt)
    assert commits[0].opening.salt != commits[1].opening.salt


def test_run_failures_are_retried_a_bounded_number_of_times():
    chain, job_id, job = assigned()
    worker = next(key(n) for n in ("w1", "w2", "w3") if account(n) == job.worker)
    planner, memory = Planner(CPU, max_run_attempts=2), known()
    memory.run_failures[job_id] = (1, chain.state.height, "crashed")
    assert planner.plan(chain.state, [worker], memory) == []  # not again in the same block
    chain.block()
    assert isinstance(planner.plan(chain.state, [worker], memory)[0], RunJob)
    memory.run_failures[job_id] = (2, chain.state.height - 5, "crashed")
    assert planner.plan(chain.state, [worker], memory) == []


def test_reveal_only_once_both_committed_and_only_what_opens_the_commitment():
    chain, job_id, job = assigned()
    wk = next(key(n) for n in ("w1", "w2", "w3") if account(n) == job.worker)
    vname = next(n for n in ("w1", "w2", "w3") if account(n) == job.verifier)
    memory = known()
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)
    [commit] = Planner(CPU).plan(chain.state, [wk], memory)
    memory.openings[(job_id, wk.account)] = commit.opening
    chain.block(Wallet(wk.name, nonce=chain.state.nonce(wk.account)).sign(payload_for(commit)))
    assert Planner(CPU).plan(chain.state, [wk], memory) == []  # verifier has not committed: no reveal yet
    chain.block(Wallet(vname, nonce=chain.state.nonce(account(vname))).commit(job_id, TRUE_SUMMARY))
    assert Planner(CPU).plan(chain.state, [wk], memory) == []  # the check is drawn first: nothing to reveal yet
    chain.block()
    assert chain.state.jobs[job_id].status == REVEALING
    [reveal] = Planner(CPU).plan(chain.state, [wk], memory)
    assert isinstance(reveal, PostReveal) and reveal.opening == commit.opening
    memory.openings.clear()  # lost the opening: nothing to post rather than a tx the ledger must refuse
    assert Planner(CPU).plan(chain.state, [wk], memory) == []


# ---- faults ---------------------------------------------------------------------------------------------------
def test_random_results_commits_a_summary_outside_the_tolerance():
    chain, job_id, job = assigned()
    wk = next(key(n) for n in ("w1", "w2", "w3") if account(n) == job.worker)
    memory = known()
    memory.results[job_id] = RunRecord(TRUE_SUMMARY, ARTIFACT, b"r" * 32)
    [c] = Planner(CPU, faults=parse_faults("random-results")).plan(chain.state, [wk], memory)
    assert c.opening is not None
    assert not summaries_agree(list(c.opening.summary), TRUE_SUMMARY, job.tolerance_abs, job.tolerance_ppm)
    # a fault restricted to another key leaves this one honest
    [h] = Planner(CPU, faults=parse_faults(f"random-results@not-{wk.name}")).plan(chain.state, [wk], memory)
    assert list(h.opening.summary) == TRUE_SUMMARY


def test_copy_commit_waits_for_the_other_commitment_and_copies_it():
    chain, job_id, job = assigned()
    wk = next(key(n) for n in ("w1", "w2", "w3") if account(n) == job.worker)
    vname = next(n for n in ("w1", "w2", "w3") if account(n) == job.verifier)
    planner, memory = Planner(CPU, faults=parse_faults("copy-commit")), known()
    assert planner.plan(chain.state, [wk], memory) == []  # no run, nothing to copy yet
    chain.block(Wallet(vname, nonce=chain.state.nonce(account(vname))).commit(job_id, TRUE_SUMMARY))
    [c] = planner.plan(chain.state, [wk], memory)
    assert c.commitment == chain.state.jobs[job_id].commits[account(vname)] and c.opening is None
    assert c.fingerprint == chain.state.jobs[job_id].fingerprints[account(vname)]


# ---- whole lifecycles over the ledger -------------------------------------------------------------------------
@dataclass
class SimNode:
    """One node's agent in the simulation: its planner, memory and keys, what it would compute, and its compute
    pool (one run at a time, each taking ``run_blocks`` blocks; 0 means a run is done at once)."""

    planner: Planner
    keys: list[LocalKey]
    memory: AgentMemory = field(default_factory=lambda: AgentMemory())
    summary: list[int] = field(default_factory=lambda: list(TRUE_SUMMARY))
    posted: list[str] = field(default_factory=list)
    run_blocks: int = 0
    in_flight: dict[bytes, int] = field(default_factory=dict)  # job -> height its run is done at
    ran: list[bytes] = field(default_factory=list)  # jobs in the order their runs started
    fetch_fails: bool = False  # no peer serves this node the spec or the data
    claim: tuple[int, list[int]] | None = None  # what its runs end in instead of a result (an error, over limit)

    def finish_runs(self, height: int) -> None:
        for job_id, done_at in list(self.in_flight.items()):
            if height >= done_at:
                del self.in_flight[job_id]
                self.memory.running.discard(job_id)
                self.memory.results[job_id] = RunRecord(list(self.summary), ARTIFACT, b"r" * 32)

    def start_run(self, job_id: bytes, height: int) -> None:
        self.ran.append(job_id)
        if self.fetch_fails:
            self.memory.unavailable[job_id] = (height, "no peer serves it")
            return
        if self.claim is not None:
            self.memory.results[job_id] = claim_record(*self.claim)
            return
        if self.run_blocks == 0:
            self.memory.results[job_id] = RunRecord(list(self.summary), ARTIFACT, b"r" * 32)
            return
        self.memory.running.add(job_id)
        self.in_flight[job_id] = max([height, *self.in_flight.values()]) + self.run_blocks


def simulate(chain: Chain, nodes: list[SimNode], job_id: bytes, max_blocks: int = 60) -> None:
    """Plan, execute (fetch and run succeed at once), post the txs in the next block, until the job ends."""
    simulate_jobs(chain, nodes, [job_id], max_blocks)


def simulate_jobs(chain: Chain, nodes: list[SimNode], job_ids: list[bytes], max_blocks: int = 60,
                  offering: bool | None = None, extra_txs: list | None = None, rescan: bool = False,
                  until=None, confirming: bool = True) -> None:
    """Like ``simulate``, until every one of ``job_ids`` has ended, or ``until()`` holds (``extra_txs`` go into
    the first block). ``rescan``: a node plans again in the same block after a run finished at once, as the
    shell's wake-up after a run does (so a commit need not wait for the next block). ``confirming`` False: the
    nodes post no confirmation (every artifact is taken to check out otherwise)."""
    wallets = {k.name: Wallet(k.name) for n in nodes for k in n.keys}

    def execute(node: SimNode, actions: list, txs: list) -> bool:
        """Carry out one plan; whether it started a run."""
        ran = False
        for action in actions:
            if isinstance(action, FetchSpec):
                if node.fetch_fails:
                    node.memory.spec_problems[action.digest] = (chain.state.height, "spec unavailable: no peer")
                else:
                    node.memory.specs[action.digest] = SPEC
            elif isinstance(action, RunJob):
                node.start_run(action.job_id, chain.state.height)
                ran = True
            elif isinstance(action, PostConfirm) and not confirming:
                continue
            else:
                kind = type(action).__name__
                if isinstance(action, PostOffer):
                    node.memory.offers_posted[action.key.account] = (chain.state.height, action.until)
                else:
                    node.memory.posted[(action.job_id, action.key.account, kind[4:].lower())] = chain.state.height
                if isinstance(action, PostCommit) and action.opening is not None:
                    node.memory.openings[(action.job_id, action.key.account)] = action.opening
                w = wallets[action.key.name]
                w.next_nonce = chain.state.nonce(w.account) + sum(t.sender == w.account for t in txs)
                txs.append(w.sign(payload_for(action)))
                node.posted.append(f"{kind}:{action.key.name}")
        return ran

    for _ in range(max_blocks):
        txs = list(extra_txs or [])
        extra_txs = None
        for node in nodes:
            node.finish_runs(chain.state.height)
            ran = execute(node, node.planner.plan(chain.state, node.keys, node.memory, offering=offering), txs)
            if ran and rescan and node.run_blocks == 0:
                execute(node, node.planner.plan(chain.state, node.keys, node.memory), txs)
        chain.block(*txs)
        if until is not None and until():
            return
        if all(chain.state.jobs[j].is_terminal for j in job_ids):
            return
    pending = [chain.state.jobs[j].status for j in job_ids if not chain.state.jobs[j].is_terminal]
    raise AssertionError(f"jobs still {pending} after {max_blocks} blocks")


def three_nodes(faulty: str | None = None, cheat_price: int = 500) -> list[SimNode]:
    """w1 (faulty if asked, and bidding lower so it wins the job), w2 and w3 honest."""
    cheater = Planner(CPU, bid_permille=cheat_price, faults=parse_faults(faulty))
    return [SimNode(cheater, [key("w1")]), SimNode(Planner(CPU), [key("w2")]), SimNode(Planner(CPU), [key("w3")])]


def test_honest_nodes_take_a_job_to_verified_and_are_paid():
    chain, job_id = open_job()
    before = {n: chain.state.balance(account(n)) for n in ("w1", "w2", "w3", "alice")}
    simulate(chain, nodes := three_nodes(), job_id)
    job = chain.state.jobs[job_id]
    assert job.status == VERIFIED and job.worker == account("w1") and job.price == 500
    assert job.result_summary == TRUE_SUMMARY
    fees = {node.keys[0].name: len(node.posted) for node in nodes}  # one token per tx
    assert chain.state.balance(account("w1")) == before["w1"] + 500 - fees["w1"]
    assert chain.state.balance(account(_name(job.verifier))) == (
        before[_name(job.verifier)] + 200 - fees[_name(job.verifier)])
    assert chain.state.balance(account("alice")) == before["alice"] + 1_000 - 500  # reward minus price back
    assert chain.state.workers[account("w1")].reputation > 500


def test_with_confirmation_the_verifier_confirms_the_workers_artifact_and_only_then_is_anyone_paid():
    chain, job_id = open_job(params={"confirm_window": 4})
    nodes = three_nodes()
    simulate(chain, nodes, job_id)
    job = chain.state.jobs[job_id]
    assert [s for s, _ in job.history][-2:] == [CONFIRMING, VERIFIED] and job.result_artifact == ARTIFACT
    confirms = [p for n in nodes for p in n.posted if p.startswith("PostConfirm")]
    assert confirms == [f"PostConfirm:{_name(job.verifier)}"]  # one confirmation, by the one who may give it


def test_a_confirmer_checks_once_at_a_time_never_again_after_a_mismatch_and_the_author_never():
    chain, job_id = open_job(params={"confirm_window": 4})
    nodes = three_nodes()
    chain_job = chain.state.jobs[job_id]
    simulate_jobs(chain, nodes, [job_id], until=lambda: chain_job.status == CONFIRMING, confirming=False)
    assert chain_job.status == CONFIRMING
    by_account = {n.keys[0].account: n for n in nodes}
    author, confirmer = by_account[chain_job.worker], by_account[chain_job.verifier]
    assert not [a for a in author.planner.plan(chain.state, author.keys, author.memory) if isinstance(a, PostConfirm)]
    plan = confirmer.planner.plan(chain.state, confirmer.keys, confirmer.memory)
    assert [a for a in plan if isinstance(a, PostConfirm)] == [PostConfirm(job_id, confirmer.keys[0], ARTIFACT)]
    confirmer.memory.checking.add(job_id)  # a check in flight: not started twice
    assert not [a for a in confirmer.planner.plan(chain.state, confirmer.keys, confirmer.memory)
                if isinstance(a, PostConfirm)]
    confirmer.memory.checking.discard(job_id)
    confirmer.memory.confirm_failures[job_id] = (chain.state.height, "no peer serves it")
    assert not [a for a in confirmer.planner.plan(chain.state, confirmer.keys, confirmer.memory)
                if isinstance(a, PostConfirm)]  # a failed fetch is tried again from the next block on
    chain.block()
    assert [a for a in confirmer.planner.plan(chain.state, confirmer.keys, confirmer.memory)
            if isinstance(a, PostConfirm)]
    confirmer.memory.refused[(job_id, confirmer.keys[0].account, "confirm")] = "the artifact's summary differs"
    assert not [a for a in confirmer.planner.plan(chain.state, confirmer.keys, confirmer.memory)
                if isinstance(a, PostConfirm)]


def test_confirmers_take_turns_so_one_confirmation_usually_settles_and_a_withholder_leaves_half_the_window():
    """Several confirmers (a panel) would each post, and every confirmation after the first fails in its block
    and pays its fee: the i-th waits 2·i blocks after the stage opened, at most half the window."""
    chain, job_id = open_job(params={"confirm_window": 8})
    nodes = three_nodes()
    job = chain.state.jobs[job_id]
    simulate_jobs(chain, nodes, [job_id], until=lambda: job.status == CONFIRMING, confirming=False)
    assert job.status == CONFIRMING
    opened = job.history[-1][1]
    confirmer = next(n for n in nodes if n.keys[0].account == job.verifier)

    def posts() -> bool:
        return any(isinstance(a, PostConfirm) for a in confirmer.planner.plan(chain.state, confirmer.keys,
                                                                              confirmer.memory))

    assert confirm_turn(job, confirmer.keys) == opened and posts()  # the first confirmer: at once
    job.confirmers = [account("someone"), job.verifier]  # second in line
    assert confirm_turn(job, confirmer.keys) == opened + 2
    assert chain.state.height < opened + 2 and not posts()
    while chain.state.height < opened + 2:
        chain.block()
    assert posts()
    job.confirmers = [account("a"), account("b"), account("c"), job.verifier]  # fourth: capped at half the window
    assert confirm_turn(job, confirmer.keys) == opened + 4 == job.deadline - 4


def _name(acct: bytes) -> str:
    return next(n for n in ("w1", "w2", "w3") if account(n) == acct)


def test_a_random_results_worker_is_caught_by_a_referee_slashed_and_loses_reputation():
    chain, job_id = open_job()
    stake = chain.state.workers[account("w1")].stake
    simulate(chain, three_nodes("random-results"), job_id)
    job = chain.state.jobs[job_id]
    # the claims' fingerprints differed, so the referee was drawn and committed before anything was revealed
    assert [s for s, _ in job.history] == [OPEN, ASSIGNED, DISPUTED, REVEALING, VERIFIED]
    assert job.verdict == "worker_faulty" and job.result_summary == TRUE_SUMMARY
    cheat = chain.state.workers[account("w1")]
    assert cheat.stake < stake and cheat.reputation < 500 and cheat.jobs_failed == 1
    for honest in (job.verifier, job.referee):
        assert chain.state.workers[honest].reputation > 500


@pytest.mark.parametrize("mode", ["no-reveal", "copy-commit"])
def test_a_worker_that_withholds_or_copies_is_stall_slashed_and_the_client_refunded(mode):
    chain, job_id = open_job()
    alice_before = chain.state.balance(account("alice"))
    stake = chain.state.workers[account("w1")].stake
    nodes = three_nodes(mode)
    simulate(chain, nodes, job_id)
    job = chain.state.jobs[job_id]
    assert job.status == REFUNDED and job.verdict == "reveal_timeout"
    assert chain.state.workers[account("w1")].stake < stake
    assert chain.state.workers[account("w1")].reputation < 500
    assert chain.state.balance(account("alice")) == alice_before + 1_200  # escrow back in full
    assert not any(p.startswith("PostReveal:w1") for p in nodes[0].posted)
    if mode == "copy-commit":
        assert not any(p.startswith("RunJob") for p in nodes[0].posted)


def test_one_node_with_two_local_keys_runs_once_and_both_keys_are_paid():
    chain, job_id = open_job(workers=("w1", "w2"))
    node = SimNode(Planner(CPU), [key("w1"), key("w2")])
    simulate(chain, [node], job_id)
    job = chain.state.jobs[job_id]
    assert job.status == VERIFIED
    assert {job.worker, job.verifier} == {account("w1"), account("w2")}
    assert sum(p == "PostBid:w1" or p == "PostBid:w2" for p in node.posted) == 2


def test_a_dispute_without_a_referee_fails_the_job_and_refunds():
    chain, job_id = open_job(workers=("w1", "w2"))
    nodes = [SimNode(Planner(CPU, bid_permille=500, faults=parse_faults("random-results")), [key("w1")]),
             SimNode(Planner(CPU), [key("w2")])]
    simulate(chain, nodes, job_id)
    assert chain.state.jobs[job_id].status == "failed"
    assert chain.state.jobs[job_id].verdict == "disputed_no_referee"
    assert DISPUTED not in [s for s, _ in chain.state.jobs[job_id].history]


@pytest.mark.parametrize(("run_blocks", "commits"),
                         [(0, [10] * 5), (1, [14, 10, 12, 11, 13]), (2, [14, 10, 12, 11, 13])])
def test_five_jobs_submitted_at_once_to_two_workers_all_reach_verified(run_blocks, commits):
    chain, jobs = open_jobs(5, workers=("w1", "w2"), commits=commits)
    before = {n: chain.state.workers[account(n)].stake for n in ("w1", "w2")}
    # each planner budgets a run at what the simulated pool takes (run_blocks blocks of one second)
    nodes = [SimNode(fast(default_run_s=float(run_blocks)), [key(n)], run_blocks=run_blocks) for n in ("w1", "w2")]
    simulate_jobs(chain, nodes, jobs)
    state = chain.state
    assert [state.jobs[j].status for j in jobs] == [VERIFIED] * 5
    assert all(state.jobs[j].result_summary == TRUE_SUMMARY for j in jobs)
    for n in ("w1", "w2"):  # nobody stalled: every commit landed before its deadline
        w = state.workers[account(n)]
        assert w.stake == before[n] and w.jobs_failed == 0 and w.jobs_done == 5 and w.active_jobs == 0
    for node in nodes:  # each node ran every job once, earliest commit deadline first
        assert sorted(node.ran) == sorted(jobs)
        assert node.ran == sorted(jobs, key=lambda j: (state.jobs[j].history[1][1] + commits[jobs.index(j)], j))


def test_a_node_that_cannot_fit_another_run_leaves_that_job_unbid_rather_than_stalling():
    # three 2-block runs fit a 7-block commit window (6 blocks of it usable), a fourth does not
    chain, jobs = open_jobs(4, workers=("w1", "w2"), commits=[7] * 4)
    nodes = [SimNode(fast(default_run_s=2.0), [key(n)], run_blocks=2) for n in ("w1", "w2")]
    for node in nodes:
        node.memory.secret = b"same order" * 4  # both prefer the same jobs, so both leave out the same one
    simulate_jobs(chain, nodes, jobs)
    statuses = sorted(chain.state.jobs[j].status for j in jobs)
    assert statuses == [REFUNDED] + [VERIFIED] * 3
    [left] = [chain.state.jobs[j] for j in jobs if chain.state.jobs[j].status == REFUNDED]
    assert left.verdict == "no_eligible_bid" and left.bids == {}
    for n in ("w1", "w2"):
        assert chain.state.workers[account(n)].jobs_failed == 0


# ---- standing offers (issue 8) --------------------------------------------------------------------------------
def offers_of(actions) -> list[tuple[str, int, int]]:
    return [(a.key.name, a.price, a.until) for a in actions if isinstance(a, PostOffer)]


def test_each_eligible_key_keeps_an_offer_standing_and_renews_it_when_half_has_run_out():
    state = make_state(workers=["w1", "w2"])
    chain = Chain(state)
    chain.blocks(2)
    keys = [key("w1"), key("w2"), key("stranger")]  # stranger is not registered: no offer
    planner, memory = Planner(CPU, offer_price=15, offer_blocks=10), AgentMemory()
    assert planner.plan(state, keys, memory) == []  # offering=None leaves offers alone
    h = state.height
    assert offers_of(planner.plan(state, keys, memory, offering=True)) == [("w1", 15, h + 10), ("w2", 15, h + 10)]
    chain.block(Wallet("w1").offer(15, h + 10), Wallet("w2").offer(15, h + 10))
    assert offers_of(planner.plan(state, keys, memory, offering=True)) == []  # standing: nothing to post
    chain.blocks(5)  # 10 - 6 = 4 blocks left, fewer than half: renew
    assert offers_of(planner.plan(state, keys, memory, offering=True)) == [
        ("w1", 15, state.height + 10), ("w2", 15, state.height + 10)]


def test_a_renewal_in_flight_is_not_posted_twice_and_the_span_is_capped_by_max_window():
    state = make_state(workers=["w1"], params={"max_window": 6, "default_commit_window": 5})
    planner, memory = Planner(CPU, offer_blocks=20), AgentMemory()
    [offer] = planner.plan(state, [key("w1")], memory, offering=True)
    assert offer.until == state.height + 6  # max_window, not offer_blocks
    memory.offers_posted[account("w1")] = (state.height, offer.until)
    assert planner.plan(state, [key("w1")], memory, offering=True) == []


def test_offers_are_withdrawn_when_stopped_and_never_made_by_a_node_that_cannot_compute():
    state = make_state(workers=["w1", "w2"])
    chain = Chain(state)
    chain.block(Wallet("w1").offer(20, 30))
    planner, memory = Planner(CPU), AgentMemory()
    assert offers_of(planner.plan(state, [key("w1"), key("w2")], memory, offering=False)) == [("w1", 0, 0)]
    memory.offers_posted[account("w1")] = (state.height, 0)
    assert planner.plan(state, [key("w1"), key("w2")], memory, offering=False) == []  # withdrawal in flight
    chain.block(Wallet("w1", nonce=1).offer(0, 0))
    assert planner.plan(state, [key("w1"), key("w2")], AgentMemory(), offering=False) == []
    assert Planner(CPU, can_compute=False).plan(state, [key("w1")], AgentMemory(), offering=True) == []


def test_an_ineligible_key_makes_no_offer():
    state = make_state(workers={"w1": {"stake": 1_000}}, params={"min_stake": 1_000})
    state.w_worker(account("w1")).stake = 999
    assert Planner(CPU).plan(state, [key("w1")], AgentMemory(), offering=True) == []


def test_a_job_assigned_at_submission_is_run_at_once_and_verified_three_blocks_later():
    state = make_state(workers=["w1", "w2", "w3"])
    chain = Chain(state)
    nodes = [SimNode(Planner(CPU), [key(n)], memory=known()) for n in ("w1", "w2", "w3")]
    # one block of offers from every node's agent
    simulate_jobs(chain, nodes, [], max_blocks=1, offering=True)
    assert all(state.workers[account(n)].offer_live_at(state.height + 1) for n in ("w1", "w2", "w3"))
    tol = SPEC.tolerance
    stx = Wallet("alice").sign(SubmitJob(SPEC.model, SPEC.digest, SPEC.dataset_digest, 1_000, 200, tol.abs,
                                         tol.ppm, "any", 0, 3, 10, 5, "offers", SPEC.limits.time_limit_ms))
    submitted_at = chain.height + 1
    simulate_jobs(chain, nodes, [stx.tx_id], offering=True, extra_txs=[stx], rescan=True)
    job = state.jobs[stx.tx_id]
    assert job.status == VERIFIED and job.price == 20  # the agent's default offer price
    # committed at +1; +2 drew the check from +1's hash (none: audits are off in test genesis); revealed at +3
    assert job.history == [(ASSIGNED, submitted_at), (REVEALING, submitted_at + 2), (VERIFIED, submitted_at + 3)]
    for node in nodes:
        if node.keys[0].account in (job.worker, job.verifier):
            assert node.ran == [stx.tx_id]
            assert not any(p.startswith("PostBid") for p in node.posted)
