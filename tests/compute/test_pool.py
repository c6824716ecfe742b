"""The pool protocol (sans-IO pieces) and the blocking driver: results, clean failures, limits, recovery."""

from __future__ import annotations

import os
import signal

import msgpack
import numpy as np
import pytest

from compute.dataset import encode_dataset, make_dataset, synthetic
from compute.errors import PoolError, SpecError, error_code
from compute.executor import execute
from compute.pool import (
    DATASET_MISSING,
    DETERMINISTIC_KINDS,
    FrameDecoder,
    JobRequest,
    PoolConfig,
    WorkerPool,
    encode_frame,
    encode_run,
    parse_reply,
    time_limit_s,
)
from compute.spec import make_spec
from compute.worker import DatasetCache, handle_run

BLOBS = synthetic("blobs", 800, 4, seed=3, n_classes=3)
KMEANS = make_spec("kmeans", {"k": 3, "seed": 1}, BLOBS.digest)


def test_frames_reassemble_from_any_split() -> None:
    frames = encode_frame({"op": "a", "x": 1}) + encode_frame({"op": "b", "data": b"\x00" * 300})
    for cut in (1, 3, 7, len(frames) // 2):
        dec = FrameDecoder()
        dec.feed(frames[:cut])
        got = []
        while (m := dec.next_message()) is not None:
            got.append(m)
        dec.feed(frames[cut:])
        while (m := dec.next_message()) is not None:
            got.append(m)
        assert [m["op"] for m in got] == ["a", "b"]


def test_decoder_refuses_oversize_and_garbage() -> None:
    dec = FrameDecoder(max_frame_bytes=10)
    dec.feed(encode_frame({"op": "x", "pad": "y" * 20}))
    with pytest.raises(PoolError, match="exceeds"):
        dec.next_message()
    dec = FrameDecoder()
    dec.feed(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(PoolError, match="undecodable"):
        dec.next_message()
    dec = FrameDecoder()
    body = msgpack.packb([1, 2])
    dec.feed(len(body).to_bytes(4, "big") + body)
    with pytest.raises(PoolError, match="op"):
        dec.next_message()


def test_worker_handler_in_process_caches_and_reports() -> None:
    # The child's request handler, run in this process: first without data (asks for it), then with it.
    cache = DatasetCache(1 << 30)
    base = {"op": "run", "id": 7, "spec": KMEANS.encode(), "digest": BLOBS.digest, "backend": "numpy",
            "threads": 1, "memory_mb": 4096}
    assert parse_reply(7, handle_run({**base, "data": None}, cache)) == DATASET_MISSING

    outcome = parse_reply(7, handle_run({**base, "data": encode_dataset(BLOBS)}, cache))
    assert outcome.ok and outcome.result.summary == execute(KMEANS, BLOBS, "numpy").summary
    assert parse_reply(7, handle_run({**base, "data": None}, cache)).ok  # now cached
    bad = make_spec("kmeans", {"k": 900}, BLOBS.digest)
    out = parse_reply(7, handle_run({**base, "spec": bad.encode(), "data": None}, cache))
    assert out.failure.kind == "spec" and out.failure.field == "params.k"
    assert out.failure.code == error_code(SpecError("params.k", "")) == 122 and out.failure.kind in DETERMINISTIC_KINDS
    out = parse_reply(7, handle_run({**base, "backend": "tpu", "data": None}, cache))
    assert out.failure.kind == "backend" and out.failure.code == 0  # not the spec's fault: no claim code
    out = parse_reply(7, handle_run({**base, "digest": bytes(32), "data": encode_dataset(BLOBS)}, cache))
    assert out.failure.kind == "dataset" and "digest mismatch" in out.failure.message
    assert out.failure.code == 200
    # a summary overflowing int64 fails the same way on every run: a coded execution failure, claimable
    huge = make_dataset(BLOBS.X * 1e14)  # centres of 1e14 at precision 6 do not fit an int64
    overflow = make_spec("kmeans", {"k": 3}, huge.digest)
    out = parse_reply(7, handle_run({**base, "spec": overflow.encode(), "digest": huge.digest,
                                     "data": encode_dataset(huge)}, cache))
    assert out.failure.kind == "execution" and out.failure.code == 302, out.failure  # overflow_at_precision

    # A deterministic failure of the job itself carries its stable code (the same on every honest worker).
    one_class = make_dataset(BLOBS.X[:20], np.zeros(20))
    spec = make_spec("logistic_regression", {}, one_class.digest)
    out = parse_reply(8, handle_run({**base, "id": 8, "spec": spec.encode(), "digest": one_class.digest,
                                     "data": encode_dataset(one_class)}, cache))
    assert out.failure.kind == "dataset" and out.failure.code == 203
    # A worker's garbage code is not believed.
    assert parse_reply(7, {"op": "result", "id": 7, "ok": False, "kind": "spec", "message": "m",
                           "code": True}).failure.code == 0


def test_a_request_runs_under_the_lower_of_the_spec_limits_and_the_node_caps() -> None:
    spec = make_spec("kmeans", {"k": 3}, BLOBS.digest, time_limit_ms=5_000, memory_limit_mb=2048)
    assert (JobRequest(spec, BLOBS).time_limit_ms, JobRequest(spec, BLOBS).memory_limit_mb) == (5_000, 2048)
    capped = JobRequest(spec, BLOBS, max_time_ms=1_500, max_memory_mb=512)
    assert (capped.time_limit_ms, capped.memory_limit_mb) == (1_500, 512)
    roomy = JobRequest(spec, BLOBS, max_time_ms=60_000, max_memory_mb=65_536)
    assert (roomy.time_limit_ms, roomy.memory_limit_mb) == (5_000, 2048)
    assert time_limit_s(capped) == 1.5
    frame = FrameDecoder()
    frame.feed(encode_run(1, capped, include_data=False))
    assert frame.next_message()["memory_mb"] == 512


def test_cache_evicts_least_recent() -> None:
    a, b = synthetic("regression", 100, 2, seed=1), synthetic("regression", 100, 2, seed=2)
    cache = DatasetCache(max_bytes=a.nbytes + 10)
    cache.put(a)
    cache.put(b)
    assert cache.get(a.digest) is None and cache.get(b.digest) is b


def test_pool_runs_jobs_recovers_from_limits_and_crashes() -> None:
    with WorkerPool(PoolConfig(size=2, preload=())) as pool:
        first_pids = pool.pids
        # Pre: two live workers. Results equal the in-process execution with the same backend.
        outcomes = pool.run_many([JobRequest(KMEANS, BLOBS, "numpy"), JobRequest(KMEANS, BLOBS, "sklearn")])
        assert [o.ok for o in outcomes] == [True, True]
        assert outcomes[0].result.summary == execute(KMEANS, BLOBS, "numpy").summary
        # A job-level error is a clean failure and the worker survives.
        bad = pool.run(JobRequest(make_spec("kmeans", {"k": 1000}, BLOBS.digest), BLOBS, "numpy"))
        assert bad.failure.kind == "spec" and bad.failure.field == "params.k"
        # Memory limit: the job fails with kind "memory", the worker stays and the next job succeeds.
        big = synthetic("regression", 20_000, 100, seed=4)
        tight = make_spec("pca", {"n_components": 3}, big.digest, memory_limit_mb=24)
        mem = pool.run(JobRequest(tight, big, "numpy"))
        assert not mem.ok and mem.failure.kind == "memory", mem.failure
        assert pool.run(JobRequest(make_spec("pca", {"n_components": 3}, big.digest), big, "numpy")).ok
        assert sorted(pool.pids) == sorted(first_pids)
        # Wall time: the parent kills the worker at the limit and replaces it.
        slow = make_spec("kmeans", {"k": 8, "iterations": 10_000}, big.digest, time_limit_ms=1)
        timed_out = pool.run(JobRequest(slow, big, "numpy"))
        assert timed_out.failure.kind == "timeout"
        assert len(set(pool.pids) - set(first_pids)) == 1
        assert pool.run(JobRequest(KMEANS, BLOBS, "numpy")).ok


def test_pool_reports_a_dead_worker_and_replaces_it() -> None:
    with WorkerPool(PoolConfig(size=1, preload=())) as pool:
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        outcome = pool.run(JobRequest(KMEANS, BLOBS, "numpy"))
        assert outcome.failure is not None and outcome.failure.kind == "crashed"
        assert pool.pids != [victim]
        assert pool.run(JobRequest(KMEANS, BLOBS, "numpy")).ok


def test_closed_pool_refuses_work() -> None:
    pool = WorkerPool(PoolConfig(size=1, preload=()))
    pool.close()
    with pytest.raises(PoolError, match="closed"):
        pool.run(JobRequest(KMEANS, BLOBS))
    with pytest.raises(PoolError):
        PoolConfig(size=0)


def test_loading_a_library_the_first_time_does_not_count_against_the_run() -> None:
    """A fresh worker imports PyTorch (and its deterministic mode's compiler stack, several seconds) on its first
    MLP run; the spec's time limit (1.5 s here, far above the run itself) starts when the worker says "begin"."""
    pytest.importorskip("torch")
    data = synthetic("blobs", 200, 4, seed=5, n_classes=2)
    spec = make_spec("mlp_train", {"hidden": [8], "epochs": 3}, data.digest, time_limit_ms=1_500)
    with WorkerPool(PoolConfig(size=1, preload=())) as pool:
        outcome = pool.run(JobRequest(spec, data, "torch-cpu"))
        assert outcome.ok, outcome.failure
        assert outcome.wall_s < 1.5  # measured from "begin", not from dispatch
