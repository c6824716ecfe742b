"""Stateful property tests: random sequences of every tx kind and block boundaries keep the ledger's invariants.

Offers and the ``assign="offers"`` submit mode are exercised too (a job assigned at submission starts in
``assigned`` with no bid phase). ``drive_new_job`` and ``drive_live_job`` play one job block by block to its end,
each due party drawn honest, lying, "unavailable", late or withholding, so the late lifecycle (the check drawn
after the commitments, audits, disputes with a referee and an appeal panel, confirmation or its timeout, stalls
and reassignments, slashes, refunds, pruning after ``job_retention_blocks``, drawn at genesis) is reached in most
runs; ``--hypothesis-show-statistics`` lists the paths reached. Checked after every step: total supply conserved;
no negative balance, stake, unbonding or escrow; reputation in 0..1000; nonces only grow, by one per accepted tx;
a rejected tx leaves the state root unchanged; the cached root equals a full recomputation; worker
``active_jobs`` counts match the jobs; no active job outlives ``max_job_lifetime``; offers stand at most
``max_window`` ahead; the slashed pool holds exactly what the slash events took; a finished job holds no escrow,
role or pending settlement and is pruned exactly ``job_retention_blocks`` after it ended. At every job's end: its
escrow went to payees and the client (a refunded job pays nobody, a verified one the price and the fee), a
verified job settled on the reveal its verdict names, and nobody who revealed the accepted result was slashed on
it (nobody is slashed for a wrong result on a job that accepted none). After every ``end_block`` no active job
is past its deadline. At teardown: running empty blocks past every job's lifetime bound makes all jobs terminal,
and replaying the recorded blocks from genesis gives the same state root.
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.context import BlockContext, Event
from ledger.crypto import blake2b256
from ledger.errors import InvalidTx
from ledger.genesis import Genesis, genesis_state
from ledger.jobs import committers, max_job_lifetime
from ledger.rules import apply_tx, begin_block, end_block, process_evidence
from ledger.state import (
    ASSIGNED,
    CHECKING_STATUSES,
    CONFIRMING,
    OPEN,
    REFUNDED,
    REVEALING,
    VERIFIED,
    Job,
    encode_state,
    encode_state_uncached,
    state_root,
    state_root_uncached,
    total_supply,
    total_supply_uncached,
)
from ledger.tx import (
    AddStake,
    Approve,
    Bid,
    CancelJob,
    CommitResult,
    ConfirmArtifact,
    Offer,
    Payload,
    RegisterWorker,
    RevealResult,
    SubmitJob,
    Transfer,
    TransferFrom,
    Unbond,
    compute_commitment,
    compute_fingerprint,
    make_tx,
)
from ledger.verdict import RESULT, UNAVAILABLE
from tests.ledger.factories import account, ctx, key, make_genesis

CLIENTS = ["alice", "bob"]
WORKERS = ["w1", "w2", "w3", "w4"]
NEWCOMERS = ["carol", "dave"]
EVERYONE = CLIENTS + WORKERS + NEWCOMERS
SUMMARIES = [[1, 2], [1, 3], [5, 5]]
PARAMS = {"unbonding_period": 3, "evidence_max_age": 2, "max_reassignments": 1, "default_bid_window": 1,
          "default_commit_window": 2, "default_reveal_window": 2, "max_window": 4, "min_stake": 1_000,
          "audit_permille": 400, "appeal_panel": 2, "confirm_window": 2}
"""Audits on 40% of the agreeing jobs (or more, for small stakes), so auditors and appeal panels run here too, and
an accepted result waits two blocks for its artifact's confirmation."""

KEYS = {n: key(n) for n in EVERYONE}
"""Derived once: deriving a key per tx was a tenth of the run time."""
ACCOUNT = {n: account(n) for n in EVERYONE}
NAME_OF = {a: n for n, a in ACCOUNT.items()}
names = st.sampled_from(EVERYONE)
amounts = st.integers(0, 3_000)
windows = st.integers(0, 4)


