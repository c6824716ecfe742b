"""The worker pool's protocol (sans-IO) and a blocking driver for tests and benchmarks.

Workers are long-lived child processes (``python -m compute.worker``) because importing scikit-learn and PyTorch
costs seconds. Parent and child exchange length-prefixed MessagePack frames over the child's stdin/stdout:

* child → parent ``{"op": "ready", "pid"}`` once its imports are done;
* parent → child ``{"op": "run", "id", "spec", "digest", "data" (dataset bytes, or nil when the child has it
  cached), "backend", "threads", "memory_mb"}``;
* child → parent ``{"op": "result", "id", "ok": true, "result"}`` or ``{"op": "result", "id", "ok": false,
  "kind", "message", "field", "code"}``; ``kind == "dataset_missing"`` asks the parent to resend with the data,
  and ``code`` is :func:`compute.errors.error_code` of a typed compute error (0 for any other failure).

The child caps its own address space per job (``RLIMIT_AS``) and reports a memory failure; the parent enforces
wall time by killing the child, and replaces any child that dies. Everything here except :class:`WorkerPool`
does no I/O, so an async driver (``bootstrap/compute_pool.py``) can move the bytes without threads.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from compute.canonical import JobResult
from compute.dataset import Dataset, encode_dataset
from compute.errors import PoolError, ResultError
from compute.spec import JobSpec

HEADER = struct.Struct(">I")
FAILURE_KINDS = (
    "spec", "dataset", "result", "backend", "execution", "memory", "timeout", "crashed", "cancelled", "protocol",
)
DETERMINISTIC_KINDS = frozenset({"spec", "dataset", "result"})
"""Failures every honest run of the same spec on the same data hits too (their reply carries the error's code)."""
DATASET_MISSING = "dataset_missing"


@dataclass(frozen=True)
class PoolConfig:
    """How many workers, what they import up front, and bounds on their cache and frames."""

    size: int = 1
    preload: tuple[str, ...] = ("sklearn",)
    dataset_cache_mb: int = 1024
    max_frame_bytes: int = 1 << 30
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= self.size <= 256:
            raise PoolError(f"pool size must be in [1, 256], got {self.size}")
        if any(m not in ("sklearn", "torch") for m in self.preload):
            raise PoolError(f"preload may name only 'sklearn' and 'torch', got {self.preload}")


@dataclass(frozen=True)
class JobRequest:
    """A job for the pool: the spec, its dataset, and how to run it. ``max_time_ms`` and ``max_memory_mb`` are
    the running node's own caps: the run gets the spec's limits or these, whichever is lower (0: no cap)."""

    spec: JobSpec
    dataset: Dataset
    backend: str | None = None
    threads: int = 1
    max_time_ms: int = 0
    max_memory_mb: int = 0

    @property
    def time_limit_ms(self) -> int:
        """The wall time this run is allowed."""
        limit = self.spec.limits.time_limit_ms
        return min(limit, self.max_time_ms) if self.max_time_ms > 0 else limit

    @property
    def memory_limit_mb(self) -> int:
        """The address space this run is allowed beyond the worker's idle footprint."""
        limit = self.spec.limits.memory_limit_mb
        return min(limit, self.max_memory_mb) if self.max_memory_mb > 0 else limit


@dataclass(frozen=True)
class JobFailure:
    """Why a job produced no result; ``kind`` is one of :data:`FAILURE_KINDS`; ``code`` is the stable
    :func:`compute.errors.error_code` of a typed compute error, 0 when there is none (memory, timeout, crash)."""

    kind: str
    message: str
    field: str | None = None
    code: int = 0


@dataclass(frozen=True)
class JobOutcome:
    """A result or a clean failure, never an exception: the node reports either on the ledger."""

    job_id: int
    result: JobResult | None = None
    failure: JobFailure | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: a 4-byte big-endian length, then the MessagePack body."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Reassembles frames from a byte stream: ``feed`` bytes, then take ``next_message`` until it is None."""

    def __init__(self, max_frame_bytes: int = 1 << 30) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> dict[str, Any] | None:
        if len(self._buf) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self._buf)
        if size > self._max:
            raise PoolError(f"frame of {size} bytes exceeds the limit {self._max}")
        if len(self._buf) < HEADER.size + size:
            return None
        body = bytes(self._buf[HEADER.size : HEADER.size + size])
        del self._buf[: HEADER.size + size]
        try:
            message = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise PoolError(f"undecodable frame: {exc}") from exc
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise PoolError("frame is not a message with an 'op'")
        return message


