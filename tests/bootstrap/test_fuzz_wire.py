"""Fuzzing the node's gossip and request decoders (``bootstrap.gossip.wire``): consensus messages, tx batches, job-data
announcements and status answers. Random bytes and mutants of valid encodings raise ``WireError`` and nothing
else; whatever decodes re-encodes to exactly its input.

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.errors import WireError
from bootstrap.gossip import (
    MAX_TX_BATCH,
    MAX_TX_BATCH_BYTES,
    JobDataAnnouncement,
    ProposalMsg,
    Status,
    VoteMsg,
    decode_announcement,
    decode_consensus,
    decode_tx_batch,
    encode_announcement,
    encode_consensus,
    encode_tx_batch,
    split_tx_batches,
)
from ledger.encoding import pack
from ledger.tx import MAX_TX_BYTES
from p2pnet.errors import ProtocolError
from p2pnet.framing import Response, decode_message, encode_message
from tests.fuzzing import FUZZ, Target, target_tests
from tests.ledger.test_fuzz_blocks import blocks, proposals, votes

_u64 = st.integers(0, 2**64 - 1)
_h32 = st.binary(min_size=32, max_size=32)

consensus_messages = st.one_of(
    st.builds(ProposalMsg, proposals, blocks, _u64),
    st.builds(VoteMsg, votes, _u64),
)
announcements = st.builds(
    JobDataAnnouncement, st.binary(min_size=1, max_size=200), _h32, st.binary(min_size=1, max_size=64), _u64
)
statuses = st.builds(Status, _u64, _h32, _h32)
tx_batches = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=20)


def _status_from_frame(frame: bytes) -> Status:
    """What ``Node.sync_once`` does with a peer's answer on /dacn/status/1: the frame, then its payload."""
    msg = decode_message(frame)
    if not isinstance(msg, Response):
        raise ProtocolError("not a response")  # the host matches answers to requests before we see them
    return Status.from_wire(msg.payload)


def _check_consensus(msg: ProposalMsg | VoteMsg, data: bytes) -> None:
    assert encode_consensus(msg) == data


def _check_announcement(a: JobDataAnnouncement, data: bytes) -> None:
    assert encode_announcement(a) == data


def _check_tx_batch(raws: list[bytes], data: bytes) -> None:
    assert encode_tx_batch(raws) == data
    assert 0 < len(raws) <= MAX_TX_BATCH and all(type(r) is bytes and len(r) <= MAX_TX_BYTES for r in raws)


def _check_status(s: Status, data: bytes) -> None:
    assert Status.from_wire(s.to_wire()) == s
    assert s.height >= 0 and len(s.head_hash) == len(s.state_root) == 32


TARGETS = [
    Target("bootstrap.decode_consensus", decode_consensus, (WireError,), consensus_messages.map(encode_consensus),
           _check_consensus),
    Target("bootstrap.decode_tx_batch", decode_tx_batch, (WireError,), tx_batches.map(encode_tx_batch),
           _check_tx_batch),
    Target("bootstrap.decode_announcement", decode_announcement, (WireError,),
           announcements.map(encode_announcement), _check_announcement),
    Target(
        "bootstrap.Status.from_wire",
        _status_from_frame,
        (WireError, ProtocolError),
        statuses.map(lambda s: encode_message(Response(1, True, s.to_wire()))),
        _check_status,
    ),
]


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


@FUZZ
@given(consensus_messages)
def test_consensus_messages_round_trip(msg: ProposalMsg | VoteMsg) -> None:
    assert decode_consensus(encode_consensus(msg)) == msg


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\xc1", "consensus"),
        (pack([7, [], 0]), "consensus.kind"),
        (pack([2, [1, 1, 1, b"", bytes(32), bytes(64)]]), "consensus.vote"),
        (pack([1, [], [], 0]), "consensus"),
    ],
)
def test_invalid_consensus_messages_are_wire_errors(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        decode_consensus(data)
    assert info.value.field == field and info.value.reason


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (pack([1, b"", bytes(32), b"p", 1]), "jobdata.spec"),
        (pack([1, b"s", bytes(31), b"p", 1]), "jobdata.dataset_digest"),
        (pack([1, b"s", bytes(32), b"", 1]), "jobdata.provider"),
        (pack([2, b"s", bytes(32), b"p", 1]), "jobdata"),
    ],
)
def test_invalid_announcements_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        decode_announcement(data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\xc1", "txs"),  # not MessagePack
        (pack([]), "txs"),  # empty
        (pack(b"tx"), "txs"),  # not a list
        (pack([b"tx", 5]), "txs[1]"),
        (pack([b"tx", [b"nested"]]), "txs[1]"),
        (pack([bytes(MAX_TX_BYTES + 1)]), "txs"),  # one tx over its own bound
        (pack([b"t"] * (MAX_TX_BATCH + 1)), "txs"),  # too many txs
        (b"\x91\xc4\x02tx" + b"\x00", "txs"),  # trailing bytes
        (b"\x91\xc5\x00\x02tx", "txs"),  # bin16 where bin8 is the canonical spelling
    ],
)
def test_invalid_tx_batches_are_wire_errors(data: bytes, field: str) -> None:
    with pytest.raises(WireError) as info:
        decode_tx_batch(data)
    assert info.value.field == field and info.value.reason


def test_a_tx_batch_over_the_byte_bound_is_refused_whole() -> None:
    big = [bytes(MAX_TX_BYTES)] * (MAX_TX_BATCH_BYTES // MAX_TX_BYTES + 1)
    with pytest.raises(WireError):
        encode_tx_batch(big)
    with pytest.raises(WireError):
        decode_tx_batch(pack(big))
    with pytest.raises(WireError):
        encode_tx_batch([])


def test_split_tx_batches_keeps_every_tx_in_order_within_both_bounds() -> None:
    # pre: more txs than one batch may count, and (separately) more bytes than one batch may hold
    many = [i.to_bytes(4, "big") for i in range(2 * MAX_TX_BATCH + 5)]
    big = [bytes([i % 256]) * MAX_TX_BYTES for i in range(3 * (MAX_TX_BATCH_BYTES // MAX_TX_BYTES) + 1)]
    for raws, expect in ((many, 3), (big, 4)):
        # operation
        msgs = split_tx_batches(raws)
        # post: every message is a valid batch within the bounds, and together they carry raws, in order
        assert len(msgs) == expect
        assert all(len(m) <= MAX_TX_BATCH_BYTES for m in msgs)
        assert [raw for m in msgs for raw in decode_tx_batch(m)] == raws
    assert split_tx_batches([]) == []
    with pytest.raises(WireError):
        split_tx_batches([bytes(MAX_TX_BYTES + 1)])
