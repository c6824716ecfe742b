"""The job lifecycle end to end: escrow, bids, assignment, commit/reveal, verdicts, disputes and deadlines."""

import pytest

from ledger.context import BlockContext
from ledger.errors import (
    BadCommitment,
    DeadlinePassed,
    DuplicateAction,
    InsufficientFunds,
    InvalidField,
    NotClient,
    NotEligible,
    NotParticipant,
    TooManyBids,
    UnknownJob,
    UnknownWorker,
    WrongJobState,
)
from ledger.jobs import max_job_lifetime
from ledger.rules import apply_tx
from ledger.state import state_root, state_root_uncached, total_supply, total_supply_uncached
from tests.ledger.factories import Chain, Wallet, account, assert_rejected, make_state

NAMES = ["w1", "w2", "w3", "w4"]


class Net:
    """A chain with workers w1..w4 (w4 a GPU), a client alice, and helpers to walk a job through its life."""

    def __init__(self, workers=None, params=None) -> None:
        workers = workers or {"w1": {}, "w2": {}, "w3": {}, "w4": {"device_kind": "gpu", "memory_mb": 80_000}}
        self.state = make_state(balances={"alice": 100_000, "bob": 100_000}, workers=workers, params=params)
        self.chain = Chain(self.state)
        self.alice = Wallet("alice")
        self.w = {n: Wallet(n) for n in workers}
        self.by_account = {w.account: w for w in self.w.values()}
        self.supply = total_supply(self.state)

    def submit(self, **kw) -> bytes:
        kw.setdefault("bid_window", 1)
        stx = self.alice.submit_job(**kw)
        self.chain.block(stx)
        return stx.tx_id

    def job(self, job_id):
        return self.state.jobs[job_id]

    def role(self, job_id, role) -> Wallet:
        return self.by_account[getattr(self.job(job_id), role)]

    def assigned(self, bids=None, **kw) -> bytes:
        """Submit, bid (name → price) in the next block, which also closes the 1-block bid window."""
        job_id = self.submit(**kw)
        bids = {"w1": 400} if bids is None else bids
        self.chain.block(*(self.w[n].bid(job_id, p) for n, p in bids.items()))
        return job_id

    def commit_both(self, job_id, worker_summary, verifier_summary) -> None:
        """Both commit in one block; the next block draws the check (a referee when the claims differ)."""
        self.chain.block(self.role(job_id, "worker").commit(job_id, worker_summary),
                         self.role(job_id, "verifier").commit(job_id, verifier_summary))
        self.chain.block()

    def reveal_txs(self, job_id, worker_summary, verifier_summary) -> list:
        return [self.role(job_id, "worker").reveal(job_id, worker_summary),
                self.role(job_id, "verifier").reveal(job_id, verifier_summary)]

    def reveal_both(self, job_id, worker_summary, verifier_summary) -> list:
        return self.chain.block(*self.reveal_txs(job_id, worker_summary, verifier_summary))

    def check_invariants(self) -> None:
        assert total_supply(self.state) == self.supply == total_supply_uncached(self.state)
        assert state_root(self.state) == state_root_uncached(self.state)
        for w in self.state.workers.values():
            assert 0 <= w.reputation <= 1000 and w.stake >= 0
        busy = {}
        for j in self.state.jobs.values():
            if not j.is_terminal:
                for a in j.participants():
                    busy[a] = busy.get(a, 0) + 1
        for a, w in self.state.workers.items():
            assert w.active_jobs == busy.get(a, 0)


@pytest.fixture
def net() -> Net:
    return Net()


# ---- submit ---------------------------------------------------------------------------------------------------
def test_submit_escrows_reward_and_fee(net: Net) -> None:
    job_id = net.submit(reward=1_000, verification_fee=200, bid_window=3)
    job = net.job(job_id)
    assert job.status == "open" and job.escrow == 1_200 and job.client == account("alice")
    assert job.bid_deadline == 4 and job.commit_window == 10 and job.reveal_window == 5  # defaults
    assert net.state.balance(account("alice")) == 100_000 - 1_200 - 1
    assert job.history == [("open", 1)]
    net.check_invariants()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"model": ""}, "submit_job.model"),
        ({"device": "tpu"}, "submit_job.device"),
        ({"reward": 0}, "submit_job.reward"),
        ({"tolerance_ppm": 1_000_001}, "submit_job.tolerance_ppm"),
        ({"bid_window": 1_001}, "submit_job.bid_window"),
        ({"commit_window": 5_000}, "submit_job.commit_window"),
        ({"reveal_window": 5_000}, "submit_job.reveal_window"),
    ],
)
def test_submit_invalid_fields(net: Net, kw, field) -> None:
    assert_rejected(net.state, net.alice.submit_job(**kw), net.chain.ctx(), InvalidField, field=field)


