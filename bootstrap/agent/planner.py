"""The worker agent's planner: sans-IO decisions of what each local worker key does next.

Why this file is long: bids, offers, duties, claims and the time budget all read the same committed job and the
same memory, and each decision depends on the others' (a bid must fit the duties' runs); split, each part would
re-derive the backlog.

Given the committed ledger ``State``, the local worker keys and the agent's :class:`AgentMemory` (what it
fetched, ran, posted and committed to), :meth:`Planner.plan` returns the next actions: :class:`FetchSpec`,
:class:`PostBid`, :class:`PostOffer`, :class:`RunJob`, :class:`PostCommit`, :class:`PostReveal`,
:class:`PostConfirm`. It never waits,
never signs, never draws randomness (salts derive from the memory's secret). The trio shell that carries the
actions out is :mod:`bootstrap.agent.shell`.

A node bids on as many open jobs as it can finish in time, not one at a time (see :class:`Planner` for the
policy): the planner hands out runs earliest commit deadline first, one per free compute-pool worker, and the
shell measures seconds per block and each model's run time so that "in time" means something.

A role that cannot produce a result commits an honest claim instead of stalling (:mod:`bootstrap.agent.claims`):
a deterministic error or an over-limit run at once, "unavailable" only when the commit deadline is near
(``Planner.claim_blocks``). Open jobs the node does not bid on get a reason (:meth:`Planner.decide`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrap.agent.claims import NO_ARTIFACT, SUMMARY_TOO_LONG, describe_claim, spec_mismatch
from bootstrap.agent.device import LocalDevice
from bootstrap.agent.faults import COLLUDE, COPY_COMMIT, NO_REVEAL, RANDOM_RESULTS, Faults, perturb_summary
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
from ledger.jobs import AUDIT, committers, eligibility_problem, worker_problem
from ledger.state import ASSIGNED, CHECKING_STATUSES, CONFIRMING, OPEN, REVEALING, Job, State
from ledger.tx import (
    Bid,
    CommitResult,
    ConfirmArtifact,
    Offer,
    Payload,
    RevealResult,
    compute_commitment,
    compute_fingerprint,
)
from ledger.verdict import ERROR, RESULT, UNAVAILABLE

WORKER, VERIFIER, REFEREE, AUDITOR, PANEL = "worker", "verifier", "referee", "auditor", "panel"
COMMITTING = (ASSIGNED, *CHECKING_STATUSES)
"""Statuses in which some role still commits."""
NODE_KEY = "node"
OPENINGS_FILE = "agent-openings.json"
RUN_TIMES_KEPT = 5  # measured run times remembered per model
UNKNOWN = "unknown"  # a spec not fetched yet: no reason to decline, nor to bid
CLAIM_BLOCKS = 3
"""An "unavailable" claim is committed once this few blocks remain before the commit deadline: a provider that is
slow to serve still has every block before that, and the commitment still has two blocks to spare should the
first attempt not land."""

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
    """What a commitment hides: the summary, the artifact digest, the salt and the outcome (a result or a claim,
    ``ledger.verdict``), revealed later."""

    summary: tuple[int, ...]
    artifact_digest: bytes
    salt: bytes
    outcome: int = RESULT

    def commitment(self, job_id: bytes, account: bytes) -> bytes:
        return compute_commitment(job_id, account, list(self.summary), self.artifact_digest, self.salt,
                                  self.outcome)

    def fingerprint(self, job_id: bytes) -> bytes:
        return compute_fingerprint(job_id, list(self.summary), self.outcome)


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
    """Set (``until > 0``) or withdraw (``until = 0``) a key's standing offer, for runs of at most
    ``max_time_ms`` (0: any); not about any one job."""

    key: LocalKey
    price: int
    until: int
    max_time_ms: int = 0


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
    fingerprint: bytes = b""  # with a copied commitment, the copied fingerprint; otherwise the opening's


@dataclass(frozen=True)
class PostReveal:
    job_id: bytes
    key: LocalKey
    role: str
    opening: Opening


@dataclass(frozen=True)
class PostConfirm:
    """Fetch the accepted artifact of a ``confirming`` job this key backed, check it against the accepted summary
    (``bootstrap.jobs.artifacts``) and, only if it is that result, post ``confirm_artifact``."""

    job_id: bytes
    key: LocalKey
    artifact_digest: bytes


Action = FetchSpec | PostBid | PostOffer | RunJob | PostCommit | PostReveal | PostConfirm


def describe(action: Action) -> dict[str, Any]:
    """A JSON-friendly line for logs, ``status()`` and ``trigger()``."""
    if isinstance(action, PostOffer):
        return {"action": "PostOffer", "key": action.key.name, "price": action.price, "until": action.until,
                "max_time_ms": action.max_time_ms}
    d: dict[str, Any] = {"action": type(action).__name__, "job_id": action.job_id.hex()}
    if isinstance(action, PostBid):
        d.update(key=action.key.name, price=action.price)
    elif isinstance(action, PostConfirm):
        d.update(key=action.key.name, artifact=action.artifact_digest.hex())
    elif isinstance(action, PostCommit | PostReveal):
        d.update(key=action.key.name, role=action.role)
        if action.opening is not None and action.opening.outcome != RESULT:
            d.update(claim=describe_claim(action.opening.outcome, action.opening.summary))
    elif isinstance(action, RunJob):
        d.update(roles=[list(r) for r in action.roles])
    return d


def payload_for(action: PostBid | PostOffer | PostCommit | PostReveal | PostConfirm) -> Payload:
    """The ledger transaction an action posts."""
    if isinstance(action, PostConfirm):
        return ConfirmArtifact(action.job_id, action.artifact_digest)
    if isinstance(action, PostOffer):
        return Offer(action.price, action.until, action.max_time_ms)
    if isinstance(action, PostBid):
        return Bid(action.job_id, action.price)
    if isinstance(action, PostCommit):
        fingerprint = action.fingerprint or (action.opening.fingerprint(action.job_id) if action.opening else b"")
        return CommitResult(action.job_id, action.commitment, fingerprint)
    o = action.opening
    return RevealResult(action.job_id, list(o.summary), o.artifact_digest, o.salt, o.outcome)


@dataclass
class RunRecord:
    """A finished local attempt: a result (its summary, artifact, and where the full result is kept), or a claim
    (``outcome`` not ``RESULT``: the error code as ``summary``, or nothing; ``reason`` says why)."""

    summary: list[int]
    artifact_digest: bytes
    result_digest: bytes
    elapsed_s: float = 0.0
    backend: str = ""
    outcome: int = RESULT
    reason: str = ""


def claim_record(outcome: int, summary: Sequence[int] = (), reason: str = "") -> RunRecord:
    """A :class:`RunRecord` for a claim: no artifact, no stored result."""
    return RunRecord(list(summary), NO_ARTIFACT, b"", outcome=outcome, reason=reason)


CONFIRM_STAGGER = 2
"""Blocks between the turns of a job's confirmers (see :func:`confirm_turn`)."""


