"""Workers and their stake: register, add stake, unbond (released after the unbonding period), slash, reputation.

Preconditions of each handler are checked before the first write, in the order of the comments; the savepoint
in ``apply_tx`` still rolls back anything written if a later step raises.

Validators are workers too: genesis refuses a validator without a worker bond of at least ``min_stake``
(``ledger.genesis``), and a validator may never unbond below it (``process_unbond``), so every validator always
has stake an equivocation slash can reach (``slash_equivocation``, which says why that is enough).
"""

from __future__ import annotations

from ledger.context import BlockContext, Event
from ledger.errors import (
    AlreadyRegistered,
    InsufficientStake,
    InvalidField,
    StakeLocked,
    StakeTooLow,
    UnknownWorker,
    ValidatorStakeLocked,
)
from ledger.state import State, Worker
from ledger.tx import AddStake, RegisterWorker, SignedTx, Unbond
from ledger.types import REPUTATION_MAX, AccountId

DEVICE_KINDS = ("cpu", "gpu")


def process_register_worker(state: State, stx: SignedTx, p: RegisterWorker, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    # One worker record per account; more stake goes through add_stake.
    if sender in state.workers:
        raise AlreadyRegistered(sender)
    if p.device_kind not in DEVICE_KINDS:
        raise InvalidField("register_worker.device_kind", f"expected one of {DEVICE_KINDS}")
    if p.stake < state.params.min_stake:
        raise StakeTooLow(state.params.min_stake, p.stake)
    # The balance covers fee + stake: apply_tx checked spend() before calling us.
    state.w_account(sender).balance -= p.stake
    if p.operator not in (b"", sender) and len(p.operator) != 32:
        raise InvalidField("register_worker.operator", "expected a 32-byte account id, or empty for the key itself")
    state.put_worker(sender, Worker(
        p.stake, state.params.initial_reputation, p.device_kind, p.device_name, p.memory_mb, p.capacity, ctx.height,
        operator=b"" if p.operator == sender else p.operator,
    ))
    return [Event("worker_registered", {"worker": sender, "stake": p.stake, "device_kind": p.device_kind})]


def process_add_stake(state: State, stx: SignedTx, p: AddStake, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    if sender not in state.workers:
        raise UnknownWorker(sender)
    if p.amount == 0:
        raise InvalidField("add_stake.amount", "must be positive")
    state.w_account(sender).balance -= p.amount
    w = state.w_worker(sender)
    w.stake += p.amount
    return [Event("stake_added", {"worker": sender, "amount": p.amount, "stake": w.stake})]


def process_unbond(state: State, stx: SignedTx, p: Unbond, ctx: BlockContext) -> list[Event]:
    sender = stx.tx.sender
    w = state.workers.get(sender)
    if w is None:
        raise UnknownWorker(sender)
    if p.amount == 0:
        raise InvalidField("unbond.amount", "must be positive")
    if p.amount > w.stake:
        raise InsufficientStake(sender, p.amount, w.stake)
    # A worker holding a job role keeps enough stake to be slashed, or it could unbond to dodge the verdict.
    if w.active_jobs and w.stake - p.amount < state.params.min_stake:
        raise StakeLocked(sender, w.active_jobs, state.params.min_stake)
    # A validator keeps min_stake bonded for good (the validator set is fixed at genesis): that bond is what an
    # equivocation slash takes from, so a validator with nothing bonded could sign conflicting votes for free.
    if sender in state.validators and w.stake - p.amount < state.params.min_stake:
        raise ValidatorStakeLocked(sender, w.stake - p.amount, state.params.min_stake)
    w = state.w_worker(sender)
    w.stake -= p.amount
    release = ctx.height + state.params.unbonding_period
    w.unbonding.append([release, p.amount])
    return [Event("unbonding", {"worker": sender, "amount": p.amount, "release_height": release})]


def release_unbonded(state: State, height: int) -> list[Event]:
    """Return every unbonding entry due at ``height`` to its worker's balance (called from ``begin_block``)."""
    events: list[Event] = []
    for account in sorted(a for a, w in state.workers.items() if w.unbonding and w.unbonding[0][0] <= height):
        w = state.w_worker(account)
        due = sum(amount for release, amount in w.unbonding if release <= height)
        w.unbonding = [u for u in w.unbonding if u[0] > height]
        state.w_account(account).balance += due
        events.append(Event("unbond_released", {"worker": account, "amount": due}))
    return events


def slash(state: State, account: AccountId, permille: int, reason: str) -> Event:
    """Move ``permille``/1000 of the worker's stake (never more than it has) to the slashed pool."""
    w = state.w_worker(account)
    amount = w.stake * permille // 1000
    w.stake -= amount
    state.set_slashed(state.slashed_pool + amount)
    return Event("slashed", {"worker": account, "amount": amount, "reason": reason})


def slash_equivocation(state: State, account: AccountId, permille: int) -> Event:
    """Move ``permille``/1000 of the validator's stake at risk, bonded plus every entry still unbonding, to the
    slashed pool: bonded stake first, then unbonding entries, latest release first.

    Why unbonding stake counts: an unbond only moves tokens to an entry that is released ``unbonding_period``
    blocks later. A validator that equivocates at height ``h`` and unbonds at ``u >= h`` gets those tokens back at
    ``u + unbonding_period``, but its evidence is included at some height ``i <= h + evidence_max_age``; since
    ``ledger.params`` refuses ``unbonding_period <= evidence_max_age``, ``i < h + unbonding_period <=
    u + unbonding_period``, so everything bonded at ``h`` is still bonded or in an unreleased entry here, and is
    slashed as if it had never moved. (Unbonded entries are released in ``begin_block``, before the block's
    evidence, which is why the inequality must be strict.) The ledger keeps no stake history per height, so an
    entry begun before ``h`` and still unreleased is taken from too; that only ever errs against the offender.

    Why latest release first: the entry furthest from release is the most recent unbond, the one most likely
    made in answer to the offence; entries about to come due were more likely honest exits begun earlier, and
    they keep their schedule as far as the amount allows.

    Incentive: with ``S`` the stake bonded at the offence and ``p = equivocation_slash_permille / 1000``, an
    offence caught within ``evidence_max_age`` blocks costs the offender ``floor(S * p)`` (exactly that when
    nothing moved into or out of the bond before the offence). A validator may never unbond below ``min_stake``,
    so ``S >= min_stake`` until a slash: with the defaults (``p = 1/2``, ``min_stake = 1000``) at least 500 tokens
    per offence. Equivocation pays only if its gain ``G`` exceeds that, so it is unprofitable while
    ``G <= S * p``; breaking safety takes more than a third of the ``n`` validators equivocating, so a genesis
    should choose ``min_stake`` so that what a fork could double-spend stays below
    ``(n // 3 + 1) * min_stake * p``.
    """
    w = state.w_worker(account)
    amount = (w.stake + w.unbonding_total) * permille // 1000
    from_stake = min(amount, w.stake)
    w.stake -= from_stake
    rest = amount - from_stake
    for entry in sorted(w.unbonding, key=lambda u: u[0], reverse=True):
        if rest == 0:
            break
        take = min(rest, entry[1])
        entry[1] -= take
        rest -= take
    w.unbonding = [u for u in w.unbonding if u[1] > 0]
    state.set_slashed(state.slashed_pool + amount)
    return Event("slashed", {"worker": account, "amount": amount, "reason": "equivocation",
                             "from_unbonding": amount - from_stake})


def adjust_reputation(state: State, account: AccountId, delta: int) -> None:
    """Add ``delta`` to the worker's reputation, clamped to ``0..REPUTATION_MAX``."""
    w = state.w_worker(account)
    w.reputation = max(0, min(REPUTATION_MAX, w.reputation + delta))
