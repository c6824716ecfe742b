"""Worker registration, stake, unbonding and its release after the unbonding period."""

import pytest

from ledger.errors import (
    AlreadyRegistered,
    InsufficientStake,
    InvalidField,
    StakeLocked,
    StakeTooLow,
    UnknownWorker,
)
from ledger.rules import apply_tx, begin_block
from ledger.state import total_supply
from tests.ledger.factories import Chain, Wallet, account, assert_rejected, ctx, make_state


@pytest.fixture
def state():
    return make_state(balances={"carol": 20_000}, workers=["w1", "w2"],
                      params={"unbonding_period": 5, "evidence_max_age": 4})


def test_register_worker_bonds_stake(state) -> None:
    carol = Wallet("carol")
    supply = total_supply(state)
    _, receipt = apply_tx(state, carol.register_worker(3_000, "gpu", memory_mb=8_000), ctx(4))
    w = state.workers[account("carol")]
    assert (w.stake, w.device_kind, w.memory_mb, w.reputation, w.registered_at) == (3_000, "gpu", 8_000, 500, 4)
    assert state.balance(account("carol")) == 20_000 - 3_000 - 1
    assert total_supply(state) == supply
    assert receipt.events[0].kind == "worker_registered"


def test_register_worker_invalid_cases(state) -> None:
    carol = Wallet("carol")
    assert_rejected(state, carol.register_worker(999, nonce=0), ctx(1), StakeTooLow, min_stake=1_000, got=999)
    assert_rejected(state, carol.register_worker(5_000, "tpu", nonce=0), ctx(1), InvalidField,
                    field="register_worker.device_kind")
    assert_rejected(state, Wallet("w1").register_worker(), ctx(1), AlreadyRegistered, account=account("w1"))


def test_add_stake(state) -> None:
    apply_tx(state, Wallet("w1").add_stake(500), ctx(1))
    assert state.workers[account("w1")].stake == 5_500
    assert state.balance(account("w1")) == 100_000 - 501
    assert_rejected(state, Wallet("carol").add_stake(10), ctx(1), UnknownWorker)
    assert_rejected(state, Wallet("w2").add_stake(0), ctx(1), InvalidField, field="add_stake.amount")


def test_unbond_releases_after_the_period(state) -> None:
    chain = Chain(state)
    w1 = Wallet("w1")
    supply = total_supply(state)
    chain.block(w1.unbond(2_000))  # height 1, released at 6
    w = state.workers[account("w1")]
    assert w.stake == 3_000 and w.unbonding == [[6, 2_000]]
    chain.blocks(4)  # heights 2..5
    assert state.balance(account("w1")) == 100_000 - 1
    events = chain.block()  # height 6
    assert [e.kind for e in events] == ["unbond_released"]
    assert state.balance(account("w1")) == 100_000 - 1 + 2_000
    assert state.workers[account("w1")].unbonding == []
    assert total_supply(state) == supply


def test_unbond_invalid_cases(state) -> None:
    assert_rejected(state, Wallet("w1").unbond(5_001), ctx(1), InsufficientStake, needed=5_001, available=5_000)
    assert_rejected(state, Wallet("carol").unbond(1), ctx(1), UnknownWorker)
    assert_rejected(state, Wallet("w2").unbond(0), ctx(1), InvalidField)


def test_unbond_below_min_stake_is_locked_while_holding_a_job(state) -> None:
    state.w_worker(account("w1")).active_jobs = 1
    w1 = Wallet("w1")
    assert_rejected(state, w1.unbond(4_500, nonce=0), ctx(1), StakeLocked, active_jobs=1, min_stake=1_000)
    apply_tx(state, w1.unbond(4_000), ctx(1))  # leaves exactly min_stake
    assert state.workers[account("w1")].stake == 1_000


def test_release_of_several_entries_in_one_block(state) -> None:
    w1 = Wallet("w1")
    apply_tx(state, w1.unbond(100), ctx(1))
    apply_tx(state, w1.unbond(200), ctx(1))
    apply_tx(state, w1.unbond(300), ctx(2))
    begin_block(state, ctx(6))
    assert state.workers[account("w1")].unbonding == [[7, 300]]
    assert state.balance(account("w1")) == 100_000 - 3 + 300