def confirm_turn(job: Job, mine: Sequence[LocalKey]) -> int:
    """The first height at which this node posts its confirmation of a ``confirming`` job: the ``i``-th
    confirmer (in the ledger's order; this node's first key among them) waits ``i · CONFIRM_STAGGER`` blocks
    after the stage opened, at most half the window. One confirmation settles the job, and a later one fails
    in its block and pays its fee: staggered, the first confirmer's tx usually ends the job before the others
    post, and a confirmer that withholds still leaves the others half the window. Waiting costs a confirmer
    nothing: what settling pays was fixed at the verdict, whoever confirms."""
    if not mine:
        return 0
    local = {k.account for k in mine}
    position = next(i for i, a in enumerate(job.confirmers) if a in local)
    opened = next((h for status, h in reversed(job.history) if status == CONFIRMING), job.deadline)
    return opened + min(position * CONFIRM_STAGGER, (job.deadline - opened) // 2)


@dataclass(frozen=True)
class Plan:
    """What :meth:`Planner.decide` returns: the actions to take now, and why each open job this node could see
    is not bid on (job id -> reason)."""

    actions: list[Action]
    declined: dict[bytes, str]


@dataclass
class AgentMemory:
    """What the agent knows beyond the ledger. Only the shell writes it; the planner only reads it."""

    secret: bytes = field(default_factory=lambda: os.urandom(32))
    specs: dict[bytes, JobSpec] = field(default_factory=dict)
    spec_problems: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # digest -> (height, reason)
    bad_specs: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # digest -> (error code, reason)
    fetching: set[bytes] = field(default_factory=set)
    running: set[bytes] = field(default_factory=set)
    fetching_jobs: set[bytes] = field(default_factory=set)  # running jobs still fetching their spec or data
    results: dict[bytes, RunRecord] = field(default_factory=dict)
    run_failures: dict[bytes, tuple[int, int, str]] = field(default_factory=dict)  # job -> (count, height, why)
    unavailable: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # job -> (height, why) of a failed fetch
    declined: dict[bytes, str] = field(default_factory=dict)  # open job -> why this node does not bid on it
    posted: dict[tuple[bytes, bytes, str], int] = field(default_factory=dict)  # (job, account, kind) -> height
    refused: dict[tuple[bytes, bytes, str], str] = field(default_factory=dict)
    openings: dict[tuple[bytes, bytes], Opening] = field(default_factory=dict)
    run_seconds: dict[str, deque[float]] = field(default_factory=dict)  # model -> recent measured run times
    offers_posted: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # account -> (height, until)
    checking: set[bytes] = field(default_factory=set)  # confirming jobs whose artifact is being fetched and checked
    confirm_failures: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # job -> (height, why) of a fetch

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
        for table in (self.run_failures, self.unavailable, self.declined, self.confirm_failures):
            table.pop(job_id, None)


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
    since the compute pool serialises the runs anyway. What bounds the bids is time: the node's own work (runs
    not yet committed, plus every job it has bid on, assumed won) must all finish before their commit deadlines
    when run in deadline order on its work lanes (below), each costing its model's measured run time (the worst
    of the recent ones, or ``default_run_s`` before any) times ``run_safety`` plus ``run_overhead_s`` — never more
    than the job's own time limit plus the overhead, where the pool stops it — with blocks of ``block_time_s``.
    A job that would break that is not bid on. Besides, a key holds at most ``max_open_bids`` bids on open jobs,
    and does not bid while it has ``max_concurrent_jobs`` roles still to commit. Jobs with the fewest bids are
    bid on first (then the earliest deadline, then an order private to this node), so that nodes short of time
    leave their share to each other rather than all picking the same jobs.

    The node's caps: a job whose run may take longer than ``max_job_time_ms`` (0: no cap of its own, the
    chain's ``max_job_time_ms`` bounds it) or whose spec may use more memory than ``max_job_memory_mb`` (0: the
    machine's) is not bid on; standing offers name ``max_job_time_ms`` so the ledger assigns no longer job from
    them; and the shell runs every job under these caps too. A verifier or referee duty on a job longer than the
    cap (duties are drawn, not chosen) runs under the cap and claims "over limit" if the cap stops it.

    Duty lane: verifier and referee duties are drawn by the ledger, and missing their deadline is slashed, so a
    long job this node chose must never hold them up. Of the ``parallel_runs`` pool slots, ``duty_slots`` (at
    most all but one) never take this node's own work (a run where a local key is the worker); duties may take
    any free slot. The time check for bids counts the node's own work against the other slots only. A node with
    a single slot has no lane: its duties wait behind its work, and both count in the time check.

    Claims: a role that cannot produce a result commits an honest claim (:mod:`bootstrap.agent.claims`). A spec
    that fails to decode, disagrees with its job, or whose summary no reveal could carry is claimed as an error
    at once, like a deterministic error or an over-limit stop reported by the run. When the spec or the data
    could not be fetched, the run is retried every block and "unavailable" is committed only once at most
    ``claim_blocks`` blocks remain before the commit deadline (or while a fetch is still hanging then). Other
    failures are retried ``max_run_attempts`` times; a node that never succeeds stalls (and is slashed for it).
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
    max_job_time_ms: int = 0
    max_job_memory_mb: int = 0
    duty_slots: int = 0
    claim_blocks: int = CLAIM_BLOCKS

    @property
    def memory_cap_mb(self) -> int:
        """The most memory this node lets one run use (its cap, or the machine's memory; 0: unknown)."""
        return self.max_job_memory_mb or self.device.memory_mb

    @property
    def duty_lane(self) -> int:
        """Pool slots kept for verifier and referee runs (never all of them: one always takes work)."""
        return max(0, min(self.duty_slots, self.parallel_runs - 1))

    @property
    def work_lanes(self) -> int:
        """Pool slots this node's own work may use at once."""
        return max(1, self.parallel_runs - self.duty_lane)

    def price_for(self, reward: int) -> int:
        """The bid for a job: ``bid_permille`` of the reward, at least 1 token, never above the reward."""
        return min(reward, max(1, reward * self.bid_permille // 1000))

    def run_estimate_s(self, model: str, memory: AgentMemory) -> float:
        """What one run of ``model`` is budgeted: the recent worst measured (or the default), with margins."""
        measured = memory.run_seconds.get(model)
        base = max(measured) if measured else self.default_run_s
        return base * self.run_safety + self.run_overhead_s

    def job_cost_s(self, job: Job, memory: AgentMemory) -> float:
        """What one run of ``job`` is budgeted: its model's estimate, at most the job's time limit (the pool stops
        the run there) plus the overhead."""
        cost = self.run_estimate_s(job.model, memory)
        if job.time_limit_ms:
            cost = min(cost, job.time_limit_ms / 1000 + self.run_overhead_s)
        return cost

    def spec_problem(self, job: Job, memory: AgentMemory) -> str | None:
        """Why this node should not bid on ``job`` (:data:`UNKNOWN` while its spec is not fetched yet)."""
        if self.max_job_time_ms and job.time_limit_ms > self.max_job_time_ms:
            return (f"a run may take {job.time_limit_ms} ms; this node takes jobs of at most {self.max_job_time_ms} "
                    f"ms (agent.max_job_time_ms)")
        bad = memory.bad_specs.get(job.params_digest)
        if bad is not None:
            return bad[1]
        spec = memory.specs.get(job.params_digest)
        if spec is None:
            return UNKNOWN
        mismatch = spec_mismatch(job, spec)
        if mismatch is not None:
            return mismatch[1]
        cap = self.memory_cap_mb
        if cap and spec.limits.memory_limit_mb > cap:
            return (f"a run may use {spec.limits.memory_limit_mb} MB; this node allows at most {cap} MB "
                    f"(agent.max_job_memory_mb)")
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
        """The actions of :meth:`decide`."""
        return self.decide(state, keys, memory, bidding=bidding, offering=offering).actions

    def decide(self, state: State, keys: Sequence[LocalKey], memory: AgentMemory, *, bidding: bool = True,
               offering: bool | None = None) -> Plan:
        """The actions to take now — duties (commits, reveals, confirmations) in job-id order, then runs in
        deadline order (as many as there are free run slots, the duty lane kept), then spec fetches and bids, then
        offers (``offering`` True: keep each key's offer standing; False: withdraw it; None: leave offers alone)
        — and why each open job is not bid on. Posting the actions all is safe (none depends on another)."""
        workers = [k for k in keys if k.account in state.workers]
        if not workers:
            return Plan([], {})
        actions: list[Action] = []
        declined: dict[bytes, str] = {}
        runs: list[tuple[int, bytes, RunJob, bool]] = []
        open_jobs: list[Job] = []
        for job_id in sorted(state.active_jobs):
            job = state.jobs[job_id]
            if job.status == OPEN:
                open_jobs.append(job)
            elif job.status == CONFIRMING:
                actions += self._confirms(state, job, workers, memory)
            elif job.status in (*COMMITTING, REVEALING):
                duties, run = self._duties(state, job, workers, memory)
                actions += duties
                if run is not None:
                    runs.append((job.deadline, job_id, run, self._is_work(job, workers)))
        actions += self._runs(state, workers, memory, runs)
        if bidding and self.can_compute and open_jobs:
            actions += self._bids(state, open_jobs, workers, memory, declined)
        if offering is not None:
            actions += self._offers(state, workers, memory, offering and self.can_compute)
        return Plan(actions, declined)

    # -- runs and the duty lane --
    @staticmethod
    def _is_work(job: Job, workers: list[LocalKey]) -> bool:
        """Whether a run of ``job`` is this node's own work (a local key is its worker) rather than a duty."""
        return job.status in (ASSIGNED, REVEALING) and any(k.account == job.worker for k in workers)

    def _runs(self, state: State, workers: list[LocalKey], memory: AgentMemory,
              runs: list[tuple[int, bytes, RunJob, bool]]) -> list[Action]:
        """Runs for the free pool slots, earliest commit deadline first; the node's own work stays out of the
        duty lane."""
        free = self.parallel_runs - len(memory.running)
        free_work = self.work_lanes - sum(
            1 for j in memory.running if j in state.jobs and self._is_work(state.jobs[j], workers))
        out: list[Action] = []
        for _, _, run, work in sorted(runs, key=lambda r: (r[0], r[1])):
            if free <= 0:
                break
            if work:
                if free_work <= 0:
                    continue  # a duty later in the list may still take the reserved slot
                free_work -= 1
            free -= 1
            out.append(run)
        return out

    # -- standing offers --
    def _offers(self, state: State, workers: list[LocalKey], memory: AgentMemory, want: bool) -> list[Action]:
        """Keep each eligible key's offer standing (renewed when fewer than half its blocks remain, or when its
        price or run-time cap changed), or withdraw the keys' live offers when this node should not be assigned
        jobs."""
        span = max(2, min(self.offer_blocks, state.params.max_window))
        out: list[Action] = []
        for k in workers:
            w = state.workers[k.account]
            # A tx posted now lands in the next block at the earliest: that is the first height that matters.
            live = w.offer_live_at(state.height + 1)
            posted = memory.offers_posted.get(k.account)
            recent = posted is not None and state.height - posted[0] < self.retry_after_blocks
            if want and worker_problem(state, k.account) is None:
                fresh = (live and w.offer_until - state.height >= span // 2 and w.offer_price == self.offer_price
                         and w.offer_max_time_ms == self.max_job_time_ms)
                if fresh or (recent and posted is not None and posted[1] > 0):
                    continue  # standing, or a renewal is on its way
                out.append(PostOffer(k, self.offer_price, state.height + span, self.max_job_time_ms))
            elif live and not (recent and posted is not None and posted[1] == 0):
                out.append(PostOffer(k, 0, 0))
        return out

    # -- bidding --
    def _work(self, state: State, job: Job, memory: AgentMemory) -> Work:
        """The run ``job`` asks of this node, timed from now (an open job as if this node's bid wins). An open
        job is assigned at its ``bid_deadline``; an assigned one (after bids, or at submission from offers,
        where ``bid_deadline`` is the submission height) can start now and is due by its commit deadline."""
        bt = self.block_time_s
        cost = self.job_cost_s(job, memory) / self.work_lanes
        if job.status == OPEN:
            assigned_at = job.bid_deadline
            return Work((assigned_at - state.height) * bt, (assigned_at + job.commit_window - state.height - 1) * bt,
                        cost)
        return Work(0.0, (job.deadline - state.height - 1) * bt, cost)

    def _backlog(self, state: State, workers: list[LocalKey], memory: AgentMemory) -> list[Work]:
        """Every run of the node's own work (with no duty lane: every run) it owes (a role not yet committed, no
        result yet) or may owe (a bid on an open job)."""
        out = []
        for job_id in state.active_jobs:
            job = state.jobs[job_id]
            if job.status == OPEN:
                if any(self._has_bid(state, job, k.account, memory) for k in workers):
                    out.append(self._work(state, job, memory))
            elif job.status in COMMITTING and job_id not in memory.results and any(
                    k.account not in job.commits for k, _ in self._roles(job, workers)):
                if self.duty_lane and not self._is_work(job, workers):
                    continue  # duties run in their own lane
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

    def _bids(self, state: State, open_jobs: list[Job], workers: list[LocalKey], memory: AgentMemory,
              declined: dict[bytes, str]) -> list[Action]:
        """Spec fetches and bids on open jobs; ``declined`` gets the reason for each job not bid on."""
        out: list[Action] = []
        candidates: list[Job] = []
        fetching: set[bytes] = set()
        for job in open_jobs:
            if state.height + 1 > job.bid_deadline:
                continue  # a bid now would land after the window
            problem = self.spec_problem(job, memory)
            if problem == UNKNOWN:
                retry = memory.spec_problems.get(job.params_digest)
                if retry is not None:
                    declined[job.job_id] = retry[1]  # fetched again after retry_after_blocks
                if job.params_digest not in memory.fetching | fetching and (
                        retry is None or state.height - retry[0] >= self.retry_after_blocks):
                    out.append(FetchSpec(job.job_id, job.params_digest))  # one fetch per spec, for all its jobs
                    fetching.add(job.params_digest)
            elif problem is None:
                candidates.append(job)
            else:
                declined[job.job_id] = problem
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
            if job.status in COMMITTING:
                for k, _ in self._roles(job, workers):
                    if k.account not in job.commits:
                        to_commit[k.account] += 1
        backlog = self._backlog(state, workers, memory)
        candidates.sort(key=lambda j: (len(j.bids), j.bid_deadline + j.commit_window,
                                       blake2b256(memory.secret + j.job_id)))
        free = [k for k in workers
                if open_bids[k.account] < self.max_open_bids and to_commit[k.account] < self.max_concurrent_jobs]
        for job in candidates:
            ours = any(self._has_bid(state, job, k.account, memory) for k in workers)
            if not free:
                if not ours:
                    declined[job.job_id] = ("every local key is at its limits (agent.max_open_bids open bids, "
                                            "agent.max_concurrent_jobs roles to commit)")
                continue
            room = state.params.max_bids_per_job - len(job.bids)
            eligible = [k for k in free if eligibility_problem(state, k.account, job) is None]
            bidders = [k for k in eligible
                       if k.account not in job.bids
                       and not self._blocked(memory, job.job_id, k.account, "bid", state.height)][:max(0, room)]
            if not bidders:
                if not ours:
                    declined[job.job_id] = self._no_bidder(state, job, free, eligible, memory, room)
                continue
            if not ours:
                work = self._work(state, job, memory)
                if not self.fits([*backlog, work]):
                    declined[job.job_id] = ("its run would not finish before its commit deadline next to this "
                                            "node's other work")
                    continue  # this node could not also finish it in time (another key's bid adds no run)
                backlog.append(work)
            for k in bidders:
                out.append(PostBid(job.job_id, k, self.price_for(job.reward)))
                open_bids[k.account] += 1
            free = [k for k in free if open_bids[k.account] < self.max_open_bids]
        return out

    @staticmethod
    def _no_bidder(state: State, job: Job, free: list[LocalKey], eligible: list[LocalKey], memory: AgentMemory,
                   room: int) -> str:
        """Why no free local key bids on a job it could run."""
        if room <= 0:
            return f"it has the most bids the chain takes (max_bids_per_job={state.params.max_bids_per_job})"
        if not eligible:
            return f"no local key may work on it: {eligibility_problem(state, free[0].account, job)}"
        refused = [memory.refused[key] for k in eligible if (key := (job.job_id, k.account, "bid")) in memory.refused]
        return f"its bid was refused: {refused[0]}" if refused else "a bid is on its way"

    # -- duties --
    def _roles(self, job: Job, workers: list[LocalKey]) -> list[tuple[LocalKey, str]]:
        """Local keys holding a role that still has to commit or reveal in the job's current phase."""
        # Who acts in this phase is the ledger's rule (``ledger.jobs.committers``); the names are for logs.
        label = {job.worker: WORKER, job.verifier: VERIFIER, job.referee: AUDITOR if job.check == AUDIT else REFEREE,
                 **dict.fromkeys(job.panel, PANEL)}
        by_account = {k.account: k for k in workers}
        return [(by_account[a], label[a]) for a in committers(job) if a in by_account]

    def _duties(self, state: State, job: Job, workers: list[LocalKey], memory: AgentMemory
                ) -> tuple[list[Action], RunJob | None]:
        """Commits and reveals due now, and the run the job still needs from this node (if any)."""
        if state.height + 1 > job.deadline:
            return [], None  # anything posted now would land after the deadline
        out: list[Action] = []
        need_run: list[tuple[str, str]] = []
        for k, role in self._roles(job, workers):
            if job.status in COMMITTING and k.account not in job.commits:
                if self._blocked(memory, job.job_id, k.account, "commit", state.height):
                    continue
                if self.faults.applies(k.name, COPY_COMMIT):
                    others = sorted((c, job.fingerprints.get(a, b"")) for a, c in job.commits.items()
                                    if a != k.account)
                    if others:  # nothing to copy until someone else commits
                        out.append(PostCommit(job.job_id, k, role, others[0][0], None, others[0][1]))
                    continue
                record = memory.results.get(job.job_id) or self._claim(state, job, memory)
                if record is None:
                    need_run.append((k.name, role))
                    continue
                opening = self._opening(state, job, k, record, memory)
                out.append(PostCommit(job.job_id, k, role, opening.commitment(job.job_id, k.account), opening))
            elif k.account in job.commits and k.account not in job.reveals and job.status == REVEALING:
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
            missing = memory.unavailable.get(job.job_id)
            if (failures is None or (failures[0] < self.max_run_attempts and state.height - failures[1] >= 1)) and (
                    missing is None or state.height - missing[0] >= 1):  # fetches are retried every block
                run = RunJob(job.job_id, job.params_digest, job.dataset_digest, tuple(need_run))
        return out, run

    def _confirms(self, state: State, job: Job, workers: list[LocalKey], memory: AgentMemory) -> list[Action]:
        """A confirmation by one local confirmer (one is all the ledger needs) of a ``confirming`` job's artifact:
        not while a check is in flight, never again once this node found the artifact is not the accepted result,
        and after a failed fetch only from the next block on."""
        if state.height + 1 > job.deadline or job.job_id in memory.checking:
            return []
        mine = [k for k in workers if k.account in job.confirmers]
        if any((job.job_id, k.account, "confirm") in memory.refused for k in mine):
            return []
        failed = memory.confirm_failures.get(job.job_id)
        if failed is not None and state.height - failed[0] < 1:
            return []
        if state.height < confirm_turn(job, mine):
            return []
        for k in mine:
            if not self._recently_posted(memory, (job.job_id, k.account, "confirm"), state.height):
                return [PostConfirm(job.job_id, k, job.result_artifact)]
        return []

    def _claim(self, state: State, job: Job, memory: AgentMemory) -> RunRecord | None:
        """A claim this node can commit for ``job`` without running (more), or ``None``: its spec does not decode
        or disagrees with the job (an error, at once), or the spec or data could not be fetched and at most
        ``claim_blocks`` blocks remain before the commit deadline (unavailable)."""
        bad = memory.bad_specs.get(job.params_digest)
        if bad is not None:
            return claim_record(ERROR, [bad[0]], bad[1])
        spec = memory.specs.get(job.params_digest)
        mismatch = spec_mismatch(job, spec) if spec is not None else None
        if mismatch is not None:
            return claim_record(ERROR, [mismatch[0]], mismatch[1])
        if job.deadline - state.height > self.claim_blocks:
            return None  # time left: a slow provider may still serve it
        missing = memory.unavailable.get(job.job_id)
        if missing is not None or job.job_id in memory.fetching_jobs:
            return claim_record(UNAVAILABLE, reason=missing[1] if missing else "the spec or dataset is still being "
                                                                                "fetched")
        return None

    def _opening(self, state: State, job: Job, key: LocalKey, record: RunRecord, memory: AgentMemory) -> Opening:
        known = memory.openings.get((job.job_id, key.account))
        if known is not None:
            return known  # what was committed (or is on its way) stays what is revealed
        salt = memory.salt(job.job_id, key.account)
        outcome, summary = record.outcome, list(record.summary)
        if outcome == RESULT and len(summary) > state.params.max_summary_len:
            outcome, summary = ERROR, [SUMMARY_TOO_LONG]  # no reveal could carry it: every honest run says so
        if outcome != RESULT:
            return Opening(tuple(summary), NO_ARTIFACT, salt, outcome)
        if self.faults.applies(key.name, RANDOM_RESULTS):
            summary = perturb_summary(summary, salt)
        elif self.faults.applies(key.name, COLLUDE):
            summary = perturb_summary(summary, b"collude" + job.job_id)  # the same fake on every colluding key
        return Opening(tuple(summary), record.artifact_digest, salt)
