"""How a job reads to a person: what it waits for, its timeline, what each party revealed and how it ended, from
the ledger's record alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bootstrap.agent import NODE_CODES
from ledger.state import Job, State
from ledger.verdict import OUTCOMES

OUTCOME_WORDS = {
    "result": "a result",
    "unavailable": "could not fetch the spec or the dataset",
    "error": "the spec fails on its data",
    "over_limit": "stopped by the run's time or memory limit",
}
"""What a reveal's outcome (``ledger.verdict``) says, in words."""

_SHARE = "each party got a small share of its pay for the trouble, the client the rest back; nobody was penalised"
VERDICT_WORDS = {
    "agreed": "worker and verifier agreed on the result",
    "agreed_by_referee": "a referee agreed with both worker and verifier",
    "audited": "an auditor drawn after the commitments ran it again and agreed with worker and verifier",
    "auditor_faulty": "an auditor's claim was wrong (it was slashed); worker, verifier and the appeal panel agreed",
    "auditor_unable": "the auditor could not run the job (not penalised); the appeal panel confirmed the result",
    "pair_faulty": "worker and verifier agreed on a wrong result (both slashed); the auditor and the appeal "
                   "panel's majority agreed on the accepted one",
    "pair_unable": "worker and verifier claimed they could not run it; the auditor and the appeal panel ran it",
    "worker_faulty": "the worker's result was wrong (it was slashed); verifier and referee agreed",
    "verifier_faulty": "the verifier's claim was wrong (it was slashed); worker and referee agreed",
    "worker_unable": "the worker could not run the job (not penalised, not paid); verifier and referee agreed",
    "verifier_unable": "the verifier could not run the job (not penalised, not paid); worker and referee agreed",
    "unavailable": f"nobody could fetch the job's spec or dataset: {_SHARE}",
    "unrunnable": f"nobody could run the job (its data could not be fetched, or it ran over its limits): {_SHARE}",
    "spec_error": f"the job's spec fails on its data, the same way for every worker: {_SHARE}",
    "disputed_no_referee": "worker and verifier disagreed and no referee was free: the client was refunded",
    "no_majority": "the checkers found no majority for any claim: the client was refunded, nobody was slashed",
    "referee_timeout": "the referee missed its deadline (penalised): the client was refunded",
    "commit_timeout": "a worker missed its commit deadline too often (penalised): the client was refunded",
    "commit_timeout_no_worker": "a worker missed its commit deadline (penalised) and nobody could replace it: "
                                "refunded",
    "commit_timeout_no_verifier": "a verifier missed its commit deadline (penalised) and nobody could replace "
                                  "it: refunded",
    "reveal_timeout": "a party committed but never revealed (penalised): the client was refunded",
    "no_eligible_bid": "no worker bid on it: the client was refunded",
    "no_verifier": "no verifier was free: the client was refunded",
    "cancelled": "the client cancelled it",
    "artifact_unconfirmed": "the result was accepted, but nobody who backed it could fetch its artifact and find it "
                            "to be that result: the client was refunded and nobody was paid (a party the checkers "
                            "had outvoted stays slashed)",
}
"""What each of the ledger's verdicts (``ledger.jobs``) means for the client and the workers."""

_COMPUTE_CODE_WORDS = {1: "a spec parameter does not suit the data", 2: "the dataset cannot be used",
                       3: "the result is not finite or too large", 4: "the run could not produce a result"}


