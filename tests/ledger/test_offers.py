"""Standing offers and assignment at submission (issue 8): the ``offer`` tx, ``submit_job(assign="offers")``
choosing the cheapest live offer with free capacity, ties spread by the seeded draw, the verifier drawn only
among live offerers, and the fallback to the bid window when no offer fits."""

from __future__ import annotations

import pytest

from ledger.errors import IneligibleWorker, InvalidField, UnknownWorker
from ledger.jobs import max_job_lifetime
from ledger.state import state_root, state_root_uncached, total_supply
from tests.ledger.factories import Chain, Wallet, assert_rejected, make_state

NAMES = ["w1", "w2", "w3", "w4"]


class Net:
    """Workers w1..w4 (capacity from ``capacity``), a client alice, and helpers for offers and jobs."""

    def __init__(self, capacity: int = 100, params: dict | None = None) -> None:
        workers = {n: {"capacity": capacity} for n in NAMES}
        self.state = make_state(balances={"alice": 1_000_000, "bob": 1_000}, workers=workers,
                                params={"default_bid_window": 3, **(params or {})})
        self.chain = Chain(self.state)
        self.alice = Wallet("alice")
        self.w = {n: Wallet(n) for n in NAMES}
        self.by_account = {w.account: n for n, w in self.w.items()}
        self.supply = total_supply(self.state)

    def offers(self, prices: dict[str, int], until: int | None = None) -> None:
        """Each named worker offers its price, standing 20 blocks from the next block unless ``until``."""
        h = self.chain.height + 1
        self.chain.block(*(self.w[n].offer(p, until if until is not None else h + 20) for n, p in prices.items()))

    def submit(self, **kw) -> tuple[bytes, list]:
        kw.setdefault("assign", "offers")
        stx = self.alice.submit_job(**kw)
        events = self.chain.block(stx)
        return stx.tx_id, events

    def name(self, account: bytes | None) -> str | None:
        return None if account is None else self.by_account[account]

    def check(self) -> None:
        assert total_supply(self.state) == self.supply
        assert state_root(self.state) == state_root_uncached(self.state)
        busy: dict[bytes, int] = {}
        for j in self.state.jobs.values():
            if not j.is_terminal:
                for a in j.participants():
                    busy[a] = busy.get(a, 0) + 1
        assert all(w.active_jobs == busy.get(a, 0) for a, w in self.state.workers.items())


@pytest.fixture
def net() -> Net:
    return Net()


# ---- the offer tx ---------------------------------------------------------------------------------------------
def test_offer_sets_and_withdraw_clears_the_workers_offer(net: Net) -> None:
    events = net.chain.block(net.w["w1"].offer(30, 25))
    w = net.state.workers[net.w["w1"].account]
    assert (w.offer_price, w.offer_until) == (30, 25)
    assert [e.kind for e in events] == ["offer"]
    assert w.to_dict()["offer_until"] == 25
    events = net.chain.block(net.w["w1"].offer(30, 0))
    assert (w.offer_price, w.offer_until) == (0, 0) and [e.kind for e in events] == ["offer_withdrawn"]
    net.check()


def test_offer_validation_errors(net: Net) -> None:
    net.chain.blocks(3)
    c = net.chain.ctx()
    max_window = net.state.params.max_window
    assert_rejected(net.state, Wallet("bob").offer(5, c.height + 3), c, UnknownWorker)
    assert_rejected(net.state, net.w["w1"].offer(5, c.height - 1), c, InvalidField, field="offer.until")
    assert_rejected(net.state, net.w["w1"].offer(5, c.height + max_window + 1), c, InvalidField,
                    field="offer.until")
    net.chain.block(net.w["w1"].offer(5, c.height + max_window))  # exactly max_window ahead stands
    # A worker below min_stake may not offer (it could not be assigned), but may still withdraw.
    net.state.w_worker(net.w["w2"].account).stake = net.state.params.min_stake - 1
    c = net.chain.ctx()
    assert_rejected(net.state, net.w["w2"].offer(5, c.height + 3), c, IneligibleWorker,
                    reason="stake below min_stake")
    net.chain.block(net.w["w2"].offer(0, 0))


