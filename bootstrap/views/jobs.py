"""How a job reads to a person: what it waits for and its timeline, from the ledger's record alone."""

from __future__ import annotations

from typing import Any

from ledger.state import Job, State


def status_waiting_for(job: Job) -> str | None:
    """What a job in a running state waits for next, by role and deadline."""
    s = job.status
    if s == "open":
        return f"bids until height {job.bid_deadline}"
    if s == "assigned":
        missing = [r for r, a in (("worker", job.worker), ("verifier", job.verifier)) if a not in job.commits]
        return f"commits from {' and '.join(missing) or 'nobody'} by height {job.deadline}"
    if s == "revealing":
        missing = [r for r, a in (("worker", job.worker), ("verifier", job.verifier)) if a not in job.reveals]
        return f"reveals from {' and '.join(missing) or 'nobody'} by height {job.deadline}"
    if s == "disputed":
        return f"the referee's commit and reveal by height {job.deadline}"
    return None


def why_waiting(state: State, job: Job) -> str | None:
    """What a job is waiting for, in words a person can act on ("no bids yet: no worker with a GPU")."""
    if job.status != "open":
        return None
    if job.bids:
        n = len(job.bids)
        return f"{n} bid{'s' if n != 1 else ''}; assignment at height {job.bid_deadline}"
    active = [w for w in state.workers.values() if w.stake >= state.params.min_stake]
    if not active:
        return "no bids yet: no worker with enough stake is registered"
    if job.device == "gpu" and not any(w.device_kind == "gpu" for w in active):
        return "no bids yet: no worker with a GPU"
    fits = [w for w in active if not job.min_memory_mb or not w.memory_mb or w.memory_mb >= job.min_memory_mb]
    if not fits:
        return f"no bids yet: no worker with {job.min_memory_mb} MB of memory"
    return f"no bids yet: waiting for workers until height {job.bid_deadline}"


def assigned_at_submission(job: Job) -> bool:
    """Whether the ledger assigned the job from standing offers inside its submit block (no bid phase)."""
    return bool(job.history) and job.history[0][0] == "assigned"


def timeline(job: Job) -> list[dict[str, Any]]:
    """The job's progress as the dashboard draws it: submitted → bids (or "offer" for a job assigned at
    submission) → assigned → committed → revealed → an outcome; each step ``done`` or not, with the height where
    the ledger recorded it when known."""
    at = {}
    for status, height in job.history:
        at.setdefault(status, height)
    final = job.status if job.status in ("verified", "failed", "refunded") else None
    if assigned_at_submission(job):
        found = {"step": "offer", "done": True, "height": job.submitted_at}
    else:
        found = {"step": "bids", "done": bool(job.bids) or job.worker is not None, "count": len(job.bids)}
    steps = [
        {"step": "submitted", "done": True, "height": job.submitted_at},
        found,
        {"step": "assigned", "done": job.worker is not None, "height": at.get("assigned")},
        {"step": "committed", "done": len(job.commits) >= 2 or "revealing" in at, "count": len(job.commits)},
        {"step": "revealed", "done": final == "verified" or "disputed" in at, "count": len(job.reveals),
         "height": at.get("revealing")},
    ]
    if "disputed" in at:
        steps.append({"step": "disputed", "done": True, "height": at["disputed"]})
    steps.append({"step": final or "verified", "done": final is not None, "height": at.get(final or "verified")})
    return steps