TRUTH = [1, 2]
"""What an honest run of any job here gives; ``LIES`` are other results (``[1, 3]`` within a tolerance of 1)."""
LIES = [[1, 3], [5, 5]]
COMMIT_CONDUCT = st.sampled_from(["honest"] * 5 + ["late", "lie", "lie", "unable", "withhold"])
"""What a party due to commit does in ``drive_job``: commit the truth (now, or in the window's last block), a lie,
"unavailable", or nothing (a stall)."""
REVEAL_CONDUCT = st.sampled_from(["reveal"] * 5 + ["late", "withhold"])
CONFIRM_CONDUCT = st.sampled_from(["confirm"] * 3 + ["late", "withhold"])
BIDS = st.sampled_from([True, True, True, False])
"""Whether a worker bids on an open job in ``drive_job`` (a job with no eligible bid or verifier is refunded)."""
WORKER_LOST = frozenset({"worker_faulty", "worker_unable", "pair_faulty", "pair_unable"})
"""Verdicts whose accepted claim is not the worker's (the verifier's, a referee's or an auditor's)."""


def _genesis(retention: int = 0) -> Genesis:
    return make_genesis(
        balances={"alice": 50_000, "bob": 50_000, "carol": 20_000, "dave": 5_000},
        workers={"w1": {}, "w2": {"capacity": 1}, "w3": {"device_kind": "gpu"}, "w4": {"memory_mb": 1_000}},
        validators=["w1"],  # a validator's bond is a worker's: w1 may never unbond below min_stake
        params={**PARAMS, "job_retention_blocks": retention},
    )


def _artifact(job_id: bytes, acct: bytes, summary: list[int]) -> bytes:
    """Each party's own artifact digest, so the accepted one tells whose reveal the job settled on."""
    return blake2b256(b"artifact" + job_id + acct + bytes(str(summary), "ascii"))


def _salt(job_id: bytes, acct: bytes) -> bytes:
    return blake2b256(job_id + acct)[:16]


_PATHS = {"job_disputed": "path: referee drawn (dispute)", "job_audited": "path: auditor drawn",
          "job_appealed": "path: appeal panel drawn", "job_confirming": "path: confirming",
          "artifact_confirmed": "path: artifact confirmed", "job_reassigned": "path: reassigned",
          "job_pruned": "path: job pruned"}


def _coverage_label(e: Event) -> str | None:
    """The coverage label of a ledger event on the late job lifecycle (None for the others)."""
    if e.kind in _PATHS:
        return _PATHS[e.kind]
    if e.kind in ("job_verified", "job_failed", "job_refunded"):
        return f"end: {e.kind[4:]} / {e.fields['verdict']}"
    if e.kind == "stalled":
        return f"path: stalled at {e.fields['phase']}"
    if e.kind == "check_unavailable":
        return f"path: nobody free for {e.fields['check']}"
    if e.kind == "slashed":
        return "slash: " + ("wrong result" if e.fields["reason"].startswith("wrong") else
                            "stall" if e.fields["reason"].startswith("missed") else e.fields["reason"])
    return None


