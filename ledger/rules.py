"""The state transition: ``apply_tx`` for one transaction, ``begin_block``/``end_block`` for block boundaries,
``process_evidence`` for equivocation, and ``check_tx`` for mempool admission.

Each tx kind has one handler, found through ``HANDLERS``; the handlers for jobs live in ``ledger.jobs`` and for
stake in ``ledger.staking``. Every entry point mutates the given ``State`` in place and returns that same object
(so ``state, receipt = apply_tx(state, stx, ctx)`` reads like a pure transition, but callers that need the old
state must hold a savepoint or a ``state.copy()``). Atomicity: each call runs inside a savepoint; on any
exception everything it wrote is rolled back before the exception propagates, so an ``InvalidTx`` leaves the
state (and its root) exactly as it was.

Common steps of every tx, in order: signature (unless ``verified``), nonce equals the account's next nonce, fee at
least ``min_fee``, balance covers fee plus what the payload spends; then the nonce is bumped, the fee moves to the
block proposer, and the handler runs.

Inside a block every tx pays or is refused (``apply_block_tx``): a tx whose envelope is sound (signature, nonce,
fee, a balance that covers the fee) but whose payload fails (an allowance too small, a job in the wrong state,
a balance that covers the fee but not the spend) stays in the block as a failed tx: its nonce is used and its fee
paid, nothing else happens. Otherwise txs that can never execute would fill a proposer's reap for free, and one
such tx would freeze its sender's later nonces for good. The incentive reads: a junk tx costs its sender
``fee >= min_fee``, the same as a useful one, and earns it nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.context import BlockContext, Event, Receipt
from ledger.errors import (
    BadNonce,
    BadSignature,
    FeeTooLow,
    InsufficientAllowance,
    InsufficientFunds,
    InvalidField,
    InvalidTx,
)
from ledger.jobs import (
    process_bid,
    process_cancel_job,
    process_commit_result,
    process_confirm_artifact,
    process_deadlines,
    process_offer,
    process_reveal_result,
    process_submit_job,
    prune_finished_jobs,
)
from ledger.staking import (
    process_add_stake,
    process_register_worker,
    process_unbond,
    release_unbonded,
    slash_equivocation,
)
from ledger.state import State
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
    SignedTx,
    SubmitJob,
    Transfer,
    TransferFrom,
    Unbond,
    verify_tx_signature,
)
from ledger.types import AccountId

__all__ = [
    "HANDLERS",
    "BlockContext",
    "Event",
    "Receipt",
    "apply_block_tx",
    "apply_tx",
    "begin_block",
    "check_tx",
    "end_block",
    "envelope_problem",
    "process_evidence",
]


def process_transfer(state: State, stx: SignedTx, p: Transfer, ctx: BlockContext) -> list[Event]:
    # The sender's balance covers fee + amount: apply_tx checked it before calling us.
    state.w_account(stx.tx.sender).balance -= p.amount
    state.w_account(p.to).balance += p.amount
    return [Event("transfer", {"from": stx.tx.sender, "to": p.to, "amount": p.amount})]


def process_approve(state: State, stx: SignedTx, p: Approve, ctx: BlockContext) -> list[Event]:
    # Setting (not adding to) the allowance, as ERC20 does; 0 removes it.
    state.set_allowance(stx.tx.sender, p.spender, p.amount)
    return [Event("approval", {"owner": stx.tx.sender, "spender": p.spender, "amount": p.amount})]


def process_transfer_from(state: State, stx: SignedTx, p: TransferFrom, ctx: BlockContext) -> list[Event]:
    spender = stx.tx.sender
    allowed = state.allowance(p.owner, spender)
    # The owner must have approved at least this much for the sender...
    if allowed < p.amount:
        raise InsufficientAllowance(p.owner, spender, p.amount, allowed)
    # ...and actually hold it (the fee came out of the sender's balance, which may be the owner's).
    available = state.balance(p.owner)
    if available < p.amount:
        raise InsufficientFunds(p.owner, p.amount, available)
    state.set_allowance(p.owner, spender, allowed - p.amount)
    state.w_account(p.owner).balance -= p.amount
    state.w_account(p.to).balance += p.amount
    return [Event("transfer", {"from": p.owner, "to": p.to, "amount": p.amount, "spender": spender})]


Handler = Callable[[State, SignedTx, Any, BlockContext], list[Event]]

HANDLERS: dict[type[Payload], Handler] = {
    Transfer: process_transfer,
    Approve: process_approve,
    TransferFrom: process_transfer_from,
    RegisterWorker: process_register_worker,
    AddStake: process_add_stake,
    Unbond: process_unbond,
    SubmitJob: process_submit_job,
    Bid: process_bid,
    CommitResult: process_commit_result,
    RevealResult: process_reveal_result,
    CancelJob: process_cancel_job,
    Offer: process_offer,
    ConfirmArtifact: process_confirm_artifact,
}


def _check_proposer(ctx: BlockContext) -> None:
    if type(ctx.proposer) is not bytes or len(ctx.proposer) != 32:
        raise InvalidField("ctx.proposer", "expected a 32-byte account id")


def apply_tx(state: State, stx: SignedTx, ctx: BlockContext, *, verified: bool = False) -> tuple[State, Receipt]:
    """Apply one signed tx at ``ctx``; raises a typed ``InvalidTx`` and changes nothing if it is not valid.

    ``verified=True`` skips the signature check (the mempool already did it for this exact ``SignedTx``).
    """
    if not verified:
        verify_tx_signature(stx, state.chain_id)
    tx = stx.tx
    payload = tx.payload
    handler = HANDLERS[type(payload)]
    sender = tx.sender
    acc = state.accounts.get(sender)
    expected = acc.nonce if acc is not None else 0
    if tx.nonce != expected:
        raise BadNonce(sender, expected, tx.nonce)
    if tx.fee < state.params.min_fee:
        raise FeeTooLow(state.params.min_fee, tx.fee)
    needed = tx.fee + payload.spend()
    available = acc.balance if acc is not None else 0
    if available < needed:
        raise InsufficientFunds(sender, needed, available)
    sp = state.savepoint()
    try:
        acc = state.w_account(sender)
        acc.nonce += 1
        if tx.fee:
            acc.balance -= tx.fee
            _check_proposer(ctx)
            state.w_account(ctx.proposer).balance += tx.fee
        events = handler(state, stx, payload, ctx)
    except BaseException:
        state.rollback_to(sp)
        raise
    state.release(sp)
    return state, Receipt(stx.tx_id, payload.KIND, sender, tx.nonce, tx.fee, ctx.height, tuple(events))


def envelope_problem(state: State, stx: SignedTx) -> InvalidTx | None:
    """Why ``stx`` cannot even pay for itself in the next block (its nonce, fee, or a balance short of the fee),
    or None when it can. The signature is checked separately (before this)."""
    tx = stx.tx
    acc = state.accounts.get(tx.sender)
    expected = acc.nonce if acc is not None else 0
    if tx.nonce != expected:
        return BadNonce(tx.sender, expected, tx.nonce)
    if tx.fee < state.params.min_fee:
        return FeeTooLow(state.params.min_fee, tx.fee)
    available = acc.balance if acc is not None else 0
    if available < tx.fee:
        return InsufficientFunds(tx.sender, tx.fee, available)
    return None


def apply_block_tx(state: State, stx: SignedTx, ctx: BlockContext, *,
                   verified: bool = False) -> tuple[State, Receipt]:
    """``apply_tx`` as a block runs it: every tx pays or is refused (see the module docstring).

    Raises (and changes nothing) only when the tx cannot pay for itself: a bad signature, a wrong nonce, a fee
    below ``min_fee`` or a balance short of the fee. Any other ``InvalidTx`` is a failed tx: the nonce is bumped,
    the fee moves to the proposer, and the receipt carries the error."""
    try:
        return apply_tx(state, stx, ctx, verified=verified)
    except BadSignature:
        raise
    except InvalidTx as exc:
        if envelope_problem(state, stx) is not None:
            raise
        failure = f"{type(exc).__name__}: {exc}"
    tx = stx.tx
    _check_proposer(ctx)
    sp = state.savepoint()
    try:
        acc = state.w_account(tx.sender)
        acc.nonce += 1
        if tx.fee:
            acc.balance -= tx.fee
            state.w_account(ctx.proposer).balance += tx.fee
    except BaseException:
        state.rollback_to(sp)
        raise
    state.release(sp)
    return state, Receipt(stx.tx_id, tx.payload.KIND, tx.sender, tx.nonce, tx.fee, ctx.height, (), failure)


def check_tx(state: State, stx: SignedTx) -> None:
    """Cheap stateful admission for the mempool: nonce not in the past, fee high enough, balance covers it.

    A future nonce is accepted (the mempool queues it); the signature is not checked here.
    """
    tx = stx.tx
    current = state.nonce(tx.sender)
    if tx.nonce < current:
        raise BadNonce(tx.sender, current, tx.nonce)
    if tx.fee < state.params.min_fee:
        raise FeeTooLow(state.params.min_fee, tx.fee)
    needed = tx.fee + tx.payload.spend()
    available = state.balance(tx.sender)
    if available < needed:
        raise InsufficientFunds(tx.sender, needed, available)


def _atomic(state: State, fn: Callable[[], list[Event]]) -> list[Event]:
    sp = state.savepoint()
    try:
        events = fn()
    except BaseException:
        state.rollback_to(sp)
        raise
    state.release(sp)
    return events


def begin_block(state: State, ctx: BlockContext) -> tuple[State, list[Event]]:
    """Start block ``ctx.height``: record the height, release unbonded stake that has come due and drop the
    finished jobs past their retention window."""
    if ctx.height <= state.height and not (ctx.height == state.height == 0):
        raise InvalidField("ctx.height", f"block height {ctx.height} is not above the state's {state.height}")

    def run() -> list[Event]:
        state.set_height(ctx.height)
        return release_unbonded(state, ctx.height) + prune_finished_jobs(state, ctx.height)

    return state, _atomic(state, run)


def end_block(state: State, ctx: BlockContext) -> tuple[State, list[Event]]:
    """Finish block ``ctx.height``: assign jobs whose bid window closed and handle every missed deadline."""
    return state, _atomic(state, lambda: process_deadlines(state, ctx))


def process_evidence(state: State, offender: AccountId, ctx: BlockContext) -> tuple[State, list[Event]]:
    """Slash a validator caught equivocating by ``equivocation_slash_permille`` of its bonded and unbonding stake
    (``ledger.staking.slash_equivocation`` states the rule and its incentive)."""
    # Genesis makes every validator a worker with at least min_stake bonded and no record is ever removed, so
    # this only skips a genesis built without ``Genesis.from_dict``'s checks (a simulation's bare one).
    if offender not in state.workers:
        return state, []
    permille = state.params.equivocation_slash_permille
    return state, _atomic(state, lambda: [slash_equivocation(state, offender, permille)])