def test_offer_snapshot_round_trips() -> None:
    from ledger.state import decode_state, encode_state

    net = Net()
    net.offers({"w1": 7})
    back = decode_state(encode_state(net.state))
    assert back.workers[net.w["w1"].account].offer_price == 7
    assert state_root(back) == state_root(net.state)


def test_an_expired_offer_is_not_used(net: Net) -> None:
    net.offers({"w1": 10, "w2": 10, "w3": 10}, until=net.chain.height + 1)
    job_id, events = net.submit()  # one block after the offers' last height
    job = net.state.jobs[job_id]
    assert job.status == "open"
    unavailable = [e for e in events if e.kind == "offers_unavailable"]
    assert unavailable and unavailable[0].fields["reason"] == "no_worker_offer"


# ---- assignment at submission ---------------------------------------------------------------------------------
def test_submit_with_offers_assigns_at_once_within_the_price_band(net: Net) -> None:
    # The band (10%) is on the asked price: 35 and 40 are outside 30's, however high w1's reputation.
    net.state.w_worker(net.w["w1"].account).reputation = 1000
    net.state.w_worker(net.w["w2"].account).reputation = 0
    net.offers({"w1": 40, "w2": 30, "w3": 35})
    h = net.chain.height + 1
    job_id, events = net.submit(reward=1_000, verification_fee=100)
    job = net.state.jobs[job_id]
    assert job.status == "assigned" and net.name(job.worker) == "w2" and job.price == 30
    assert net.name(job.verifier) in ("w1", "w3")  # a live offerer, not w4 (no offer)
    assert job.history == [("assigned", h)] and job.bid_deadline == h == job.submitted_at
    assert job.deadline == h + job.commit_window
    assert [e.kind for e in events] == ["job_submitted", "job_assigned"]
    assert events[1].fields["via"] == "offers"
    r = net.state.params.max_reassignments
    assert max_job_lifetime(net.state, job) == (2 * (r + 1) * (job.commit_window + 1) + job.commit_window
                                                + job.reveal_window)  # no bid term
    net.check()


def test_instant_assignment_runs_to_verified_in_four_blocks(net: Net) -> None:
    net.offers({"w1": 10, "w2": 10})
    job_id, _ = net.submit(reward=100, verification_fee=20)
    h = net.chain.height
    job = net.state.jobs[job_id]
    worker, verifier = net.w[net.name(job.worker)], net.w[net.name(job.verifier)]
    net.chain.block(worker.commit(job_id, [1, 2]), verifier.commit(job_id, [1, 2]))
    net.chain.block()  # its hash did not exist when they committed: it draws the check (none: audits off here)
    net.chain.block(worker.reveal(job_id, [1, 2]), verifier.reveal(job_id, [1, 2]))
    assert job.status == "verified" and job.verdict == "agreed"
    assert [s for s, _ in job.history] == ["assigned", "revealing", "verified"]
    assert net.chain.height - h == 3  # submit block, commit block, check draw, reveal block
    assert net.state.balance(worker.account) >= 10  # paid its offer price (plus its earlier balance)
    net.check()


def test_offer_price_above_reward_is_skipped(net: Net) -> None:
    net.offers({"w1": 5_000, "w2": 60, "w3": 70})
    job_id, _ = net.submit(reward=100)
    assert net.name(net.state.jobs[job_id].worker) == "w2"


def test_capacity_is_respected() -> None:
    net = Net(capacity=1)
    net.offers({"w1": 10, "w2": 20, "w3": 30, "w4": 40})
    first, _ = net.submit()
    j1 = net.state.jobs[first]
    assert net.name(j1.worker) == "w1"
    second, _ = net.submit()
    j2 = net.state.jobs[second]
    # w1 is full (capacity 1); the verifier of the first job is busy too
    assert j2.status == "assigned" and j2.worker not in (j1.worker, j1.verifier)
    net.check()


def test_full_capacity_everywhere_falls_back_to_bids() -> None:
    net = Net(capacity=1)
    net.offers({"w1": 10, "w2": 10})
    net.submit()  # w1/w2 now both hold a role
    job_id, events = net.submit(bid_window=2)
    job = net.state.jobs[job_id]
    assert job.status == "open" and job.history == [("open", net.chain.height)]
    assert job.bid_deadline == job.submitted_at + 2
    assert any(e.kind == "offers_unavailable" and e.fields["reason"] == "no_worker_offer" for e in events)
    # ...and the bid path then works as ever
    net.chain.block(net.w["w3"].bid(job_id, 50), net.w["w4"].bid(job_id, 60))
    net.chain.block()
    assert job.status == "assigned" and net.name(job.worker) == "w3"
    net.check()


