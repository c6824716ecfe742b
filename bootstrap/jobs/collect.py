"""Collecting job data no live job needs, so a node's blob store stays bounded however long the chain runs.

A job's blobs (its spec, its dataset, the artifacts its parties revealed) are live while the job is (the state's
``active_jobs``, so finding them costs the live jobs, not the history) and are marked used at every sweep; a blob
unused for ``retention_s`` (a terminal job's data a while after it ended, an upload no job took up, the data of a
submission that never committed) is removed, and beyond a total quota the least recently used go first. The walk
of the store runs on a worker thread, never on the event loop. ``retention_s = 0`` keeps everything (an archive
node); ``max_total_bytes = 0`` sets no quota.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from bootstrap.jobs.blobs import BlobStore, SweepReport

log = logging.getLogger("bootstrap.jobs")


def live_digests(state: Any) -> set[bytes]:
    """The blobs the state's live (non-terminal) jobs name: spec, dataset, result and revealed artifacts."""
    out: set[bytes] = set()
    for job_id in state.active_jobs:
        job = state.jobs.get(job_id)
        if job is None:
            continue
        for d in (job.params_digest, job.dataset_digest, job.result_artifact):
            if d:
                out.add(d)
        for _summary, artifact, _outcome in job.reveals.values():
            if artifact:
                out.add(artifact)
    return out


class BlobCollector:
    """Sweeps ``store`` every ``interval_s`` against the live jobs of ``state_of()``; counts in ``counters``."""

    def __init__(self, store: BlobStore, state_of: Any, counters: dict[str, int], *, interval_s: float,
                 retention_s: float, max_total_bytes: int) -> None:
        self.store = store
        self.state_of = state_of
        self.counters = counters
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.max_total_bytes = max_total_bytes
        self.last: SweepReport | None = None

    async def sweep_once(self) -> SweepReport:
        live = live_digests(self.state_of())  # on the loop: the state is not safe to read from a thread
        report = await trio.to_thread.run_sync(
            lambda: self.store.sweep(live, older_than_s=self.retention_s, max_total_bytes=self.max_total_bytes))
        self.last = report
        self.counters["blob_sweeps"] += 1
        self.counters["blobs_collected"] += report.removed
        self.counters["blob_bytes_collected"] += report.removed_bytes
        if report.removed or report.temp_removed:
            log.info("blob store: collected %d blobs (%d bytes, %d over quota) and %d temp files; %d blobs, "
                     "%d bytes kept", report.removed, report.removed_bytes, report.over_quota_removed,
                     report.temp_removed, report.kept, report.kept_bytes)
        return report

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval_s)
            try:
                await self.sweep_once()
            except OSError as exc:  # a full or failing disk: report it and try again next time
                self.counters["blob_sweep_failures"] += 1
                log.warning("blob store sweep failed: %r", exc)
