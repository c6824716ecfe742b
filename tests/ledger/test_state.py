"""State: savepoints undo exactly what was written, the cached root equals a full recomputation, snapshots."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.crypto import blake2b256
from ledger.encoding import INT_MAX, INT_MIN, pack, unpack
from ledger.errors import DecodeError, EncodeError
from ledger.params import Params
from ledger.state import (
    MAX_STATE_BYTES,
    STATE_VERSION,
    Account,
    Job,
    State,
    Worker,
    decode_state,
    encode_state,
    encode_state_uncached,
    state_root,
    state_root_uncached,
    total_supply,
    total_supply_uncached,
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


# ---- the bulk paths: a state's first root and snapshot, and decoding, against the record-by-record definitions ----
ints64 = st.integers(0, INT_MAX) | st.sampled_from([0, 1, 127, 128, 255, 256, 2**16, 2**32, 2**63, INT_MAX])
raw_keys = st.binary(min_size=32, max_size=32) | st.binary(max_size=40)  # an odd length takes the same paths


@st.composite
def record_sets(draw: st.DrawFn) -> tuple[dict[bytes, tuple[int, int]], dict[tuple[bytes, bytes], int]]:
    """Accounts (balance, nonce) and allowances to lay over a busy state."""
    accounts = draw(st.dictionaries(raw_keys, st.tuples(ints64, ints64), max_size=40))
    allowances = draw(st.dictionaries(st.tuples(raw_keys, raw_keys), st.integers(1, INT_MAX), max_size=6))
    return accounts, allowances


def _laid_over(records: tuple[dict[bytes, tuple[int, int]], dict[tuple[bytes, bytes], int]], *,
               by_writes: bool) -> State:
    """The busy state with ``records`` set: straight into its dicts (no tree yet: the next root is a bulk build),
    or, after its tree exists, by journaled writes (the next root is an incremental update)."""
    state, _ = _busy_state()
    accounts, allowances = records
    if by_writes:
        state_root(state)
        for k, (b, n) in accounts.items():
            acc = state.w_account(k)
            acc.balance, acc.nonce = b, n
        for (o, sp), a in allowances.items():
            state.set_allowance(o, sp, a)
    else:
        state = decode_state(encode_state_uncached(state))  # a copy with no tree
        for k, (b, n) in accounts.items():
            state.accounts[k] = Account(b, n)
        state.allowances.update(allowances)
    return state


@settings(max_examples=60, deadline=None)
@given(record_sets())
def test_the_bulk_root_and_snapshot_are_those_of_the_records_one_by_one(records) -> None:
    """pre: the same records in a state never rooted and in one reached by writes after its tree existed;
    operation: the first root (bulk), the snapshot without a tree, the incremental root; post: one root, the
    definition's, one snapshot, the definition's, which decodes back to the same records and root."""
    fresh, written = _laid_over(records, by_writes=False), _laid_over(records, by_writes=True)
    assert fresh._tree is None
    data = encode_state(fresh)  # packed without building the tree
    assert fresh._tree is None
    assert data == encode_state_uncached(fresh) == encode_state_uncached(written) == encode_state(written)
    root = state_root_uncached(fresh)
    assert state_root(fresh) == root == state_root(written) == state_root_uncached(written)
    assert encode_state(fresh) == data  # the kept bytes, now with the tree
    back = decode_state(data)
    assert encode_state_uncached(back) == data and state_root(back) == root and encode_state(back) == data
    assert list(back.active_jobs) == list(fresh.active_jobs)
    for k, acc in back.accounts.items():
        assert (acc.balance, acc.nonce) == (fresh.accounts[k].balance, fresh.accounts[k].nonce)


@pytest.mark.parametrize("balance", [INT_MAX + 1, INT_MIN - 1, True, 1.0, {}])
def test_an_account_that_pack_refuses_is_refused_by_the_bulk_paths_too(balance) -> None:
    state = make_state()
    state.accounts[account("odd")] = Account(balance, 0)
    for bulk in (encode_state, state_root):
        with pytest.raises(EncodeError):
            bulk(state)


def _old_decode(data: bytes) -> State:
    """decode_state as it was: the whole snapshot unpacked and packed again, then the records built (the reference
    the record-by-record check must agree with)."""
    (version, chain_id, genesis_time, height, slashed, params_list, validators, punished, accounts, allowances,
     workers, jobs) = unpack(data, max_size=MAX_STATE_BYTES, field="state")
    assert version == STATE_VERSION
    s = State(chain_id, Params.from_list(params_list), validators, genesis_time)
    s.height, s.slashed_pool = height, slashed
    assert punished == sorted(punished) and len({tuple(r[:4]) for r in punished}) == len(punished)
    for v, h, r, step, at in punished:
        assert type(v) is bytes and all(type(x) is int and x >= 0 for x in (h, r, step, at))
        s.punished[(v, h, r, step)] = at
    s.accounts = {k: Account(b, n) for k, b, n in accounts}
    s.allowances = {(o, sp): a for o, sp, a in allowances}
    s.workers = {k: Worker.from_list(v) for k, v in workers}
    s.jobs = {k: Job.from_list(v) for k, v in jobs}
    return s


def _busy_snapshot() -> bytes:
    accounts = {bytes([i]) * 32: (i * 1000, i) for i in range(20)} | {b"\x01" * 32: (2**40, 2**20)}
    state = _laid_over((accounts, {(b"\x02" * 32, b"\x03" * 32): 7}), by_writes=False)
    state.punished = {(b"\x04" * 32, 9, 0, 1): 11, (b"\x04" * 32, 9, 2, 2): 12}
    return encode_state(state)


BUSY_SNAPSHOT = _busy_snapshot()


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(BUSY_SNAPSHOT) - 1), st.integers(1, 255), st.sampled_from(["xor", "insert", "cut"]))
def test_an_altered_snapshot_decodes_exactly_when_the_old_decoder_took_it(at: int, x: int, how: str) -> None:
    """Every one-byte change of a real snapshot (bits flipped, a byte put in, a byte taken out): the
    record-by-record check accepts it exactly when unpacking the whole and packing it again did, to the same
    state, never the original one. (Both take records out of key order, as they always did: a changed key
    decodes; its state, re-encoded, is sorted.)"""
    data = bytearray(BUSY_SNAPSHOT)
    if how == "xor":
        data[at] ^= x
    elif how == "insert":
        data.insert(at, x)
    else:
        del data[at]
    data = bytes(data)
    try:
        old = _old_decode(data)
    except Exception:  # any refusal (the old one also let IndexError and others through)
        old = None
    try:
        new = decode_state(data)
    except DecodeError:
        new = None
    assert (old is None) == (new is None)
    if new is not None:
        assert encode_state_uncached(new) == encode_state_uncached(old) != BUSY_SNAPSHOT
        assert state_root(new) == state_root_uncached(old) != state_root(decode_state(BUSY_SNAPSHOT))


@pytest.mark.parametrize("nonce", [b"\xc3", b"\xc2", b"\xcb" + bytes(8), b"\xcc\x05", b"\xd0\x05", b"\xc0"])
def test_an_account_field_of_another_type_or_spelling_does_not_decode(nonce: bytes) -> None:
    """An account's nonce as true, false, a float, a longer spelling of 5, or nil: the old decoder refused the
    first five (and took nil, packing back to the same bytes), and so does the record-by-record one."""
    row = pack([b"\x05" * 32, 5000, 5])
    assert row in BUSY_SNAPSHOT
    data = BUSY_SNAPSHOT.replace(row, row[:-1] + nonce)
    if nonce == b"\xc0":
        assert decode_state(data).accounts[b"\x05" * 32].nonce is None
        assert encode_state_uncached(_old_decode(data)) == encode_state_uncached(decode_state(data))
        return
    with pytest.raises(DecodeError):
        decode_state(data)
    with pytest.raises(DecodeError):
        _old_decode(data)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.binary(min_size=32, max_size=32), max_size=12),
                          st.lists(st.integers(0, 79), max_size=12),
                          st.lists(st.tuples(st.integers(0, 79), st.integers(0, 79), st.integers(0, 3)),
                                   max_size=6)),
                min_size=1, max_size=6))
def test_snapshots_between_blocks_that_add_change_and_remove_records_are_the_definitions(rounds) -> None:
    """pre: a state of 80 accounts whose snapshot was taken (its kept bytes in key order); operation: rounds of
    new accounts, changed ones and allowances set or removed (a removal deletes the record), each round followed
    by a root and a snapshot, so fresh keys are spliced in while few and the dict rebuilt once many; post: every
    snapshot is the definition's bytes."""
    base = [blake2b256(b"acct%d" % i) for i in range(80)]
    state = make_state()
    for k in base:
        state.accounts[k] = Account(1, 0)
    assert encode_state(state) == encode_state_uncached(state)
    state_root(state)
    assert encode_state(state) == encode_state_uncached(state)
    for new, changed, allowances in rounds:
        for k in new:
            state.w_account(k).balance += 3
        for i in changed:
            state.w_account(base[i]).nonce += 1
        for o, sp, amount in allowances:
            state.set_allowance(base[o], base[sp], amount)
        state_root(state)
        assert encode_state(state) == encode_state_uncached(state)
        assert decode_state(encode_state(state)).accounts.keys() == state.accounts.keys()


