"""Job retention (``Params.job_retention_blocks``, ``ledger.jobs.prune_finished_jobs``) over the real ledger rules:
a finished job leaves the live state exactly ``R`` blocks after the block it ended in, never earlier and never a
job still running; the tree root stays equal to a recomputation; no token moves; and a node restored from a
snapshot at any height prunes the same jobs at the same heights as one that never stopped."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidGenesis
from ledger.params import Params
from ledger.state import decode_state, encode_state, state_root, state_root_uncached, total_supply
from tests.ledger.factories import Chain, Wallet, make_state

# A step: submit a job with a bid window (no worker bids, so it is refunded when the window closes), cancel the
# n-th job submitted (if still open), or an empty block.
steps = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.integers(1, 4)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("empty"), st.just(0)),
), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None)
@given(steps=steps, keep=st.integers(1, 6), restart_at=st.integers(0, 40))
def test_finished_jobs_leave_the_state_after_the_window_and_a_restored_node_agrees(
        steps: list, keep: int, restart_at: int) -> None:
    params = {"job_retention_blocks": keep}
    live = Chain(make_state(balances={"alice": 10**9}, workers=["w1", "w2"], params=params))
    twin = Chain(make_state(balances={"alice": 10**9}, workers=["w1", "w2"], params=params))
    supply = total_supply(live.state)
    alice = Wallet("alice")
    submitted: list[bytes] = []
    ended_at: dict[bytes, int] = {}
    pruned_events: set[bytes] = set()
    for i, (kind, arg) in enumerate([*steps, *[("empty", 0)] * 12]):
        txs = []
        if kind == "submit":
            stx = alice.submit_job(bid_window=arg)
            submitted.append(stx.tx_id)
            txs.append(stx)
        elif kind == "cancel" and submitted:
            job = live.state.jobs.get(submitted[arg % len(submitted)])
            if job is not None and job.status == "open":
                txs.append(alice.cancel(job.job_id))
        events = live.block(*txs)
        twin.block(*txs)
        if i == restart_at:  # the twin restarts from a snapshot taken at this height
            twin.state = decode_state(encode_state(twin.state))
        h = live.height
        pruned_events |= {e.fields["job_id"] for e in events if e.kind == "job_pruned"}
        for job_id in submitted:
            job = live.state.jobs.get(job_id)
            if job is not None and job.is_terminal:
                ended_at.setdefault(job_id, job.deadline)
            if job_id in ended_at:
                gone = h >= ended_at[job_id] + keep
                assert (job is None) == gone, (job_id.hex()[:8], h, ended_at[job_id], keep)
                assert (job_id in pruned_events) == gone
            else:
                assert job is not None and not job.is_terminal  # a running job is never pruned
        assert state_root(live.state) == state_root_uncached(live.state)
        assert state_root(twin.state) == state_root(live.state)
        assert total_supply(live.state) == supply
        assert set(live.state.active_jobs) <= set(live.state.jobs)
    assert all(j not in live.state.jobs for j in ended_at)  # the trailing empty blocks outlast every window


def test_retention_zero_keeps_every_job_and_builds_no_index() -> None:
    chain = Chain(make_state(balances={"alice": 10**9}, workers=["w1", "w2"]))
    alice = Wallet("alice")
    ids = [alice.submit_job(bid_window=1) for _ in range(3)]
    chain.block(*ids)
    for _ in range(20):
        chain.block()
    assert all(chain.state.jobs[t.tx_id].is_terminal for t in ids)
    assert chain.state.ended_jobs == {}


def test_a_block_that_fails_leaves_the_retention_index_as_it_was() -> None:
    """Pruning runs inside begin_block's savepoint: a proposal tried and thrown away undoes it."""
    chain = Chain(make_state(balances={"alice": 10**9}, workers=["w1", "w2"], params={"job_retention_blocks": 2}))
    alice = Wallet("alice")
    stx = alice.submit_job(bid_window=1)
    chain.block(stx)
    chain.block()  # the bid window closes: refunded
    ended = chain.state.jobs[stx.tx_id].deadline
    before = (dict(chain.state.ended_jobs), set(chain.state.jobs), state_root(chain.state))
    sp = chain.state.savepoint()
    chain.block()
    chain.block()
    assert stx.tx_id not in chain.state.jobs and ended not in chain.state.ended_jobs
    chain.state.rollback_to(sp)
    chain.height -= 2
    assert (dict(chain.state.ended_jobs), set(chain.state.jobs), state_root(chain.state)) == before


def test_the_retention_window_is_a_non_negative_integer() -> None:
    with pytest.raises(InvalidGenesis, match="job_retention_blocks"):
        Params.from_dict({"job_retention_blocks": -1})
    assert Params.from_dict({"job_retention_blocks": 5}).job_retention_blocks == 5