def worker_command(config: PoolConfig) -> list[str]:
    """The argv that starts one worker."""
    return [
        sys.executable, "-m", "compute.worker",
        "--preload", ",".join(config.preload), "--cache-mb", str(config.dataset_cache_mb),
    ]


def worker_env() -> dict[str, str]:
    """The environment for a worker: ours, with compute importable and per-thread malloc arenas capped (each
    arena reserves 64 MiB of address space, which would count against the job's RLIMIT_AS)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MALLOC_ARENA_MAX"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def encode_run(job_id: int, request: JobRequest, include_data: bool) -> bytes:
    """The frame asking a worker to run ``request``; the dataset bytes travel only when asked to."""
    return encode_frame({
        "op": "run",
        "id": job_id,
        "spec": request.spec.encode(),
        "digest": request.dataset.digest,
        "data": encode_dataset(request.dataset) if include_data else None,
        "backend": request.backend,
        "threads": request.threads,
        "memory_mb": request.memory_limit_mb,
    })


WARM_UP_S = 30.0
"""How long a worker process may take to load a run's libraries the first time (PyTorch: ~2-5 s; more on a
loaded machine) before the run's own time limit starts (the worker says "begin")."""


def time_limit_s(request: JobRequest) -> float:
    """Wall time the parent allows from sending the request to reading the reply."""
    return request.time_limit_ms / 1000.0


def parse_ready(message: dict[str, Any]) -> int:
    """The pid announced by a worker's first frame."""
    if message.get("op") != "ready" or not isinstance(message.get("pid"), int):
        raise PoolError(f"expected a ready frame, got {message.get('op')!r}")
    return int(message["pid"])


def parse_reply(job_id: int, message: dict[str, Any], wall_s: float = 0.0) -> JobOutcome | str:
    """A worker's reply as an outcome, or :data:`DATASET_MISSING` when the worker needs the data resent."""
    if message.get("op") != "result" or message.get("id") != job_id:
        return failed(job_id, "protocol", f"unexpected reply {message.get('op')!r} for job {message.get('id')!r}")
    if message.get("ok"):
        try:
            return JobOutcome(job_id, result=JobResult.decode(message["result"]), wall_s=wall_s)
        except (ResultError, KeyError, TypeError) as exc:
            return failed(job_id, "protocol", f"bad result from worker: {exc}")
    kind = message.get("kind")
    if kind == DATASET_MISSING:
        return DATASET_MISSING
    if kind not in FAILURE_KINDS:
        kind = "protocol"
    code = message.get("code", 0)
    code = code if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 1000 else 0
    return JobOutcome(job_id, failure=JobFailure(kind, str(message.get("message", "")), message.get("field"), code),
                      wall_s=wall_s)


def failed(job_id: int, kind: str, message: str, wall_s: float = 0.0) -> JobOutcome:
    """A failure outcome produced by the parent (timeout, crash, cancellation, protocol)."""
    return JobOutcome(job_id, failure=JobFailure(kind, message), wall_s=wall_s)


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    pid: int
    decoder: FrameDecoder
    cached: set[bytes] = field(default_factory=set)


