"""The worker agent ("auto-coordination"): bids, runs, commits and reveals for this node's worker keys.

Two layers, so the decisions can be tested without a network:

* :class:`Planner` is sans-IO. Given the committed ledger ``State``, the local worker keys and the agent's
  :class:`AgentMemory` (what it fetched, ran, posted and committed to), ``plan`` returns the next actions:
  :class:`FetchSpec`, :class:`PostBid`, :class:`PostOffer`, :class:`RunJob`, :class:`PostCommit`,
  :class:`PostReveal`. It never waits, never signs, never draws randomness (salts derive from the memory's
  secret).
* :class:`WorkerAgent` is the trio shell. It scans after every committed block (node events, with a polling
  fallback), executes the planner's actions through the node (``sign_and_submit``, ``fetch_blob``, the compute
  pool) and writes what happened back into the memory. Every failure is logged with its job and key; none
  reaches the node.

Duties drawn by the ledger (verifier, referee) are honoured even while auto-coordination is stopped: a key that
ignored them would be slashed for stalling. Stopping only stops new bids and withdraws the standing offers.

Standing offers (issue 8): while auto-coordination runs and the node can run jobs (it has a compute pool), each
local worker key keeps an ``offer`` standing ``offer_blocks`` ahead, renewed when fewer than half of them remain,
so jobs submitted with ``assign="offers"`` are assigned to it inside their submit block. Such a job appears
directly as ``assigned`` and is run like any other assignment, as soon as a scan sees it.

A node bids on as many open jobs as it can finish in time, not one at a time (see :class:`Planner` for the
policy): the planner hands out runs earliest commit deadline first, one per free compute-pool worker, and the
shell measures seconds per block and each model's run time so that "in time" means something.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bootstrap.agent.device import LocalDevice, probe_device
from bootstrap.agent.faults import COPY_COMMIT, NO_REVEAL, RANDOM_RESULTS, Faults, parse_faults, perturb_summary
from bootstrap.errors import NodeError
from compute.canonical import JobResult, blake2b256
from compute.dataset import Dataset, decode_dataset
from compute.errors import ComputeError
from compute.pool import JobRequest
from compute.spec import MAX_SPEC_BYTES, JobSpec
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

log = logging.getLogger("bootstrap.agent")

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


# ---- the trio shell ------------------------------------------------------------------------------------------
def _agent_config(config: Any) -> Any:
    """Accept a NodeConfig (uses its ``agent``), an AgentConfig, or None (defaults)."""
    if config is None:
        from bootstrap.home.config import AgentConfig

        return AgentConfig()
    return getattr(config, "agent", config)


class WorkerAgent:
    """Runs the planner after every block and carries out its actions through the node."""

    def __init__(self, node: Any, config: Any = None, *, faults: Faults | str | None = None,
                 device: LocalDevice | None = None, poll_interval_s: float = 1.0,
                 max_dataset_bytes: int | None = None, fetch_timeout_s: float = 30.0) -> None:
        cfg = _agent_config(config)
        self.node = node
        self.config = cfg
        if faults is None:
            faults = getattr(node, "faulty", None)
        self.faults = faults if isinstance(faults, Faults) else parse_faults(faults)
        self.device = device or probe_device()
        pool_size = getattr(getattr(node, "config", None), "pool_size", 1)
        self.planner = Planner(self.device, cfg.bid_permille, cfg.max_concurrent_jobs, self.faults,
                               max_open_bids=cfg.max_open_bids,
                               parallel_runs=max(1, pool_size if isinstance(pool_size, int) else 1),
                               offer_price=int(getattr(cfg, "offer_price", 20)),
                               offer_blocks=int(getattr(cfg, "offer_blocks", 20)))
        # Offers invite assignments at any moment: only a node that has a compute pool makes them.
        self.has_pool = not (isinstance(pool_size, int) and pool_size <= 0)
        self.memory = AgentMemory()
        self.auto = bool(cfg.auto_coordinate)
        self.keystore_workers = bool(getattr(cfg, "keystore_workers", True))
        self.poll_interval_s = poll_interval_s
        self.max_dataset_bytes = max_dataset_bytes or getattr(getattr(node, "config", None), "max_blob_bytes",
                                                              256 * 1024 * 1024)
        self.fetch_timeout_s = fetch_timeout_s
        self.counters: dict[str, int] = {k: 0 for k in (
            "scans", "bids", "offers", "commits", "reveals", "runs_ok", "runs_failed", "refused", "errors")}
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)
        self.last_scan_height = -1
        self._last_block: tuple[int, float] | None = None  # (height, trio time) when a new height was first seen
        self._datasets: OrderedDict[bytes, Dataset] = OrderedDict()
        self._key_cache: dict[str, bytes] = {}
        self._scan_lock = trio.Lock()
        self._wake_send, self._wake_recv = trio.open_memory_channel[None](1)
        self._nursery: trio.Nursery | None = None
        self._openings_path: Path | None = None

    # -- control (the API's coordination endpoints) --
    def start(self) -> None:
        """Auto-coordination on: bid on open jobs again."""
        self.auto = True
        self.wake()

    def stop(self) -> None:
        """Auto-coordination off: no new bids, offers withdrawn (duties already drawn are still honoured)."""
        self.auto = False
        self.wake()  # the next scan withdraws the standing offers

    async def withdraw_offers(self, timeout_s: float = 10.0) -> list[str]:
        """Withdraw every local key's live offer now and wait (at most ``timeout_s``) until the withdrawals are
        committed, so that once this returns no job submitted later is assigned to this node from an offer.
        Call after ``stop()``; returns the withdrawal tx ids."""
        async with self._scan_lock:  # no scan posts its own withdrawal (or a renewal) meanwhile
            tx_ids = await self._post_withdrawals()
        for tx_id in tx_ids:
            await self.node.wait_for_tx(tx_id, timeout_s)
        return tx_ids

    async def _post_withdrawals(self) -> list[str]:
        """Post ``offer(0, 0)`` for each local key with a live offer or one still on its way in (the
        withdrawal's later nonce lands after it); the withdrawal tx ids."""
        state = self.node.state
        tx_ids = []
        for k in self.local_keys():
            w = state.workers.get(k.account)
            posted = self.memory.offers_posted.get(k.account)
            in_flight = posted is not None and posted[1] > 0
            if w is not None and (w.offer_live_at(state.height + 1) or in_flight):
                self.memory.offers_posted[k.account] = (state.height, 0)
                tx_ids.append(await self.node.sign_and_submit(k.name, Offer(0, 0)))
        return tx_ids

    def can_offer(self) -> bool:
        """Whether this node should keep offers standing: coordinating, with a compute pool that did not fail."""
        return self.auto and self.has_pool and not getattr(self.node, "pool_failed", False)

    def wake(self) -> None:
        """Ask for a scan soon (coalesced)."""
        with contextlib.suppress(trio.WouldBlock):
            self._wake_send.send_nowait(None)

    async def trigger(self) -> dict[str, Any]:
        """One scan now, bids included even when auto-coordination is off; returns what it did."""
        actions = await self.scan(bidding=True)
        return {"height": self.last_scan_height, "actions": [describe(a) for a in actions]}

    # -- the loop --
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scan after every committed block until cancelled."""
        home = getattr(self.node, "home", None)
        if home is not None:
            self._openings_path = Path(home) / "data" / OPENINGS_FILE
            self._load_openings()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_events)
            task_status.started()
            try:
                while True:
                    with trio.move_on_after(self.poll_interval_s):
                        await self._wake_recv.receive()
                    await self.scan(bidding=self.auto)
            finally:
                self._nursery = None
                await self._withdraw_offers_on_exit()

    async def _withdraw_offers_on_exit(self) -> None:
        """Best effort on shutdown: withdraw live offers so no job is assigned to a node that went away (if
        this fails, the offers lapse by themselves within ``offer_blocks``)."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await self._post_withdrawals()
            except Exception as exc:  # the node may be half torn down already
                log.info("agent could not withdraw its offers on exit: %s", exc)

    async def _watch_events(self) -> None:
        events = getattr(self.node, "events", None)
        if events is None:
            return  # polling alone still works
        while True:
            channel = events.subscribe(256)
            async with channel:
                async for event in channel:
                    if event.get("type") == "block":
                        self.wake()
            # The bus dropped us (we fell behind): resubscribe, and scan in case we missed a block.
            self.wake()
            await trio.sleep(0)

    async def scan(self, *, bidding: bool) -> list[Action]:
        """Plan against the committed state and carry the actions out; never raises."""
        async with self._scan_lock:
            try:
                state = self.node.state
                self._note_height(state.height)
                self.last_scan_height = state.height
                self.counters["scans"] += 1
                self._prune(state)
                actions = self.planner.plan(state, self.local_keys(), self.memory, bidding=bidding,
                                            offering=self.can_offer())
            except Exception as exc:  # a bug in planning must not stop the node following the chain
                self.counters["errors"] += 1
                log.exception("agent scan failed: %s", exc)
                return []
            for action in actions:
                try:
                    await self._execute(action, state.height)
                except Exception as exc:
                    self.counters["errors"] += 1
                    log.exception("agent action %s failed: %s", describe(action), exc)
            return actions

    def _note_height(self, height: int) -> None:
        """Measure seconds per block (a moving average) so the planner can turn windows into time."""
        now = trio.current_time()
        last = self._last_block
        if last is not None and height > last[0]:
            per_block = (now - last[1]) / (height - last[0])
            self.planner.block_time_s = 0.8 * self.planner.block_time_s + 0.2 * per_block
        if last is None or height > last[0]:
            self._last_block = (height, now)

    def local_keys(self) -> list[LocalKey]:
        """The node key and (if enabled) every keystore key, with their accounts; unreadable keys are skipped."""
        names = [NODE_KEY]
        keystore = getattr(self.node, "keystore", None)
        if self.keystore_workers and keystore is not None:
            names += [n for n in keystore.names() if n != NODE_KEY]
        out = []
        for name in names:
            account = self._key_cache.get(name)
            if account is None:
                try:
                    account = self.node.account_of(name)
                except Exception as exc:  # a key we cannot open (passphrase, corrupt file) cannot work
                    log.debug("agent skips key %r: %s", name, exc)
                    continue
                self._key_cache[name] = account
            out.append(LocalKey(name, account))
        return out

    def _prune(self, state: State) -> None:
        done = {k[0] for k in self.memory.openings} | {k[0] for k in self.memory.posted}
        stale = [j for j in done if j not in state.active_jobs]
        for job_id in stale:
            self.memory.forget_job(job_id)
        if stale:
            self._save_openings()
        while len(self.memory.results) > 1024:
            self.memory.results.pop(next(iter(self.memory.results)))

    # -- actions --
    async def _execute(self, action: Action, height: int) -> None:
        self.recent.append({**describe(action), "height": height})
        if isinstance(action, FetchSpec):
            self.memory.fetching.add(action.digest)
            self._spawn(self._fetch_spec_task, action.digest, height)
        elif isinstance(action, RunJob):
            self.memory.running.add(action.job_id)
            self._spawn(self._run_task, action, height)
        elif isinstance(action, PostOffer):
            await self._post_offer(action, height)
        else:
            if isinstance(action, PostCommit) and action.opening is not None:
                # Keep the opening before the commitment can land, so a crash cannot strand it.
                self.memory.openings[(action.job_id, action.key.account)] = action.opening
                self._save_openings()
            await self._post(action, height)

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise AgentError(None, "agent is not running (no nursery for background work)")
        self._nursery.start_soon(fn, *args)

    async def _post_offer(self, action: PostOffer, height: int) -> None:
        self.memory.offers_posted[action.key.account] = (height, action.until)
        try:
            tx_id = await self.node.sign_and_submit(action.key.name, payload_for(action))
        except LedgerError as exc:  # ineligible for now, mempool full: tried again after retry_after_blocks
            self.counters["errors"] += 1
            log.warning("agent offer by %s not admitted: %s", action.key.name, exc)
            return
        self.counters["offers"] += 1
        log.info("agent %s key %s price %d until %d tx %s", "offer" if action.until else "offer withdrawal",
                 action.key.name, action.price, action.until, tx_id[:16])

    async def _post(self, action: PostBid | PostCommit | PostReveal, height: int) -> None:
        kind = {PostBid: "bid", PostCommit: "commit", PostReveal: "reveal"}[type(action)]
        memo = (action.job_id, action.key.account, kind)
        self.memory.posted[memo] = height
        try:
            tx_id = await self.node.sign_and_submit(action.key.name, payload_for(action))
        except PERMANENT_REFUSALS as exc:
            self.memory.refused[memo] = str(exc)
            self.counters["refused"] += 1
            log.info("agent %s for job %s by %s refused: %s", kind, action.job_id.hex()[:16], action.key.name, exc)
            return
        except LedgerError as exc:  # mempool full, nonce races: retried after retry_after_blocks
            self.counters["errors"] += 1
            log.warning("agent %s for job %s by %s not admitted: %s", kind, action.job_id.hex()[:16],
                        action.key.name, exc)
            return
        self.counters[kind + "s"] += 1
        log.info("agent %s job %s key %s tx %s", kind, action.job_id.hex()[:16], action.key.name, tx_id[:16])

    async def _fetch_spec_task(self, digest: bytes, height: int) -> None:
        try:
            with trio.fail_after(self.fetch_timeout_s):
                data = await self.node.fetch_blob(digest, max_size=MAX_SPEC_BYTES)
            spec = JobSpec.decode(data)
            if spec.digest != digest:
                raise AgentError(None, f"spec bytes hash to {spec.digest.hex()[:16]}, not {digest.hex()[:16]}")
            self.memory.specs[digest] = spec
            self.memory.spec_problems.pop(digest, None)
            self.wake()
        except Exception as exc:
            self.memory.spec_problems[digest] = (height, f"spec unavailable: {exc}")
            log.warning("agent could not fetch spec %s: %s", digest.hex()[:16], exc)
        finally:
            self.memory.fetching.discard(digest)

    async def _spec(self, digest: bytes) -> JobSpec:
        spec = self.memory.specs.get(digest)
        if spec is None:
            with trio.fail_after(self.fetch_timeout_s):
                data = await self.node.fetch_blob(digest, max_size=MAX_SPEC_BYTES)
            spec = JobSpec.decode(data)
            if spec.digest != digest:
                raise AgentError(None, "spec bytes do not match the job's spec digest")
            self.memory.specs[digest] = spec
        return spec

    async def _dataset(self, digest: bytes) -> Dataset:
        ds = self._datasets.get(digest)
        if ds is not None:
            self._datasets.move_to_end(digest)
            return ds
        with trio.fail_after(self.fetch_timeout_s):
            data = await self.node.fetch_blob(digest, max_size=self.max_dataset_bytes)
        ds = await trio.to_thread.run_sync(decode_dataset, data, digest)
        self._datasets[digest] = ds
        while len(self._datasets) > 4:
            self._datasets.popitem(last=False)
        return ds

    async def _run_task(self, action: RunJob, height: int) -> None:
        job_hex = action.job_id.hex()[:16]
        try:
            pool = await self._pool()
            if pool is None:
                raise AgentError(action.job_id, "this node has no compute pool (pool_size = 0)")
            started = trio.current_time()  # waiting for the pool to start is not what a run costs
            spec = await self._spec(action.spec_digest)
            if spec.dataset_digest != action.dataset_digest:
                raise AgentError(action.job_id, "the spec names another dataset than the job")
            dataset = await self._dataset(action.dataset_digest)
            outcome = await pool.run(JobRequest(spec, dataset))
            if not outcome.ok:
                f = outcome.failure
                raise AgentError(action.job_id, f"run failed ({f.kind}): {f.message}" if f else "run failed")
            result = outcome.result
            assert result is not None
            # Fetching the dataset is part of what the next run of this model may cost too.
            self.memory.note_run(spec.model, trio.current_time() - started)
            result_digest = self._keep_result(result)
            self.memory.results[action.job_id] = RunRecord(
                list(result.summary), result.artifact_digest, result_digest, result.elapsed_s, result.backend)
            self.counters["runs_ok"] += 1
            log.info("agent ran job %s (%s) for %s in %.2fs", job_hex, spec.model, action.roles, outcome.wall_s)
            self.wake()
        except (AgentError, ComputeError, NodeError, OSError, trio.TooSlowError) as exc:
            self._run_failed(action, height, exc)
        except Exception as exc:  # anything else is a bug, but still must not take the node down
            log.exception("agent run of job %s crashed", job_hex)
            self._run_failed(action, height, exc)
        finally:
            self.memory.running.discard(action.job_id)

    async def _pool(self) -> Any:
        """The node's compute pool, waiting for it while it is still starting (its children import for seconds,
        and a job can be assigned before that: failing the run then would burn its attempts)."""
        pool = getattr(self.node, "pool", None)
        ready = getattr(self.node, "pool_ready", None)
        size = getattr(getattr(self.node, "config", None), "pool_size", 0)
        if pool is None and ready is not None and isinstance(size, int) and size > 0:
            with trio.move_on_after(self.fetch_timeout_s):
                await ready.wait()
            pool = getattr(self.node, "pool", None)
        return pool

    def _run_failed(self, action: RunJob, height: int, exc: BaseException) -> None:
        count = self.memory.run_failures.get(action.job_id, (0, 0, ""))[0] + 1
        self.memory.run_failures[action.job_id] = (count, height, str(exc))
        self.counters["runs_failed"] += 1
        log.warning("agent run of job %s for %s failed (attempt %d): %s", action.job_id.hex()[:16], action.roles,
                    count, exc)

    def _keep_result(self, result: JobResult) -> bytes:
        """Store the artifact (under its own digest, the one the ledger records) and the full result bytes."""
        blobs = getattr(self.node, "blobs", None)
        encoded = result.encode()
        if blobs is None:
            return blake2b256(encoded)
        blobs.put_expected(result.artifact, result.artifact_digest)
        return blobs.put(encoded)

    def result_for(self, job_id: bytes) -> JobResult | None:
        """The full result this node computed for ``job_id``, if it ran it and still has it."""
        record = self.memory.results.get(job_id)
        blobs = getattr(self.node, "blobs", None)
        if record is None or blobs is None:
            return None
        data = blobs.get(record.result_digest)
        return None if data is None else JobResult.decode(data)

    # -- persistence of openings (so a restart between commit and reveal can still reveal) --
    def _save_openings(self) -> None:
        path = self._openings_path
        if path is None:
            return
        doc = [[j.hex(), a.hex(), list(o.summary), o.artifact_digest.hex(), o.salt.hex()]
               for (j, a), o in self.memory.openings.items()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("agent could not save its openings to %s: %s", path, exc)

    def _load_openings(self) -> None:
        path = self._openings_path
        if path is None or not path.exists():
            return
        try:
            for j, a, summary, artifact, salt in json.loads(path.read_text()):
                self.memory.openings[(bytes.fromhex(j), bytes.fromhex(a))] = Opening(
                    tuple(int(v) for v in summary), bytes.fromhex(artifact), bytes.fromhex(salt))
        except (OSError, ValueError, TypeError) as exc:
            log.error("agent could not read its openings from %s: %s", path, exc)

    # -- read side --
    def status(self) -> dict[str, Any]:
        state = self.node.state
        keys = []
        for k in self.local_keys():
            w = state.workers.get(k.account)
            entry: dict[str, Any] = {"name": k.name, "account": k.account.hex(), "registered": w is not None}
            if w is not None:
                entry.update(stake=w.stake, reputation=w.reputation, active_jobs=w.active_jobs,
                             jobs_done=w.jobs_done, jobs_failed=w.jobs_failed, offer_price=w.offer_price,
                             offer_until=w.offer_until, offer_live=w.offer_live_at(state.height + 1))
            keys.append(entry)
        return {
            "running": self.auto,
            "offering": self.can_offer(),
            "faulty": self.faults.describe(),
            "device": self.device.to_dict(),
            "last_scan_height": self.last_scan_height,
            "block_time_s": round(self.planner.block_time_s, 3),
            "run_estimates_s": {m: round(self.planner.run_estimate_s(m, self.memory), 2)
                                for m in sorted(self.memory.run_seconds)},
            "keys": keys,
            "jobs_running": sorted(j.hex() for j in self.memory.running),
            "results": len(self.memory.results),
            "counters": dict(self.counters),
            "recent": list(self.recent)[-20:],
        }
