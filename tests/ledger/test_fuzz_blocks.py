"""Fuzzing the ledger's other wire decoders: votes, commits, blocks (``ledger.block``) and block sync messages
(``ledger.sync``). Random bytes and mutants of valid encodings raise ``DecodeError`` and nothing else; whatever
decodes re-encodes to exactly its input (one block, one encoding, one hash).

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.block import Block, BlockHeader, Commit, CommitSig, Evidence, Proposal, Vote, VoteType
from ledger.encoding import pack
from ledger.errors import DecodeError
from ledger.sync import Blocks, GetBlocks, decode_sync_message
from tests.fuzzing import FUZZ, Target, target_tests

_u64 = st.integers(0, 2**64 - 1)
_small = st.integers(0, 2**20)
_h32 = st.binary(min_size=32, max_size=32)
_sig = st.binary(min_size=64, max_size=64)

votes = st.builds(Vote, st.sampled_from(list(VoteType)), _u64, _u64, st.none() | _h32, _h32, _sig)
proposals = st.builds(Proposal, _u64, _u64, st.integers(-1, 2**64 - 2), _h32, _h32, _sig)
commits = st.builds(
    Commit, _u64, _u64, _h32, st.lists(st.builds(CommitSig, _h32, _sig), max_size=5).map(tuple)
)
headers = st.builds(
    BlockHeader,
    chain_id=st.text(max_size=24),
    height=_u64,
    round=_small,
    prev_hash=_h32,
    time_ms=_u64,
    proposer=_h32,
    tx_root=_h32,
    state_root=_h32,
    validators_hash=_h32,
    last_commit_hash=_h32,
    evidence_hash=_h32,
)
blocks = st.builds(
    Block,
    headers,
    st.lists(st.binary(max_size=120), max_size=4).map(tuple),
    st.none() | commits,
    st.lists(st.builds(Evidence, votes, votes), max_size=2).map(tuple),
)
sync_messages = st.one_of(
    st.tuples(_u64, _u64).map(lambda ab: GetBlocks(min(ab), max(ab))),
    st.lists(st.tuples(blocks, commits), max_size=3).map(lambda pairs: Blocks(tuple(pairs))),
)


def _check_canonical(obj: Vote | Commit | Block | GetBlocks | Blocks, data: bytes) -> None:
    assert obj.encode() == data


TARGETS = [
    Target("ledger.Vote.decode", Vote.decode, (DecodeError,), votes.map(Vote.encode), _check_canonical),
    Target("ledger.Commit.decode", Commit.decode, (DecodeError,), commits.map(Commit.encode), _check_canonical),
    Target("ledger.Block.decode", Block.decode, (DecodeError,), blocks.map(Block.encode), _check_canonical),
    Target(
        "ledger.decode_sync_message",
        decode_sync_message,
        (DecodeError,),
        sync_messages.map(lambda m: m.encode()),
        _check_canonical,
    ),
]


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


@FUZZ
@given(proposals)
def test_proposals_round_trip_through_the_wire_form(p: Proposal) -> None:
    # Proposals travel inside consensus messages (bootstrap.gossip.wire); pol_round -1 is stored as 0.
    assert Proposal.from_wire(p.to_wire()) == p


@FUZZ
@given(blocks)
def test_a_decoded_block_has_the_same_hash(block: Block) -> None:
    assert Block.decode(block.encode()).hash() == block.hash()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (pack([3, 1, 1, b"", bytes(32), bytes(64)]), "vote.type"),
        (pack([1, 1, 1, bytes(31), bytes(32), bytes(64)]), "vote.block_hash"),
        (pack([1, 1, 1, b"", bytes(32), bytes(63)]), "vote.signature"),
        (pack([1, 1, 1, b"", bytes(32)]), "vote"),
    ],
)
def test_invalid_votes_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        Vote.decode(data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (pack([1, 5, 4]), "sync.get_blocks"),
        (pack([2, [[b"", b""]] * 17]), "sync.blocks"),
        (pack([9]), "sync.kind"),
        (pack([2, [[None, None]]]), "block"),
    ],
)
def test_invalid_sync_messages_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sync_message(data)
    assert info.value.field == field
