"""Workers and their stake: register, add stake, unbond (released after the unbonding period), slash, reputation.

Preconditions of each handler are checked before the first write, in the order of the comments; the savepoint
in ``apply_tx`` still rolls back anything written if a later step raises.
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
    state.put_worker(sender, Worker(
        p.stake, state.params.initial_reputation, p.device_kind, p.device_name, p.memory_mb, p.capacity, ctx.height
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


def adjust_reputation(state: State, account: AccountId, delta: int) -> None:
    """Add ``delta`` to the worker's reputation, clamped to ``0..REPUTATION_MAX``."""
    w = state.w_worker(account)
    w.reputation = max(0, min(REPUTATION_MAX, w.reputation + delta))
