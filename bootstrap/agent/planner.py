"""The worker agent's planner: sans-IO decisions of what each local worker key does next.

Given the committed ledger ``State``, the local worker keys and the agent's :class:`AgentMemory` (what it
fetched, ran, posted and committed to), :meth:`Planner.plan` returns the next actions: :class:`FetchSpec`,
:class:`PostBid`, :class:`PostOffer`, :class:`RunJob`, :class:`PostCommit`, :class:`PostReveal`. It never waits,
never signs, never draws randomness (salts derive from the memory's secret). The trio shell that carries the
actions out is :mod:`bootstrap.agent.shell`.

A node bids on as many open jobs as it can finish in time, not one at a time (see :class:`Planner` for the
policy): the planner hands out runs earliest commit deadline first, one per free compute-pool worker, and the
shell measures seconds per block and each model's run time so that "in time" means something.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrap.agent.device import LocalDevice
from bootstrap.agent.faults import COPY_COMMIT, NO_REVEAL, RANDOM_RESULTS, Faults, perturb_summary
from bootstrap.errors import NodeError
from compute.canonical import blake2b256
from compute.spec import JobSpec
from ledger.errors import (
    BadCommitment,
    DeadlinePassed,
    DuplicateAction,
    LedgerError,
    NotCommitted,
    NotEligible,
    NotParticipant,
    TooManyBids,
    UnknownJob,
    UnknownWorker,
    WrongJobState,
)
from ledger.jobs import eligibility_problem, worker_problem
from ledger.state import ASSIGNED, DISPUTED, OPEN, REVEALING, Job, State
from ledger.tx import Bid, CommitResult, Offer, Payload, RevealResult, compute_commitment

WORKER, VERIFIER, REFEREE = "worker", "verifier", "referee"
NODE_KEY = "node"
OPENINGS_FILE = "agent-openings.json"
RUN_TIMES_KEPT = 5  # measured run times remembered per model

# Ledger refusals that will not change by retrying the same tx: the agent stops trying that action.
PERMANENT_REFUSALS: tuple[type[LedgerError], ...] = (
    BadCommitment, DeadlinePassed, DuplicateAction, NotCommitted, NotEligible, NotParticipant, TooManyBids,
    UnknownJob, UnknownWorker, WrongJobState,
)


class AgentError(NodeError):
    """The worker agent could not do something; ``job_id`` and ``reason`` say what and why."""

    def __init__(self, job_id: bytes | None, reason: str) -> None:
        where = f"job {job_id.hex()[:16]}: " if job_id else ""
        super().__init__(f"{where}{reason}")
        self.job_id, self.reason = job_id, reason


# ---- the planner's vocabulary --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalKey:
    """A keystore key this node signs with, and its ledger account."""

    name: str
    account: bytes


@dataclass(frozen=True)
class Opening:
    """What a commitment hides: the summary, the artifact digest and the salt (revealed later)."""

    summary: tuple[int, ...]
    artifact_digest: bytes
    salt: bytes

    def commitment(self, job_id: bytes, account: bytes) -> bytes:
        return compute_commitment(job_id, account, list(self.summary), self.artifact_digest, self.salt)


@dataclass(frozen=True)
class FetchSpec:
    """Fetch and check an open job's spec (so the agent knows whether it can run it before bidding)."""

    job_id: bytes
    digest: bytes


@dataclass(frozen=True)
class PostBid:
    job_id: bytes
    key: LocalKey
    price: int


@dataclass(frozen=True)
class PostOffer:
    """Set (``until > 0``) or withdraw (``until = 0``) a key's standing offer; not about any one job."""

    key: LocalKey
    price: int
    until: int


@dataclass(frozen=True)
class RunJob:
    """Fetch the dataset and run the job once, for every local key holding a role on it."""

    job_id: bytes
    spec_digest: bytes
    dataset_digest: bytes
    roles: tuple[tuple[str, str], ...]  # (key name, role)


@dataclass(frozen=True)
class PostCommit:
    job_id: bytes
    key: LocalKey
    role: str
    commitment: bytes
    opening: Opening | None  # None when the commitment was copied (fault injection): nothing to open


@dataclass(frozen=True)
class PostReveal:
    job_id: bytes
    key: LocalKey
    role: str
    opening: Opening