def test_submit_needs_funds_for_escrow(net: Net) -> None:
    assert_rejected(net.state, net.alice.submit_job(reward=99_900, verification_fee=100), net.chain.ctx(),
                    InsufficientFunds, needed=100_001)


# ---- bids and assignment --------------------------------------------------------------------------------------
def test_bid_invalid_cases(net: Net) -> None:
    job_id = net.submit(device="gpu", min_memory_mb=40_000, bid_window=5)
    c = net.chain.ctx()
    s = net.state
    assert_rejected(s, net.w["w4"].bid(b"\x00" * 32, 1), c, UnknownJob)
    assert_rejected(s, Wallet("bob").bid(job_id, 1), c, UnknownWorker)
    assert_rejected(s, net.w["w1"].bid(job_id, 1), c, NotEligible, reason="job needs a gpu")
    assert_rejected(s, net.w["w4"].bid(job_id, 2_000, nonce=0), c, InvalidField, field="bid.price")
    apply_tx(s, net.w["w4"].bid(job_id, 500), c)
    assert_rejected(s, net.w["w4"].bid(job_id, 400), c, DuplicateAction, action="bid")
    late = BlockContext(7, 0, b"s", c.proposer)
    assert_rejected(s, net.w["w4"].bid(job_id, 400), late, DeadlinePassed, deadline=6, height=7)


def test_memory_requirement_and_client_cannot_work_its_own_job() -> None:
    net = Net(workers={"alice": {}, "w1": {"memory_mb": 1_000}, "w2": {}, "w3": {}})
    job_id = net.submit(min_memory_mb=2_000, bid_window=3)
    c = net.chain.ctx()
    assert_rejected(net.state, net.w["w1"].bid(job_id, 1), c, NotEligible, reason="not enough memory")
    assert_rejected(net.state, Wallet("alice", nonce=1).bid(job_id, 1), c, NotEligible,
                    reason="is the job's client")


def test_too_many_bids() -> None:
    net = Net(params={"max_bids_per_job": 2})
    job_id = net.submit(bid_window=3)
    net.chain.block(net.w["w1"].bid(job_id, 1), net.w["w2"].bid(job_id, 1))
    assert_rejected(net.state, net.w["w3"].bid(job_id, 1), net.chain.ctx(), TooManyBids, max_bids=2)


def test_assignment_draws_in_the_price_band_weighted_by_reputation(net: Net) -> None:
    net.state.workers[account("w3")].reputation = 1000
    net.state.workers[account("w1")].reputation = 0
    net.state._dirty.update({("worker", account("w1")), ("worker", account("w3"))})
    # Band: within 10% of the lowest price 480, so w1 (500) and w3 (480) draw; w2 (900) never wins.
    job_id = net.assigned(bids={"w1": 500, "w2": 900, "w3": 480})
    job = net.job(job_id)
    assert (job.worker, job.price) in ((account("w1"), 500), (account("w3"), 480)) and job.status == "assigned"
    assert job.verifier not in (None, job.worker, job.client)
    assert job.deadline == 2 + 10
    assert net.state.workers[job.worker].active_jobs == net.state.workers[job.verifier].active_jobs == 1
    net.check_invariants()
    # Weights 1 + reputation: w3 (1001) against w1 (1) wins nearly every draw.
    wins = sum(net.job(net.assigned(bids={"w1": 500, "w3": 480})).worker == account("w3") for _ in range(20))
    assert wins >= 18


def test_equal_bids_are_shared_by_a_seeded_draw_not_the_lowest_id(net: Net) -> None:
    winners = set()
    for _ in range(12):
        job_id = net.assigned(bids={"w1": 300, "w2": 300, "w3": 300})
        winners.add(net.job(job_id).worker)
    assert winners == {account("w1"), account("w2"), account("w3")}
    net.check_invariants()


def test_a_bid_outside_the_price_band_never_wins(net: Net) -> None:
    # Band 10% of the best effective price: 300 is within 10% of 280, 400 is not.
    for _ in range(10):
        job_id = net.assigned(bids={"w1": 280, "w2": 300, "w3": 400})
        assert net.job(job_id).worker in (account("w1"), account("w2"))


