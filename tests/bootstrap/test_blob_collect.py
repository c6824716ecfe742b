"""Collecting job data no live job needs: the store's sweep (age, quota, temp files, live blobs marked used) and
the collector's live set (the state's active jobs only) run against a real store on disk."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from bootstrap.jobs import BlobCollector, BlobStore, live_digests
from ledger.state import Job

DAY = 24 * 3600.0
NOW = 1_900_000_000.0


def _aged(store: BlobStore, data: bytes, age_s: float, now: float = NOW) -> bytes:
    d = store.put(data)
    t = now - age_s
    os.utime(store._path(d), (t, t))
    return d


def test_sweep_removes_what_is_unused_too_long_and_over_quota_keeps_what_is_live(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    old_live = _aged(store, b"dataset of a running job", 30 * DAY)
    old_dead = _aged(store, b"dataset of a job that ended long ago", 30 * DAY)
    recent = [_aged(store, bytes([i]) * 1000, (10 - i) * 3600) for i in range(5)]  # 10 h .. 6 h old
    tmp = store.root / "ab" / ("ab" * 32 + ".123.tmp")
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"half a blob")
    os.utime(tmp, (NOW - 2 * 3600, NOW - 2 * 3600))
    report = store.sweep({old_live}, older_than_s=7 * DAY, max_total_bytes=3_100, now=NOW)
    assert not store.has(old_dead) and store.has(old_live)
    # over the quota after the age rule: the least recently used idle blobs go first, live ones never
    assert [store.has(d) for d in recent] == [False, False, True, True, True]
    assert report.removed == 3 and report.over_quota_removed == 2 and report.temp_removed == 1
    assert report.kept == 4 and report.kept_bytes == sum(store.size(d) or 0 for d in store.digests()) <= 3_100
    assert not tmp.exists()
    assert store._path(old_live).stat().st_mtime == NOW  # marked used: it ages from now once its job ends
    # an archive node (retention 0, no quota) keeps everything, however old
    arch = BlobStore(tmp_path / "archive")
    ancient = _aged(arch, b"x", 1000 * DAY)
    assert arch.sweep(set(), older_than_s=0, now=NOW).removed == 0 and arch.has(ancient)


def test_live_digests_are_the_active_jobs_blobs_only() -> None:
    live_job = Job(job_id=b"\x01" * 32, params_digest=b"s" * 32, dataset_digest=b"d" * 32, status="committing",
                   reveals={b"w" * 32: ([1], b"a" * 32, 0)})
    done = Job(job_id=b"\x02" * 32, params_digest=b"S" * 32, dataset_digest=b"D" * 32, status="verified",
               result_artifact=b"A" * 32)
    state = SimpleNamespace(active_jobs={live_job.job_id: None}, jobs={live_job.job_id: live_job, done.job_id: done})
    assert live_digests(state) == {b"s" * 32, b"d" * 32, b"a" * 32}


async def test_the_collector_sweeps_on_a_thread_and_counts(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    keep = store.put(b"spec of a live job")
    gone = _aged(store, b"an upload nobody used", 30 * DAY, now=time.time())
    job = Job(job_id=b"\x03" * 32, params_digest=keep, dataset_digest=b"", status="assigned")
    state = SimpleNamespace(active_jobs={job.job_id: None}, jobs={job.job_id: job})
    counters: Counter[str] = Counter()
    collector = BlobCollector(store, lambda: state, counters, interval_s=60, retention_s=7 * DAY,
                              max_total_bytes=0)
    report = await collector.sweep_once()
    assert report.removed == 1 and store.has(keep) and not store.has(gone)
    assert counters["blob_sweeps"] == 1 and counters["blobs_collected"] == 1
    assert counters["blob_bytes_collected"] == len(b"an upload nobody used")