SUPPLY_OPS = st.lists(st.tuples(st.sampled_from(["balance", "new", "stake", "unbond", "escrow", "drop_job",
                                                 "new_worker", "allowance", "root", "rollback", "copy", "decode"]),
                                st.integers(0, 5), st.integers(-1_000, 1_000)), max_size=30)


@settings(max_examples=80, deadline=None)
@given(SUPPLY_OPS)
def test_the_running_total_supply_is_the_sum_of_every_record(ops) -> None:
    """pre: a state with accounts, workers (one unbonding), a job's escrow and an allowance; operation: any mix of
    writes to each token bucket, new and removed records, roots in between, writes rolled back, copies and
    snapshot round trips; post: ``total_supply`` (kept with the tree) equals the sum over every record."""
    state, job_id = _busy_state()
    names = [account(n) for n in ("alice", "bob", "w1", "w2", "w3", "carol")]
    assert total_supply(state) == total_supply_uncached(state)
    for op, i, amount in ops:
        a = names[i]
        if op == "balance":
            state.w_account(a).balance += amount
        elif op == "new":
            state.w_account(blake2b256(b"new%d" % amount)).balance += abs(amount)
        elif op == "stake" and a in state.workers:
            state.w_worker(a).stake += amount
        elif op == "unbond" and a in state.workers:
            state.w_worker(a).unbonding.append((state.height + 5, abs(amount)))
        elif op == "escrow" and job_id in state.jobs:
            state.w_job(job_id).escrow += amount
        elif op == "drop_job" and job_id in state.jobs:
            state._record(state.jobs, job_id, state.jobs[job_id], "job")
            del state.jobs[job_id]
        elif op == "new_worker":
            state.put_worker(blake2b256(b"worker%d" % i), Worker(abs(amount), 0, "cpu", "", 0, 0))
        elif op == "allowance":
            state.set_allowance(a, names[(i + 1) % len(names)], abs(amount))
        elif op == "root":
            state_root(state)
        elif op == "rollback":
            sp = state.savepoint()
            state.w_account(a).balance += 7
            total_supply(state)  # the tree sees the write, then the rollback takes it back
            state.rollback_to(sp)
        elif op == "copy":
            state = state.copy()
        elif op == "decode":
            state = decode_state(encode_state(state))
        assert total_supply(state) == total_supply_uncached(state), op