def error_code_words(code: int) -> str:
    """What an error code a worker claimed means (the node's own codes from 1000, compute's below)."""
    if code in NODE_CODES:
        return NODE_CODES[code]
    return _COMPUTE_CODE_WORDS.get(code // 100, "a compute error")


def verdict_words(verdict: str, result_summary: Sequence[int] | None = None) -> str:
    """A job's verdict in words a user understands (a spec error with its code and what it means)."""
    words = VERDICT_WORDS.get(verdict, verdict.replace("_", " "))
    if verdict == "spec_error" and result_summary:
        code = result_summary[0]
        words += f" (error {code}: {error_code_words(code)})"
    return words


def reveal_outcomes(job: Job) -> list[dict[str, Any]]:
    """What each party revealed, by role (worker, verifier, referee or auditor, panel): its outcome and that in
    words."""
    out = []
    checker = "auditor" if getattr(job, "check", "") == "audit" else "referee"
    roles = [("worker", job.worker), ("verifier", job.verifier), (checker, job.referee),
             *(("panel", m) for m in getattr(job, "panel", []))]
    for role, account in roles:
        if account is None or account not in job.reveals:
            continue
        summary, _, outcome = job.reveals[account]
        name = OUTCOMES.get(outcome, str(outcome))
        words = OUTCOME_WORDS.get(name, name)
        if name == "error" and summary:
            words += f" (error {summary[0]}: {error_code_words(summary[0])})"
        out.append({"role": role, "outcome": name, "words": words})
    return out


def status_waiting_for(job: Job) -> str | None:
    """What a job in a running state waits for next, by role and deadline."""
    s = job.status
    if s == "open":
        return f"bids until height {job.bid_deadline}"
    if s == "assigned":
        missing = [r for r, a in (("worker", job.worker), ("verifier", job.verifier)) if a not in job.commits]
        if not missing:
            return f"the check drawn at height {job.deadline} from the hash of the block holding the commitments"
        return f"commits from {' and '.join(missing)} by height {job.deadline}"
    if s == "revealing":
        missing = [o for o in ("worker", "verifier", "referee") if (a := getattr(job, o)) is not None
                   and a in job.commits and a not in job.reveals]
        missing += ["a panel member"] * sum(1 for m in job.panel if m in job.commits and m not in job.reveals)
        return f"reveals from {', '.join(missing) or 'nobody'} by height {job.deadline}"
    if s == "confirming":
        return (f"a confirmation by height {job.deadline} that the accepted artifact "
                f"{(job.result_artifact or b'').hex()[:16]}… can be fetched and is the accepted result (from "
                f"{'one of ' if len(job.confirmers) > 1 else ''}{len(job.confirmers)} backer"
                f"{'s' if len(job.confirmers) != 1 else ''} of it)")
    if s == "disputed":
        return f"the referee's blind commitment by height {job.deadline} (worker and verifier claimed different " \
               "things)"
    if s == "auditing":
        if job.panel:
            left = sum(1 for m in job.panel if m not in job.commits)
            return f"commitments from {left} appeal panel member{'s' if left != 1 else ''} by height {job.deadline}"
        if job.referee in job.commits:
            return f"the appeal panel drawn at height {job.deadline} (the auditor's claim differs)"
        return f"the auditor's blind commitment by height {job.deadline}"
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
    revealed: dict[str, Any] = {"step": "revealed", "done": final == "verified"
                                or (final is not None and bool(job.reveals)), "count": len(job.reveals),
                                "height": at.get("revealing")}
    outcomes = reveal_outcomes(job)
    if any(o["outcome"] != "result" for o in outcomes):
        revealed["note"] = "; ".join(f"{o['role']}: {o['words']}" for o in outcomes)
    steps = [
        {"step": "submitted", "done": True, "height": job.submitted_at},
        found,
        {"step": "assigned", "done": job.worker is not None, "height": at.get("assigned")},
        {"step": "committed", "done": len(job.commits) >= 2 or "revealing" in at, "count": len(job.commits)},
    ]
    # Checks come before the reveals: a referee, an auditor and its panel all commit blind.
    for status in ("disputed", "auditing"):
        if status in at:
            steps.append({"step": status, "done": True, "height": at[status]})
    steps.append(revealed)
    if "confirming" in at:
        steps.append({"step": "confirmed", "done": final == "verified", "height": at["confirming"]})
    end: dict[str, Any] = {"step": final or "verified", "done": final is not None,
                           "height": at.get(final or "verified")}
    verdict = getattr(job, "verdict", "")
    if final is not None and verdict:
        end.update(verdict=verdict, note=verdict_words(verdict, getattr(job, "result_summary", None)))
    steps.append(end)
    return steps
