"""Common tx steps (signature, nonce, fee), token transfers and allowances, check_tx, block hooks, evidence."""

import pytest

from ledger.errors import (
    BadNonce,
    BadSignature,
    FeeTooLow,
    InsufficientAllowance,
    InsufficientFunds,
    InvalidField,
)
from ledger.rules import apply_tx, begin_block, check_tx, process_evidence
from ledger.state import total_supply
from ledger.tx import Transfer, make_tx
from tests.ledger.factories import PROPOSER, Wallet, account, assert_rejected, ctx, key, make_state


@pytest.fixture
def state():
    return make_state(balances={"alice": 1_000, "bob": 100}, workers=["w1"])


def test_transfer_moves_amount_bumps_nonce_and_pays_fee_to_proposer(state) -> None:
    alice = Wallet("alice")
    supply = total_supply(state)
    _, receipt = apply_tx(state, alice.transfer(account("carol"), 300, fee=2), ctx(1))
    assert state.balance(account("alice")) == 698
    assert state.balance(account("carol")) == 300
    assert state.balance(PROPOSER) == 2
    assert state.nonce(account("alice")) == 1
    assert total_supply(state) == supply
    assert receipt.kind == "transfer" and receipt.fee == 2 and receipt.nonce == 0
    assert receipt.events[0].fields == {"from": account("alice"), "to": account("carol"), "amount": 300}


def test_transfer_to_self_only_costs_the_fee(state) -> None:
    apply_tx(state, Wallet("alice").transfer(account("alice"), 500), ctx(1))
    assert state.balance(account("alice")) == 999


def test_common_checks_reject_and_leave_state_unchanged(state) -> None:
    alice = Wallet("alice")
    assert_rejected(state, alice.transfer(account("bob"), 1, nonce=1), ctx(1), BadNonce, expected=0, got=1)
    assert_rejected(state, alice.transfer(account("bob"), 1, fee=0, nonce=0), ctx(1), FeeTooLow, min_fee=1)
    assert_rejected(state, alice.transfer(account("bob"), 1000, nonce=0), ctx(1), InsufficientFunds,
                    account=account("alice"), needed=1001, available=1000)
    assert_rejected(state, Wallet("nobody").transfer(account("bob"), 0), ctx(1), InsufficientFunds, available=0)
    stx = alice.transfer(account("bob"), 1, nonce=0)
    forged = make_tx(Transfer(account("bob"), 1), key("alice"), "other-chain", nonce=0, fee=1)
    assert_rejected(state, forged, ctx(1), BadSignature)
    apply_tx(state, stx, ctx(1))
    assert_rejected(state, stx, ctx(1), BadNonce, expected=1, got=0)  # replay


def test_verified_flag_skips_the_signature_check(state) -> None:
    forged = make_tx(Transfer(account("bob"), 1), key("alice"), "other-chain", nonce=0, fee=1)
    apply_tx(state, forged, ctx(1), verified=True)
    assert state.balance(account("bob")) == 101


def test_bad_proposer_is_rejected_atomically(state) -> None:
    c = ctx(1, proposer=b"short")
    assert_rejected(state, Wallet("alice").transfer(account("bob"), 1), c, InvalidField, field="ctx.proposer")


def test_approve_and_transfer_from(state) -> None:
    alice, bob = Wallet("alice"), Wallet("bob")
    apply_tx(state, alice.approve(account("bob"), 400), ctx(1))
    assert state.allowance(account("alice"), account("bob")) == 400
    apply_tx(state, bob.transfer_from(account("alice"), account("carol"), 150), ctx(1))
    assert state.allowance(account("alice"), account("bob")) == 250
    assert state.balance(account("alice")) == 849
    assert state.balance(account("carol")) == 150
    assert state.balance(account("bob")) == 99
    assert_rejected(state, bob.transfer_from(account("alice"), account("carol"), 251, nonce=1), ctx(1),
                    InsufficientAllowance, owner=account("alice"), spender=account("bob"), needed=251,
                    available=250)
    assert_rejected(state, Wallet("w1").transfer_from(account("alice"), account("w1"), 1), ctx(1),
                    InsufficientAllowance, available=0)
    apply_tx(state, alice.approve(account("bob"), 0), ctx(2))
    assert (account("alice"), account("bob")) not in state.allowances


def test_transfer_from_needs_the_owner_to_hold_the_tokens(state) -> None:
    apply_tx(state, Wallet("alice").approve(account("bob"), 5_000), ctx(1))
    assert_rejected(state, Wallet("bob").transfer_from(account("alice"), account("bob"), 2_000), ctx(1),
                    InsufficientFunds, account=account("alice"), needed=2_000, available=999)


def test_check_tx_admits_future_nonces_but_not_past_ones(state) -> None:
    alice = Wallet("alice")
    check_tx(state, alice.transfer(account("bob"), 1, nonce=5))
    apply_tx(state, alice.transfer(account("bob"), 1), ctx(1))
    with pytest.raises(BadNonce):
        check_tx(state, alice.transfer(account("bob"), 1, nonce=0))
    with pytest.raises(FeeTooLow):
        check_tx(state, alice.transfer(account("bob"), 1, fee=0))
    with pytest.raises(InsufficientFunds) as exc:
        check_tx(state, alice.submit_job(reward=900, verification_fee=100))
    assert exc.value.needed == 1001


def test_begin_block_requires_increasing_heights(state) -> None:
    begin_block(state, ctx(1))
    assert state.height == 1
    with pytest.raises(InvalidField):
        begin_block(state, ctx(1))


def test_evidence_slashes_worker_stake_and_ignores_non_workers(state) -> None:
    supply = total_supply(state)
    _, events = process_evidence(state, account("w1"), ctx(1))
    assert state.workers[account("w1")].stake == 2_500  # 500 per mille of 5,000
    assert state.slashed_pool == 2_500
    assert events[0].fields["amount"] == 2_500 and events[0].fields["reason"] == "equivocation"
    assert total_supply(state) == supply
    _, events = process_evidence(state, account("alice"), ctx(1))
    assert events == [] and state.slashed_pool == 2_500