def test_verifier_draw_depends_only_on_seed_and_job() -> None:
    draws = set()
    for _ in range(2):
        net = Net()
        job_id = net.assigned()
        draws.add((job_id, net.job(job_id).verifier))
    assert len(draws) == 1


def test_no_bids_or_no_verifier_refunds(net: Net) -> None:
    job_id = net.assigned(bids={})
    job = net.job(job_id)
    assert (job.status, job.verdict, job.escrow) == ("refunded", "no_eligible_bid", 0)
    assert net.state.balance(account("alice")) == 100_000 - 1  # the fee; the escrow came back
    gpu_job = net.assigned(bids={"w4": 100}, device="gpu")  # w4 is the only GPU: no verifier
    assert (net.job(gpu_job).status, net.job(gpu_job).verdict) == ("refunded", "no_verifier")
    assert not net.state.active_jobs
    net.check_invariants()


def test_cancel_only_by_client_while_open(net: Net) -> None:
    job_id = net.submit(bid_window=5)
    assert_rejected(net.state, Wallet("bob").cancel(job_id), net.chain.ctx(), NotClient)
    net.chain.block(net.alice.cancel(job_id))
    assert net.job(job_id).status == "refunded" and net.job(job_id).verdict == "cancelled"
    assert_rejected(net.state, net.alice.cancel(job_id), net.chain.ctx(), WrongJobState, status="refunded")
    net.check_invariants()


# ---- commit, reveal, verdict ----------------------------------------------------------------------------------
def test_agreement_pays_worker_and_verifier_and_refunds_the_rest(net: Net) -> None:
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200, tolerance_abs=2)
    worker, verifier = net.role(job_id, "worker"), net.role(job_id, "verifier")
    before = {a: net.state.balance(a) for a in (account("alice"), worker.account, verifier.account)}
    net.commit_both(job_id, [10, 20, 30], [10, 20, 30])
    # committed at height 3; height 4 drew no check (the same claim, audits off), so reveals are due by 4 + 5
    assert net.job(job_id).status == "revealing" and net.job(job_id).deadline == 4 + 5
    events = net.reveal_both(job_id, [10, 20, 30], [10, 20, 30])
    job = net.job(job_id)
    assert (job.status, job.verdict, job.escrow) == ("verified", "agreed", 0)
    assert job.result_summary == [10, 20, 30]
    assert net.state.balance(worker.account) == before[worker.account] - 2 + 400
    assert net.state.balance(verifier.account) == before[verifier.account] - 2 + 200
    assert net.state.balance(account("alice")) == before[account("alice")] + 600
    assert [s for s, _ in job.history] == ["open", "assigned", "revealing", "verified"]
    for w in (worker, verifier):
        rec = net.state.workers[w.account]
        assert (rec.reputation, rec.jobs_done, rec.active_jobs) == (510, 1, 0)
    assert "job_verified" in [e.kind for e in events]
    net.check_invariants()


def test_commit_and_reveal_invalid_cases(net: Net) -> None:
    job_id = net.assigned()
    worker, verifier = net.role(job_id, "worker"), net.role(job_id, "verifier")
    outsider = next(w for w in net.w.values() if w.account not in (worker.account, verifier.account))
    s, c = net.state, net.chain.ctx()
    assert_rejected(s, outsider.commit(job_id, [1]), c, NotParticipant, role="worker or verifier")
    assert_rejected(s, worker.reveal(job_id, [1]), c, WrongJobState, status="assigned")
    apply_tx(s, worker.commit(job_id, [1]), c)
    assert_rejected(s, worker.commit(job_id, [1]), c, DuplicateAction, action="commit")
    apply_tx(s, verifier.commit(job_id, [1]), c)
    assert_rejected(s, worker.reveal(job_id, [1]), c, WrongJobState, status="assigned")  # the check is drawn first
    net.chain.block()
    net.chain.block()
    c = net.chain.ctx()
    assert net.job(job_id).status == "revealing"
    assert_rejected(s, worker.reveal(job_id, [2]), c, BadCommitment, account=worker.account)
    assert_rejected(s, outsider.reveal(job_id, [1]), c, NotParticipant)
    apply_tx(s, worker.reveal(job_id, [1]), c)
    assert_rejected(s, worker.reveal(job_id, [1]), c, DuplicateAction, action="reveal")
    net.check_invariants()


