"""State: savepoints undo exactly what was written, the cached root equals a full recomputation, snapshots."""

import pytest

from ledger.errors import DecodeError
from ledger.state import (
    State,
    Worker,
    decode_state,
    encode_state,
    encode_state_uncached,
    state_root,
    state_root_uncached,
    total_supply,
)
from tests.ledger.factories import Chain, Wallet, account, make_state


def _busy_state():
    state = make_state(workers=["w1", "w2", "w3"])
    chain = Chain(state)
    alice, w1 = Wallet("alice"), Wallet("w1")
    submit = alice.submit_job(bid_window=1)
    chain.block(submit, alice.approve(account("bob"), 50), w1.unbond(100))
    chain.block(w1.bid(submit.tx_id, 300))
    return state, submit.tx_id


def test_rollback_restores_every_section_and_the_root() -> None:
    state, job_id = _busy_state()
    before_root, before_bytes = state_root(state), encode_state(state)
    sp = state.savepoint()
    state.w_account(account("alice")).balance -= 10
    state.w_account(account("new")).balance += 10
    state.set_allowance(account("alice"), account("bob"), 0)
    state.w_worker(account("w2")).stake -= 1
    state.put_worker(account("x"), Worker(1, 1, "cpu", "", 0, 0))
    state.w_job(job_id).bids.clear()
    state.set_slashed(99)
    state.set_active(job_id, False)
    assert encode_state(state) == encode_state_uncached(state) != before_bytes  # the kept bytes follow writes
    assert state_root(state) != before_root
    state.rollback_to(sp)
    assert encode_state(state) == before_bytes == encode_state_uncached(state)
    assert state_root(state) == before_root == state_root_uncached(state)
    assert job_id in state.active_jobs
    assert account("new") not in state.accounts


def test_nested_savepoints_roll_back_inner_then_outer() -> None:
    state = make_state()
    outer = state.savepoint()
    state.w_account(account("alice")).balance = 1
    inner = state.savepoint()
    state.w_account(account("alice")).balance = 2
    state.rollback_to(inner)
    assert state.balance(account("alice")) == 1
    state.rollback_to(outer)
    assert state.balance(account("alice")) == 1_000_000


def test_released_inner_savepoint_is_still_undone_by_the_outer_one() -> None:
    state = make_state()
    outer = state.savepoint()
    inner = state.savepoint()
    state.w_account(account("alice")).balance = 7
    state.release(inner)
    state.rollback_to(outer)
    assert state.balance(account("alice")) == 1_000_000


def test_cached_root_tracks_changes_and_matches_full_recomputation() -> None:
    state, _ = _busy_state()
    r1 = state_root(state)
    assert r1 == state_root_uncached(state)
    state.w_account(account("bob")).balance += 1
    r2 = state_root(state)
    assert r2 != r1 and r2 == state_root_uncached(state)
    state.w_account(account("bob")).balance -= 1
    assert state_root(state) == r1


def test_snapshot_round_trip_and_copy_independence() -> None:
    state, job_id = _busy_state()
    data = encode_state(state)
    back = decode_state(data)
    assert encode_state(back) == data
    assert state_root(back) == state_root(state)
    assert list(back.active_jobs) == [job_id]
    assert total_supply(back) == total_supply(state)
    twin = state.copy()
    twin.w_job(job_id).bids.clear()
    twin.w_account(account("alice")).balance = 0
    assert state.jobs[job_id].bids and state.balance(account("alice")) > 0
    assert state_root(state) == state_root_uncached(state)


def test_total_supply_counts_every_bucket() -> None:
    state, job_id = _busy_state()
    w1 = state.workers[account("w1")]
    assert w1.unbonding_total == 100
    balances = sum(a.balance for a in state.accounts.values())
    stakes = sum(w.stake + w.unbonding_total for w in state.workers.values())
    assert total_supply(state) == balances + stakes + state.jobs[job_id].escrow + state.slashed_pool
    assert total_supply(state) == 2_000_000 + 3 * 100_000 + 3 * 5_000


@pytest.mark.parametrize("data", [b"\x90", b"\xc0", encode_state(make_state())[:-1]])
def test_decode_state_rejects_malformed_snapshots(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_state(data)


def test_json_views_of_workers_and_jobs() -> None:
    import json

    state, job_id = _busy_state()
    w = state.workers[account("w1")].to_dict()
    assert w["unbonding"] == [{"release_height": 121, "amount": 100}] and w["stake"] == 4_900
    job = state.jobs[job_id].to_dict()
    assert job["job_id"] == job_id.hex() and job["bids"] == {account("w1").hex(): 300}
    assert job["history"] == [{"status": "open", "height": 1}, {"status": "assigned", "height": 2}]
    json.dumps([w, job])  # both serialise as they are


def test_writes_taken_before_a_rollback_are_replayed_by_redo() -> None:
    """What a validated block's commit relies on: changes_since + rollback_to, then (after more speculation that
    was rolled back too) redo gives exactly the state the writes made, root included."""
    state, job_id = _busy_state()

    def writes(st: State) -> None:
        st.w_account(account("alice")).balance -= 10
        st.w_account(account("alice")).nonce += 1  # a second write to one key: its last value counts
        st.w_account(account("new")).balance += 10  # a key that did not exist
        st.set_allowance(account("alice"), account("bob"), 0)  # a key removed
        st.w_worker(account("w2")).stake -= 1
        st.put_worker(account("x"), Worker(1, 1, "cpu", "", 0, 0))
        st.w_job(job_id).bids.clear()
        st.set_slashed(99)
        st.set_active(job_id, False)
        st.set_height(st.height + 1)

    straight = state.copy()
    writes(straight)
    before = encode_state(state)
    # pre: the writes, captured, then undone
    sp = state.savepoint()
    writes(state)
    changes = state.changes_since(sp)
    state.rollback_to(sp)
    assert encode_state(state) == before
    # speculation on the same keys, rolled back (as building or validating another block does)
    sp = state.savepoint()
    state.w_account(account("alice")).balance = 1
    state.w_account(account("new")).balance = 5
    state.rollback_to(sp)
    # operation
    state.redo(changes)
    # post
    assert encode_state(state) == encode_state(straight) != before
    assert state_root(state) == state_root_uncached(straight) == state_root_uncached(state)
    assert job_id not in state.active_jobs and account("new") in state.accounts
