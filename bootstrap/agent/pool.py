"""The node's worker pool: trio drives ``compute``'s sans-IO pool protocol over child-process pipes.

No thread ever holds the event loop: children are started with ``trio.lowlevel.open_process`` and their pipes
are trio streams, so a job of any length costs the loop only the time to move its bytes. Wall time is a trio
deadline (the child is killed when it passes), cancellation kills the child too, and every killed or dead child
is replaced in the background by the pool's own nursery.

    async with open_compute_pool(PoolConfig(size=2)) as pool:
        outcome = await pool.run(JobRequest(spec, dataset))
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from compute.errors import PoolError
from compute.pool import (
    DATASET_MISSING,
    WARM_UP_S,
    FrameDecoder,
    JobOutcome,
    JobRequest,
    PoolConfig,
    encode_run,
    failed,
    parse_ready,
    parse_reply,
    time_limit_s,
    worker_command,
    worker_env,
)


@dataclass(eq=False)
class _Child:
    process: trio.Process
    decoder: FrameDecoder
    pid: int = 0
    cached: set[bytes] = field(default_factory=set)

    async def read_message(self) -> dict[str, Any] | None:
        """The next frame from the child, or None at end of stream (the child died)."""
        assert self.process.stdout is not None
        while (message := self.decoder.next_message()) is None:
            data = await self.process.stdout.receive_some(1 << 20)
            if not data:
                return None
            self.decoder.feed(data)
        return message

    async def send(self, frame: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(frame)

    async def reap(self) -> None:
        """Wait for the (killed or exiting) child and close our ends of its pipes."""
        await self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                await stream.aclose()


class TrioComputePool:
    """A fixed number of worker children; ``run`` borrows an idle one for one job. Build it with
    :func:`open_compute_pool`."""

    def __init__(self, config: PoolConfig, nursery: trio.Nursery) -> None:
        self.config = config
        self._nursery = nursery
        self._idle_send, self._idle_recv = trio.open_memory_channel[_Child](config.size)
        self._children: set[_Child] = set()
        self._next_id = 1
        self.spawn_failures: list[str] = []

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children (busy or idle)."""
        return sorted(c.pid for c in self._children)

    async def _spawn(self) -> _Child:
        process = await trio.lowlevel.open_process(
            worker_command(self.config), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker_env()
        )
        child = _Child(process, FrameDecoder(self.config.max_frame_bytes))
        with trio.move_on_after(self.config.start_timeout_s):
            message = await child.read_message()
            if message is not None:
                child.pid = parse_ready(message)
                self._children.add(child)
                return child
        process.kill()
        await process.wait()
        raise PoolError("worker did not start (exited or timed out before its ready frame)")

    async def start(self) -> None:
        """Spawn every child concurrently and wait until each has announced itself."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.config.size):
                nursery.start_soon(self._spawn_idle)

    async def _spawn_idle(self) -> None:
        self._idle_send.send_nowait(await self._spawn())

    async def _replace(self, child: _Child) -> None:
        """Reap a killed child and put a fresh one in the idle set (runs in the pool's nursery)."""
        await child.reap()
        self._children.discard(child)
        try:
            await self._spawn_idle()
        except (PoolError, OSError) as exc:
            self.spawn_failures.append(str(exc))

    async def run(self, request: JobRequest) -> JobOutcome:
        """Run one job; a timeout, crash or protocol fault is a failure outcome, and cancellation kills the job."""
        child = await self._idle_recv.receive()
        job_id = self._next_id
        self._next_id += 1
        start = trio.current_time()
        keep = False
        try:
            # Until the child says "begin" (its libraries loaded), the warm-up allowance is on top of the run's
            # time limit; from then the limit alone (``_exchange`` moves the deadline).
            with trio.move_on_after(time_limit_s(request) + WARM_UP_S) as scope:
                outcome = await self._exchange(child, job_id, request, scope)
            wall = trio.current_time() - start
            if scope.cancelled_caught:
                return failed(job_id, "timeout", f"exceeded {request.time_limit_ms} ms", wall)
            if outcome is None:
                return failed(job_id, "crashed", "worker died during the job", wall)
            keep = outcome.failure is None or outcome.failure.kind != "protocol"
            return outcome
        finally:
            if keep:
                self._idle_send.send_nowait(child)
            else:
                # Killing is synchronous, so it happens even while this task is being cancelled.
                child.process.kill()
                self._nursery.start_soon(self._replace, child)

    async def _exchange(self, child: _Child, job_id: int, request: JobRequest, scope: trio.CancelScope
                        ) -> JobOutcome | None:
        include = request.dataset.digest not in child.cached
        start = trio.current_time()
        for _attempt in range(2):
            try:
                await child.send(encode_run(job_id, request, include))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if include:
                child.cached.add(request.dataset.digest)
            try:
                message = await child.read_message()
                while message is not None and message.get("op") == "begin":
                    start = trio.current_time()
                    scope.deadline = start + time_limit_s(request)
                    message = await child.read_message()
            except PoolError as exc:
                return failed(job_id, "protocol", str(exc))
            if message is None:
                return None
            outcome = parse_reply(job_id, message, trio.current_time() - start)
            if outcome != DATASET_MISSING:
                assert isinstance(outcome, JobOutcome)
                return outcome
            child.cached.discard(request.dataset.digest)
            include = True
        return failed(job_id, "protocol", "worker kept asking for the dataset")

    async def aclose(self) -> None:
        """Stop the children: idle ones exit when their stdin closes; the rest are killed."""
        for child in list(self._children):
            child.process.kill()
        with trio.CancelScope(shield=True):
            for child in list(self._children):
                await child.reap()
        self._children.clear()


@asynccontextmanager
async def open_compute_pool(config: PoolConfig | None = None) -> AsyncIterator[TrioComputePool]:
    """Start a pool whose children are all ready on entry, and stopped on exit."""
    async with trio.open_nursery() as nursery:
        pool = TrioComputePool(config or PoolConfig(), nursery)
        try:
            await pool.start()
            yield pool
        finally:
            nursery.cancel_scope.cancel()
            await pool.aclose()