def test_copied_commitment_cannot_be_opened_by_the_copier(net: Net) -> None:
    """A verifier that posts the worker's commitment and replays the worker's opening is refused and stalls."""
    from ledger.tx import CommitResult, RevealResult

    job_id = net.assigned()
    worker, verifier = net.role(job_id, "worker"), net.role(job_id, "verifier")
    c = net.chain.ctx()
    honest = worker.commit(job_id, [7])
    apply_tx(net.state, honest, c)
    copied = CommitResult(job_id, honest.payload.commitment, honest.payload.fingerprint)
    apply_tx(net.state, verifier.sign(copied), c)
    net.chain.block()
    net.chain.block()
    c = net.chain.ctx()
    reveal = worker.reveal(job_id, [7])
    apply_tx(net.state, reveal, c)
    p = reveal.payload
    replay = verifier.sign(RevealResult(job_id, list(p.summary), p.artifact_digest, p.salt))
    assert_rejected(net.state, replay, c, BadCommitment, account=verifier.account)
    net.check_invariants()


def test_summary_longer_than_the_chain_allows() -> None:
    net = Net(params={"max_summary_len": 2})
    job_id = net.assigned()
    net.commit_both(job_id, [1, 2, 3], [1, 2, 3])
    assert_rejected(net.state, net.role(job_id, "worker").reveal(job_id, [1, 2, 3]), net.chain.ctx(),
                    InvalidField, field="reveal_result.summary")


def _dispute(net: Net, referee_summary: list[int]) -> bytes:
    """Worker and verifier commit different claims; the next block draws a referee, who commits blind (it saw only
    fingerprints); then all three reveal."""
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    net.commit_both(job_id, [1, 2], [1, 3])
    job = net.job(job_id)
    assert job.status == "disputed" and job.check == "dispute"
    assert job.referee not in (job.worker, job.verifier, None) and not job.reveals
    referee = net.role(job_id, "referee")
    assert_rejected(net.state, net.role(job_id, "worker").reveal(job_id, [1, 2]), net.chain.ctx(), WrongJobState)
    net.chain.block(referee.commit(job_id, referee_summary))
    assert job.status == "revealing"
    net.chain.block(net.role(job_id, "worker").reveal(job_id, [1, 2]),
                    net.role(job_id, "verifier").reveal(job_id, [1, 3]), referee.reveal(job_id, referee_summary))
    return job_id


@pytest.mark.parametrize(
    ("referee_summary", "verdict", "odd", "paid"),
    [
        ([1, 2], "verifier_faulty", "verifier", {"worker": 400, "referee": 200}),
        ([1, 3], "worker_faulty", "worker", {"referee": 400, "verifier": 200}),
    ],
)
def test_dispute_majority_wins_and_odd_one_is_slashed(net: Net, referee_summary, verdict, odd, paid) -> None:
    balances = {n: net.state.balance(account(n)) for n in NAMES}
    job_id = _dispute(net, referee_summary)
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("verified", verdict)
    assert job.result_summary == referee_summary
    odd_account = getattr(job, odd)
    rec = net.state.workers[odd_account]
    assert (rec.stake, rec.reputation, rec.jobs_failed) == (4_500, 400, 1)
    assert net.state.slashed_pool == 500
    for role, amount in paid.items():
        acct = getattr(job, role)
        name = net.by_account[acct].name
        fees = net.chain.receipts and sum(r.fee for r in net.chain.receipts if r.sender == acct)
        assert net.state.balance(acct) == balances[name] - fees + amount
        assert net.state.workers[acct].reputation == 510
    assert net.state.balance(account("alice")) == 100_000 - 1 - 1_200 + (1_200 - 600)
    net.check_invariants()


def test_three_different_answers_fail_and_refund_without_slashing(net: Net) -> None:
    job_id = _dispute(net, [9, 9])
    job = net.job(job_id)
    assert (job.status, job.verdict, job.escrow) == ("failed", "no_majority", 0)
    assert net.state.slashed_pool == 0
    assert net.state.balance(account("alice")) == 100_000 - 1
    net.check_invariants()