class LedgerMachine(RuleBasedStateMachine):
    @initialize(retention=st.sampled_from([0, 0, 1, 3]))
    def start(self, retention: int) -> None:
        """Genesis; finished jobs are kept for good, or pruned ``retention`` blocks after they end."""
        self.genesis = _genesis(retention)
        self.retention = retention
        self.state = genesis_state(self.genesis)
        self.supply = total_supply(self.state)
        self.height = 1
        self.blocks: list[list] = [[]]  # txs accepted per block, for the replay check
        begin_block(self.state, ctx(1))
        # (job, committer) -> the claim it committed: (summary, artifact digest, outcome)
        self.openings: dict[tuple[bytes, bytes], tuple[list[int], bytes, int]] = {}
        self.nonces = {ACCOUNT[n]: 0 for n in EVERYONE}
        self.slashed = 0
        # What the ledger's events said, checked against the state (see ``_saw``)
        self.slashes: list[tuple[str, bytes, bool, int]] = []  # (job id prefix or "", worker, wrong result?, amount)
        self.escrowed: dict[bytes, int] = {}
        self.paid: dict[bytes, int] = {}
        self.ended: dict[bytes, int] = {}  # job -> height it ended at
        self.pruned: set[bytes] = set()
        self.conduct: dict[tuple, str] = {}  # (job, party, phase) -> what drive_job drew for it

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _apply(self, name: str, payload: Payload, *, nonce_shift: int = 0, fee: int = 1) -> bool:
        acct = ACCOUNT[name]
        stx = make_tx(payload, KEYS[name], self.state.chain_id, nonce=self.state.nonce(acct) + nonce_shift, fee=fee)
        root = state_root(self.state)
        try:
            _, receipt = apply_tx(self.state, stx, ctx(self.height))
        except InvalidTx:
            assert state_root(self.state) == root
            return False
        assert nonce_shift == 0 and fee >= 1
        self.blocks[-1].append(stx)
        self._saw(receipt.events)
        return True

    def _saw(self, events: tuple[Event, ...] | list[Event]) -> None:
        """Record what the ledger says it did (slashes, payments, ends, prunes), check each finished job against
        it, and label the late parts of the job lifecycle so the statistics (``--hypothesis-show-statistics``)
        show how often a run reaches each."""
        for e in events:
            label = _coverage_label(e)
            if label:
                event(label)
            f = e.fields
            if e.kind == "slashed":
                reason = f["reason"]
                self.slashes.append((reason.rsplit(" ", 1)[-1] if " on job " in reason else "", f["worker"],
                                     reason.startswith("wrong result"), f["amount"]))
            elif e.kind == "job_submitted":
                self.escrowed[f["job_id"]] = f["escrow"]
            elif e.kind == "paid":
                self.paid[f["job_id"]] = self.paid.get(f["job_id"], 0) + f["amount"]
            elif e.kind in ("job_verified", "job_failed", "job_refunded"):
                assert f["job_id"] not in self.ended, "a job ended twice"
                self.ended[f["job_id"]] = self.height
                self._check_settlement(self.state.jobs[f["job_id"]], f["refund"])
            elif e.kind == "job_pruned":
                job_id = f["job_id"]
                assert job_id not in self.state.jobs and job_id not in self.state.active_jobs
                assert self.ended[job_id] == self.height - self.retention, "pruned at the wrong height"
                self.pruned.add(job_id)
            elif e.kind == "job_confirming":
                self._check_slashes_spare_the_accepted(self.state.jobs[f["job_id"]])

    def _check_settlement(self, job: Job, refund: int) -> None:
        """A job just ended: every token of its escrow went to a payee or back to the client, as its status
        says; a verified job settled on the reveal its verdict names; slashes spared whoever backed the result."""
        paid = self.paid.get(job.job_id, 0)
        assert paid + refund == self.escrowed[job.job_id] == job.reward + job.verification_fee
        if job.status == REFUNDED:
            assert paid == 0, f"a refunded job paid {paid} ({job.verdict})"
        if job.status == VERIFIED:
            assert paid == job.price + job.verification_fee, f"verified ({job.verdict}) but paid {paid}"
            accepted = (job.result_summary, job.result_artifact)
            worker_claim = job.reveals[job.worker]
            if job.verdict in WORKER_LOST:
                assert accepted != (worker_claim[0], worker_claim[1])
                assert any(accepted == (c[0], c[1]) for a, c in job.reveals.items()
                           if a in (job.verifier, job.referee) and c[2] == RESULT)
            else:
                assert accepted == (worker_claim[0], worker_claim[1]) and worker_claim[2] == RESULT, \
                    f"{job.verdict}: settled on {accepted}, the worker revealed {worker_claim}"
        self._check_slashes_spare_the_accepted(job)

    def _check_slashes_spare_the_accepted(self, job: Job) -> None:
        """Nobody who revealed the accepted claim is slashed on the job; everyone slashed for a wrong result
        revealed something else, and only on a job that accepted a result."""
        prefix = job.job_id.hex()[:16]
        on_job = [(who, wrong) for p, who, wrong, _ in self.slashes if p == prefix]
        if job.result_summary is None:
            assert not any(wrong for _, wrong in on_job), f"slashed for a wrong result, none accepted ({job.verdict})"
            return
        for who, wrong in on_job:
            claim = job.reveals.get(who)
            assert claim is None or claim[0] != job.result_summary, f"backed the accepted result, slashed ({wrong})"
            assert not wrong or claim is not None

    def _claim_for(self, job_id: bytes, acct: bytes, summary: list[int], outcome: int = RESULT) -> CommitResult:
        """The commitment to a claim (recorded in ``openings`` once the ledger accepts it)."""
        return CommitResult(job_id, compute_commitment(job_id, acct, summary, _artifact(job_id, acct, summary),
                                                       _salt(job_id, acct), outcome),
                            compute_fingerprint(job_id, summary, outcome))

    def _commit(self, job_id: bytes, acct: bytes, summary: list[int], outcome: int = RESULT) -> bool:
        if self._apply(self._name(acct), self._claim_for(job_id, acct, summary, outcome)):
            self.openings[(job_id, acct)] = (summary, _artifact(job_id, acct, summary), outcome)
            return True
        return False

    def _reveal(self, job_id: bytes, acct: bytes) -> bool:
        summary, artifact, outcome = self.openings[(job_id, acct)]
        return self._apply(self._name(acct), RevealResult(job_id, summary, artifact, _salt(job_id, acct), outcome))

    def _job_ids(self) -> list[bytes]:
        """Active jobs when there are any (so the random rules mostly hit live jobs), else all jobs."""
        return sorted(self.state.active_jobs) or sorted(self.state.jobs)

    def _name(self, acct: bytes) -> str:
        return NAME_OF[acct]

    # ---- rules ------------------------------------------------------------------------------------------------
    @rule(sender=names, to=names, amount=amounts)
    def transfer(self, sender: str, to: str, amount: int) -> None:
        self._apply(sender, Transfer(ACCOUNT[to], amount))

    @rule(owner=names, spender=names, amount=amounts)
    def approve(self, owner: str, spender: str, amount: int) -> None:
        self._apply(owner, Approve(ACCOUNT[spender], amount))

    @rule(spender=names, owner=names, to=names, amount=amounts)
    def transfer_from(self, spender: str, owner: str, to: str, amount: int) -> None:
        self._apply(spender, TransferFrom(ACCOUNT[owner], ACCOUNT[to], amount))

    @rule(name=names, stake=st.integers(500, 6_000), gpu=st.booleans())
    def register_worker(self, name: str, stake: int, gpu: bool) -> None:
        kind = "gpu" if gpu else "cpu"
        self._apply(name, RegisterWorker(stake, kind, kind, 16_000, 10))

    @rule(name=names, amount=amounts)
    def add_stake(self, name: str, amount: int) -> None:
        self._apply(name, AddStake(amount))

    @rule(name=names, amount=st.integers(0, 6_000))
    def unbond(self, name: str, amount: int) -> None:
        self._apply(name, Unbond(amount))

    @rule(client=names, reward=st.integers(0, 4_000), fee=st.integers(0, 500), tol=st.integers(0, 1),
          device=st.sampled_from(["any", "any", "gpu", "tpu"]), memory=st.sampled_from([0, 0, 8_000]),
          bw=windows, cw=windows, rw=windows, assign=st.sampled_from(["", "bids", "offers", "offers", "fast"]))
    def submit_job(self, client: str, reward: int, fee: int, tol: int, device: str, memory: int, bw: int,
                   cw: int, rw: int, assign: str) -> None:
        if self._apply(client, SubmitJob("model", blake2b256(b"p"), blake2b256(b"d"), reward, fee, tol, 0, device,
                                         memory, bw, cw, rw, assign)):
            job = self.state.jobs[self.blocks[-1][-1].tx_id]
            event(f"submit {assign or 'bids'} -> {job.status}")
            if assign != "offers":
                assert job.status == "open"

    @rule(name=names, price=st.integers(0, 4_500), until=st.sampled_from([0, -1, 0, 1, 3, 4, 5]))
    def offer(self, name: str, price: int, until: int) -> None:
        """A standing offer (``until`` relative to now; 0 withdraws, -1 has passed, 5 is beyond max_window)."""
        self._apply(name, Offer(price, 0 if until == 0 else max(1, self.height + until)))

    @rule(data=st.data(), until=st.integers(0, 4))
    def every_worker_offers(self, data: st.DataObject, until: int) -> None:
        """Make the offers path likely: each genesis worker offers (prices drawn, often tied)."""
        for name in WORKERS:
            price = data.draw(st.sampled_from([0, 100, 100, 2_000]), label="price")
            self._apply(name, Offer(price, self.height + until))

    @precondition(lambda self: self.state.jobs)
    @rule(data=st.data(), name=names, price=st.integers(0, 4_500))
    def bid(self, data: st.DataObject, name: str, price: int) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        self._apply(name, Bid(job_id, price))

    @precondition(lambda self: self.state.jobs)
    @rule(data=st.data(), summary=st.sampled_from(SUMMARIES), role=st.sampled_from(["worker", "verifier",
                                                                                    "referee", "other"]))
    def commit(self, data: st.DataObject, summary: list[int], role: str) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.state.jobs[job_id]
        acct = getattr(job, role, None) if role != "other" else ACCOUNT[data.draw(names)]
        name = NAME_OF.get(acct)
        if name is None:
            return
        self._commit(job_id, acct, summary)

    @precondition(lambda self: self.openings)
    @rule(data=st.data(), honest=st.booleans())
    def reveal(self, data: st.DataObject, honest: bool) -> None:
        job_id, acct = data.draw(st.sampled_from(sorted(self.openings)))
        if honest:
            self._reveal(job_id, acct)
        else:  # does not open the commitment: refused
            self._apply(self._name(acct), RevealResult(job_id, [7], blake2b256(b"a"), _salt(job_id, acct)))

    @precondition(lambda self: self.state.jobs)
    @rule(data=st.data(), name=names, right=st.booleans())
    def confirm(self, data: st.DataObject, name: str, right: bool) -> None:
        """Anyone confirms any job, naming its accepted artifact or another digest (most are refused)."""
        job = self.state.jobs[data.draw(st.sampled_from(self._job_ids()))]
        digest = job.result_artifact if right and job.result_artifact else blake2b256(b"other")
        self._apply(name, ConfirmArtifact(job.job_id, digest))

    @precondition(lambda self: self.state.jobs)
    @rule(data=st.data(), name=names)
    def cancel(self, data: st.DataObject, name: str) -> None:
        self._apply(name, CancelJob(data.draw(st.sampled_from(self._job_ids()))))

    @rule(name=names, shift=st.sampled_from([-1, 1, 5]), fee=st.sampled_from([0, 1]))
    def bad_nonce_or_fee(self, name: str, shift: int, fee: int) -> None:
        self._apply(name, Transfer(ACCOUNT["bob"], 1), nonce_shift=shift, fee=fee)

    @rule(name=names)
    def evidence(self, name: str) -> None:
        self._saw(process_evidence(self.state, ACCOUNT[name], ctx(self.height))[1])
        self.blocks[-1].append(("evidence", name))

    @precondition(lambda self: self.state.active_jobs)
    @rule(data=st.data())
    def push_jobs_forward(self, data: st.DataObject) -> None:
        """Everyone with something due on a live job does it (summaries drawn, so some disagree)."""
        for job_id in sorted(self.state.active_jobs) * 2:  # twice: commit, then reveal once both are in
            job = self.state.jobs[job_id]
            if job.is_terminal:
                continue
            if job.status == "open":
                for name in WORKERS:
                    self._apply(name, Bid(job_id, data.draw(st.integers(0, job.reward), label="price")))
                continue
            if job.status == "confirming":
                if data.draw(st.booleans(), label="confirmed"):  # or the confirmers all withhold
                    self._apply(self._name(job.confirmers[0]), ConfirmArtifact(job_id, job.result_artifact))
                continue
            for acct in job.participants():
                if acct not in job.commits:
                    self._commit(job_id, acct, data.draw(st.sampled_from(SUMMARIES), label="summary"))
                elif acct not in job.reveals and job.status == "revealing":
                    self._reveal(job_id, acct)

    @rule(data=st.data(), client=st.sampled_from(CLIENTS), reward=st.integers(1, 4_000), fee=st.integers(0, 500),
          tol=st.integers(0, 1), gpu=st.sampled_from([False] * 7 + [True]), bw=st.integers(0, 2),
          cw=st.integers(0, 3), rw=st.integers(0, 3), assign=st.sampled_from(["bids", "offers"]))
    def drive_new_job(self, data: st.DataObject, client: str, reward: int, fee: int, tol: int, gpu: bool, bw: int,
                      cw: int, rw: int, assign: str) -> None:
        """Submit a job the ledger accepts (after live offers, for ``assign="offers"``) and play it to its end."""
        if assign == "offers":
            for name in WORKERS:
                if data.draw(BIDS, label="offers"):
                    self._apply(name, Offer(data.draw(st.sampled_from([0, reward // 2, reward]), label="price"),
                                            self.height + 2))
        submit = SubmitJob("model", blake2b256(b"p"), blake2b256(b"d"), reward, fee, tol, 0, "gpu" if gpu else "any",
                           0, bw, cw, rw, assign)
        if not self._apply(client, submit):
            assert self.state.balance(ACCOUNT[client]) < reward + fee + 1, "a well-formed, funded job is refused"
            return
        self._drive(data, self.blocks[-1][-1].tx_id)

    @precondition(lambda self: self.state.active_jobs)
    @rule(data=st.data())
    def drive_live_job(self, data: st.DataObject) -> None:
        """Play one live job (wherever the random rules left it) to its end."""
        self._drive(data, data.draw(st.sampled_from(sorted(self.state.active_jobs)), label="job"))

    def _drive(self, data: st.DataObject, job_id: bytes) -> None:
        """Block by block until the job is terminal, every party due on it acts as drawn: honest, lying,
        "unavailable", late or withholding at its commit; revealing, late or withholding at its reveal;
        confirming, late or letting the window pass at the confirmation. Every deadline moves a job on, so this
        ends within its lifetime bound."""
        job = self.state.jobs[job_id]
        bound = job.submitted_at + max_job_lifetime(self.state, job)
        while not job.is_terminal:
            assert self.height <= bound, f"job still {job.status} past its lifetime bound"
            self._play(data, job)
            self._next_block()
            job = self.state.jobs.get(job_id)
            if job is None:  # ended and already pruned (retention of one block)
                assert job_id in self.pruned
                return

    def _draw_conduct(self, data: st.DataObject, job: Job, acct: bytes, conduct: st.SearchStrategy[str]) -> str:
        """What ``acct`` does in the job's current phase (one draw per phase: a transition appends to history)."""
        phase = (job.job_id, acct, len(job.history))
        if phase not in self.conduct:
            self.conduct[phase] = data.draw(conduct, label="conduct")
        return self.conduct[phase]

    def _play(self, data: st.DataObject, job: Job) -> None:
        """Every party due on ``job`` in this block does what it was drawn to do."""
        job_id = job.job_id
        last_block = self.height == job.deadline
        if job.status == OPEN:
            for name in WORKERS + NEWCOMERS:
                acct = ACCOUNT[name]
                if acct in self.state.workers and acct not in job.bids and data.draw(BIDS, label="bids"):
                    self._apply(name, Bid(job_id, data.draw(st.integers(0, job.reward), label="price")))
        elif job.status in (ASSIGNED, *CHECKING_STATUSES):
            for acct in committers(job):
                if acct in job.commits:
                    continue
                conduct = self._draw_conduct(data, job, acct, COMMIT_CONDUCT)
                if conduct == "honest" or (conduct == "late" and last_block):
                    self._commit(job_id, acct, TRUTH)
                elif conduct == "lie":
                    self._commit(job_id, acct, data.draw(st.sampled_from(LIES), label="lie"))
                elif conduct == "unable":
                    self._commit(job_id, acct, [], UNAVAILABLE)
                job = self.state.jobs[job_id]
        elif job.status == REVEALING:
            for acct in committers(job):
                conduct = self._draw_conduct(data, job, acct, REVEAL_CONDUCT)
                if acct not in job.reveals and (conduct == "reveal" or (conduct == "late" and last_block)):
                    assert self._reveal(job_id, acct), "a committed party could not open its commitment"
                job = self.state.jobs[job_id]
                if job.status != REVEALING:
                    break
        elif job.status == CONFIRMING:
            for acct in job.confirmers:
                conduct = self._draw_conduct(data, job, acct, CONFIRM_CONDUCT)
                if conduct == "confirm" or (conduct == "late" and last_block):
                    assert self._apply(self._name(acct), ConfirmArtifact(job_id, job.result_artifact))
                    break

    @rule(n=st.integers(1, 3))
    def next_blocks(self, n: int) -> None:
        for _ in range(n):
            self._next_block()

    def _next_block(self) -> None:
        self._saw(end_block(self.state, ctx(self.height))[1])
        for job in self.state.jobs.values():
            if not job.is_terminal:
                assert job.deadline > self.height, "an active job is past its deadline after end_block"
        self.height += 1
        self._saw(begin_block(self.state, ctx(self.height))[1])
        self.blocks.append([])

    # ---- invariants -------------------------------------------------------------------------------------------
    @invariant()
    def supply_is_conserved(self) -> None:
        assert total_supply(self.state) == self.supply == total_supply_uncached(self.state)

    @invariant()
    def nothing_negative_and_reputation_bounded(self) -> None:
        s = self.state
        assert all(a.balance >= 0 for a in s.accounts.values())
        assert all(v >= 0 for v in s.allowances.values())
        for w in s.workers.values():
            assert w.stake >= 0 and all(amount > 0 for _, amount in w.unbonding)
            assert 0 <= w.reputation <= 1000
            assert w.active_jobs >= 0
        assert all(j.escrow >= 0 for j in s.jobs.values())
        assert all(j.escrow == 0 for j in s.jobs.values() if j.is_terminal)
        # Slashing only ever moves stake to the pool, so the pool never shrinks.
        assert s.slashed_pool >= self.slashed
        self.slashed = s.slashed_pool

    @invariant()
    def nonces_only_grow(self) -> None:
        for acct, seen in self.nonces.items():
            now = self.state.nonce(acct)
            assert now >= seen
            self.nonces[acct] = now

    @invariant()
    def roles_match_active_jobs(self) -> None:
        busy: dict[bytes, int] = {}
        for j in self.state.jobs.values():
            if not j.is_terminal:
                for a in j.participants():
                    busy[a] = busy.get(a, 0) + 1
        for a, w in self.state.workers.items():
            assert w.active_jobs == busy.get(a, 0)
        assert set(self.state.active_jobs) == {k for k, j in self.state.jobs.items() if not j.is_terminal}

    @invariant()
    def jobs_within_their_lifetime(self) -> None:
        for j in self.state.jobs.values():
            if not j.is_terminal:
                assert self.height <= j.submitted_at + max_job_lifetime(self.state, j)
            if j.history[0][0] == "assigned":  # assigned from offers inside the submit tx: no bid phase
                assert j.bid_deadline == j.submitted_at == j.history[0][1] and not j.bids

    @invariant()
    def offers_are_bounded(self) -> None:
        for w in self.state.workers.values():
            assert w.offer_until == 0 or w.offer_until <= self.height + self.state.params.max_window

    @invariant()
    def slashes_go_to_the_pool(self) -> None:
        """The pool holds exactly what the ledger's slash events took (genesis starts it empty)."""
        assert self.state.slashed_pool == sum(amount for *_, amount in self.slashes)

    @invariant()
    def finished_jobs_hold_nothing(self) -> None:
        """A finished job holds no escrow, role or pending settlement, ended once, at its last transition; with
        retention it stays in the state fewer than ``job_retention_blocks`` blocks after that; a pruned job is gone."""
        for j in self.state.jobs.values():
            if not j.is_terminal:
                assert j.job_id not in self.ended
                continue
            assert j.escrow == 0 and not j.confirmers and not j.payout and not j.winners
            assert j.job_id not in self.state.active_jobs
            assert self.ended[j.job_id] == j.history[-1][1] == j.deadline
            if self.retention:
                assert self.height - self.retention < self.ended[j.job_id]
        assert not self.pruned & (set(self.state.jobs) | set(self.state.active_jobs))

    @invariant()
    def cached_root_is_exact(self) -> None:
        assert state_root(self.state) == state_root_uncached(self.state)

    @invariant()
    def snapshot_from_kept_bytes_is_exact(self) -> None:
        assert encode_state(self.state) == encode_state_uncached(self.state)

    def teardown(self) -> None:
        # Every job terminates once its deadlines pass...
        jobs = list(self.state.jobs.values())
        bound = max((j.submitted_at + max_job_lifetime(self.state, j) for j in jobs), default=0)
        while self.height <= bound:
            self._next_block()
        assert all(j.is_terminal for j in self.state.jobs.values())
        assert total_supply(self.state) == self.supply
        # ...and replaying the same blocks from genesis reaches the same root.
        replay = genesis_state(self.genesis)
        for height, txs in enumerate(self.blocks, start=1):
            c = BlockContext(height, ctx(height).time_ms, ctx(height).seed, ctx(height).proposer)
            begin_block(replay, c)
            for item in txs:
                if isinstance(item, tuple):
                    process_evidence(replay, ACCOUNT[item[1]], c)
                else:
                    apply_tx(replay, item, c)
            if height < len(self.blocks):
                end_block(replay, c)
        assert state_root(replay) == state_root(self.state)


# 30 steps, not 40: a drive_* step plays a whole job (about ten blocks), so a run now does more in fewer steps, and
# the test takes about the time it took with 40 steps of the random rules alone (~14 s for 150 examples).
LedgerMachine.TestCase.settings = settings(LedgerMachine.TestCase.settings, stateful_step_count=30,
    max_examples=max(150, settings.default.max_examples))
TestLedgerMachine = LedgerMachine.TestCase