def test_the_punished_offences_are_in_the_root_and_the_snapshot_and_refused_out_of_order() -> None:
    state = make_state()
    before = state_root(state)
    sp = state.savepoint()
    state.note_punished((b"\x07" * 32, 3, 1, 2), 5)
    state.note_punished((b"\x06" * 32, 4, 0, 1), 5)
    with_two = state_root(state)
    assert with_two not in (before, state_root_uncached(make_state()))
    assert with_two == state_root_uncached(state)
    again = decode_state(encode_state(state))
    assert again.punished == state.punished and state_root(again) == with_two
    state.expire_punished(4)  # the offence at height 3 can no longer be carried
    assert list(state.punished) == [(b"\x06" * 32, 4, 0, 1)]
    state.rollback_to(sp)  # journaled like every other write
    assert state.punished == {} and state_root(state) == before
    state.note_punished((b"\x07" * 32, 3, 1, 2), 5)
    state.note_punished((b"\x06" * 32, 4, 0, 1), 5)
    rows = pack(sorted([*o, h] for o, h in state.punished.items()))
    data = encode_state(state)
    assert rows in data
    flipped = pack(sorted(([*o, h] for o, h in state.punished.items()), reverse=True))
    with pytest.raises(DecodeError, match="increasing order"):
        decode_state(data.replace(rows, flipped))
    negative = pack([[b"\x06" * 32, -4, 0, 1, 5], [b"\x07" * 32, 3, 1, 2, 5]])
    with pytest.raises(DecodeError, match=r"state\.punished"):
        decode_state(data.replace(rows, negative))