def test_ties_are_spread_by_the_seeded_draw() -> None:
    net = Net()
    net.offers({n: 25 for n in NAMES})
    picked = set()
    for _ in range(12):
        job_id, _ = net.submit()
        job = net.state.jobs[job_id]
        assert job.status == "assigned" and job.price == 25
        picked.add(net.name(job.worker))
    assert len(picked) >= 3  # not always the lowest id
    net.check()


def test_verifier_is_drawn_only_among_live_offerers(net: Net) -> None:
    net.offers({"w1": 10, "w3": 50})
    for _ in range(6):
        job_id, _ = net.submit()
        job = net.state.jobs[job_id]
        assert (net.name(job.worker), net.name(job.verifier)) == ("w1", "w3")


def test_no_verifier_offer_falls_back_to_bids(net: Net) -> None:
    net.offers({"w1": 10})
    job_id, events = net.submit()
    job = net.state.jobs[job_id]
    assert job.status == "open" and job.worker is None and not job.bids
    assert [e.fields["reason"] for e in events if e.kind == "offers_unavailable"] == ["no_verifier_offer"]
    assert net.state.workers[net.w["w1"].account].active_jobs == 0
    assert job.escrow == job.reward + job.verification_fee  # nothing refunded for the missing offers
    net.check()


def test_bids_mode_ignores_offers(net: Net) -> None:
    net.offers({"w1": 10, "w2": 10})
    for assign in ("", "bids"):
        job_id, events = net.submit(assign=assign)
        assert net.state.jobs[job_id].status == "open"
        assert not any(e.kind == "offers_unavailable" for e in events)


def test_unknown_assign_mode_is_rejected(net: Net) -> None:
    assert_rejected(net.state, net.alice.submit_job(assign="fastest"), net.chain.ctx(), InvalidField,
                    field="submit_job.assign")


def test_the_client_never_takes_its_own_job() -> None:
    net = Net()
    net.chain.block(net.w["w1"].transfer(net.alice.account, 0))  # keep heights aligned
    net.offers({"w1": 10, "w2": 10})
    stx = net.w["w1"].submit_job(assign="offers")
    net.chain.block(stx)
    job = net.state.jobs[stx.tx_id]
    assert job.status == "open"  # w1 is the client; w2 alone has no verifier


def test_a_stalled_instant_worker_is_replaced_from_live_offers() -> None:
    # Without bids to fall back on, the commit timeout must still find a replacement: another live offer.
    net = Net(params={"max_reassignments": 1})
    net.offers({"w1": 10, "w2": 10, "w3": 10})
    job_id, _ = net.submit(reward=100, verification_fee=20, commit_window=2)
    job = net.state.jobs[job_id]
    first_worker, verifier = job.worker, job.verifier
    net.chain.block(net.w[net.name(verifier)].commit(job_id, [1]))  # only the verifier commits
    net.chain.blocks(2)
    assert job.status == "assigned" and job.reassignments == 1
    assert job.worker not in (first_worker, verifier) and net.name(job.worker) in ("w1", "w2", "w3")
    assert first_worker in job.excluded and job.price == 10
    worker = net.w[net.name(job.worker)]
    net.chain.block(worker.commit(job_id, [1]))
    net.chain.block()  # the check draw
    net.chain.block(worker.reveal(job_id, [1]), net.w[net.name(verifier)].reveal(job_id, [1]))
    assert job.status == "verified"
    net.check()


def test_a_stalled_instant_job_without_another_offer_is_refunded() -> None:
    net = Net(params={"max_reassignments": 1})
    net.offers({"w1": 10, "w2": 10})  # worker and verifier: nobody left to replace either
    job_id, _ = net.submit(reward=100, verification_fee=20, commit_window=2)
    net.chain.blocks(3)
    job = net.state.jobs[job_id]
    assert job.status == "refunded" and job.verdict.startswith("commit_timeout")
    net.check()
