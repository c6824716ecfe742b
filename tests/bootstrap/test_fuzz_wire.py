"""Fuzzing the node's gossip and request decoders (``bootstrap.wire``): consensus messages, job-data
announcements and status answers. Random bytes and mutants of valid encodings raise ``WireError`` and nothing
else; whatever decodes re-encodes to exactly its input.

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.errors import WireError
from bootstrap.wire import (
    JobDataAnnouncement,
    ProposalMsg,
    Status,
    VoteMsg,
    decode_announcement,
    decode_consensus,
    encode_announcement,
    encode_consensus,
)
from ledger.encoding import pack
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


def _check_status(s: Status, data: bytes) -> None:
    assert Status.from_wire(s.to_wire()) == s
    assert s.height >= 0 and len(s.head_hash) == len(s.state_root) == 32


TARGETS = [
    Target("bootstrap.decode_consensus", decode_consensus, (WireError,), consensus_messages.map(encode_consensus),
           _check_consensus),
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
