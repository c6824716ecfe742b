"""Issue 14: failure that is nobody's fault costs the client, not the workers; the worker's limits and windows are
fixed at submission; and work is spread over the offers near the best price.

Each case walks a job through the real ledger rules and checks who was paid, who was slashed (nobody honest) and
that no token appeared or vanished.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ledger.errors import BadCommitment, FeeTooLow, InvalidField
from ledger.params import Params
from ledger.verdict import ERROR, OVER_LIMIT, RESULT, UNAVAILABLE
from tests.ledger.factories import account, assert_rejected
from tests.ledger.test_jobs import Net

GOOD = [10, 20, 30]
OTHER = [99, 98, 97]
CODE = [7]


def _stakes(net: Net) -> dict[bytes, tuple[int, int]]:
    return {a: (w.stake, w.reputation) for a, w in net.state.workers.items()}


_PENDING: dict[bytes, tuple[tuple[list[int], int], tuple[list[int], int]]] = {}
"""Claims committed but not yet revealed because a referee was drawn first (it commits blind)."""


def _commit_reveal(net: Net, job_id: bytes, worker: tuple[list[int], int], verifier: tuple[list[int], int]) -> list:
    """Both commit; the next block draws the check. The same claim is revealed at once; different claims wait for
    the referee (``_referee``), who commits before anything is revealed."""
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    net.chain.block(w.commit(job_id, worker[0], worker[1]), v.commit(job_id, verifier[0], verifier[1]))
    net.chain.block()
    if net.job(job_id).status == "disputed":
        _PENDING[job_id] = (worker, verifier)
        return []
    return net.chain.block(w.reveal(job_id, worker[0], worker[1]), v.reveal(job_id, verifier[0], verifier[1]))


def _referee(net: Net, job_id: bytes, claim: tuple[list[int], int]) -> None:
    r = net.role(job_id, "referee")
    net.chain.block(r.commit(job_id, claim[0], claim[1]))
    (ws, wo), (vs, vo) = _PENDING.pop(job_id)
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    net.chain.block(r.reveal(job_id, claim[0], claim[1]), w.reveal(job_id, ws, wo), v.reveal(job_id, vs, vo))


def _referee_commits(net: Net, job_id: bytes) -> None:
    """The block after both commits draws a referee (the claims differ); it commits, and the reveals open."""
    net.chain.block()
    net.chain.block(net.role(job_id, "referee").commit(job_id, GOOD))
    assert net.job(job_id).status == "revealing"


def _balances(net: Net, *names: str) -> dict[str, int]:
    return {n: net.state.balance(account(n)) for n in names}


@pytest.fixture
def net() -> Net:
    return Net()


# ---- both parties could not run it -----------------------------------------------------------------------------
def test_spec_nobody_serves_ends_the_job_with_trouble_pay_and_no_slash(net: Net) -> None:
    job_id = net.assigned(bids={"w1": 400}, reward=1_000, verification_fee=200)
    worker, verifier = net.role(job_id, "worker").name, net.role(job_id, "verifier").name
    before, stakes = _balances(net, "alice", worker, verifier), _stakes(net)
    _commit_reveal(net, job_id, ([], UNAVAILABLE), ([], UNAVAILABLE))
    job = net.job(job_id)
    assert (job.status, job.verdict) == ("failed", "unavailable")
    after = _balances(net, "alice", worker, verifier)
    # trouble_permille = 100: 10% of the price (400) and of the fee (200); the client gets the rest of 1,200 back.
    assert after[worker] - before[worker] == 40 - 2  # two txs' fees
    assert after[verifier] - before[verifier] == 20 - 2
    assert after["alice"] - before["alice"] == 1_200 - 60
    assert _stakes(net) == stakes  # nobody slashed, no reputation moved
    net.check_invariants()


def test_unavailable_next_to_over_limit_is_unrunnable_nobody_slashed(net: Net) -> None:
    job_id = net.assigned()
    stakes = _stakes(net)
    _commit_reveal(net, job_id, ([], OVER_LIMIT), ([], UNAVAILABLE))
    _referee(net, job_id, (GOOD, RESULT))  # the claims differ, so a referee ran it: nobody can check it alone
    assert (net.job(job_id).status, net.job(job_id).verdict) == ("failed", "unrunnable")
    assert _stakes(net) == stakes
    net.check_invariants()


# ---- a deterministic error is compared like a result -----------------------------------------------------------
def test_the_same_error_code_from_both_ends_the_job_as_a_spec_error(net: Net) -> None:
    job_id = net.assigned()
    stakes = _stakes(net)
    _commit_reveal(net, job_id, (CODE, ERROR), (CODE, ERROR))
    job = net.job(job_id)
    assert (job.status, job.verdict, job.result_summary) == ("failed", "spec_error", CODE)
    assert _stakes(net) == stakes
    net.check_invariants()


def test_a_false_error_claim_loses_to_the_referees_result_and_is_slashed(net: Net) -> None:
    job_id = net.assigned()
    liar = net.job(job_id).worker
    honest = net.job(job_id).verifier
    stake = net.state.workers[liar].stake
    _commit_reveal(net, job_id, (CODE, ERROR), (GOOD, RESULT))
    assert net.job(job_id).status == "disputed"
    _referee(net, job_id, (GOOD, RESULT))
    job = net.job(job_id)
    assert (job.status, job.verdict, job.result_summary) == ("verified", "worker_faulty", GOOD)
    assert net.state.workers[liar].stake < stake
    assert net.state.workers[honest].stake == 5_000
    net.check_invariants()


# ---- a party that could not run it is never punished -----------------------------------------------------------
def test_an_unavailable_worker_next_to_a_result_is_not_punished_and_not_paid(net: Net) -> None:
    job_id = net.assigned(bids={"w1": 400})
    job = net.job(job_id)
    unable, verifier = job.worker, job.verifier
    stake_rep = (net.state.workers[unable].stake, net.state.workers[unable].reputation)
    paid_before = net.state.balance(unable)
    _commit_reveal(net, job_id, ([], UNAVAILABLE), (GOOD, RESULT))
    _referee(net, job_id, (GOOD, RESULT))
    job = net.job(job_id)
    assert (job.status, job.verdict, job.result_summary) == ("verified", "worker_unable", GOOD)
    assert (net.state.workers[unable].stake, net.state.workers[unable].reputation) == stake_rep
    assert net.state.balance(unable) == paid_before - 2  # its own commit and reveal fees, nothing else
    assert net.state.workers[verifier].jobs_done == 1
    net.check_invariants()


def test_a_referee_that_cannot_run_it_either_ends_the_job_unrunnable(net: Net) -> None:
    job_id = net.assigned()
    stakes = _stakes(net)
    _commit_reveal(net, job_id, (GOOD, RESULT), ([], UNAVAILABLE))
    _referee(net, job_id, ([], UNAVAILABLE))
    assert (net.job(job_id).status, net.job(job_id).verdict) == ("failed", "unrunnable")
    assert _stakes(net) == stakes
    net.check_invariants()


# ---- malformed claims ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("summary", "outcome"), [([], 9), ([], ERROR), ([1, 2, 3, 4, 5], ERROR), ([1], UNAVAILABLE)])
def test_a_malformed_claim_is_refused_at_reveal(net: Net, summary: list[int], outcome: int) -> None:
    job_id = net.assigned()
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    net.chain.block(w.commit(job_id, summary, outcome), v.commit(job_id, GOOD))
    _referee_commits(net, job_id)
    assert_rejected(net.state, w.reveal(job_id, summary, outcome), net.chain.ctx(), InvalidField,
                    field="reveal_result.outcome")


def test_the_commitment_binds_the_outcome(net: Net) -> None:
    job_id = net.assigned()
    w, v = net.role(job_id, "worker"), net.role(job_id, "verifier")
    net.chain.block(w.commit(job_id, CODE, ERROR), v.commit(job_id, GOOD))
    _referee_commits(net, job_id)
    # Having seen nothing better to do, the worker tries to open its error commitment as a result.
    assert_rejected(net.state, w.reveal(job_id, CODE, RESULT), net.chain.ctx(), BadCommitment)


# ---- limits and windows fixed at submission (the chain's real parameters) --------------------------------------
REAL = {name: getattr(Params(), name) for name in
        ("commit_margin_blocks", "window_fee_per_block", "default_job_time_ms")}


@pytest.fixture
def real() -> Net:
    return Net(params=REAL)


def test_a_run_longer_than_the_commit_window_is_refused_with_the_window_it_needs(real: Net) -> None:
    p = real.state.params
    needed = p.commit_blocks_needed(60_000)  # 2 + 60 blocks at 1 s
    assert needed == 62
    assert_rejected(real.state, real.alice.submit_job(time_limit_ms=60_000), real.chain.ctx(), InvalidField,
                    field="submit_job.commit_window")
    # Asking for the window it needs costs one token per extra block on top of min_fee.
    surcharge = needed - p.default_commit_window
    assert_rejected(real.state, real.alice.submit_job(time_limit_ms=60_000, commit_window=needed),
                    real.chain.ctx(), FeeTooLow)
    job_id = real.submit(time_limit_ms=60_000, commit_window=needed, bid_window=p.default_bid_window,
                         fee=1 + surcharge)
    assert real.job(job_id).time_limit_ms == 60_000 and real.job(job_id).commit_window == needed


def test_genesis_bounds_what_a_job_may_ask_of_a_worker(real: Net) -> None:
    p = real.state.params
    assert_rejected(real.state, real.alice.submit_job(time_limit_ms=p.max_job_time_ms + 1), real.chain.ctx(),
                    InvalidField, field="submit_job.time_limit_ms")
    assert_rejected(real.state, real.alice.submit_job(min_memory_mb=p.max_job_memory_mb + 1), real.chain.ctx(),
                    InvalidField, field="submit_job.min_memory_mb")


def test_the_default_job_fits_the_default_window(real: Net) -> None:
    job_id = real.submit(bid_window=real.state.params.default_bid_window)
    job = real.job(job_id)
    assert job.time_limit_ms == real.state.params.default_job_time_ms
    assert real.state.params.commit_blocks_needed(job.time_limit_ms) <= job.commit_window


def test_genesis_refuses_a_default_job_that_cannot_fit_the_default_window() -> None:
    from ledger.errors import InvalidGenesis

    with pytest.raises(InvalidGenesis, match="default_commit_window"):
        Params(default_job_time_ms=20_000, default_commit_window=10).validate()


# ---- work is spread --------------------------------------------------------------------------------------------
def _shares(net: Net, prices: dict[str, int], jobs: int) -> Counter:
    counts: Counter = Counter()
    for _ in range(jobs):
        job_id = net.submit(bid_window=1, reward=1_000)
        net.chain.block(*(net.w[n].bid(job_id, p) for n, p in prices.items()))
        counts[net.role(job_id, "worker").name] += 1
        # Finish the job honestly so capacity frees up (and reputations move as they would).
        _commit_reveal(net, job_id, (GOOD, RESULT), (GOOD, RESULT))
    return counts


def test_one_token_cheaper_does_not_take_every_job() -> None:
    names = [f"w{i}" for i in range(10)]
    net = Net(workers={n: {} for n in names})
    prices = {n: 500 for n in names}
    prices["w0"] = 499
    counts = _shares(net, prices, 60)
    assert counts["w0"] < 60 * 0.4  # was 100% before the band: now about one in ten
    assert len(counts) >= 7
    net.check_invariants()


def test_a_full_worker_is_never_drawn_as_verifier() -> None:
    net = Net(workers={"w1": {}, "w2": {"capacity": 1}, "w3": {}})
    first = net.assigned(bids={"w2": 100}, commit_window=100)  # w2 takes its one slot as the worker
    assert net.job(first).worker == account("w2")
    for _ in range(8):
        job_id = net.assigned(bids={"w1": 100, "w3": 100})
        assert account("w2") not in net.job(job_id).participants()


def test_a_worker_is_not_assigned_a_run_longer_than_its_offer_names() -> None:
    net = Net(workers={"w1": {}, "w2": {}, "w3": {}})
    net.chain.block(net.w["w1"].offer(10, 50, max_time_ms=500), net.w["w2"].offer(10, 50),
                    net.w["w3"].offer(10, 50))
    for _ in range(6):
        job_id = net.submit(assign="offers", time_limit_ms=1_000, reward=100)
        job = net.job(job_id)
        assert job.status == "assigned" and account("w1") not in job.participants()
    short = net.submit(assign="offers", time_limit_ms=400, reward=100)
    assert net.job(short).status == "assigned"
