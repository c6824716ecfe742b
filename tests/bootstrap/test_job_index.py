"""The node's job index (bootstrap.views.index): after any sequence of submissions, status changes and removals,
every page, count and per-client figure equals a scan of the state, and walking pages while jobs change status
never skips or repeats a job that stayed in the filter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.views import CursorError, JobIndex
from bootstrap.views.index import UNFINISHED, decode_cursor, encode_cursor
from ledger.params import Params
from ledger.state import JOB_STATUSES, TERMINAL_STATUSES, Job, State

CLIENTS = [bytes([c]) * 32 for c in range(3)]


def job_id(n: int) -> bytes:
    return n.to_bytes(32, "big")


def add_job(state: State, n: int, height: int, client: int, status: str = "open") -> None:
    state.jobs[job_id(n)] = Job(job_id=job_id(n), client=CLIENTS[client], submitted_at=height, status=status)


def scan(state: State, status: str | None, unfinished: bool, newest_first: bool) -> list[bytes]:
    """What a page walk must return: the state's jobs, filtered and sorted the slow way."""
    keys = sorted((j.submitted_at, j.job_id) for j in state.jobs.values()
                  if (status is None or j.status == status) and not (unfinished and j.status in TERMINAL_STATUSES))
    if newest_first:
        keys.reverse()
    return [k[1] for k in keys]


def walk(index: JobIndex, limit: int, **filters: object) -> list[bytes]:
    out: list[bytes] = []
    after = None
    while True:
        ids, last = index.page(after=after, limit=limit, **filters)  # type: ignore[arg-type]
        out += ids
        if last is None:
            return out
        after = decode_cursor(encode_cursor(last))


# One step: submit job n at a height, move job k to a status, or remove job k (pruning).
steps = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 40), st.integers(0, 2)),
    st.tuples(st.just("status"), st.integers(0, 200), st.sampled_from(JOB_STATUSES)),
    st.tuples(st.just("remove"), st.integers(0, 200), st.just(None)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(steps=steps, limit=st.integers(1, 7), rebuild_at=st.integers(0, 60))
def test_pages_counts_and_clients_match_a_scan_after_any_history(steps: list, limit: int, rebuild_at: int) -> None:
    state = State("idx", Params())
    index = JobIndex()
    index.rebuild(state)
    n = 0
    for i, (kind, a, b) in enumerate(steps):
        touched: list[bytes] = []
        if kind == "submit":
            add_job(state, n, a, b)
            touched.append(job_id(n))
            n += 1
        elif n:
            jid = job_id(a % n)
            if jid in state.jobs:
                if kind == "status":
                    state.jobs[jid].status = b
                else:
                    del state.jobs[jid]
            touched.append(jid)
        if i == rebuild_at:
            index.rebuild(state)  # a restarted node builds the same index from the state
        else:
            index.update(state, touched)
    for status in (None, *JOB_STATUSES):
        for newest in (True, False):
            assert walk(index, limit, status=status, newest_first=newest) == scan(state, status, False, newest)
            assert index.count(status) == len(scan(state, status, False, newest))
    for newest in (True, False):
        assert walk(index, limit, unfinished=True, newest_first=newest) == scan(state, None, True, newest)
    assert index.count(unfinished=True) == len(scan(state, None, True, True))
    expected_counts: dict[str, int] = {}
    expected_clients: dict[bytes, int] = {}
    for j in state.jobs.values():
        expected_counts[j.status] = expected_counts.get(j.status, 0) + 1
        expected_clients[j.client] = expected_clients.get(j.client, 0) + 1
    assert index.counts() == expected_counts
    assert index.clients() == expected_clients
    assert index.total() == len(state.jobs)
    assert sorted(index.unfinished_ids()) == sorted(j.job_id for j in state.jobs.values()
                                                    if j.status not in TERMINAL_STATUSES)


@settings(max_examples=60, deadline=None)
@given(moves=st.lists(st.tuples(st.integers(0, 29), st.sampled_from(JOB_STATUSES)), max_size=20),
       limit=st.integers(1, 5))
def test_a_page_walk_during_changes_sees_every_job_that_stayed_exactly_once(moves: list, limit: int) -> None:
    state = State("idx", Params())
    for n in range(30):
        add_job(state, n, n // 3, n % 3, "verified" if n % 2 else "open")
    index = JobIndex()
    index.rebuild(state)
    untouched = {job_id(n) for n in range(30)} - {job_id(k) for k, _ in moves}
    seen: list[bytes] = []
    after = None
    pending = list(moves)
    while True:
        ids, after = index.page(after=after, limit=limit)
        seen += ids
        if pending:  # a block lands between two page reads
            k, status = pending.pop()
            state.jobs[job_id(k)].status = status
            index.update(state, [job_id(k)])
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 30  # the unfiltered walk: status changes move nothing
    assert untouched <= set(seen)


@pytest.mark.parametrize("text", ["", "x", "12", "-1-" + "00" * 32, "5-" + "00" * 31, "5-zz", "a-" + "00" * 32])
def test_a_cursor_not_handed_out_is_refused(text: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(text)


def test_unfinished_are_the_non_terminal_statuses() -> None:
    assert set(UNFINISHED) | TERMINAL_STATUSES == set(JOB_STATUSES)
    assert not set(UNFINISHED) & TERMINAL_STATUSES
