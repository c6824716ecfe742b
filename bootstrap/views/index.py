"""An index of the ledger's jobs for reads that must not scan every job ever posted: pages of jobs in submission
order (all, by status, or unfinished), a count per status, and jobs submitted per client.

The ledger keeps jobs in a dict; a node with 100,000 jobs in its history cannot sort and filter them on every
``GET /jobs`` or dashboard refresh. The index is built once when the node opens its chain (O(n log n)) and then
updated block by block from the jobs a block can have changed: the unfinished ones before and after it and the
ones it submitted (O(changed · log n)). It holds keys only; the rows come from the state when a page is read.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from itertools import islice

from ledger.state import JOB_STATUSES, TERMINAL_STATUSES, State

Key = tuple[int, bytes]
"""A job's place in submission order: (height submitted, job id)."""

UNFINISHED = tuple(s for s in JOB_STATUSES if s not in TERMINAL_STATUSES)


class CursorError(ValueError):
    """A ``cursor`` that is not one this index hands out."""


def encode_cursor(key: Key) -> str:
    """The opaque text of a page's last position: ``<height>-<job id hex>``."""
    return f"{key[0]}-{key[1].hex()}"


def decode_cursor(text: str) -> Key:
    """The position a cursor names; :class:`CursorError` for anything else."""
    height, _, ident = text.partition("-")
    try:
        key = (int(height), bytes.fromhex(ident))
    except ValueError:
        raise CursorError(f"not a cursor from GET /jobs: {text!r}") from None
    if key[0] < 0 or len(key[1]) != 32:
        raise CursorError(f"not a cursor from GET /jobs: {text!r}")
    return key


class JobIndex:
    """Job keys in submission order, overall and per status, plus jobs per client; see the module docstring."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._all: list[Key] = []
        self._by_status: dict[str, list[Key]] = {s: [] for s in JOB_STATUSES}
        self._status: dict[bytes, tuple[str, Key]] = {}
        self._clients: dict[bytes, int] = {}
        self._client_of: dict[bytes, bytes] = {}

    def rebuild(self, state: State) -> None:
        """Index every job of ``state`` from scratch (a node opening its chain, or a state replaced whole)."""
        self._reset()
        for job in state.jobs.values():
            key = (job.submitted_at or 0, job.job_id)
            self._all.append(key)
            self._by_status.setdefault(job.status, []).append(key)
            self._status[job.job_id] = (job.status, key)
            self._client_of[job.job_id] = job.client
            self._clients[job.client] = self._clients.get(job.client, 0) + 1
        self._all.sort()
        for keys in self._by_status.values():
            keys.sort()

    def unfinished_ids(self) -> list[bytes]:
        """Ids of the jobs the index last saw unfinished (what the next block may change)."""
        return [k[1] for s in UNFINISHED for k in self._by_status.get(s, ())]

    def update(self, state: State, job_ids: Iterable[bytes]) -> list[tuple[bytes, str | None, str | None]]:
        """Bring the jobs ``job_ids`` up to date with ``state``; returns (job id, status before, status now) for
        each whose status changed (None: not indexed before, or gone from the state now)."""
        changes = []
        for job_id in dict.fromkeys(job_ids):
            job = state.jobs.get(job_id)
            old = self._status.get(job_id)
            before = old[0] if old else None
            now = job.status if job is not None else None
            if before == now:
                continue
            if old is not None:
                self._remove(self._by_status[old[0]], old[1])
            if job is None:
                assert old is not None
                self._remove(self._all, old[1])
                del self._status[job_id]
                client = self._client_of.pop(job_id)
                self._clients[client] -= 1
                if not self._clients[client]:
                    del self._clients[client]
            else:
                key = old[1] if old else (job.submitted_at or 0, job_id)
                if old is None:
                    insort(self._all, key)
                    self._client_of[job_id] = job.client
                    self._clients[job.client] = self._clients.get(job.client, 0) + 1
                insort(self._by_status.setdefault(job.status, []), key)
                self._status[job_id] = (job.status, key)
            changes.append((job_id, before, now))
        return changes

    @staticmethod
    def _remove(keys: list[Key], key: Key) -> None:
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]

    # ---- reads ----------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Jobs per status (only statuses with jobs)."""
        return {s: len(keys) for s, keys in self._by_status.items() if keys}

    def total(self) -> int:
        return len(self._all)

    def count(self, status: str | None = None, *, unfinished: bool = False) -> int:
        """Jobs matching a page's filter."""
        if unfinished:
            return sum(len(self._by_status.get(s, ())) for s in UNFINISHED)
        return len(self._all) if status is None else len(self._by_status.get(status, ()))

    def submitted_by(self, client: bytes) -> int:
        return self._clients.get(client, 0)

    def clients(self) -> dict[bytes, int]:
        """Jobs submitted, per client account."""
        return dict(self._clients)

    def page(self, *, status: str | None = None, unfinished: bool = False, after: Key | None = None,
             limit: int = 100, newest_first: bool = True) -> tuple[list[bytes], Key | None]:
        """Up to ``limit`` job ids past ``after`` in the order asked, and the cursor key of the next page (None
        when this page reaches the end). Positions, not offsets: jobs that change status between two pages do
        not shift the pages around them."""
        if unfinished:
            runs = [self._run(self._by_status.get(s, []), after, newest_first) for s in UNFINISHED]
            merged: Iterator[Key] = heapq.merge(*runs, reverse=newest_first)
        else:
            merged = self._run(self._all if status is None else self._by_status.get(status, []), after,
                               newest_first)
        keys = list(islice(merged, limit + 1))
        more = len(keys) > limit
        keys = keys[:limit]
        return [k[1] for k in keys], (keys[-1] if more and keys else None)

    @staticmethod
    def _run(keys: list[Key], after: Key | None, newest_first: bool) -> Iterator[Key]:
        if newest_first:
            end = bisect_left(keys, after) if after is not None else len(keys)
            return (keys[i] for i in range(end - 1, -1, -1))
        start = bisect_right(keys, after) if after is not None else 0
        return (keys[i] for i in range(start, len(keys)))
