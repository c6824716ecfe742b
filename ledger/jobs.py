"""The job lifecycle as ledger rules: escrow, offers and bids, assignment, commit/reveal, verdict, disputes and
deadlines.

Why this file is long: every arrow below is a rule that moves tokens, stake or reputation, and they share the
job record, the draws and ``_close``; split apart, each piece would need the others' private helpers.

Statuses and transitions (every arrow is a tx handler below or a deadline handled in ``process_deadlines``,
which ``end_block`` calls; each transition appends ``(status, height)`` to ``job.history``)::

    submit_job, assign="offers", a live offerer and a verifier found ─────▶ assigned   (at once: no bid phase)
    submit_job, assign="bids"; or "offers" and no offer fits ─────────────▶ open       (bid window opens)
    open ──(bid window ends, a bidder and a verifier found)──────────────▶ assigned
    open ──(bid window ends, no eligible bidder or verifier; or cancel)──▶ refunded
    assigned ──(both committed; the next block draws no check)───────────▶ revealing
    assigned ──(both committed, fingerprints differ, a referee drawn)────▶ disputed
    assigned ──(both committed, the same claim, the audit coin)──────────▶ auditing   (an auditor drawn)
    assigned ──(commit deadline; stallers slashed, replaced)─────────────▶ assigned   (at most max_reassignments)
    assigned ──(commit deadline, no replacement or too many)─────────────▶ refunded
    disputed / auditing ──(the referee or auditor committed)─────────────▶ the same   (the next block draws the
                                                                                      appeal panel: every dispute,
                                                                                      an audit that differs)
    auditing ──(the auditor committed the pair's claim)──────────────────▶ revealing
    disputed / auditing ──(the panel committed; or nobody free for one)──▶ revealing
    disputed / auditing ──(a referee or auditor missed its commit)───────▶ the same   (slashed, replaced) or failed
    revealing ──(all revealed: agreement, or a majority of the voters)───▶ confirming (losers slashed)
    confirming ──(a confirmer fetched the artifact: confirm_artifact)────▶ verified   (paid)
    confirming ──(confirm deadline, no confirmation)─────────────────────▶ failed     (escrow refunded)
    revealing ──(all revealed: no majority; or nobody free to referee)───▶ failed     (escrow refunded)
    revealing ──(nobody could run it, or the same error)─────────────────▶ failed     (trouble share paid)
    revealing ──(reveal deadline; stallers slashed)──────────────────────▶ refunded, or confirming when only
                                                                          an auditor withheld next to an agreeing
                                                                          pair

Checks (issue 13, docs/VERIFICATION.md): a commitment carries the claim's fingerprint, so the ledger knows before
any reveal whether worker and verifier agree. The check after the commitments is drawn from the hash of the block
that holds them (the next block's seed), which nobody knew when committing; each checker commits blind, having
seen fingerprints only; the panel's strict majority decides (``_panel_verdict``).

Every non-terminal status has a deadline and every deadline moves the job on, and the number of reassignments
is capped, so no job lives longer than ``bid + 2·(r+1)·(commit + 1) + commit + reveal + confirm`` blocks where
``r = max_reassignments`` and ``bid`` is the bid window (0 for a job assigned at submission: its
``bid_deadline`` is its submission height). Every token leaving the escrow goes to a balance (payee or client),
so none vanish.

Confirmation (``confirm_window``): nobody is paid for a result until a party that backed it, other than its
author, has fetched the artifact it names and recomputed its summary from it (``confirm_artifact``); with
``confirm_window = 0`` an accepted result settles at once. A deterministic error or a job nobody could run has no
artifact and ends at the verdict.

Payments on ``verified``: the accepted worker gets its bid ``price``, the accepted verifier the
``verification_fee``, the client gets the rest back; the client pays the same whatever checks run. When the
worker loses, the checker that ran in its place (the auditor, or a dispute's referee or first backing panel
member) gets the price. The fee is shared equally by the other winners and the checkers that backed the accepted
claim (an audit that agreed: verifier and auditor; a dispute: the verifier or the referee, and the panel's
majority).

Claims (issue 14): a reveal carries an outcome (``ledger.verdict``). A result or a deterministic error (its code
compared exactly) is attributable: it can be checked by running the job again, so the odd one out of a dispute is
slashed. "Unavailable" (the spec or data could not be fetched) and "over limit" (the spec's own time or memory
limit stopped the run) depend on the network and the machine: never slashed, never paid unless nobody could do
better, when each party gets ``trouble_permille`` of its pay and the client the rest. Only a party that was able
to work and did not (missed a deadline) or claimed a false result or error is penalised. The submit tx fixes the
run's ``time_limit_ms``; it must fit the commit window (``Params.commit_blocks_needed``), and windows longer than
the defaults pay ``window_fee_per_block`` in the tx fee.

Assignment: the worker is drawn among the eligible bidders (or live offers) with free capacity whose price is
within ``offer_band_permille`` of the lowest, weighted by reputation and free capacity (see "assignment and
draws" below; before issue 14 the lowest ``price·1001/(1001+reputation)`` took the job). Verifier and referee
are drawn uniformly from the other eligible workers with free capacity with
``blake2b(role ‖ seed ‖ job id ‖ reassignments)`` so every validator draws the same one.

Offers (issue 8: a job in 3 blocks): a worker posts ``offer(price, until)``, a standing price per job valid
through height ``until``. A job submitted with ``assign="offers"`` is assigned inside its submit tx: the worker
is the eligible offerer with a live offer, ``price <= reward`` and free capacity (``active_jobs < capacity``
when ``capacity > 0``), drawn in the price band as for bids. The verifier is drawn as above but only among live
offerers (an offer says the worker is online). With no such worker or verifier the job opens for bids as if
submitted with ``assign="bids"`` (an ``offers_unavailable`` event says why); nothing is refunded for that.
Everything after assignment is the same for both paths, except where a stalled worker's replacement comes
from: a job assigned at submission has no bids, so it takes the cheapest other live offer (and a stalled
verifier is redrawn among live offerers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger.context import BlockContext, Event
from ledger.crypto import blake2b256
from ledger.errors import (
    BadCommitment,
    DeadlinePassed,
    DuplicateAction,
    FeeTooLow,
    IneligibleWorker,
    InvalidField,
    NotClient,
    NotCommitted,
    NotEligible,
    NotParticipant,
    TooManyBids,
    UnknownJob,
    UnknownWorker,
    WindowTooShort,
    WrongJobState,
)
from ledger.params import Params
from ledger.staking import adjust_reputation, slash
from ledger.state import (
    ASSIGNED,
    AUDITING,
    CHECKING_STATUSES,
    CONFIRMING,
    DISPUTED,
    FAILED,
    OPEN,
    REFUNDED,
    REVEALING,
    VERIFIED,
    Job,
    State,
    Worker,
)
from ledger.tx import (
    Bid,
    CancelJob,
    CommitResult,
    ConfirmArtifact,
    Offer,
    RevealResult,
    SignedTx,
    SubmitJob,
    compute_commitment,
    compute_fingerprint,
)
from ledger.types import AccountId, Tokens
from ledger.verdict import ERROR, NOT_ATTRIBUTABLE, OUTCOMES, PPM, RESULT, UNAVAILABLE, claims_agree, outcome_problem

__all__ = ["audit_permille_for", "committers", "compute_commitment", "compute_fingerprint", "max_job_lifetime",
           "process_confirm_artifact", "process_deadlines"]

JOB_DEVICES = ("any", "gpu")
ASSIGN_BY_BIDS, ASSIGN_BY_OFFERS = "bids", "offers"
ASSIGN_MODES = ("", ASSIGN_BY_BIDS, ASSIGN_BY_OFFERS)
DISPUTE, AUDIT, APPEAL = "dispute", "audit", "appeal"
"""Why a job has checkers beyond its verifier (``Job.check``): the two claims differ, or the audit coin. The appeal
panel (``Job.panel``) follows the referee of every dispute, and an auditor whose claim differs from the pair's;
``APPEAL`` names it in a ``check_unavailable`` event when nobody is free to sit on it."""


def max_job_lifetime(state: State, job: Job) -> int:
    """Blocks after submission by which the job is certainly terminal (see the module docstring)."""
    r = state.params.max_reassignments
    bid_phase = job.bid_deadline - job.submitted_at  # the bid window, or 0 when assigned at submission
    # commits (each try one window, plus the block that draws the check), the referee's or auditor's commit (the
    # same), the appeal panel's commit, the reveals, the confirmation
    return (bid_phase + 2 * (r + 1) * (job.commit_window + 1) + job.commit_window + job.reveal_window
            + state.params.confirm_window)


def _get_job(state: State, job_id: bytes) -> Job:
    job = state.jobs.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    return job


def eligibility_problem(state: State, account: AccountId, job: Job) -> str | None:
    """Why ``account`` cannot work on ``job`` (bid, verify or referee), or ``None`` if it can."""
    w = state.workers.get(account)
    if w is None:
        return "not a registered worker"
    if account == job.client:
        return "is the job's client"
    if w.stake < state.params.min_stake:
        return "stake below min_stake"
    if w.reputation < state.params.min_reputation:
        return "reputation below min_reputation"
    if job.device == "gpu" and w.device_kind != "gpu":
        return "job needs a gpu"
    if w.memory_mb < job.min_memory_mb:
        return "not enough memory"
    if account in job.excluded:
        return "excluded after stalling on this job"
    return None


def worker_problem(state: State, account: AccountId) -> str | None:
    """Why ``account`` cannot take any job now (the job-independent part of ``eligibility_problem``)."""
    w = state.workers.get(account)
    if w is None:
        return "not a registered worker"
    if w.stake < state.params.min_stake:
        return "stake below min_stake"
    if w.reputation < state.params.min_reputation:
        return "reputation below min_reputation"
    return None


def _window(value: int, default: int, max_window: int, name: str) -> int:
    w = value or default
    if w > max_window:
        raise InvalidField(f"submit_job.{name}", f"{w} blocks exceeds max_window={max_window}")
    return w


@dataclass(frozen=True, slots=True)
class JobTerms:
    """A job's windows (defaults filled in), its run's time limit, and the fee its windows add."""

    bid_window: int
    commit_window: int
    reveal_window: int
    time_limit_ms: int
    surcharge: int


def job_terms(params: Params, *, bid_window: int, commit_window: int, reveal_window: int, time_limit_ms: int,
              min_memory_mb: int) -> JobTerms:
    """The terms a ``submit_job`` asks for (0: the chain's default), or the ``InvalidField`` that refuses them:
    a window above ``max_window``, a memory or run time above genesis's bounds, or a commit window too short for
    the run (:class:`WindowTooShort`). The rule and a client's pre-flight (``bootstrap.jobs``) both call this."""
    bid = _window(bid_window, params.default_bid_window, params.max_window, "bid_window")
    commit = _window(commit_window, params.default_commit_window, params.max_window, "commit_window")
    reveal = _window(reveal_window, params.default_reveal_window, params.max_window, "reveal_window")
    if min_memory_mb > params.max_job_memory_mb:
        raise InvalidField("submit_job.min_memory_mb", f"{min_memory_mb} exceeds max_job_memory_mb="
                                                       f"{params.max_job_memory_mb}")
    run_ms = time_limit_ms or params.default_job_time_ms
    if run_ms > params.max_job_time_ms:
        raise InvalidField("submit_job.time_limit_ms", f"{run_ms} exceeds max_job_time_ms={params.max_job_time_ms}")
    # A run that cannot finish inside the commit window would get honest workers stall-slashed: refuse it here.
    needed = params.commit_blocks_needed(run_ms)
    if commit < needed:
        raise WindowTooShort(commit, run_ms, needed, window_surcharge(params, bid, needed, reveal))
    return JobTerms(bid, commit, reveal, run_ms, window_surcharge(params, bid, commit, reveal))


def window_surcharge(params: Params, bid_window: int, commit_window: int, reveal_window: int) -> int:
    """The extra fee a job pays for windows longer than the defaults: ``window_fee_per_block`` per block by which
    the three together exceed ``default_bid_window + default_commit_window + default_reveal_window``."""
    extra = (bid_window + commit_window + reveal_window
             - params.default_bid_window - params.default_commit_window - params.default_reveal_window)
    return max(0, extra) * params.window_fee_per_block


def _transition(job: Job, status: str, height: int) -> None:
    job.status = status
    job.history.append((status, height))


# ---- tx handlers ----------------------------------------------------------------------------------------------
def process_submit_job(state: State, stx: SignedTx, p: SubmitJob, ctx: BlockContext) -> list[Event]:
    params = state.params
    if not p.model:
        raise InvalidField("submit_job.model", "must not be empty")
    if p.device not in JOB_DEVICES:
        raise InvalidField("submit_job.device", f"expected one of {JOB_DEVICES}")
    if p.reward == 0:
        raise InvalidField("submit_job.reward", "must be positive")
    if p.tolerance_ppm > PPM:
        raise InvalidField("submit_job.tolerance_ppm", f"must be at most {PPM}")
    if p.assign not in ASSIGN_MODES:
        raise InvalidField("submit_job.assign", f"expected {ASSIGN_BY_BIDS!r} or {ASSIGN_BY_OFFERS!r}")
    terms = job_terms(params, bid_window=p.bid_window, commit_window=p.commit_window,
                      reveal_window=p.reveal_window, time_limit_ms=p.time_limit_ms, min_memory_mb=p.min_memory_mb)
    fee_needed = params.min_fee + terms.surcharge
    if stx.tx.fee < fee_needed:
        raise FeeTooLow(fee_needed, stx.tx.fee)
    escrow = p.reward + p.verification_fee
    client = stx.tx.sender
    state.w_account(client).balance -= escrow  # covered: apply_tx checked fee + spend()
    job = Job(
        job_id=stx.tx_id, client=client, model=p.model, params_digest=p.params_digest,
        dataset_digest=p.dataset_digest, reward=p.reward, verification_fee=p.verification_fee,
        tolerance_abs=p.tolerance_abs, tolerance_ppm=p.tolerance_ppm, device=p.device,
        min_memory_mb=p.min_memory_mb, bid_window=terms.bid_window, commit_window=terms.commit_window,
        reveal_window=terms.reveal_window, time_limit_ms=terms.time_limit_ms, status=OPEN, escrow=escrow,
        submitted_at=ctx.height, bid_deadline=ctx.height + terms.bid_window, deadline=ctx.height + terms.bid_window,
        history=[(OPEN, ctx.height)],
    )
    state.put_job(job)
    state.set_active(job.job_id, True)
    assigned = _assign_from_offers(state, job, ctx) if p.assign == ASSIGN_BY_OFFERS else []
    return [Event("job_submitted", {"job_id": job.job_id, "client": client, "escrow": escrow,
                                    "bid_deadline": job.bid_deadline}), *assigned]


def process_offer(state: State, stx: SignedTx, p: Offer, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    # Only a registered worker has an offer to set or withdraw.
    if sender not in state.workers:
        raise UnknownWorker(sender)
    if p.until == 0:
        # Withdrawing is always allowed, even for a worker that lost its eligibility meanwhile.
        w = state.w_worker(sender)
        w.offer_price, w.offer_until, w.offer_max_time_ms = 0, 0, 0
        return [Event("offer_withdrawn", {"worker": sender})]
    # A worker that could not be assigned must not look available.
    problem = worker_problem(state, sender)
    if problem is not None:
        raise IneligibleWorker(sender, problem)
    if p.until < ctx.height:
        raise InvalidField("offer.until", f"height {p.until} has passed (now {ctx.height}); 0 withdraws")
    # Bounded like a job window, so a worker that goes away stops being assigned jobs soon.
    if p.until > ctx.height + state.params.max_window:
        raise InvalidField("offer.until", f"more than max_window={state.params.max_window} blocks ahead")
    w = state.w_worker(sender)
    w.offer_price, w.offer_until, w.offer_max_time_ms = p.price, p.until, p.max_time_ms
    return [Event("offer", {"worker": sender, "price": p.price, "until": p.until, "max_time_ms": p.max_time_ms})]


def process_bid(state: State, stx: SignedTx, p: Bid, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    job = _get_job(state, p.job_id)
    if job.status != OPEN:
        raise WrongJobState(job.job_id, job.status, OPEN)
    if ctx.height > job.bid_deadline:
        raise DeadlinePassed(job.job_id, job.bid_deadline, ctx.height)
    if sender not in state.workers:
        raise UnknownWorker(sender)
    problem = eligibility_problem(state, sender, job)
    if problem is not None:
        raise NotEligible(sender, job.job_id, problem)
    if p.price > job.reward:
        raise InvalidField("bid.price", f"{p.price} exceeds the job's reward {job.reward}")
    if sender in job.bids:
        raise DuplicateAction(job.job_id, sender, "bid")
    if len(job.bids) >= state.params.max_bids_per_job:
        raise TooManyBids(job.job_id, state.params.max_bids_per_job)
    state.w_job(job.job_id).bids[sender] = p.price
    return [Event("bid", {"job_id": job.job_id, "worker": sender, "price": p.price})]


def committers(job: Job) -> tuple[AccountId, ...]:
    """Who commits now (worker and verifier while assigned; the referee or auditor, then the appeal panel, while a
    check runs) or reveals (everyone who committed, while revealing)."""
    if job.status == ASSIGNED:
        return (job.worker, job.verifier)
    if job.status in CHECKING_STATUSES:
        return tuple(job.panel) if job.panel else (job.referee,)
    if job.status == REVEALING:
        return tuple(a for a in job.participants() if a in job.commits)
    return ()


def _role_words(job: Job) -> str:
    if job.status == ASSIGNED:
        return "worker or verifier"
    if job.status in CHECKING_STATUSES:
        return "appeal panel member" if job.panel else "referee or auditor"
    return "party that committed"


def process_commit_result(state: State, stx: SignedTx, p: CommitResult, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    job = _get_job(state, p.job_id)
    if job.status not in (ASSIGNED, *CHECKING_STATUSES):
        raise WrongJobState(job.job_id, job.status, (ASSIGNED, *CHECKING_STATUSES))
    if sender not in committers(job):
        raise NotParticipant(job.job_id, sender, _role_words(job))
    if sender in job.commits:
        raise DuplicateAction(job.job_id, sender, "commit")
    if ctx.height > job.deadline:
        raise DeadlinePassed(job.job_id, job.deadline, ctx.height)
    job = state.w_job(job.job_id)
    job.commits[sender] = p.commitment
    job.fingerprints[sender] = p.fingerprint
    events = [Event("committed", {"job_id": job.job_id, "worker": sender})]
    if all(a in job.commits for a in committers(job)):
        if job.status == ASSIGNED or (not job.panel and state.params.appeal_panel and (
                job.check == DISPUTE or p.fingerprint != job.fingerprints[job.worker])):
            # What comes next is drawn (an auditor or referee; the appeal panel of a dispute, or of an auditor that
            # differs) from the hash of this block, which nobody knew when committing: the end of the next block
            # draws it (``process_deadlines``).
            job.deadline = ctx.height + 1
            events.append(Event("job_checking", {"job_id": job.job_id, "deadline": job.deadline}))
        else:
            events += _open_reveals(job, ctx)
    return events


def _open_reveals(job: Job, ctx: BlockContext) -> list[Event]:
    """Every check has committed: everyone who committed reveals within the reveal window."""
    _transition(job, REVEALING, ctx.height)
    job.deadline = ctx.height + job.reveal_window
    return [Event("job_revealing", {"job_id": job.job_id, "deadline": job.deadline})]


def process_reveal_result(state: State, stx: SignedTx, p: RevealResult, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    job = _get_job(state, p.job_id)
    if job.status != REVEALING:
        raise WrongJobState(job.job_id, job.status, REVEALING)
    if sender not in job.participants():
        raise NotParticipant(job.job_id, sender, _role_words(job))
    if sender not in job.commits:
        raise NotCommitted(job.job_id, sender)
    if sender in job.reveals:
        raise DuplicateAction(job.job_id, sender, "reveal")
    if ctx.height > job.deadline:
        raise DeadlinePassed(job.job_id, job.deadline, ctx.height)
    if len(p.summary) > state.params.max_summary_len:
        raise InvalidField("reveal_result.summary", f"longer than max_summary_len={state.params.max_summary_len}")
    problem = outcome_problem(p.outcome, p.summary)
    if problem is not None:
        raise InvalidField("reveal_result.outcome", problem)
    opened = compute_commitment(job.job_id, sender, p.summary, p.artifact_digest, p.salt, p.outcome)
    if opened != job.commits[sender]:
        raise BadCommitment(job.job_id, sender)
    if compute_fingerprint(job.job_id, p.summary, p.outcome) != job.fingerprints[sender]:
        raise BadCommitment(job.job_id, sender, "the claim does not match its fingerprint")
    job = state.w_job(job.job_id)
    job.reveals[sender] = (list(p.summary), p.artifact_digest, p.outcome)
    events = [Event("revealed", {"job_id": job.job_id, "worker": sender, "outcome": OUTCOMES[p.outcome]})]
    if all(a in job.reveals for a in committers(job)):
        events += _verdict(state, job, ctx)
    return events


def process_cancel_job(state: State, stx: SignedTx, p: CancelJob, ctx: BlockContext) -> list[Event]:
    job = _get_job(state, p.job_id)
    if stx.tx.sender != job.client:
        raise NotClient(job.job_id, stx.tx.sender)
    if job.status != OPEN:
        raise WrongJobState(job.job_id, job.status, OPEN)
    return _close(state, state.w_job(job.job_id), ctx, REFUNDED, "cancelled", {})


# ---- verdicts -------------------------------------------------------------------------------------------------
# A claim is what a party revealed: (summary, artifact digest, outcome). Results and errors are attributable: the
# same spec on the same data gives every honest run the same answer, so a claim that differs from an agreeing
# majority is provably wrong and slashed. Unavailable and over-limit claims depend on the network and the machine:
# they are never slashed, and paid (a trouble share) only when nobody could do better.
#
# Incentive (a lazy or lying party; t = trouble_permille / 1000, c = its cost of running the job honestly, P its
# pay): claiming "unavailable" next to an honest party earns 0 (the honest result goes to a referee and wins)
# against P − c for the work, so lying pays only when c > P, where honest workers do not take the job either.
# Two colluding keys in both roles earn t·(price + fee) without work against (price + fee) − 2c honestly: lying
# loses while c < (1 − t)·(price + fee) / 2, i.e. below 45% of the pay at t = 0.1 (and the client's loss is
# bounded by t of the escrow). Denying a result by a false error claim is attributable: the referee's run
# contradicts it and it is slashed like a wrong result.
Claim = tuple[list[int], bytes, int]


def _claim(job: Job, account: AccountId) -> Claim:
    return job.reveals[account]


def _agree(job: Job, a: tuple[list[int], bytes, int], b: tuple[list[int], bytes, int]) -> bool:
    return claims_agree(a[2], a[0], b[2], b[0], job.tolerance_abs, job.tolerance_ppm)


def _attributable(claim: tuple[list[int], bytes, int]) -> bool:
    return claim[2] not in NOT_ATTRIBUTABLE


def _trouble(state: State, amount: Tokens) -> Tokens:
    return amount * state.params.trouble_permille // 1000


def _verdict(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Everyone who committed has revealed: decide on two claims, on three (a referee or an auditor with nobody
    free for a panel), or by the appeal panel's majority."""
    if job.referee is None:
        return _compare(state, job, ctx)
    w, v, r = job.worker, job.verifier, job.referee
    cw, cv = _claim(job, w), _claim(job, v)
    if job.panel and job.check == AUDIT:
        return _panel_verdict(state, job, ctx, ([w, v], cw), ([r], _claim(job, r)), list(job.panel))
    if not _attributable(cw) and not _attributable(cv):
        # Neither could run it (their different claims drew the referee before anyone knew): nobody can check a
        # result the checkers alone have, and nobody is at fault.
        fee = job.verification_fee
        verdict = "unavailable" if cw[2] == cv[2] == UNAVAILABLE else "unrunnable"
        return _nobodys_fault(state, job, ctx, verdict, {w: job.price, v: fee - fee // 2, r: fee // 2})
    if not job.panel:
        return _arbitrate(state, job, ctx)
    return _panel_verdict(state, job, ctx, ([w], cw), ([v], cv), [r, *job.panel])


def _compare(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Worker and verifier only: settle on agreement, end the job when nobody could run it; two different claims
    with nobody free to referee them fail the job (refunded, nobody slashed)."""
    w, v = job.worker, job.verifier
    cw, cv = _claim(job, w), _claim(job, v)
    if not _attributable(cw) and not _attributable(cv):
        verdict = "unavailable" if cw[2] == cv[2] == UNAVAILABLE else "unrunnable"
        return _nobodys_fault(state, job, ctx, verdict, {w: job.price, v: job.verification_fee})
    if _agree(job, cw, cv):
        return _conclude(state, job, ctx, "agreed", {w: job.price, v: job.verification_fee}, cw, winners=(w, v))
    return _close(state, job, ctx, FAILED, "disputed_no_referee", {})


def _arbitrate(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Three claims (the referee's or auditor's committed blind), at least one of worker and verifier attributable
    (``_verdict``): the two that agree win, the odd one out is slashed if its claim was attributable."""
    w, v, r = job.worker, job.verifier, job.referee
    cw, cv, cr = _claim(job, w), _claim(job, v), _claim(job, r)
    fee = job.verification_fee
    if not _attributable(cr):
        if _attributable(cw) and _attributable(cv):
            if _agree(job, cw, cv):  # an auditor that could not run it: the pair's claim stands, unaudited
                return _conclude(state, job, ctx, "agreed", {w: job.price, v: fee}, cw, winners=(w, v))
            return _close(state, job, ctx, FAILED, "no_majority", {})  # two results nobody can tell apart
        # Two of three could not run it: nobody can check the third's claim, and nobody is at fault.
        return _nobodys_fault(state, job, ctx, "unrunnable", {w: job.price, v: fee - fee // 2, r: fee // 2})
    wr = _attributable(cw) and _agree(job, cw, cr)
    vr = _attributable(cv) and _agree(job, cv, cr)
    if wr and vr:
        # The referee sits within tolerance of both: nobody is provably wrong; the checkers share the fee.
        payees = {w: job.price, v: fee - fee // 2, r: fee // 2}
        verdict = "audited" if job.check == AUDIT else "agreed_by_referee"
        return _conclude(state, job, ctx, verdict, payees, cw, winners=(w, v, r))
    if wr:
        events = _punish(state, job, v) if _attributable(cv) else []
        return events + _conclude(state, job, ctx, "verifier_faulty" if _attributable(cv) else "verifier_unable",
                                  {w: job.price, r: fee}, cw, winners=(w, r))
    if vr:
        events = _punish(state, job, w) if _attributable(cw) else []
        return events + _conclude(state, job, ctx, "worker_faulty" if _attributable(cw) else "worker_unable",
                                  {r: job.price, v: fee}, cr, winners=(v, r))
    return _close(state, job, ctx, FAILED, "no_majority", {})


def _split(fee: Tokens, accounts: list[AccountId]) -> dict[AccountId, Tokens]:
    """``fee`` shared equally by ``accounts`` (the remainder to the first), so no token is left over."""
    if not accounts:
        return {}
    share = fee // len(accounts)
    out = {a: share for a in accounts}
    out[accounts[0]] += fee - share * len(accounts)
    return out


def _panel_verdict(state: State, job: Job, ctx: BlockContext, side_a: tuple[list[AccountId], Claim],
                   side_b: tuple[list[AccountId], Claim], voters: list[AccountId]) -> list[Event]:
    """Two claims and the checkers who committed blind after both: a dispute (worker against verifier, judged by
    the referee and the panel) or an audit (the worker and verifier's one claim against the auditor's, judged by
    the panel). The side a strict majority of the voters backs wins; the other side is slashed (a pair together),
    and so is every voter whose attributable claim backed neither the winner. No majority: the job fails,
    refunded, nobody slashed. Two claims within tolerance of each other both stand.

    Incentive: to win against an honest side the owner must hold a majority of the voters (3 of 4 in a dispute,
    2 of 3 in an audit's panel, drawn uniformly after the commitments), and a voter it holds that backs its side
    against an honest majority loses ``slash_permille`` of its stake; see docs/VERIFICATION.md for the odds."""
    (holders_a, ca), (holders_b, cb) = side_a, side_b
    audit = job.check == AUDIT
    revealed = [m for m in voters if m in job.reveals]
    attributable = [m for m in revealed if _attributable(_claim(job, m))]

    def backers(claim: Claim) -> list[AccountId]:
        return [m for m in attributable if _attributable(claim) and _agree(job, claim, _claim(job, m))]

    if _attributable(ca) and _attributable(cb) and _agree(job, ca, cb):
        # Within tolerance of either backs it: tolerance is not transitive, and honest runs may sit on both sides.
        winners, losers, claim = [*holders_a, *holders_b], [], ca
        either = {*backers(ca), *backers(cb)}
        backing = [m for m in attributable if m in either]
        verdict = "audited" if audit else "agreed_by_referee"
    elif 2 * len(ba := backers(ca)) > len(revealed) and _attributable(ca):
        winners, losers, claim, backing = holders_a, holders_b, ca, ba
        wrong = _attributable(cb)
        verdict = ("auditor_faulty" if wrong else "auditor_unable") if audit else \
            ("verifier_faulty" if wrong else "verifier_unable")
    elif 2 * len(bb := backers(cb)) > len(revealed) and _attributable(cb):
        winners, losers, claim, backing = holders_b, holders_a, cb, bb
        wrong = _attributable(ca)
        verdict = ("pair_faulty" if wrong else "pair_unable") if audit else \
            ("worker_faulty" if wrong else "worker_unable")
    else:
        return _close(state, job, ctx, FAILED, "no_majority", {})
    events: list[Event] = []
    for account in [*(a for a in losers if _attributable(_claim(job, a))), *(m for m in attributable
                                                                              if m not in backing)]:
        events += _punish(state, job, account)
    # The price goes to whoever ran for the accepted claim in the worker's place when the worker lost (the auditor,
    # or a dispute's first backing checker); the fee is shared by the other winners and the backing checkers.
    checkers = [a for a in [*winners, *backing] if a not in (job.worker, job.verifier)]
    price_to = job.worker if job.worker in winners else checkers[0]
    fee_to = [a for a in [*winners, *backing] if a not in (job.worker, price_to)]
    payees = {price_to: job.price, **_split(job.verification_fee, list(dict.fromkeys(fee_to)))}
    return events + _conclude(state, job, ctx, verdict, payees, claim,
                              winners=tuple(dict.fromkeys([*winners, *backing])))


def _conclude(state: State, job: Job, ctx: BlockContext, verdict: str, payees: dict[AccountId, Tokens],
              claim: tuple[list[int], bytes, int], winners: tuple[AccountId, ...]) -> list[Event]:
    """The winners agreed on ``claim``: a result is verified and paid in full; an agreed deterministic error
    ends the job as ``failed`` with the trouble share paid, the error code kept as the job's result."""
    if claim[2] == RESULT:
        if state.params.confirm_window:
            return _await_confirmation(state, job, ctx, verdict, payees, claim, winners)
        return _settle(state, job, ctx, verdict, payees, (claim[0], claim[1]), winners)
    assert claim[2] == ERROR  # non-attributable claims never win a comparison
    job.result_summary, job.result_artifact = list(claim[0]), claim[1]
    return _nobodys_fault(state, job, ctx, "spec_error", {a: payees[a] for a in winners if a in payees})


# ---- confirmation: the accepted artifact exists and is the accepted result -------------------------------------
# The ledger cannot fetch a blob, so a party that backed the accepted claim without being its author does it: it
# fetches the artifact the claim names, recomputes the summary from it (``compute.binding.artifact_problem``) and
# posts ``confirm_artifact``. The first confirmation settles the job; none by the deadline fails it, refunded.
#
# Who confirms: the checkers drawn after the commitments that backed the claim (an auditor, a referee, the panel's
# majority) when there are any, else the other of worker and verifier. A pair of one owner cannot confirm its own
# withheld or altered artifact on a job that drew a checker, and a checker is drawn from a hash that did not
# exist when the pair committed.
#
# Incentive: a confirmer earns its share of the fee only by confirming, so an honest artifact is confirmed; one
# that withholds a confirmation to deny the author its price P loses its own share f and gains nothing on the
# ledger (griefing costs the griefer f per job, and it must be drawn to a backing role first). An author whose
# artifact is unfetchable or altered is not paid (it loses P) but not slashed: unavailability cannot be told from
# a network fault. Withholding saves the author only the upload, since the summary it revealed is computed from
# the artifact itself (the sketch binds every array), so nobody profits by it; the rule is there so that the
# client never pays for a result it cannot get.


def _author(job: Job, claim: Claim, winners: tuple[AccountId, ...]) -> AccountId:
    """The winner whose reveal the accepted claim is (its artifact is the one the job records)."""
    return next(a for a in winners if job.reveals.get(a) == claim)


def _await_confirmation(state: State, job: Job, ctx: BlockContext, verdict: str, payees: dict[AccountId, Tokens],
                        claim: Claim, winners: tuple[AccountId, ...]) -> list[Event]:
    """A result is accepted: keep what settling it pays, and give its confirmers ``confirm_window`` blocks."""
    author = _author(job, claim, winners)
    others = [a for a in winners if a != author]
    checkers = [a for a in others if a not in (job.worker, job.verifier)]
    job.confirmers = checkers or others
    job.payout, job.winners = dict(payees), list(winners)
    job.result_summary, job.result_artifact = list(claim[0]), claim[1]
    job.verdict = verdict
    _transition(job, CONFIRMING, ctx.height)
    job.deadline = ctx.height + state.params.confirm_window
    return [Event("job_confirming", {"job_id": job.job_id, "artifact": claim[1], "author": author,
                                     "confirmers": list(job.confirmers), "deadline": job.deadline})]


def process_confirm_artifact(state: State, stx: SignedTx, p: ConfirmArtifact, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    job = _get_job(state, p.job_id)
    if job.status != CONFIRMING:
        raise WrongJobState(job.job_id, job.status, CONFIRMING)
    if sender not in job.confirmers:
        raise NotParticipant(job.job_id, sender, "confirmer")
    if ctx.height > job.deadline:
        raise DeadlinePassed(job.job_id, job.deadline, ctx.height)
    if p.artifact_digest != job.result_artifact:
        raise InvalidField("confirm_artifact.artifact_digest",
                           f"the accepted artifact of job {job.job_id.hex()[:16]} is {job.result_artifact.hex()}")
    job = state.w_job(job.job_id)
    events = [Event("artifact_confirmed", {"job_id": job.job_id, "by": sender})]
    return events + _settle(state, job, ctx, job.verdict, dict(job.payout),
                            (list(job.result_summary or []), job.result_artifact), tuple(job.winners))


def _confirm_timeout(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Nobody confirmed the accepted artifact: the client gets its escrow back, nobody is paid or slashed."""
    return _close(state, job, ctx, FAILED, "artifact_unconfirmed", {})


def _nobodys_fault(state: State, job: Job, ctx: BlockContext, verdict: str,
                   pay: dict[AccountId, Tokens]) -> list[Event]:
    """End a job nobody could run (or whose spec fails on its data): each party gets the trouble share of what
    it would have been paid, the client the rest; no slash and no reputation change."""
    return _close(state, job, ctx, FAILED, verdict, {a: _trouble(state, amount) for a, amount in pay.items()})


def _punish(state: State, job: Job, account: AccountId) -> list[Event]:
    """The odd one out of a dispute: slashed, reputation cut, a failed job on its record."""
    event = slash(state, account, state.params.slash_permille, f"wrong result on job {job.job_id.hex()[:16]}")
    adjust_reputation(state, account, -state.params.reputation_penalty)
    state.w_worker(account).jobs_failed += 1
    return [event]


def _penalise_stall(state: State, job: Job, account: AccountId, phase: str) -> list[Event]:
    """A worker that let a deadline pass: small slash, reputation cut, excluded from this job."""
    event = slash(state, account, state.params.stall_slash_permille, f"missed {phase} on job {job.job_id.hex()[:16]}")
    adjust_reputation(state, account, -state.params.reputation_stall_penalty)
    w = state.w_worker(account)
    w.jobs_failed += 1
    w.active_jobs -= 1
    job.excluded.append(account)
    return [event, Event("stalled", {"job_id": job.job_id, "worker": account, "phase": phase})]


def _settle(
    state: State,
    job: Job,
    ctx: BlockContext,
    verdict: str,
    payees: dict[AccountId, Tokens],
    result: tuple[list[int], bytes],
    winners: tuple[AccountId, ...],
) -> list[Event]:
    for account in winners:
        adjust_reputation(state, account, state.params.reputation_reward)
        state.w_worker(account).jobs_done += 1
    job.result_summary, job.result_artifact = list(result[0]), result[1]
    return _close(state, job, ctx, VERIFIED, verdict, payees)


def _close(
    state: State, job: Job, ctx: BlockContext, status: str, verdict: str, payees: dict[AccountId, Tokens]
) -> list[Event]:
    """End the job: pay ``payees`` from the escrow, refund the rest to the client, release every role."""
    events: list[Event] = []
    for account, amount in sorted(payees.items()):
        if amount:
            state.w_account(account).balance += amount
            job.escrow -= amount
            events.append(Event("paid", {"job_id": job.job_id, "to": account, "amount": amount}))
    if job.escrow < 0:  # payees are bounded by price <= reward and the fee; this would be a rule bug
        raise AssertionError(f"job {job.job_id.hex()} paid out more than its escrow")
    refund = job.escrow
    if refund:
        state.w_account(job.client).balance += refund
        job.escrow = 0
    for account in job.participants():
        state.w_worker(account).active_jobs -= 1
    job.verdict = verdict
    job.confirmers, job.payout, job.winners = [], {}, []  # a finished job keeps no settlement pending
    _transition(job, status, ctx.height)
    job.deadline = ctx.height
    state.set_active(job.job_id, False)
    events.append(Event(f"job_{status}", {"job_id": job.job_id, "verdict": verdict, "refund": refund}))
    return events


# ---- assignment and draws -------------------------------------------------------------------------------------
# The worker is drawn among the offers (or bids) whose price is within ``offer_band_permille`` of the lowest, with
# weight ``(1 + reputation) · free capacity slots`` (a worker declaring no capacity counts one slot), from the
# block seed: undercutting by one token no longer takes every job, and a worker's share follows its reputation
# and the capacity it stakes to serve.
#
# Incentive (undercutting): a worker asking p − 1 when the rest ask p gains nothing over asking p unless the cut
# exceeds the band; then it wins every draw at a price at least a band lower (a real price war, paid for by the
# clients' escrow, not by the other workers' stake). Inflating capacity raises the share, but every slot taken
# and not served is stall-slashed (``stall_slash_permille`` of stake per missed deadline). Reputation only
# weighs the draw (1 + r ≤ 1001 against ≥ 1), so a long record earns at most ~2× a newcomer's share at r = 500.
def _offers_for(w: Worker, job: Job, height: int) -> bool:
    """Whether the worker's standing offer is live and covers a run as long as ``job``'s."""
    return w.offer_live_at(height) and (not w.offer_max_time_ms or job.time_limit_ms <= w.offer_max_time_ms)


def _has_room(w: Worker) -> bool:
    return not w.capacity or w.active_jobs < w.capacity


def _weight(w: Worker) -> int:
    free = w.capacity - w.active_jobs if w.capacity else 1
    return (1 + w.reputation) * max(1, free)


def _seed_int(job: Job, ctx: BlockContext, role: str) -> int:
    digest = blake2b256(
        b"dacn/draw/" + role.encode() + b"\x00" + ctx.seed + job.job_id + job.reassignments.to_bytes(8, "big")
    )
    return int.from_bytes(digest, "big")


def _weighted_pick(candidates: list[tuple[AccountId, int]], job: Job, ctx: BlockContext, role: str
                   ) -> AccountId | None:
    """One of ``candidates`` ((account, weight), sorted by account), drawn with the block seed in proportion to
    its weight, so every validator picks the same one."""
    total = sum(weight for _, weight in candidates)
    if total <= 0:
        return None
    point = _seed_int(job, ctx, role) % total
    for account, weight in candidates:
        if point < weight:
            return account
        point -= weight
    raise AssertionError("weighted draw ran past its total")  # unreachable: point < total


def _band_pick(state: State, job: Job, ctx: BlockContext, priced: list[tuple[AccountId, Tokens]], role: str
               ) -> tuple[AccountId, Tokens] | None:
    """The worker drawn among ``priced`` (eligible, with room) whose asked price is within the band of the
    lowest, and its price."""
    if not priced:
        return None
    # The band is on the asked price alone: reputation weighs in the draw, not in the band, or a worker whose
    # reputation rose with its jobs would price the others out of the band and take everything.
    limit = min(price for _, price in priced) * (1000 + state.params.offer_band_permille)
    band = sorted((a, _weight(state.workers[a])) for a, price in priced if price * 1000 <= limit)
    chosen = _weighted_pick(band, job, ctx, role)
    return None if chosen is None else (chosen, dict(priced)[chosen])


def _pick_worker(state: State, job: Job, ctx: BlockContext, exclude: set[AccountId]
                 ) -> tuple[AccountId, Tokens] | None:
    """The worker drawn among the job's eligible bids near the best price (see above)."""
    free = _free_of(state, exclude)
    priced = [(a, price) for a, price in job.bids.items()
              if free(a) and _has_room(state.workers[a]) and eligibility_problem(state, a, job) is None]
    return _band_pick(state, job, ctx, priced, "worker")


def _seeded_pick(candidates: list[AccountId], job: Job, ctx: BlockContext, role: str) -> AccountId | None:
    """One of ``candidates`` (sorted), drawn uniformly with the block seed so every validator picks the same one."""
    if not candidates:
        return None
    return candidates[_seed_int(job, ctx, role) % len(candidates)]


def operator_of(state: State, account: AccountId) -> AccountId:
    """The node that runs ``account`` (``Worker.operator``; the account itself when it declared none)."""
    w = state.workers.get(account)
    return account if w is None or not w.operator else w.operator


def _free_of(state: State, holders: set[AccountId] | frozenset[AccountId]) -> Callable[[AccountId], bool]:
    """Whether an account may take another role next to ``holders``: not one of them, and not run by the same
    node as any of them (keys of one operator never fill two roles of a job)."""
    operators = {operator_of(state, a) for a in holders}
    return lambda a: a not in holders and operator_of(state, a) not in operators


def _draw(state: State, job: Job, ctx: BlockContext, role: str, exclude: set[AccountId],
          *, offering: bool = False) -> AccountId | None:
    """A uniformly drawn eligible worker with free capacity, not in ``exclude`` nor run by the same operator as
    any of them (with ``offering``: only those with a live offer)."""
    free = _free_of(state, exclude)
    candidates = sorted(
        a for a, w in state.workers.items()
        if free(a) and (not offering or _offers_for(w, job, ctx.height)) and _has_room(w)
        and eligibility_problem(state, a, job) is None
    )
    return _seeded_pick(candidates, job, ctx, role)


def _pick_offer(state: State, job: Job, ctx: BlockContext, exclude: frozenset[AccountId] = frozenset()
                ) -> tuple[AccountId, Tokens] | None:
    """The worker drawn among live offers that fit the job and have free capacity, near the best price."""
    free = _free_of(state, exclude)
    priced = [(a, w.offer_price) for a, w in state.workers.items()
              if free(a) and _offers_for(w, job, ctx.height) and w.offer_price <= job.reward
              and _has_room(w) and eligibility_problem(state, a, job) is None]
    return _band_pick(state, job, ctx, priced, "offer")


def _assign_from_offers(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Assign a just-submitted job from standing offers, or leave it open for bids and say why."""
    pick = _pick_offer(state, job, ctx)
    verifier = None if pick is None else _draw(state, job, ctx, "verifier", exclude={pick[0]}, offering=True)
    if pick is None or verifier is None:
        reason = "no_worker_offer" if pick is None else "no_verifier_offer"
        return [Event("offers_unavailable", {"job_id": job.job_id, "reason": reason,
                                             "bid_deadline": job.bid_deadline})]
    worker, price = pick
    job.worker, job.price, job.verifier = worker, price, verifier
    state.w_worker(worker).active_jobs += 1
    state.w_worker(verifier).active_jobs += 1
    # No bid phase: the history starts at assigned, and the bid deadline is the assignment height.
    job.status = ASSIGNED
    job.history = [(ASSIGNED, ctx.height)]
    job.bid_deadline = ctx.height
    job.deadline = ctx.height + job.commit_window
    return [Event("job_assigned", {"job_id": job.job_id, "worker": worker, "verifier": verifier, "price": price,
                                   "deadline": job.deadline, "via": ASSIGN_BY_OFFERS})]


def _assign(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """The bid window closed: pick the worker and draw the verifier, or refund if either is missing."""
    pick = _pick_worker(state, job, ctx, exclude=set())
    if pick is None:
        return _close(state, job, ctx, REFUNDED, "no_eligible_bid", {})
    worker, price = pick
    verifier = _draw(state, job, ctx, "verifier", exclude={worker})
    if verifier is None:
        return _close(state, job, ctx, REFUNDED, "no_verifier", {})
    job.worker, job.price, job.verifier = worker, price, verifier
    state.w_worker(worker).active_jobs += 1
    state.w_worker(verifier).active_jobs += 1
    _transition(job, ASSIGNED, ctx.height)
    job.deadline = ctx.height + job.commit_window
    return [Event("job_assigned", {"job_id": job.job_id, "worker": worker, "verifier": verifier, "price": price,
                                   "deadline": job.deadline})]


def _commit_timeout(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Commit deadline passed in ``assigned``: draw the check when both committed, otherwise penalise and replace
    whoever did not commit."""
    if job.worker in job.commits and job.verifier in job.commits:
        return _check_draw(state, job, ctx)
    events: list[Event] = []
    worker_stalled = job.worker not in job.commits
    verifier_stalled = job.verifier not in job.commits
    if worker_stalled:
        events += _penalise_stall(state, job, job.worker, "commit")
        job.worker, job.price = None, 0
    if verifier_stalled:
        events += _penalise_stall(state, job, job.verifier, "commit")
        job.verifier = None
    if job.reassignments >= state.params.max_reassignments:
        return events + _close(state, job, ctx, REFUNDED, "commit_timeout", {})
    job.reassignments += 1
    # A job assigned at submission has no bids to fall back on: its replacements come from live offers.
    from_offers = not job.bids
    if worker_stalled:
        keep = {job.verifier} if job.verifier else set()
        pick = _pick_offer(state, job, ctx, frozenset(keep)) if from_offers else _pick_worker(state, job, ctx, keep)
        if pick is None:
            return events + _close(state, job, ctx, REFUNDED, "commit_timeout_no_worker", {})
        job.worker, job.price = pick
        state.w_worker(job.worker).active_jobs += 1
    if verifier_stalled:
        verifier = _draw(state, job, ctx, "verifier", exclude={job.worker}, offering=from_offers)
        if verifier is None:
            return events + _close(state, job, ctx, REFUNDED, "commit_timeout_no_verifier", {})
        job.verifier = verifier
        state.w_worker(verifier).active_jobs += 1
    _transition(job, ASSIGNED, ctx.height)
    job.deadline = ctx.height + job.commit_window
    events.append(Event("job_reassigned", {"job_id": job.job_id, "worker": job.worker,
                                           "verifier": job.verifier, "deadline": job.deadline}))
    return events


CAUGHT_PERCENT = 49
"""The least chance (in percent) that an audited fake of a pair of one owner is caught, for an owner of less than a
third of the keys: the auditor is not its key (> 2/3) and the appeal panel of 3 has no majority of its keys
(> 1 − (3·(1/3)² − 2·(1/3)³) = 20/27): 2/3 · 20/27 = 0.494 (docs/VERIFICATION.md)."""


def audit_permille_for(state: State, job: Job) -> int:
    """The chance (per mille) that ``job`` is audited once its worker and verifier made the same claim:
    ``max(audit_permille, ⌈1000·pay / (κ·(pay + S_w + S_v))⌉)``, capped at 1000, with ``pay = price +
    verification_fee`` (what the two roles earn), ``S_w``, ``S_v`` their slashes (``stake · slash_permille /
    1000``) and ``κ = CAUGHT_PERCENT / 100``. Then ``p · κ · (pay + S_w + S_v) ≥ pay``: a pair of one owner that
    fakes the work saves at most ``pay`` (an honest run costs no more than it is paid) and, caught with chance at
    least ``p·κ``, loses the pay and both slashes. 0 when audits are off."""
    params = state.params
    if not params.audit_permille:
        return 0
    pay = job.price + job.verification_fee
    at_risk = sum(w.stake * params.slash_permille // 1000
                  for a in (job.worker, job.verifier) if (w := state.workers.get(a)) is not None)
    denominator = CAUGHT_PERCENT * (pay + at_risk)
    needed = -(-1000 * 100 * pay // denominator) if denominator else 1000
    return min(1000, max(params.audit_permille, needed))


def _check_draw(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Worker and verifier committed in the previous block, whose hash is this block's seed: a referee when their
    fingerprints differ, an auditor with chance ``audit_permille_for``, either committing before anything is
    revealed; otherwise the two reveal."""
    w, v = job.worker, job.verifier
    if job.fingerprints[w] != job.fingerprints[v]:
        check = DISPUTE
    elif _seed_int(job, ctx, "audit-coin") % 1000 < audit_permille_for(state, job):
        check = AUDIT
    else:
        return _open_reveals(job, ctx)
    job.check = check
    seated = _seat_checker(state, job, ctx)
    if seated is None:
        # Nobody free to check: two different claims are compared as they are (failed unless within tolerance),
        # and an audit is skipped.
        job.check = ""
        return [Event("check_unavailable", {"job_id": job.job_id, "check": check}), *_open_reveals(job, ctx)]
    return seated


def _seat_checker(state: State, job: Job, ctx: BlockContext) -> list[Event] | None:
    """Draw the referee (``job.check`` a dispute) or the auditor, give it a commit window, and say so; ``None``
    when no worker is free for it."""
    dispute = job.check == DISPUTE
    checker = _draw(state, job, ctx, "referee" if dispute else "auditor", exclude={job.worker, job.verifier})
    if checker is None:
        return None
    job.referee = checker
    state.w_worker(checker).active_jobs += 1
    _transition(job, DISPUTED if dispute else AUDITING, ctx.height)
    job.deadline = ctx.height + job.commit_window
    return [Event("job_disputed" if dispute else "job_audited",
                  {"job_id": job.job_id, "referee": checker, "deadline": job.deadline})]


def _draw_panel(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """The auditor committed a claim unlike the pair's in the previous block: draw up to ``appeal_panel`` more
    checkers, who commit blind too; with none free everyone reveals and the job fails unless the claims agree
    within tolerance."""
    panel: list[AccountId] = []
    exclude = {job.worker, job.verifier, job.referee}
    for i in range(state.params.appeal_panel):
        member = _draw(state, job, ctx, f"appeal-{i}", exclude=exclude | set(panel))
        if member is None:
            break
        panel.append(member)
    if not panel:
        return [Event("check_unavailable", {"job_id": job.job_id, "check": APPEAL}), *_open_reveals(job, ctx)]
    job.panel = panel
    for member in panel:
        state.w_worker(member).active_jobs += 1
    _transition(job, job.status, ctx.height)
    job.deadline = ctx.height + job.commit_window
    return [Event("job_appealed", {"job_id": job.job_id, "panel": list(panel), "deadline": job.deadline})]


def _reveal_timeout(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """Reveal deadline passed: whoever withheld a committed claim is penalised. A worker and verifier that both
    revealed the same claim are settled as agreed when only their checker withheld; otherwise the job cannot be
    checked and is refunded."""
    events: list[Event] = []
    for account in [a for a in job.participants() if a not in job.reveals]:
        events += _penalise_stall(state, job, account, "reveal")
        if account == job.worker:
            job.worker = None
        elif account == job.verifier:
            job.verifier = None
        elif account == job.referee:
            job.referee = None
        else:
            job.panel = [m for m in job.panel if m != account]
    w, v = job.worker, job.verifier
    if w is not None and v is not None and not job.panel and job.fingerprints[w] == job.fingerprints[v]:
        cw = _claim(job, w)
        if _attributable(cw):
            return events + _conclude(state, job, ctx, "agreed", {w: job.price, v: job.verification_fee}, cw,
                                      winners=(w, v))
    return events + _close(state, job, ctx, REFUNDED, "reveal_timeout", {})


def _check_timeout(state: State, job: Job, ctx: BlockContext) -> list[Event]:
    """A check's deadline: the auditor's differing commitment draws the panel (a block after it landed); panel
    members that did not commit are penalised and the rest reveal; a referee or auditor that did not commit is
    replaced, or the job fails when out of tries."""
    if job.panel:
        events: list[Event] = []
        for member in [m for m in job.panel if m not in job.commits]:
            events += _penalise_stall(state, job, member, "appeal")
        job.panel = [m for m in job.panel if m in job.commits]
        return events + _open_reveals(job, ctx)
    if job.referee in job.commits:
        return _draw_panel(state, job, ctx)
    events = _penalise_stall(state, job, job.referee, "referee")
    job.referee = None
    if job.reassignments >= state.params.max_reassignments:
        return events + _close(state, job, ctx, FAILED, "referee_timeout", {})
    job.reassignments += 1
    seated = _seat_checker(state, job, ctx)
    if seated is None:
        return events + _close(state, job, ctx, FAILED, "referee_timeout", {})
    return events + seated


_ON_DEADLINE = {OPEN: _assign, ASSIGNED: _commit_timeout, REVEALING: _reveal_timeout, DISPUTED: _check_timeout,
                AUDITING: _check_timeout, CONFIRMING: _confirm_timeout}


def process_deadlines(state: State, ctx: BlockContext) -> list[Event]:
    """Move on every active job whose current phase ends at or before ``ctx.height`` (in job-id order)."""
    events: list[Event] = []
    due = sorted(j for j in state.active_jobs if state.jobs[j].deadline <= ctx.height)
    for job_id in due:
        job = state.w_job(job_id)
        events += _ON_DEADLINE[job.status](state, job, ctx)
    return events


def prune_finished_jobs(state: State, height: int) -> list[Event]:
    """Retention: the jobs that ended ``job_retention_blocks`` blocks before ``height`` leave the live state (in
    job-id order, one ``job_pruned`` event each). A finished job holds no escrow and no role (``_close``), so this
    moves no token, stake or reputation: nobody gains or loses by when it happens."""
    keep = state.params.job_retention_blocks
    if not keep or height - keep < 0:
        return []
    return [Event("job_pruned", {"job_id": j}) for j in sorted(state.drop_ended(height - keep))]