def test_referee_within_tolerance_of_both_splits_the_fee() -> None:
    net = Net()
    job_id = net.assigned(bids={"w1": 400}, verification_fee=201, tolerance_abs=1)
    net.commit_both(job_id, [0], [2])
    referee = net.role(job_id, "referee")
    net.chain.block(referee.commit(job_id, [1]))
    events = net.chain.block(referee.reveal(job_id, [1]), *net.reveal_txs(job_id, [0], [2]))
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("verified", "agreed_by_referee")
    paid = {e.fields["to"]: e.fields["amount"] for e in events if e.kind == "paid"}
    assert paid == {job.worker: 400, job.verifier: 101, job.referee: 100}
    net.check_invariants()


def test_dispute_without_a_possible_referee_fails_and_refunds() -> None:
    net = Net(workers={"w1": {}, "w2": {}})
    job_id = net.assigned()
    net.commit_both(job_id, [1], [2])
    net.reveal_both(job_id, [1], [2])
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("failed", "disputed_no_referee")
    net.check_invariants()


# ---- deadlines ------------------------------------------------------------------------------------------------
def test_worker_missing_commit_is_slashed_and_replaced_by_next_bidder(net: Net) -> None:
    job_id = net.assigned(bids={"w1": 100, "w2": 200, "w3": 300, "w4": 400}, commit_window=2)
    job = net.job(job_id)
    stalled, verifier = job.worker, job.verifier
    net.chain.block(net.by_account[verifier].commit(job_id, [1]))
    net.chain.block()  # height 4 = deadline: worker stalled
    assert job.worker not in (stalled, verifier, None) and job.verifier == verifier
    assert job.reassignments == 1 and stalled in job.excluded
    rec = net.state.workers[stalled]
    assert (rec.stake, rec.reputation, rec.jobs_failed, rec.active_jobs) == (4_900, 450, 1, 0)
    assert [s for s, _ in job.history] == ["open", "assigned", "assigned"]
    assert_rejected(net.state, net.by_account[stalled].commit(job_id, [1]), net.chain.ctx(), NotParticipant)
    net.chain.block(net.role(job_id, "worker").commit(job_id, [1]))
    net.chain.block()  # the check draw
    assert job.status == "revealing"
    net.reveal_both(job_id, [1], [1])
    assert job.status == "verified"
    net.check_invariants()


def test_commit_deadline_refunds_when_reassignments_run_out() -> None:
    net = Net(params={"max_reassignments": 0})
    job_id = net.assigned(commit_window=1)
    net.chain.block()
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("refunded", "commit_timeout")
    assert net.state.slashed_pool == 2 * 100  # both stalled: 20 per mille of 5,000 each
    net.check_invariants()


def test_reveal_deadline_refunds_and_slashes_the_withholder(net: Net) -> None:
    job_id = net.assigned(reveal_window=2)
    net.commit_both(job_id, [1], [1])
    worker = net.role(job_id, "worker")
    verifier = net.job(job_id).verifier
    net.chain.block(worker.reveal(job_id, [1]))
    net.chain.block()
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("refunded", "reveal_timeout")
    assert net.state.workers[verifier].stake == 4_900
    assert net.state.workers[worker.account].stake == 5_000
    assert_rejected(net.state, net.by_account[verifier].reveal(job_id, [1]), net.chain.ctx(), WrongJobState)
    net.check_invariants()


def test_stalled_referee_is_replaced_then_job_fails_when_out_of_tries() -> None:
    net = Net(workers={n: {} for n in ["w1", "w2", "w3", "w4"]}, params={"max_reassignments": 1})
    job_id = net.assigned(commit_window=1)
    net.commit_both(job_id, [1], [2])
    job = net.job(job_id)
    first = job.referee
    net.chain.block()  # referee misses its commit window
    assert job.status == "disputed" and job.referee not in (first, None) and first in job.excluded
    net.chain.block()
    assert (job.status, job.verdict) == ("failed", "referee_timeout")
    net.check_invariants()


def test_every_job_terminates_within_its_lifetime_bound() -> None:
    net = Net()
    submits = [net.alice.submit_job(bid_window=b, commit_window=c) for b, c in ((1, 1), (2, 3), (3, 2))]
    net.chain.block(*submits)
    job_ids = [s.tx_id for s in submits]
    net.chain.block(*(net.w["w1"].bid(job_id, 10) for job_id in job_ids))
    bound = max(max_job_lifetime(net.state, net.job(j)) + net.job(j).submitted_at for j in job_ids)
    while net.chain.height < bound:
        net.chain.block()
    assert all(net.job(j).is_terminal for j in job_ids)
    net.check_invariants()
