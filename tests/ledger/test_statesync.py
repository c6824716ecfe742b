"""State sync's checks (ledger.statesync) over a real stored chain: a snapshot anchored by two verified commits
restores to the committed root and a store started from it goes on exactly like the original; a changed chunk,
an offer whose hashes describe other bytes, foreign signers, a broken parent link or an offer of the wrong height
is rejected, naming the link; malformed offers never decode."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import DecodeError
from ledger.state import MAX_STATE_BYTES, encode_state, state_root_uncached
from ledger.statesync import (
    CHUNK_BYTES,
    SnapshotOffer,
    SnapshotRejected,
    check_chunk,
    offer_for,
    restore,
    verify_anchor,
)
from ledger.store import StoreError, open_chain
from tests.ledger.chainkit import genesis4, next_block, users

GENESIS = genesis4()


@pytest.fixture
def stored(tmp_path):
    """A chain of 9 blocks with transfers in a store that snapshots every 4 (snapshots at 4 and 8)."""
    chain = open_chain(tmp_path / "src.db", GENESIS, snapshot_every=4)
    u = users(3)
    for i in range(9):
        chain.commit(*next_block(chain, [u[i % 3].transfer(u[(i + 1) % 3].account, 5 + i)]))
    return chain


def anchored(chain, height):
    data = chain.store.latest_snapshot_bytes(height)[1]
    offer, chunks = offer_for(height, data)
    (block, commit), (nxt, nxt_commit) = chain.get_blocks(height, height + 1)
    return offer, chunks, block, commit, nxt, nxt_commit


def anchor_root(offer, block, commit, nxt, nxt_commit, validators=GENESIS.validators):
    return verify_anchor(offer, block, commit, nxt.header, nxt_commit, chain_id=GENESIS.chain_id,
                         validators=validators)


def test_a_verified_snapshot_starts_a_store_that_goes_on_like_the_original(stored, tmp_path) -> None:
    offer, chunks, block, commit, nxt, nxt_commit = anchored(stored, 8)
    assert SnapshotOffer.decode(offer.encode()) == offer
    root = anchor_root(offer, block, commit, nxt, nxt_commit)
    state = restore(offer, chunks, root)
    assert state.height == 8
    joiner = open_chain(tmp_path / "joiner.db", GENESIS, snapshot_every=4)
    joiner.store.install_snapshot(block, commit, root, b"".join(chunks))
    joiner.store.close()
    joiner = open_chain(tmp_path / "joiner.db", GENESIS, snapshot_every=4)
    assert (joiner.height, joiner.root) == (8, root)
    assert joiner.store.first_height == 8 and joiner.get_blocks(1, 7) == []
    for b, c in stored.get_blocks(9, stored.height):  # block sync goes on from there
        joiner.commit_block(b, c)
    assert (joiner.height, joiner.root) == (stored.height, stored.root)
    u = users(2)
    u[0].next_nonce = stored.state.nonce(u[0].account)
    block, commit = next_block(stored, [u[0].transfer(u[1].account, 1)])
    stored.commit_block(block, commit)
    joiner.commit_block(block, commit)
    assert joiner.root == stored.root
    with pytest.raises(StoreError, match="empty store"):
        joiner.store.install_snapshot(block, commit, root, b"".join(chunks))


def test_a_changed_chunk_or_a_lying_offer_is_rejected(stored) -> None:
    offer, chunks, block, commit, nxt, nxt_commit = anchored(stored, 8)
    root = anchor_root(offer, block, commit, nxt, nxt_commit)
    bad = bytearray(chunks[0])
    bad[len(bad) // 2] ^= 1
    with pytest.raises(SnapshotRejected) as e:
        check_chunk(offer, 0, bytes(bad))
    assert e.value.check == "chunk"
    with pytest.raises(SnapshotRejected, match="chunk"):
        check_chunk(offer, 0, chunks[0] + b"x")
    with pytest.raises(SnapshotRejected, match="outside"):
        check_chunk(offer, len(chunks), chunks[0])
    # an offer whose hashes describe other bytes: every chunk matches it, and the root catches it
    other = stored.store.latest_snapshot_bytes(4)[1]
    lying, lying_chunks = offer_for(8, other)
    with pytest.raises(SnapshotRejected) as e:
        restore(lying, lying_chunks, root)
    assert e.value.check == "height"
    tampered = bytearray(b"".join(chunks))
    tampered[-5] ^= 0x40
    forged, forged_chunks = offer_for(8, bytes(tampered))
    with pytest.raises(SnapshotRejected) as e:
        restore(forged, forged_chunks, root)
    assert e.value.check in ("decode", "state_root")


def test_the_anchor_must_be_two_consecutive_blocks_of_the_validators(stored) -> None:
    offer, _, block, commit, nxt, nxt_commit = anchored(stored, 8)
    other_validators = [bytes([9]) * 32] * 4
    with pytest.raises(SnapshotRejected, match="anchor"):
        anchor_root(offer, block, commit, nxt, nxt_commit, validators=other_validators)
    (b7, c7), = stored.get_blocks(7, 7)
    with pytest.raises(SnapshotRejected, match="anchor"):  # block 7 is not block 8
        anchor_root(offer, b7, c7, nxt, nxt_commit)
    with pytest.raises(SnapshotRejected, match="anchor"):  # a commit for another block
        anchor_root(offer, block, c7, nxt, nxt_commit)
    with pytest.raises(SnapshotRejected, match="anchor"):
        anchor_root(dataclasses.replace(offer, height=7), block, commit, nxt, nxt_commit)
    (b9, _), = stored.get_blocks(9, 9)
    with pytest.raises(SnapshotRejected, match="anchor"):  # a later block's commit does not vouch for 9
        anchor_root(offer, block, commit, b9, c7)


def test_offers_with_wrong_counts_or_hashes_do_not_decode() -> None:
    good = SnapshotOffer(5, CHUNK_BYTES + 1, (bytes(32), bytes(32)))
    assert SnapshotOffer.decode(good.encode()) == good
    for bad in (SnapshotOffer(5, CHUNK_BYTES + 1, (bytes(32),)), SnapshotOffer(0, 10, (bytes(32),)),
                SnapshotOffer(5, 10, (bytes(31),)), SnapshotOffer(5, 0, ()),
                SnapshotOffer(5, MAX_STATE_BYTES + 1, (bytes(32),) * (MAX_STATE_BYTES // CHUNK_BYTES + 1))):
        with pytest.raises(DecodeError):
            SnapshotOffer.decode(bad.encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_decode_as_anything_but_an_offer_or_decode_error(data: bytes) -> None:
    try:
        offer = SnapshotOffer.decode(data)
    except DecodeError:
        return
    assert len(offer.chunk_hashes) == -(-offer.size // CHUNK_BYTES)


@functools.cache
def _anchored_snapshot() -> tuple[SnapshotOffer, list[bytes], bytes]:
    """The stored chain's snapshot at 8 with its offer and the root its anchor fixes (built once for the module)."""
    chain = open_chain(Path(tempfile.mkdtemp()) / "src.db", GENESIS, snapshot_every=4)
    u = users(3)
    for i in range(9):
        chain.commit(*next_block(chain, [u[i % 3].transfer(u[(i + 1) % 3].account, 5 + i)]))
    offer, chunks, block, commit, nxt, nxt_commit = anchored(chain, 8)
    return offer, chunks, anchor_root(offer, block, commit, nxt, nxt_commit)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_restore_takes_the_snapshot_and_nothing_else(data: st.DataObject) -> None:
    """pre: a verified snapshot, then one byte of it flipped, put in or taken out; operation: restore under the
    honest offer and under an offer made for the altered bytes; post: the honest bytes restore to the committed
    root, the altered ones never do (their chunk fails its hash, or the decode, height or root check refuses)."""
    offer, chunks, root = _anchored_snapshot()
    state = restore(offer, chunks, root)
    assert state_root_uncached(state) == root and encode_state(state) == b"".join(chunks)
    altered = bytearray(b"".join(chunks))
    at = data.draw(st.integers(0, len(altered) - 1), label="at")
    how = data.draw(st.sampled_from(["xor", "insert", "cut"]), label="how")
    if how == "xor":
        altered[at] ^= data.draw(st.integers(1, 255), label="x")
    elif how == "insert":
        altered.insert(at, data.draw(st.integers(0, 255), label="byte"))
    else:
        del altered[at]
    forged, forged_chunks = offer_for(offer.height, bytes(altered))
    with pytest.raises(SnapshotRejected) as e:
        restore(offer, forged_chunks, root)
    assert e.value.check == "chunk"
    with pytest.raises(SnapshotRejected) as e:
        restore(forged, forged_chunks, root)
    assert e.value.check in ("decode", "height", "state_root")
