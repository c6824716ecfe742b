"""The ledger state: accounts, allowances, workers, jobs, the slashed pool and the chain parameters.

Why this file is long: the records, the journal that undoes their writes, the derived indexes those writes keep
and the encoding and root over them are one invariant (every write journaled, marked dirty and rebuilt the same on
decode); split apart, a new kind of write could miss one of them.

Mutation model (why it is fast and still atomic): records are small mutable objects kept in plain dicts. Every
write goes through ``State.w_account`` / ``w_worker`` / ``w_job`` / ``set_allowance`` / ``set_slashed`` /
``set_active``, which (inside a savepoint) first push the record's previous value onto an undo journal and mark
the key dirty for the state root. ``apply_tx`` opens a savepoint, runs the handler and either releases it or
rolls back, so a rejected tx costs only the few records it touched, never a copy of the whole state. Savepoints
nest: the chain can open one around a whole block (``sp = state.savepoint()`` … ``state.rollback_to(sp)``) to
try a proposal and throw it away.

The state root is ``BLAKE2b(state_header || tree root)``: every record is one leaf of a sparse Merkle tree
(``ledger.smt``, docs/STATE_TREE.md) at ``tree_key`` with value ``record_hash``. ``state_root`` feeds the tree only
the records written since its last call (cost: records touched × log n, not the state's size); ``prove_record``
proves any record present or absent; ``state_root_uncached`` recomputes the root from scratch (tests compare).
The first call (a genesis state, a decoded snapshot) builds the tree in bulk (``_bulk_records``, then
``StateTree.from_sorted``): every record packed once per form and hashed once, accounts by a local packer after a
flat type check. ``decode_state`` checks a snapshot record by record in the same way. At a million accounts,
CPU time on the shared 2-core machine: a snapshot's decode and first root 15 s instead of 30 s, a genesis state's
first root 13 s instead of 28 s, ``encode_state`` of a genesis state (``ledger.store.genesis_hash``) 3.4 s
instead of 28 s, as it builds no tree (bench/results/state_sync_join.md has what that does to a joining node).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import msgpack

from ledger.crypto import blake2b256
from ledger.encoding import INT_MAX, INT_MIN, pack, unchecked_packer, unpack_unchecked
from ledger.errors import DecodeError, EncodeError, InvalidGenesis
from ledger.params import Params
from ledger.smt import Proof, StateTree, root_of
from ledger.types import AccountId, Height, JobId, Offence, Tokens
from ledger.verdict import OUTCOMES

STATE_VERSION = 4  # 4: the offences already punished are part of the state (``State.punished``)
MISSING: Any = object()

# Job statuses (see ledger.jobs for the transitions).
OPEN = "open"
ASSIGNED = "assigned"
REVEALING = "revealing"
DISPUTED = "disputed"
AUDITING = "auditing"
CONFIRMING = "confirming"
VERIFIED = "verified"
FAILED = "failed"
REFUNDED = "refunded"
TERMINAL_STATUSES = frozenset({VERIFIED, FAILED, REFUNDED})
JOB_STATUSES = (OPEN, ASSIGNED, REVEALING, DISPUTED, AUDITING, CONFIRMING, VERIFIED, FAILED, REFUNDED)
CHECKING_STATUSES = (DISPUTED, AUDITING)
"""A checker beyond the verifier is committing: a referee (the two claims differ) or an auditor and its panel."""


class Account:
    """A token account: spendable balance and the next nonce it must use."""

    __slots__ = ("balance", "nonce")

    def __init__(self, balance: Tokens = 0, nonce: int = 0) -> None:
        self.balance = balance
        self.nonce = nonce

    def clone(self) -> Account:
        return Account(self.balance, self.nonce)

    def to_list(self) -> list[Any]:
        return [self.balance, self.nonce]

    def __repr__(self) -> str:
        return f"Account(balance={self.balance}, nonce={self.nonce})"


class Worker:
    """A registered worker: bonded stake, stake on its way out, reputation, counters, its declared device, and
    its standing offer (``offer_price`` per job through height ``offer_until``, for jobs whose run may take up to
    ``offer_max_time_ms``, 0 for any; ``offer_until = 0``: none)."""

    __slots__ = (
        "active_jobs",
        "capacity",
        "device_kind",
        "device_name",
        "jobs_done",
        "jobs_failed",
        "memory_mb",
        "offer_max_time_ms",
        "offer_price",
        "offer_until",
        "operator",
        "registered_at",
        "reputation",
        "stake",
        "unbonding",
    )

    def __init__(
        self,
        stake: Tokens,
        reputation: int,
        device_kind: str,
        device_name: str,
        memory_mb: int,
        capacity: int,
        registered_at: Height = 0,
        unbonding: list[list[int]] | None = None,
        jobs_done: int = 0,
        jobs_failed: int = 0,
        active_jobs: int = 0,
        offer_price: Tokens = 0,
        offer_until: Height = 0,
        offer_max_time_ms: int = 0,
        operator: AccountId = b"",
    ) -> None:
        self.stake = stake
        self.reputation = reputation
        self.device_kind = device_kind
        self.device_name = device_name
        self.memory_mb = memory_mb
        self.capacity = capacity
        self.registered_at = registered_at
        self.unbonding: list[list[int]] = unbonding if unbonding is not None else []  # [release_height, amount]
        self.jobs_done = jobs_done
        self.jobs_failed = jobs_failed
        self.active_jobs = active_jobs
        self.offer_price = offer_price
        self.offer_until = offer_until
        self.offer_max_time_ms = offer_max_time_ms
        self.operator = operator  # the node that runs this key (b"": the key itself); see ledger.tx.RegisterWorker

    def offer_live_at(self, height: Height) -> bool:
        """Whether the worker's standing offer covers ``height``."""
        return self.offer_until != 0 and height <= self.offer_until

    @property
    def unbonding_total(self) -> Tokens:
        return sum(amount for _, amount in self.unbonding)

    def clone(self) -> Worker:
        return Worker(
            self.stake, self.reputation, self.device_kind, self.device_name, self.memory_mb, self.capacity,
            self.registered_at, [list(u) for u in self.unbonding], self.jobs_done, self.jobs_failed,
            self.active_jobs, self.offer_price, self.offer_until, self.offer_max_time_ms, self.operator,
        )

    def to_list(self) -> list[Any]:
        return [
            self.stake, self.reputation, self.device_kind, self.device_name, self.memory_mb, self.capacity,
            self.registered_at, [list(u) for u in self.unbonding], self.jobs_done, self.jobs_failed,
            self.active_jobs, self.offer_price, self.offer_until, self.offer_max_time_ms, self.operator,
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for the API and dashboard."""
        return {
            "stake": self.stake, "unbonding": [{"release_height": h, "amount": a} for h, a in self.unbonding],
            "reputation": self.reputation, "jobs_done": self.jobs_done, "jobs_failed": self.jobs_failed,
            "active_jobs": self.active_jobs, "device_kind": self.device_kind, "device_name": self.device_name,
            "memory_mb": self.memory_mb, "capacity": self.capacity, "registered_at": self.registered_at,
            "offer_price": self.offer_price, "offer_until": self.offer_until,
            "offer_max_time_ms": self.offer_max_time_ms, "operator": self.operator.hex() or None,
        }

    @classmethod
    def from_list(cls, v: list[Any]) -> Worker:
        return cls(*v[:7], [list(u) for u in v[7]], *v[8:])

    def __repr__(self) -> str:
        return f"Worker(stake={self.stake}, rep={self.reputation}, {self.device_kind}, active={self.active_jobs})"


class Job:
    """A job and everything the lifecycle needs: spec, escrow, bids, roles, commits, reveals, verdict, timeline."""

    __slots__ = (
        "bid_deadline",
        "bid_window",
        "bids",
        "check",
        "client",
        "commit_window",
        "commits",
        "confirmers",
        "dataset_digest",
        "deadline",
        "device",
        "escrow",
        "excluded",
        "fingerprints",
        "history",
        "job_id",
        "min_memory_mb",
        "model",
        "panel",
        "params_digest",
        "payout",
        "price",
        "reassignments",
        "referee",
        "result_artifact",
        "result_summary",
        "reveal_window",
        "reveals",
        "reward",
        "status",
        "submitted_at",
        "time_limit_ms",
        "tolerance_abs",
        "tolerance_ppm",
        "verdict",
        "verification_fee",
        "verifier",
        "winners",
        "worker",
    )

    _SIMPLE = (
        "job_id", "client", "model", "params_digest", "dataset_digest", "reward", "verification_fee",
        "tolerance_abs", "tolerance_ppm", "device", "min_memory_mb", "bid_window", "commit_window",
        "reveal_window", "status", "escrow", "submitted_at", "bid_deadline", "deadline", "worker", "price",
        "verifier", "referee", "verdict", "result_summary", "result_artifact", "reassignments", "time_limit_ms",
        "check",
    )

    def __init__(self, **kw: Any) -> None:
        for name in self._SIMPLE:
            setattr(self, name, kw.get(name))
        self.bids: dict[AccountId, Tokens] = kw.get("bids") or {}
        self.commits: dict[AccountId, bytes] = kw.get("commits") or {}
        # account -> ledger.tx.compute_fingerprint of the claim it committed to
        self.fingerprints: dict[AccountId, bytes] = kw.get("fingerprints") or {}
        # the appeal panel: checkers drawn when an auditor's claim differs from the worker's and verifier's
        self.panel: list[AccountId] = kw.get("panel") or []
        # While ``confirming``: who may confirm the accepted artifact, and what settling it pays and rewards
        self.confirmers: list[AccountId] = kw.get("confirmers") or []
        self.payout: dict[AccountId, Tokens] = kw.get("payout") or {}
        self.winners: list[AccountId] = kw.get("winners") or []
        # account -> (summary, artifact digest, outcome: ledger.verdict.RESULT, UNAVAILABLE, ERROR, OVER_LIMIT)
        self.reveals: dict[AccountId, tuple[list[int], bytes, int]] = kw.get("reveals") or {}
        self.excluded: list[AccountId] = kw.get("excluded") or []
        self.history: list[tuple[str, Height]] = kw.get("history") or []
        if self.reassignments is None:
            self.reassignments = 0
        if self.price is None:
            self.price = 0
        if self.verdict is None:
            self.verdict = ""
        if self.check is None:
            self.check = ""  # "", or why a third party checks it: "dispute" or "audit" (ledger.jobs)
        if self.time_limit_ms is None:
            self.time_limit_ms = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def participants(self) -> list[AccountId]:
        """The workers currently holding a role (worker, verifier, referee, then the appeal panel), in that order."""
        return [a for a in (self.worker, self.verifier, self.referee, *self.panel) if a is not None]

    def clone(self) -> Job:
        j = Job.__new__(Job)
        for name in self._SIMPLE:
            setattr(j, name, getattr(self, name))
        j.bids = dict(self.bids)
        j.commits = dict(self.commits)
        j.fingerprints = dict(self.fingerprints)
        j.panel = list(self.panel)
        j.confirmers = list(self.confirmers)
        j.payout = dict(self.payout)
        j.winners = list(self.winners)
        j.reveals = dict(self.reveals)  # values are never mutated in place, only replaced
        j.excluded = list(self.excluded)
        j.history = list(self.history)
        return j

    def to_list(self) -> list[Any]:
        simple = [getattr(self, name) for name in self._SIMPLE]
        return [
            *simple,
            sorted([k, v] for k, v in self.bids.items()),
            sorted([k, v] for k, v in self.commits.items()),
            sorted([k, list(s), d, o] for k, (s, d, o) in self.reveals.items()),
            sorted(self.excluded),
            [list(h) for h in self.history],
            sorted([k, v] for k, v in self.fingerprints.items()),
            list(self.panel),
            list(self.confirmers),
            sorted([k, v] for k, v in self.payout.items()),
            list(self.winners),
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> Job:
        n = len(cls._SIMPLE)
        kw = dict(zip(cls._SIMPLE, v[:n], strict=True))
        bids, commits, reveals, excluded, history, fingerprints, panel, confirmers, payout, winners = v[n:]
        return cls(
            **kw,
            bids={k: p for k, p in bids},
            commits={k: c for k, c in commits},
            reveals={k: (s, d, o) for k, s, d, o in reveals},
            excluded=list(excluded),
            history=[(s, h) for s, h in history],
            fingerprints={k: f for k, f in fingerprints},
            panel=list(panel),
            confirmers=list(confirmers),
            payout={k: a for k, a in payout},
            winners=list(winners),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (hex for bytes) for the API and dashboard."""

        def h(b: bytes | None) -> str | None:
            return None if b is None else b.hex()

        d: dict[str, Any] = {}
        for name in self._SIMPLE:
            v = getattr(self, name)
            d[name] = h(v) if isinstance(v, bytes) else v
        d["bids"] = {h(k): p for k, p in sorted(self.bids.items())}
        d["commits"] = {h(k): h(c) for k, c in sorted(self.commits.items())}
        d["reveals"] = {
            h(k): {"summary": list(s), "artifact_digest": h(a), "outcome": OUTCOMES.get(o, str(o))}
            for k, (s, a, o) in sorted(self.reveals.items())
        }
        d["excluded"] = [h(a) for a in sorted(self.excluded)]
        d["fingerprints"] = {h(k): h(f) for k, f in sorted(self.fingerprints.items())}
        d["panel"] = [h(a) for a in self.panel]
        d["confirmers"] = [h(a) for a in self.confirmers]
        d["payout"] = {h(k): a for k, a in sorted(self.payout.items())}
        d["winners"] = [h(a) for a in self.winners]
        d["history"] = [{"status": s, "height": hh} for s, hh in self.history]
        return d

    def __repr__(self) -> str:
        return f"Job({self.job_id.hex()[:12]}, {self.status}, escrow={self.escrow})"


_SECTIONS = ("account", "allowance", "worker", "job")


class State:
    """The whole ledger state. ``apply_tx`` and the block hooks mutate it in place (see the module docstring)."""

    def __init__(self, chain_id: str, params: Params, validators: list[AccountId] | None = None,
                 genesis_time: int = 0) -> None:
        self.chain_id = chain_id
        self.params = params
        self.validators: list[AccountId] = list(validators or [])
        self.genesis_time = genesis_time
        self.height: Height = 0
        self.slashed_pool: Tokens = 0
        self.accounts: dict[AccountId, Account] = {}
        self.allowances: dict[tuple[AccountId, AccountId], Tokens] = {}
        self.workers: dict[AccountId, Worker] = {}
        self.jobs: dict[JobId, Job] = {}
        # Offences already punished, each (validator, height, round, step) -> the height of the block that
        # punished it; kept while a block may still carry its evidence (``evidence_max_age``), so whether a
        # block slashes an offence twice is a question of the state alone, which state sync carries.
        self.punished: dict[Offence, Height] = {}
        # Derived index: ids of jobs not yet terminal (so block hooks do not scan every job ever posted).
        self.active_jobs: dict[JobId, None] = {}
        # Derived index (only with job_retention_blocks): finished jobs by the height they ended in.
        self.ended_jobs: dict[Height, tuple[JobId, ...]] = {}
        self._journal: list[tuple[Any, Any, Any, str | None]] = []
        self._depth = 0
        # Records written since the tree last saw them; the tree is None until first needed (rebuilt in full).
        self._dirty: set[tuple[str, Any]] = set()
        self._tree: StateTree | None = None
        # Each record's bytes in a snapshot, kept with the tree: a snapshot joins them instead of packing every
        # record again (seconds on the event loop at a million accounts). Each section's dict is in key order as
        # of the last snapshot, except the keys added since (``_fresh``, at its end): a rewritten record keeps
        # its place, so the next snapshot merges only the fresh keys in, and then reads the values in order
        # (looking each of a million keys up in key order took 1.3 s).
        self._packed: dict[str, dict[Any, bytes]] = {section: {} for section in _SECTIONS}
        self._fresh: dict[str, set[Any]] = {section: set() for section in _SECTIONS}
        # The tokens the records held as the tree last saw them (balances, stakes, unbonding, escrow), kept with
        # the tree so the total supply costs what a root costs, not a walk of every account.
        self._tokens: Tokens = 0

    # ---- savepoints -------------------------------------------------------------------------------------------
    def savepoint(self) -> int:
        """Open a savepoint; every write after it can be undone with ``rollback_to``."""
        self._depth += 1
        return len(self._journal)

    def release(self, sp: int) -> None:
        """Keep the writes since ``sp`` (they stay undoable by an enclosing savepoint, if any)."""
        self._depth -= 1
        if self._depth == 0:
            self._journal.clear()

    def rollback_to(self, sp: int) -> None:
        """Undo every write since ``sp`` and close that savepoint."""
        journal = self._journal
        while len(journal) > sp:
            container, key, old, section = journal.pop()
            if old is MISSING:
                container.pop(key, None)
            else:
                container[key] = old
            if section is not None:
                self._dirty.add((section, key))
        self._depth -= 1
        if self._depth == 0:
            journal.clear()

    def changes_since(self, sp: int) -> list[tuple[Any, Any, Any, str | None]]:
        """Every key written since savepoint ``sp``, once, as (container, key, value now, section); the value is
        ``MISSING`` for a key that is gone. Taken just before ``rollback_to(sp)``, it lets :meth:`redo` replay
        those writes later without running what made them (a validated block, at its commit). The values are
        the objects the writes left, which the rollback detaches from the state, so nothing mutates them."""
        journal = self._journal
        seen: set[tuple[int, Any]] = set()
        out: list[tuple[Any, Any, Any, str | None]] = []
        for i in range(len(journal) - 1, sp - 1, -1):
            container, key, _old, section = journal[i]
            ident = (id(container), key)
            if ident not in seen:
                seen.add(ident)
                out.append((container, key, container.get(key, MISSING), section))
        return out

    def redo(self, changes: list[tuple[Any, Any, Any, str | None]]) -> None:
        """Replay :meth:`changes_since` on the state it was taken from, back at that savepoint's values (the
        caller makes sure nothing was kept in between); journaled and marked dirty like any write."""
        for container, key, value, section in changes:
            self._record(container, key, container.get(key, MISSING), section)
            if value is MISSING:
                container.pop(key, None)
            else:
                container[key] = value

    def _record(self, container: Any, key: Any, old: Any, section: str | None) -> None:
        if self._depth:
            self._journal.append((container, key, old, section))
        if section is not None:
            self._dirty.add((section, key))

    # ---- reads ------------------------------------------------------------------------------------------------
    def balance(self, account: AccountId) -> Tokens:
        acc = self.accounts.get(account)
        return acc.balance if acc is not None else 0

    def nonce(self, account: AccountId) -> int:
        acc = self.accounts.get(account)
        return acc.nonce if acc is not None else 0

    def allowance(self, owner: AccountId, spender: AccountId) -> Tokens:
        return self.allowances.get((owner, spender), 0)

    # ---- writes (journaled) -----------------------------------------------------------------------------------
    def note_punished(self, offence: Offence, height: Height) -> None:
        """Remember that the block at ``height`` punished ``offence``."""
        self._record(self.punished, offence, self.punished.get(offence, MISSING), None)
        self.punished[offence] = height

    def expire_punished(self, oldest: Height) -> None:
        """Forget the offences committed below height ``oldest``: no block may carry their evidence any more."""
        for offence in [o for o in self.punished if o[1] < oldest]:
            self._record(self.punished, offence, self.punished.pop(offence), None)

    def w_account(self, account: AccountId) -> Account:
        """The account record, ready to modify (created empty if missing)."""
        acc = self.accounts.get(account)
        if acc is None:
            acc = Account()
            self._record(self.accounts, account, MISSING, "account")
            self.accounts[account] = acc
        else:
            self._record(self.accounts, account, acc.clone(), "account")
        return acc

    def w_worker(self, account: AccountId) -> Worker:
        """The worker record, ready to modify (``KeyError`` if not registered)."""
        w = self.workers[account]
        self._record(self.workers, account, w.clone(), "worker")
        return w

    def put_worker(self, account: AccountId, worker: Worker) -> None:
        self._record(self.workers, account, self.workers.get(account, MISSING), "worker")
        self.workers[account] = worker

    def w_job(self, job_id: JobId) -> Job:
        """The job record, ready to modify (``KeyError`` if unknown)."""
        j = self.jobs[job_id]
        self._record(self.jobs, job_id, j.clone(), "job")
        return j

    def put_job(self, job: Job) -> None:
        self._record(self.jobs, job.job_id, self.jobs.get(job.job_id, MISSING), "job")
        self.jobs[job.job_id] = job

    def set_allowance(self, owner: AccountId, spender: AccountId, amount: Tokens) -> None:
        key = (owner, spender)
        self._record(self.allowances, key, self.allowances.get(key, MISSING), "allowance")
        if amount:
            self.allowances[key] = amount
        else:
            self.allowances.pop(key, None)

    def set_slashed(self, amount: Tokens) -> None:
        self._record(self.__dict__, "slashed_pool", self.slashed_pool, None)
        self.slashed_pool = amount

    def set_height(self, height: Height) -> None:
        self._record(self.__dict__, "height", self.height, None)
        self.height = height

    def set_active(self, job_id: JobId, active: bool) -> None:
        present = job_id in self.active_jobs
        if present == active:
            return
        self._record(self.active_jobs, job_id, None if present else MISSING, None)
        if active:
            self.active_jobs[job_id] = None
        else:
            del self.active_jobs[job_id]
            if self.params.job_retention_blocks:  # a job ends at the height being executed
                ended = self.ended_jobs.get(self.height, ())
                self._record(self.ended_jobs, self.height, ended or MISSING, None)
                self.ended_jobs[self.height] = (*ended, job_id)

    def drop_ended(self, height: Height) -> tuple[JobId, ...]:
        """Remove the jobs that ended at ``height`` from the state (retention); returns their ids."""
        ended = self.ended_jobs.get(height, ())
        if ended:
            self._record(self.ended_jobs, height, ended, None)
            del self.ended_jobs[height]
        for job_id in ended:
            self._record(self.jobs, job_id, self.jobs[job_id], "job")
            del self.jobs[job_id]
        return ended

    # ---- whole-state helpers ----------------------------------------------------------------------------------
    def copy(self) -> State:
        """An independent deep copy (O(size)); prefer savepoints when a rollback is all you need."""
        s = State(self.chain_id, self.params, self.validators, self.genesis_time)
        s.height = self.height
        s.slashed_pool = self.slashed_pool
        s.accounts = {k: v.clone() for k, v in self.accounts.items()}
        s.allowances = dict(self.allowances)
        s.workers = {k: v.clone() for k, v in self.workers.items()}
        s.jobs = {k: v.clone() for k, v in self.jobs.items()}
        s.punished = dict(self.punished)
        s.active_jobs = dict(self.active_jobs)
        s.ended_jobs = dict(self.ended_jobs)
        if self._tree is not None:
            s._tree = StateTree(dict(self._tree.items()))
            s._dirty = set(self._dirty)
            s._packed = {section: dict(d) for section, d in self._packed.items()}
            s._fresh = {section: set(keys) for section, keys in self._fresh.items()}
            s._tokens = self._tokens
        return s


def total_supply(state: State) -> Tokens:
    """Every token in existence: balances + stakes + unbonding + job escrow + the slashed pool. A running sum kept
    with the state tree (``_sync_tree``): it costs what bringing the root up to date costs, O(records written
    since), not a walk of a million accounts per height. ``total_supply_uncached`` is the definition."""
    _sync_tree(state)
    return state._tokens + state.slashed_pool


def _tokens_in(section: str, record: Any) -> Tokens:
    """The tokens one record holds (an allowance holds none: it only permits a transfer)."""
    if section == "account":
        return record.balance  # type: ignore[no-any-return]
    if section == "worker":
        return record.stake + record.unbonding_total  # type: ignore[no-any-return]
    if section == "job":
        return record.escrow or 0
    return 0


def _tokens_kept(section: str, item: bytes) -> Tokens:
    """The tokens a record held as of its kept snapshot bytes (``_snapshot_item``): what a rewrite replaces."""
    if section == "allowance":
        return 0
    v = msgpack.unpackb(item)  # bytes this state packed itself: no limits to apply, and ~3x cheaper per record
    if section == "account":
        return v[1]  # type: ignore[no-any-return]
    return _tokens_in(section, (Worker if section == "worker" else Job).from_list(v[1]))


def total_supply_uncached(state: State) -> Tokens:
    """``total_supply`` summed from every record (the definition; tests hold the running sum to it)."""
    total = sum(a.balance for a in state.accounts.values())
    for w in state.workers.values():
        total += w.stake + w.unbonding_total
    total += sum(j.escrow for j in state.jobs.values())
    return total + state.slashed_pool


# ---- canonical encoding and root ------------------------------------------------------------------------------
def _section_dict(state: State, section: str) -> dict[Any, Any]:
    return {"account": state.accounts, "allowance": state.allowances, "worker": state.workers,
            "job": state.jobs}[section]


def _head(state: State) -> list[Any]:
    """What the root commits to beside the tree, and what a snapshot starts with: version, chain id, genesis
    time, height, slashed pool, params, validators and the punished offences (sorted rows ``[validator, height,
    round, step, punished at]``; a few at most, since they expire after ``evidence_max_age`` blocks)."""
    return [STATE_VERSION, state.chain_id, state.genesis_time, state.height, state.slashed_pool,
            state.params.to_list(), list(state.validators), sorted([*o, h] for o, h in state.punished.items())]


HEAD_LEN = 8


def state_header(state: State) -> bytes:
    """:func:`_head`, packed: the part of the state root beside the tree root."""
    return pack(_head(state))


def _sort_key(section: str, key: Any) -> bytes:
    return key[0] + key[1] if section == "allowance" else key


SECTION_TAGS = {s: b"dacn/" + s.encode() + b"/" for s in _SECTIONS}
_ACCOUNT_TAG = SECTION_TAGS["account"]


def raw_tree_key(section: str, raw_key: bytes) -> bytes:
    """Where a record sits in the tree: BLAKE2b-256 of ``"dacn/<section>/"`` and its raw key (an account, worker
    or job id; an allowance's owner then spender), so keys spread uniformly whatever ids the records have."""
    return blake2b256(SECTION_TAGS[section] + raw_key)


def tree_key(section: str, key: Any) -> bytes:
    """``raw_tree_key`` of a record's key as the state holds it (an allowance's is an (owner, spender) pair)."""
    return raw_tree_key(section, _sort_key(section, key))


def record_value(section: str, key: Any, record: Any) -> list[Any]:
    """What ``record_hash`` packs: ``[owner, spender, amount]`` for an allowance, else ``[key, record.to_list()]``."""
    return [key[0], key[1], record] if section == "allowance" else [key, record.to_list()]


def record_hash(section: str, key: Any, record: Any) -> bytes:
    return blake2b256(pack(record_value(section, key, record)))


def _tree_items(state: State) -> dict[bytes, bytes]:
    return {tree_key(section, k): record_hash(section, k, v)
            for section in _SECTIONS for k, v in _section_dict(state, section).items()}


def _snapshot_item(section: str, key: Any, record: Any) -> bytes:
    """A record's element of its section's list in ``encode_state``."""
    if section == "account":
        return pack([key, *record.to_list()])
    return pack([key[0], key[1], record] if section == "allowance" else [key, record.to_list()])


def _plain_account(key: Any, record: Account) -> bool:
    """Whether an account is a bytes key and two 64-bit ints (every real one): the bulk encoders below pack such a
    record with ``unchecked_packer`` after this check, ~6x cheaper than ``pack``; anything else takes ``pack``,
    which refuses what it always refused. (A million accounts is what a big state is made of.)"""
    b, n = record.balance, record.nonce
    return (type(key) is bytes and type(b) is int and type(n) is int
            and INT_MIN <= b <= INT_MAX and INT_MIN <= n <= INT_MAX)


def _entry(section: str, key: Any, record: Any, pack_: Callable[[Any], bytes]) -> tuple[bytes, bytes, bytes]:
    """A record's ``tree_key``, ``record_hash`` and snapshot bytes (``_snapshot_item``). A plain account, most of
    any state and of any block's writes, is packed with ``pack_`` (an ``unchecked_packer``): the same bytes."""
    if section == "account" and _plain_account(key, record):
        b, n = record.balance, record.nonce
        return blake2b256(_ACCOUNT_TAG + key), blake2b256(pack_([key, [b, n]])), pack_([key, b, n])
    return tree_key(section, key), record_hash(section, key, record), _snapshot_item(section, key, record)


def _bulk_records(state: State) -> tuple[list[bytes], dict[str, dict[Any, bytes]]]:
    """For a tree built from nothing: every record's ``tree_key || record_hash``, in order, and every record's
    snapshot bytes (``_snapshot_item``), each form packed once."""
    pack_ = unchecked_packer()
    pairs: list[bytes] = []
    packed: dict[str, dict[Any, bytes]] = {}
    for section in _SECTIONS:
        kept: dict[Any, bytes] = {}
        packed[section] = kept
        for key, record in _section_dict(state, section).items():
            tk, vh, kept[key] = _entry(section, key, record, pack_)
            pairs.append(tk + vh)
    pairs.sort()
    return pairs, packed


def _sync_tree(state: State) -> StateTree:
    """Bring the tree (and the records' snapshot bytes) up to date with the records: only the dirty ones, once it
    exists; the first call builds both in bulk (``StateTree.from_sorted``)."""
    if state._tree is None:
        pairs, state._packed = _bulk_records(state)
        state._tree = StateTree.from_sorted(pairs)
        del pairs
        state._fresh = {section: set(d) for section, d in state._packed.items()}
        state._tokens = total_supply_uncached(state) - state.slashed_pool
    elif state._dirty:
        batch: dict[bytes, bytes | None] = {}
        packed = state._packed
        tokens = state._tokens
        pack_ = unchecked_packer()
        for section, key in state._dirty:
            record = _section_dict(state, section).get(key, MISSING)
            kept = packed[section]
            if section != "allowance":
                old = kept.get(key)
                if old is not None:
                    tokens -= _tokens_kept(section, old)
                if record is not MISSING:
                    tokens += _tokens_in(section, record)
            if record is MISSING:
                batch[tree_key(section, key)] = None
                if kept.pop(key, None) is not None:  # removed: the rest stay in order
                    state._fresh[section].discard(key)
            else:
                tk, vh, item = _entry(section, key, record, pack_)
                batch[tk] = vh
                if key not in kept:  # added: at the dict's end, merged into place by the next snapshot
                    state._fresh[section].add(key)
                kept[key] = item
        state._tree.update(batch)
        state._tokens = tokens
    state._dirty.clear()
    return state._tree


def combine_root(header: bytes, tree_root: bytes) -> bytes:
    """The state root from its two parts (what a light client recomputes)."""
    return blake2b256(header + tree_root)


def state_root(state: State) -> bytes:
    """The 32-byte commitment to the whole state; only records written since the last call are re-hashed."""
    return combine_root(state_header(state), _sync_tree(state).root)


def state_root_uncached(state: State) -> bytes:
    """The same root computed from scratch, ignoring every cache (for tests and audits)."""
    return combine_root(state_header(state), root_of(_tree_items(state)))


def prove_record(state: State, section: str, key: Any) -> tuple[Any, bytes, Proof]:
    """``(record or None, tree root, proof)`` for one record of the current state: a membership proof of
    ``record_hash`` at ``tree_key`` when the record exists, a non-membership proof when it does not."""
    if section not in SECTION_TAGS:
        raise ValueError(f"unknown state section {section!r}; one of {', '.join(_SECTIONS)}")
    tree = _sync_tree(state)
    record = _section_dict(state, section).get(key)
    return record, tree.root, tree.prove(tree_key(section, key))


MAX_STATE_BYTES = 1 << 30


def _array_header(n: int) -> bytes:
    """MessagePack's header of an array of ``n`` items (the items' encodings follow it)."""
    if n <= 15:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big") if n <= 0xFFFF else b"\xdd" + n.to_bytes(4, "big")


def encode_state(state: State) -> bytes:
    """A canonical snapshot of the state (what the store writes and ``decode_state`` reads back): the bytes
    :func:`encode_state_uncached` packs, joined from each record's bytes kept with the tree (sorting the keys is
    all that grows with the state)."""
    head = _head(state)
    parts = [_array_header(len(head) + len(_SECTIONS)), *(pack(x) for x in head)]
    if state._tree is None:
        # Nothing has asked this state for its root (a genesis state hashed to name its chain): its records are
        # packed once here, in order, and no tree is built for them.
        pack_ = unchecked_packer()
        for section in _SECTIONS:
            records = _section_dict(state, section)
            parts.append(_array_header(len(records)))
            for k in sorted(records):
                v = records[k]
                if section == "account" and _plain_account(k, v):
                    parts.append(pack_([k, v.balance, v.nonce]))
                else:
                    parts.append(_snapshot_item(section, k, v))
        return b"".join(parts)
    _sync_tree(state)
    packed = state._packed
    for section in _SECTIONS:  # encode_state_uncached's order
        kept, fresh = packed[section], state._fresh[section]
        parts.append(_array_header(len(kept)))
        parts.append(_joined_in_key_order(packed, section, fresh))
    return b"".join(parts)


def _joined_in_key_order(packed: dict[str, dict[Any, bytes]], section: str, fresh: set[Any]) -> bytes:
    """A section's kept record bytes joined in key order. The dict is in key order but for the ``fresh`` keys,
    inserted since it was last rebuilt and so last (see ``State.__init__``): with none, its values are read in
    order; with a few, each is spliced in where it belongs (a bisection among the ordered keys); once they are
    many (an eighth), or not where they should be, the dict is rebuilt in key order."""
    kept = packed[section]
    if not fresh:
        return b"".join(kept.values())
    keys = list(kept)
    m = len(keys) - len(fresh)
    if len(fresh) * 8 > len(kept) or m < 0 or any(k not in fresh for k in keys[m:]):
        packed[section] = kept = dict(sorted(kept.items()))
        fresh.clear()
        return b"".join(kept.values())
    values = list(kept.values())
    pieces: list[bytes] = []
    lo = 0
    for j in sorted(range(m, len(keys)), key=keys.__getitem__):
        at = bisect_left(keys, keys[j], lo, m)
        pieces.append(b"".join(values[lo:at]))
        pieces.append(values[j])
        lo = at
    pieces.append(b"".join(values[lo:m]))
    return b"".join(pieces)


def encode_state_uncached(state: State) -> bytes:
    """The snapshot packed from the records themselves (the definition; tests compare it with the kept bytes)."""
    return pack([
        *_head(state),
        sorted([k, *v.to_list()] for k, v in state.accounts.items()),
        sorted([o, s, a] for (o, s), a in state.allowances.items()),
        sorted([k, v.to_list()] for k, v in state.workers.items()),
        sorted([k, v.to_list()] for k, v in state.jobs.items()),
    ])


def _decode_punished(rows: Any) -> dict[Offence, Height]:
    """The punished offences of a snapshot's head: rows ``[validator, height, round, step, punished at]``, in
    increasing order (canonical), the validator bytes and the rest non-negative ints."""
    if type(rows) is not list:
        raise DecodeError("state.punished", "expected a list")
    out: dict[Offence, Height] = {}
    prev: list[Any] | None = None
    for row in rows:
        if (type(row) is not list or len(row) != 5 or type(row[0]) is not bytes
                or any(type(x) is not int or x < 0 for x in row[1:])):
            raise DecodeError("state.punished", f"expected [validator, height, round, step, punished at], got "
                                                f"{row!r:.80}")
        if prev is not None and not prev < row:
            raise DecodeError("state.punished", "rows not in increasing order")
        prev = row
        out[(row[0], row[1], row[2], row[3])] = row[4]
    return out


def decode_state(data: bytes) -> State:
    """Rebuild a ``State`` from ``encode_state`` bytes; raises ``DecodeError`` on anything malformed.

    The check is ``unpack``'s (every value of an allowed type, the bytes exactly the canonical encoding), done
    record by record: each record is packed again (an account by the cheap path after its type check) and the
    parts, joined, must be ``data``. One walk, not a walk of the whole and then a second packing of each record.
    """
    obj = unpack_unchecked(data, max_size=MAX_STATE_BYTES, field="state")
    if type(obj) is not list or len(obj) != HEAD_LEN + len(_SECTIONS):
        raise DecodeError("state", f"expected a {HEAD_LEN + len(_SECTIONS)}-element list")
    (version, chain_id, genesis_time, height, slashed, params_list, validators, punished, accounts, allowances,
     workers, jobs) = obj
    if type(version) is not int or version != STATE_VERSION:
        raise DecodeError("state.version", f"unsupported version {version!r}")
    parts = [_array_header(len(obj))]
    try:
        parts += [pack(x) for x in obj[:HEAD_LEN]]
        params = Params.from_list(params_list)
        offences = _decode_punished(punished)
    except EncodeError as exc:
        raise DecodeError("state", f"{exc.path[1:]}: {exc.reason}") from None
    except (InvalidGenesis, TypeError) as exc:
        raise DecodeError("state.params", str(exc)) from None
    section = "account"
    pack_ = unchecked_packer()
    try:
        if any(type(rows) is not list for rows in (accounts, allowances, workers, jobs)):
            raise TypeError("every section is a list")
        s = State(chain_id, params, validators, genesis_time)
        s.height = height
        s.slashed_pool = slashed
        s.punished = offences
        parts.append(_array_header(len(accounts)))
        for row in accounts:
            k, b, n = row
            acc = Account(b, n)
            parts.append(pack_(row) if _plain_account(k, acc) else pack(row))
            s.accounts[k] = acc
        section = "allowance"
        parts.append(_array_header(len(allowances)))
        for row in allowances:
            o, sp, a = row
            parts.append(pack(row))
            s.allowances[(o, sp)] = a
        table: dict[Any, Any]
        # ``section`` is read by the handlers below: it names the section a bad record is in.
        for section, rows, table, record in (  # noqa: B007
                ("worker", workers, s.workers, Worker), ("job", jobs, s.jobs, Job)):
            parts.append(_array_header(len(rows)))
            for row in rows:
                k, v = row
                parts.append(pack(row))
                table[k] = record.from_list(v)
    except EncodeError as exc:
        raise DecodeError(f"state.{section}", f"{exc.path[1:]}: {exc.reason}") from None
    except (TypeError, ValueError, IndexError) as exc:  # IndexError: a worker record too short for from_list
        raise DecodeError("state", f"malformed record: {exc}") from None
    if b"".join(parts) != data:
        raise DecodeError("state", "not in canonical encoding")
    s.active_jobs = {k: None for k, j in sorted(s.jobs.items()) if not j.is_terminal}
    if params.job_retention_blocks:  # a finished job's deadline is the height it ended in (ledger.jobs._close)
        for k, j in sorted(s.jobs.items()):
            if j.is_terminal:
                s.ended_jobs[j.deadline] = (*s.ended_jobs.get(j.deadline, ()), k)
    return s  # its tree is built in full when its root is first asked for