Action = FetchSpec | PostBid | PostOffer | RunJob | PostCommit | PostReveal


def describe(action: Action) -> dict[str, Any]:
    """A JSON-friendly line for logs, ``status()`` and ``trigger()``."""
    if isinstance(action, PostOffer):
        return {"action": "PostOffer", "key": action.key.name, "price": action.price, "until": action.until}
    d: dict[str, Any] = {"action": type(action).__name__, "job_id": action.job_id.hex()}
    if isinstance(action, PostBid):
        d.update(key=action.key.name, price=action.price)
    elif isinstance(action, PostCommit | PostReveal):
        d.update(key=action.key.name, role=action.role)
    elif isinstance(action, RunJob):
        d.update(roles=[list(r) for r in action.roles])
    return d


def payload_for(action: PostBid | PostOffer | PostCommit | PostReveal) -> Payload:
    """The ledger transaction an action posts."""
    if isinstance(action, PostOffer):
        return Offer(action.price, action.until)
    if isinstance(action, PostBid):
        return Bid(action.job_id, action.price)
    if isinstance(action, PostCommit):
        return CommitResult(action.job_id, action.commitment)
    o = action.opening
    return RevealResult(action.job_id, list(o.summary), o.artifact_digest, o.salt)


@dataclass
class RunRecord:
    """A finished local run: what the summary and artifact were, and where the full result is kept."""

    summary: list[int]
    artifact_digest: bytes
    result_digest: bytes
    elapsed_s: float = 0.0
    backend: str = ""


@dataclass
class AgentMemory:
    """What the agent knows beyond the ledger. Only the shell writes it; the planner only reads it."""

    secret: bytes = field(default_factory=lambda: os.urandom(32))
    specs: dict[bytes, JobSpec] = field(default_factory=dict)
    spec_problems: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # digest -> (height, reason)
    fetching: set[bytes] = field(default_factory=set)
    running: set[bytes] = field(default_factory=set)
    results: dict[bytes, RunRecord] = field(default_factory=dict)
    run_failures: dict[bytes, tuple[int, int, str]] = field(default_factory=dict)  # job -> (count, height, why)
    posted: dict[tuple[bytes, bytes, str], int] = field(default_factory=dict)  # (job, account, kind) -> height
    refused: dict[tuple[bytes, bytes, str], str] = field(default_factory=dict)
    openings: dict[tuple[bytes, bytes], Opening] = field(default_factory=dict)
    run_seconds: dict[str, deque[float]] = field(default_factory=dict)  # model -> recent measured run times
    offers_posted: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # account -> (height, until)

    def salt(self, job_id: bytes, account: bytes) -> bytes:
        """A salt nobody else can guess, stable for this job and key (so a re-plan commits the same bytes)."""
        return blake2b256(b"dacn/agent/salt\x00" + self.secret + job_id + account)

    def note_run(self, model: str, seconds: float) -> None:
        """Remember how long a run of ``model`` took (the planner sizes its bids by the recent worst)."""
        self.run_seconds.setdefault(model, deque(maxlen=RUN_TIMES_KEPT)).append(max(0.0, seconds))

    def forget_job(self, job_id: bytes) -> None:
        """Drop everything about a finished job except its run record (the result stays retrievable)."""
        for table in (self.posted, self.refused):
            for k in [k for k in table if k[0] == job_id]:
                del table[k]
        for k in [k for k in self.openings if k[0] == job_id]:
            del self.openings[k]
        self.run_failures.pop(job_id, None)


@dataclass(frozen=True)
class Work:
    """One run this node owes or may soon owe, in seconds from now: it can start at ``start_s`` (a bid's job is
    assigned when its bid window closes) and must be done by ``due_s`` (its commitment must still land in time)."""

    start_s: float
    due_s: float
    cost_s: float


