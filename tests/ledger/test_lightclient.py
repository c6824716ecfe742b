"""The light client's check of a state proof (ledger.lightclient) over a real chain: present and absent records
of every section verify; any changed byte of the bundle, a commit by non-validators, a proof anchored one block
off or a record for another key is rejected, naming the link that failed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import Chain
from ledger.encoding import pack
from ledger.errors import DecodeError
from ledger.lightclient import ProofRejected, StateProof, verify_state_proof
from ledger.state import prove_record, record_value, state_header
from tests.ledger.chainkit import genesis4, next_block, users

GENESIS = genesis4()


def _chain_with_txs() -> Chain:
    chain = Chain(GENESIS)
    u = users(3)
    for txs in ([u[0].transfer(u[1].account, 5)], [u[1].approve(u[2].account, 7)], []):
        chain.commit(*next_block(chain, txs))
    return chain


CHAIN = _chain_with_txs()


def cut(chain: Chain, section: str, raw: bytes) -> StateProof:
    """What a node does: cut the proof at the head, anchor it to the next block."""
    key = (raw[:32], raw[32:]) if section == "allowance" else raw
    record, tree_root, proof = prove_record(chain.state, section, key)
    packed = None if record is None else pack(record_value(section, key, record))
    header, height = state_header(chain.state), chain.height
    chain.commit(*next_block(chain))
    ((block, commit),) = chain.get_blocks(height + 1, height + 1)
    return StateProof(section, raw, packed, header, tree_root, proof, block.header, commit)


def check(sp: StateProof):
    return verify_state_proof(sp, chain_id=GENESIS.chain_id, validators=GENESIS.validators)


def test_present_and_absent_records_of_every_section_verify() -> None:
    u = users(3)
    worker = GENESIS.workers[0].account if GENESIS.workers else None
    got = check(cut(CHAIN, "account", u[1].account))
    assert got.record is not None and got.record.balance == CHAIN.state.balance(u[1].account)
    assert check(cut(CHAIN, "account", bytes(32))).record is None
    assert check(cut(CHAIN, "allowance", u[1].account + u[2].account)).record == 7
    assert check(cut(CHAIN, "allowance", u[2].account + u[1].account)).record is None
    assert check(cut(CHAIN, "job", bytes(range(32)))).record is None
    if worker is not None:
        assert check(cut(CHAIN, "worker", worker)).record is not None
    # encoding round-trips
    sp = cut(CHAIN, "account", u[0].account)
    assert StateProof.decode(sp.encode()) == sp


SP = cut(CHAIN, "account", users(1)[0].account)
BYTES = SP.encode()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(BYTES) - 1), st.integers(1, 255))
def test_any_changed_byte_is_rejected(at: int, flip: int) -> None:
    bad = bytearray(BYTES)
    bad[at] ^= flip
    try:
        sp = StateProof.decode(bytes(bad))
    except DecodeError:
        return  # not even a proof
    with pytest.raises(ProofRejected):
        check(sp)


def test_each_link_is_named_when_it_fails() -> None:
    other = users(2)[1].account
    with pytest.raises(ProofRejected, match=r"\(commit\)"):
        verify_state_proof(SP, chain_id=GENESIS.chain_id, validators=[bytes(32)] * 4)
    with pytest.raises(ProofRejected, match=r"\(state_root\)"):
        check(dataclasses.replace(SP, tree_root=bytes(32)))
    with pytest.raises(ProofRejected, match=r"\(tree\)"):
        check(dataclasses.replace(SP, key=other))  # the record is not at that key's place
    with pytest.raises(ProofRejected, match=r"\(tree\)"):
        check(dataclasses.replace(SP, record=None))  # a present record claimed absent
    later = cut(CHAIN, "account", SP.key)
    with pytest.raises(ProofRejected, match=r"\(state_root\)"):
        check(dataclasses.replace(SP, anchor=later.anchor, commit=later.commit))  # anchored a block off