class WorkerPool:
    """A blocking driver over the protocol: for tests, benchmarks and scripts (the node uses the trio one).

    ``run_many`` keeps every worker busy and waits with ``select``; a job past its wall time has its worker
    killed and replaced; a worker that dies mid-job yields a ``crashed`` failure and is replaced too.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._children: list[_Child] = []
        self._next_id = 1
        self._closed = False
        try:
            for _ in range(self.config.size):
                self._children.append(self._spawn())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._children]

    def _spawn(self) -> _Child:
        proc = subprocess.Popen(
            worker_command(self.config), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker_env()
        )
        child = _Child(proc, proc.pid, FrameDecoder(self.config.max_frame_bytes))
        message = self._read(child, time.monotonic() + self.config.start_timeout_s)
        if message is None:
            proc.kill()
            proc.wait()
            raise PoolError("worker did not start (exited or timed out before its ready frame)")
        child.pid = parse_ready(message)
        return child

    def _read(self, child: _Child, deadline: float) -> dict[str, Any] | None:
        """Block until the child's next message; None on EOF or at the deadline."""
        assert child.proc.stdout is not None
        fd = child.proc.stdout.fileno()
        while (message := child.decoder.next_message()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 1 << 20)
            if not data:
                return None
            child.decoder.feed(data)
        return message

    def _replace(self, child: _Child) -> None:
        child.proc.kill()
        child.proc.wait()
        for stream in (child.proc.stdin, child.proc.stdout):
            if stream is not None:
                stream.close()
        self._children[self._children.index(child)] = self._spawn()

    def _send(self, child: _Child, job_id: int, request: JobRequest, include_data: bool) -> bool:
        assert child.proc.stdin is not None
        try:
            child.proc.stdin.write(encode_run(job_id, request, include_data))
            child.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        if include_data:
            child.cached.add(request.dataset.digest)
        return True

    def run(self, request: JobRequest) -> JobOutcome:
        """Run one job on the first worker and wait for its outcome."""
        return self.run_many([request])[0]

    def run_many(self, requests: list[JobRequest]) -> list[JobOutcome]:
        """Run jobs across the workers, at most one per worker at a time; outcomes in request order."""
        if self._closed:
            raise PoolError("pool is closed")
        pending = deque(enumerate(requests))
        outcomes: dict[int, JobOutcome] = {}
        busy: dict[int, tuple[_Child, int, int, JobRequest, float]] = {}  # fd -> (child, index, id, req, t0)
        begun: set[int] = set()  # fds whose child said "begin": t0 is then the run's start, not the dispatch

        def limit_s(fd: int, request: JobRequest) -> float:
            return time_limit_s(request) + (0.0 if fd in begun else WARM_UP_S)

        def start(child: _Child, index: int, request: JobRequest, include: bool | None = None) -> None:
            job_id = self._next_id
            self._next_id += 1
            t0 = time.monotonic()
            if include is None:
                include = request.dataset.digest not in child.cached
            if not self._send(child, job_id, request, include):
                outcomes[index] = failed(job_id, "crashed", "worker pipe closed before the job was sent")
                self._replace(child)
                return
            assert child.proc.stdout is not None
            busy[child.proc.stdout.fileno()] = (child, index, job_id, request, t0)

        while pending or busy:
            idle = [c for c in self._children if all(c is not b[0] for b in busy.values())]
            while pending and idle:
                index, request = pending.popleft()
                start(idle.pop(0), index, request)
            if not busy:
                continue
            now = time.monotonic()
            deadline = min(t0 + limit_s(fd, req) for fd, (_, _, _, req, t0) in busy.items())
            ready, _, _ = select.select(list(busy), [], [], max(0.0, deadline - now))
            for fd in ready:
                child, index, job_id, request, t0 = busy[fd]
                data = os.read(fd, 1 << 20)
                if not data:
                    del busy[fd]
                    begun.discard(fd)
                    code = child.proc.wait()
                    outcomes[index] = failed(job_id, "crashed", f"worker exited with {code}", time.monotonic() - t0)
                    self._replace(child)
                    continue
                child.decoder.feed(data)
                message = child.decoder.next_message()
                while message is not None and message.get("op") == "begin":
                    # Its libraries are loaded: the run's time limit counts from here.
                    begun.add(fd)
                    t0 = time.monotonic()
                    busy[fd] = (child, index, job_id, request, t0)
                    message = child.decoder.next_message()
                if message is None:
                    continue
                del busy[fd]
                begun.discard(fd)
                outcome = parse_reply(job_id, message, time.monotonic() - t0)
                if outcome == DATASET_MISSING:
                    child.cached.discard(request.dataset.digest)
                    start(child, index, request, include=True)
                else:
                    assert isinstance(outcome, JobOutcome)
                    outcomes[index] = outcome
            now = time.monotonic()
            for fd, (child, index, job_id, request, t0) in list(busy.items()):
                if now - t0 >= limit_s(fd, request):
                    del busy[fd]
                    begun.discard(fd)
                    outcomes[index] = failed(
                        job_id, "timeout", f"exceeded {request.time_limit_ms} ms", now - t0
                    )
                    self._replace(child)
        return [outcomes[i] for i in range(len(requests))]

    def close(self) -> None:
        """Stop every worker (closing stdin lets an idle one exit; stragglers are killed)."""
        self._closed = True
        for child in self._children:
            if child.proc.stdin is not None:
                child.proc.stdin.close()
        for child in self._children:
            try:
                child.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            if child.proc.stdout is not None:
                child.proc.stdout.close()
        self._children = []