# ---- the planner ---------------------------------------------------------------------------------------------
@dataclass
class Planner:
    """Decides, from the committed state, what each local worker key should do next.

    Bidding policy: a key bids on every open job it can run, and a bid does not hold it to one job at a time,
    since the compute pool serialises the runs anyway. What bounds the bids is time: the node's runs (duties not
    yet committed, plus every job it has bid on, assumed won) must all finish before their commit deadlines when
    run in deadline order with ``parallel_runs`` at once, each costing its model's measured run time (the worst of
    the recent ones, or ``default_run_s`` before any) times ``run_safety`` plus ``run_overhead_s``, with blocks
    of ``block_time_s``. A job that would break that is not bid on. Besides, a key holds at most
    ``max_open_bids`` bids on open jobs, and does not bid while it has ``max_concurrent_jobs`` roles still to
    commit. Jobs with the fewest bids are bid on first (then the earliest deadline, then an order private to this
    node), so that nodes short of time leave their share to each other rather than all picking the same jobs.
    """

    device: LocalDevice
    bid_permille: int = 800
    max_concurrent_jobs: int = 1
    faults: Faults = field(default_factory=Faults)
    can_compute: bool = True
    retry_after_blocks: int = 4
    max_run_attempts: int = 3
    max_open_bids: int = 8
    parallel_runs: int = 1
    block_time_s: float = 1.0
    default_run_s: float = 3.0
    run_safety: float = 1.5
    run_overhead_s: float = 0.5
    offer_price: int = 20
    offer_blocks: int = 20

    def price_for(self, reward: int) -> int:
        """The bid for a job: ``bid_permille`` of the reward, at least 1 token, never above the reward."""
        return min(reward, max(1, reward * self.bid_permille // 1000))

    def run_estimate_s(self, model: str, memory: AgentMemory) -> float:
        """What one run of ``model`` is budgeted: the recent worst measured (or the default), with margins."""
        measured = memory.run_seconds.get(model)
        base = max(measured) if measured else self.default_run_s
        return base * self.run_safety + self.run_overhead_s

    def spec_problem(self, job: Job, memory: AgentMemory) -> str | None:
        """Why this node should not bid on ``job`` given its spec (``"unknown"`` while it is not fetched yet)."""
        spec = memory.specs.get(job.params_digest)
        if spec is None:
            problem = memory.spec_problems.get(job.params_digest)
            return problem[1] if problem else "unknown"
        if spec.model != job.model:
            return f"spec model {spec.model!r} differs from the job's {job.model!r}"
        if spec.dataset_digest != job.dataset_digest:
            return "spec names another dataset than the job"
        return self.device.problem(spec.model, job.device, max(job.min_memory_mb, spec.requirements.min_memory_mb))

    def _recently_posted(self, memory: AgentMemory, key: tuple[bytes, bytes, str], height: int) -> bool:
        at = memory.posted.get(key)
        return at is not None and height - at < self.retry_after_blocks

    def _blocked(self, memory: AgentMemory, job_id: bytes, account: bytes, kind: str, height: int) -> bool:
        key = (job_id, account, kind)
        return key in memory.refused or self._recently_posted(memory, key, height)

    def _has_bid(self, state: State, job: Job, account: bytes, memory: AgentMemory) -> bool:
        return account in job.bids or self._recently_posted(memory, (job.job_id, account, "bid"), state.height)

    def plan(self, state: State, keys: Sequence[LocalKey], memory: AgentMemory, *, bidding: bool = True,
             offering: bool | None = None) -> list[Action]:
        """The actions to take now: duties in job-id order, then runs in deadline order (as many as there are
        free run slots), then spec fetches and bids, then offers (``offering`` True: keep each key's offer
        standing; False: withdraw it; None: leave offers alone). Posting them all is safe (none depends on
        another)."""
        workers = [k for k in keys if k.account in state.workers]
        if not workers:
            return []
        actions: list[Action] = []
        runs: list[tuple[int, bytes, RunJob]] = []
        open_jobs: list[Job] = []
        for job_id in sorted(state.active_jobs):
            job = state.jobs[job_id]
            if job.status == OPEN:
                open_jobs.append(job)
            elif job.status in (ASSIGNED, REVEALING, DISPUTED):
                duties, run = self._duties(state, job, workers, memory)
                actions += duties
                if run is not None:
                    runs.append((job.deadline, job_id, run))
        free_slots = self.parallel_runs - len(memory.running)
        actions += [run for _, _, run in sorted(runs)[:max(0, free_slots)]]
        if bidding and self.can_compute and open_jobs:
            actions += self._bids(state, open_jobs, workers, memory)
        if offering is not None:
            actions += self._offers(state, workers, memory, offering and self.can_compute)
        return actions

    # -- standing offers --
    def _offers(self, state: State, workers: list[LocalKey], memory: AgentMemory, want: bool) -> list[Action]:
        """Keep each eligible key's offer standing (renewed when fewer than half its blocks remain), or withdraw
        the keys' live offers when this node should not be assigned jobs."""
        span = max(2, min(self.offer_blocks, state.params.max_window))
        out: list[Action] = []
        for k in workers:
            w = state.workers[k.account]
            # A tx posted now lands in the next block at the earliest: that is the first height that matters.
            live = w.offer_live_at(state.height + 1)
            posted = memory.offers_posted.get(k.account)
            recent = posted is not None and state.height - posted[0] < self.retry_after_blocks
            if want and worker_problem(state, k.account) is None:
                fresh = live and w.offer_until - state.height >= span // 2 and w.offer_price == self.offer_price
                if fresh or (recent and posted is not None and posted[1] > 0):
                    continue  # standing, or a renewal is on its way
                out.append(PostOffer(k, self.offer_price, state.height + span))
            elif live and not (recent and posted is not None and posted[1] == 0):
                out.append(PostOffer(k, 0, 0))
        return out

    # -- bidding --
    def _work(self, state: State, job: Job, memory: AgentMemory) -> Work:
        """The run ``job`` asks of this node, timed from now (an open job as if this node's bid wins). An open
        job is assigned at its ``bid_deadline``; an assigned one (after bids, or at submission from offers,
        where ``bid_deadline`` is the submission height) can start now and is due by its commit deadline."""
        bt = self.block_time_s
        cost = self.run_estimate_s(job.model, memory) / self.parallel_runs
        if job.status == OPEN:
            assigned_at = job.bid_deadline
            return Work((assigned_at - state.height) * bt, (assigned_at + job.commit_window - state.height - 1) * bt,
                        cost)
        return Work(0.0, (job.deadline - state.height - 1) * bt, cost)

    def _backlog(self, state: State, workers: list[LocalKey], memory: AgentMemory) -> list[Work]:
        """Every run the node owes (a role not yet committed, no result yet) or may owe (a bid on an open job)."""
        out = []
        for job_id in state.active_jobs:
            job = state.jobs[job_id]
            if job.status == OPEN:
                if any(self._has_bid(state, job, k.account, memory) for k in workers):
                    out.append(self._work(state, job, memory))
            elif job.status in (ASSIGNED, DISPUTED) and job_id not in memory.results and any(
                    k.account not in job.commits for k, _ in self._roles(job, workers)):
                out.append(self._work(state, job, memory))
        return out

    @staticmethod
    def fits(work: Sequence[Work]) -> bool:
        """Whether the runs all finish in time when run one after another in deadline order."""
        t = 0.0
        for w in sorted(work, key=lambda w: (w.due_s, w.start_s)):
            t = max(t, w.start_s) + w.cost_s
            if t > w.due_s:
                return False
        return True

    def _bids(self, state: State, open_jobs: list[Job], workers: list[LocalKey], memory: AgentMemory
              ) -> list[Action]:
        out: list[Action] = []
        candidates: list[Job] = []
        fetching: set[bytes] = set()
        for job in open_jobs:
            if state.height + 1 > job.bid_deadline:
                continue  # a bid now would land after the window
            problem = self.spec_problem(job, memory)
            if problem == "unknown":
                retry = memory.spec_problems.get(job.params_digest)
                if job.params_digest not in memory.fetching | fetching and (
                        retry is None or state.height - retry[0] >= self.retry_after_blocks):
                    out.append(FetchSpec(job.job_id, job.params_digest))  # one fetch per spec, for all its jobs
                    fetching.add(job.params_digest)
            elif problem is None:
                candidates.append(job)
        if not candidates:
            return out
        open_bids = {k.account: 0 for k in workers}
        for job in open_jobs:
            for k in workers:
                if self._has_bid(state, job, k.account, memory):
                    open_bids[k.account] += 1
        to_commit = {k.account: 0 for k in workers}
        for job_id in state.active_jobs:
            job = state.jobs[job_id]
            if job.status in (ASSIGNED, DISPUTED):
                for k, _ in self._roles(job, workers):
                    if k.account not in job.commits:
                        to_commit[k.account] += 1
        backlog = self._backlog(state, workers, memory)
        candidates.sort(key=lambda j: (len(j.bids), j.bid_deadline + j.commit_window,
                                       blake2b256(memory.secret + j.job_id)))
        free = [k for k in workers
                if open_bids[k.account] < self.max_open_bids and to_commit[k.account] < self.max_concurrent_jobs]
        for job in candidates:
            if not free:
                break  # every key is at its limits: nothing more to bid on this block
            room = state.params.max_bids_per_job - len(job.bids)
            bidders = [k for k in free
                       if k.account not in job.bids
                       and not self._blocked(memory, job.job_id, k.account, "bid", state.height)
                       and eligibility_problem(state, k.account, job) is None][:max(0, room)]
            if not bidders:
                continue
            if not any(self._has_bid(state, job, k.account, memory) for k in workers):
                work = self._work(state, job, memory)
                if not self.fits([*backlog, work]):
                    continue  # this node could not also finish it in time (another key's bid adds no run)
                backlog.append(work)
            for k in bidders:
                out.append(PostBid(job.job_id, k, self.price_for(job.reward)))
                open_bids[k.account] += 1
            free = [k for k in free if open_bids[k.account] < self.max_open_bids]
        return out

    # -- duties --
    def _roles(self, job: Job, workers: list[LocalKey]) -> list[tuple[LocalKey, str]]:
        """Local keys holding a role that still has to commit or reveal in the job's current phase."""
        holders = [(job.worker, WORKER), (job.verifier, VERIFIER)] if job.status in (ASSIGNED, REVEALING) \
            else [(job.referee, REFEREE)]
        by_account = {k.account: k for k in workers}
        return [(by_account[a], role) for a, role in holders if a in by_account]

    def _duties(self, state: State, job: Job, workers: list[LocalKey], memory: AgentMemory
                ) -> tuple[list[Action], RunJob | None]:
        """Commits and reveals due now, and the run the job still needs from this node (if any)."""
        if state.height + 1 > job.deadline:
            return [], None  # anything posted now would land after the deadline
        out: list[Action] = []
        need_run: list[tuple[str, str]] = []
        for k, role in self._roles(job, workers):
            if job.status in (ASSIGNED, DISPUTED) and k.account not in job.commits:
                if self._blocked(memory, job.job_id, k.account, "commit", state.height):
                    continue
                if self.faults.applies(k.name, COPY_COMMIT):
                    others = sorted(c for a, c in job.commits.items() if a != k.account)
                    if others:  # nothing to copy until someone else commits
                        out.append(PostCommit(job.job_id, k, role, others[0], None))
                    continue
                record = memory.results.get(job.job_id)
                if record is None:
                    need_run.append((k.name, role))
                    continue
                opening = self._opening(job.job_id, k, record, memory)
                out.append(PostCommit(job.job_id, k, role, opening.commitment(job.job_id, k.account), opening))
            elif k.account in job.commits and k.account not in job.reveals and job.status in (REVEALING, DISPUTED):
                if self.faults.applies(k.name, NO_REVEAL):
                    continue
                if self._blocked(memory, job.job_id, k.account, "reveal", state.height):
                    continue
                opening = memory.openings.get((job.job_id, k.account))
                if opening is None or opening.commitment(job.job_id, k.account) != job.commits[k.account]:
                    continue  # lost (or never had) what opens this commitment: nothing honest to post
                out.append(PostReveal(job.job_id, k, role, opening))
        run = None
        if need_run and job.job_id not in memory.running:
            failures = memory.run_failures.get(job.job_id)
            if failures is None or (failures[0] < self.max_run_attempts
                                    and state.height - failures[1] >= 1):
                run = RunJob(job.job_id, job.params_digest, job.dataset_digest, tuple(need_run))
        return out, run

    def _opening(self, job_id: bytes, key: LocalKey, record: RunRecord, memory: AgentMemory) -> Opening:
        known = memory.openings.get((job_id, key.account))
        if known is not None:
            return known
        summary = record.summary
        if self.faults.applies(key.name, RANDOM_RESULTS):
            summary = perturb_summary(summary, memory.salt(job_id, key.account))
        return Opening(tuple(summary), record.artifact_digest, memory.salt(job_id, key.account))
