"""Builders for ledger tests (also used by the chain, mempool and node tests): keys, genesis, signed txs, blocks.

    alice = Wallet("alice")                       # deterministic key from the name
    state = make_state(balances={"alice": 10_000}, workers=["w1", "w2", "w3"])
    state, receipt = apply_tx(state, alice.transfer(bob.account, 5), ctx(1))
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from ledger.context import BlockContext
from ledger.crypto import account_of, blake2b256, signing_key_from_seed
from ledger.genesis import Genesis, genesis_state
from ledger.rules import apply_tx, begin_block, end_block
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
    compute_commitment,
    compute_fingerprint,
    make_tx,
)
from ledger.types import AccountId

CHAIN_ID = "dacn-test"
PROPOSER_NAME = "validator-0"


def key(name: str) -> SigningKey:
    """A deterministic signing key for a name."""
    return signing_key_from_seed(b"dacn-test-key/" + name.encode())


def account(name: str) -> AccountId:
    """The account (public key) of ``key(name)``."""
    return account_of(key(name))


PROPOSER = account(PROPOSER_NAME)


def ctx(height: int, *, proposer: AccountId = PROPOSER, seed: bytes | None = None) -> BlockContext:
    """A block context at ``height`` (seed derived from the height unless given)."""
    return BlockContext(height, 1_700_000_000_000 + height * 1000, seed or blake2b256(b"seed%d" % height), proposer)


TEST_PARAMS: dict[str, Any] = {"commit_margin_blocks": 0, "window_fee_per_block": 0, "default_job_time_ms": 1_000,
                               "audit_permille": 0, "appeal_panel": 0, "confirm_window": 0}
"""Most ledger tests walk jobs through one- and two-block windows: let any window fit a default run, for free
(tests of the window rules pass the chain's real values). Audits and appeal panels are off unless a test turns
them on, so a job's path does not hang on its seed's audit coin (tests/ledger/test_audits.py covers them), and
an accepted result settles at its verdict without a confirmation (tests/ledger/test_confirmation.py)."""


def make_genesis(
    *,
    balances: dict[str, int] | None = None,
    validators: list[str] | None = None,
    workers: list[str] | dict[str, dict[str, Any]] | None = None,
    params: dict[str, Any] | None = None,
    chain_id: str = CHAIN_ID,
) -> Genesis:
    """A genesis from names: ``balances`` by name, ``workers`` as names (cpu, stake 5000) or name → overrides.

    Workers without an entry in ``balances`` get 100,000 tokens for fees. Genesis refuses a validator without a
    worker bond, so ``validators`` default to the first worker (the workers a test names stay the only ones a job
    can draw), or to ``validator-0`` when there are none; a validator not named in ``workers`` is bonded as a
    default worker with no balance of its own.
    """
    balances = {"alice": 1_000_000, "bob": 1_000_000} if balances is None else balances
    if isinstance(workers, list):
        workers = {w: {} for w in workers}
    workers = dict(workers or {})
    balances = dict(balances)
    for name in workers:
        balances.setdefault(name, 100_000)  # workers pay fees too
    validators = validators or [next(iter(workers), PROPOSER_NAME)]
    for name in validators:
        workers.setdefault(name, {})  # the validator's bond
    worker_docs = []
    for name, overrides in workers.items():
        doc = {"account": account(name).hex(), "stake": 5_000, "device_kind": "cpu", "device_name": "test-cpu",
               "memory_mb": 16_384, "capacity": 100}
        doc.update(overrides)
        worker_docs.append(doc)
    return Genesis.from_dict({
        "chain_id": chain_id,
        "genesis_time": 1_700_000_000_000,
        "allocations": [{"account": account(n).hex(), "balance": b} for n, b in balances.items()],
        "validators": [account(v).hex() for v in validators],
        "workers": worker_docs,
        "params": {**TEST_PARAMS, **(params or {})},
    })


def make_state(**kwargs: Any) -> State:
    """``genesis_state(make_genesis(**kwargs))``."""
    return genesis_state(make_genesis(**kwargs))


_issued: dict[bytes, Wallet] = {}
"""Which wallet auto-numbered a tx, so ``assert_rejected`` can give the nonce back."""


class Wallet:
    """A named key that signs txs with consecutive nonces (``nonce=`` overrides and does not advance)."""

    def __init__(self, name: str, chain_id: str = CHAIN_ID, nonce: int = 0) -> None:
        self.name = name
        self.key = key(name)
        self.account = account_of(self.key)
        self.chain_id = chain_id
        self.next_nonce = nonce

    def sign(self, payload: Payload, *, fee: int = 1, nonce: int | None = None) -> SignedTx:
        auto = nonce is None
        if nonce is None:
            nonce = self.next_nonce
            self.next_nonce += 1
        stx = make_tx(payload, self.key, self.chain_id, nonce=nonce, fee=fee)
        if auto:
            _issued[stx.tx_id] = self
        return stx

    def transfer(self, to: AccountId, amount: int, **kw: Any) -> SignedTx:
        return self.sign(Transfer(to, amount), **kw)

    def approve(self, spender: AccountId, amount: int, **kw: Any) -> SignedTx:
        return self.sign(Approve(spender, amount), **kw)

    def transfer_from(self, owner: AccountId, to: AccountId, amount: int, **kw: Any) -> SignedTx:
        return self.sign(TransferFrom(owner, to, amount), **kw)

    def register_worker(self, stake: int = 5_000, device_kind: str = "cpu", memory_mb: int = 16_384,
                        operator: bytes = b"", **kw: Any) -> SignedTx:
        return self.sign(RegisterWorker(stake, device_kind, f"{device_kind}-{self.name}", memory_mb, 100, operator),
                         **kw)

    def add_stake(self, amount: int, **kw: Any) -> SignedTx:
        return self.sign(AddStake(amount), **kw)

    def unbond(self, amount: int, **kw: Any) -> SignedTx:
        return self.sign(Unbond(amount), **kw)

    def submit_job(self, reward: int = 1_000, verification_fee: int = 200, *, tolerance_abs: int = 0,
                   tolerance_ppm: int = 0, device: str = "any", min_memory_mb: int = 0, bid_window: int = 0,
                   commit_window: int = 0, reveal_window: int = 0, model: str = "linreg", assign: str = "",
                   time_limit_ms: int = 0, **kw: Any) -> SignedTx:
        return self.sign(SubmitJob(
            model, blake2b256(b"params"), blake2b256(b"dataset"), reward, verification_fee, tolerance_abs,
            tolerance_ppm, device, min_memory_mb, bid_window, commit_window, reveal_window, assign, time_limit_ms,
        ), **kw)

    def offer(self, price: int, until: int, max_time_ms: int = 0, **kw: Any) -> SignedTx:
        return self.sign(Offer(price, until, max_time_ms), **kw)

    def bid(self, job_id: bytes, price: int, **kw: Any) -> SignedTx:
        return self.sign(Bid(job_id, price), **kw)

    def commit(self, job_id: bytes, summary: list[int], outcome: int = 0, **kw: Any) -> SignedTx:
        """Commit to ``summary`` (and ``outcome``) with a salt and artifact digest derived from the wallet and job."""
        opening = self._opening(job_id)
        commitment = compute_commitment(job_id, self.account, summary, *opening, outcome)
        return self.sign(CommitResult(job_id, commitment, compute_fingerprint(job_id, summary, outcome)), **kw)

    def reveal(self, job_id: bytes, summary: list[int], outcome: int = 0, **kw: Any) -> SignedTx:
        return self.sign(RevealResult(job_id, list(summary), *self._opening(job_id), outcome), **kw)

    def cancel(self, job_id: bytes, **kw: Any) -> SignedTx:
        return self.sign(CancelJob(job_id), **kw)

    def confirm(self, job_id: bytes, artifact_digest: bytes, **kw: Any) -> SignedTx:
        return self.sign(ConfirmArtifact(job_id, artifact_digest), **kw)

    def artifact_of(self, job_id: bytes) -> bytes:
        """The artifact digest this wallet's reveals name for ``job_id``."""
        return self._opening(job_id)[0]

    def _opening(self, job_id: bytes) -> tuple[bytes, bytes]:
        return blake2b256(b"artifact" + job_id + self.account), blake2b256(b"salt" + job_id + self.account)


class Chain:
    """A minimal block driver over a ``State`` for tests: ``chain.block(tx1, tx2)`` applies one block."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.height = state.height
        self.receipts: list[Any] = []
        self.events: list[Any] = []

    def block(self, *txs: SignedTx, seed: bytes | None = None) -> list[Any]:
        """Run begin_block, apply ``txs`` (all must be valid), end_block; returns this block's events. ``seed``
        stands for the parent block's hash (derived from the height unless given)."""
        self.height += 1
        c = ctx(self.height, seed=seed)
        _, events = begin_block(self.state, c)
        for stx in txs:
            _, receipt = apply_tx(self.state, stx, c)
            self.receipts.append(receipt)
            events += list(receipt.events)
        _, end_events = end_block(self.state, c)
        events += end_events
        self.events += events
        return events

    def blocks(self, n: int) -> None:
        for _ in range(n):
            self.block()

    def ctx(self) -> BlockContext:
        """The context of the block currently being built (height + 1)."""
        return ctx(self.height + 1)


def wallets(*names: str) -> list[Wallet]:
    return [Wallet(n) for n in names]




def assert_rejected(state: State, stx: SignedTx, c: BlockContext, error: type[Exception], **fields: Any) -> Any:
    """Apply ``stx`` expecting ``error`` (with these field values); check the state did not change at all."""
    import pytest

    from ledger.state import encode_state, state_root

    root, snapshot = state_root(state), encode_state(state)
    with pytest.raises(error) as exc:
        apply_tx(state, stx, c)
    for name, value in fields.items():
        assert getattr(exc.value, name) == value, (name, getattr(exc.value, name), value)
    assert state_root(state) == root
    assert encode_state(state) == snapshot
    wallet = _issued.get(stx.tx_id)
    if wallet is not None and wallet.next_nonce == stx.nonce + 1:
        wallet.next_nonce -= 1  # the rejected tx did not use its nonce
    return exc.value
