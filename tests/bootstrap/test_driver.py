"""The consensus driver's parts that stand alone: the wire formats it speaks and how it sends relays and its own
signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bootstrap.errors import WireError
from bootstrap.gossip import (
    JobDataAnnouncement,
    ProposalMsg,
    RoundStateMsg,
    Status,
    VoteMsg,
    decode_announcement,
    decode_consensus,
    encode_announcement,
    encode_consensus,
)
from ledger.block import Proposal, RoundState, RoundVotes, Vote, VoteType, make_block
from ledger.encoding import pack

KEY = SigningKey(bytes(32))
ME = bytes(KEY.verify_key)


def _block() -> object:
    return make_block(chain_id="c", height=1, round_=0, prev_hash=bytes(32), time_ms=1, proposer=ME,
                      state_root=bytes(32), validators=[ME], txs=[], last_commit=None)


def test_consensus_messages_round_trip() -> None:
    block = _block()
    p = Proposal.sign(KEY, "c", 1, 0, -1, block.hash())  # type: ignore[attr-defined]
    msg = decode_consensus(encode_consensus(ProposalMsg(p, block, 3)))  # type: ignore[arg-type]
    assert isinstance(msg, ProposalMsg) and msg.proposal == p and msg.block.hash() == block.hash()  # type: ignore[attr-defined]
    assert msg.seq == 3
    v = Vote.sign(KEY, "c", VoteType.PREVOTE, 1, 0, block.hash())  # type: ignore[attr-defined]
    got = decode_consensus(encode_consensus(VoteMsg(v)))
    assert isinstance(got, VoteMsg) and got.vote == v and got.vote.verify("c")
    # the same vote rebroadcast with another seq is different bytes (so gossip's seen-cache lets it through)
    assert encode_consensus(VoteMsg(v, 0)) != encode_consensus(VoteMsg(v, 1))
    rs = RoundState.sign(KEY, "c", 4, 2, 3, [RoundVotes(1, True, 0b101, 0b1), RoundVotes(2, False, 0b11, 0)])
    back = decode_consensus(encode_consensus(RoundStateMsg(rs, 7)))
    assert isinstance(back, RoundStateMsg) and back.state == rs and back.state.verify("c") and back.seq == 7
    forged = RoundState(rs.validator, rs.height, rs.round + 1, rs.step, rs.rounds, rs.signature)
    assert not forged.verify("c")
    wide = RoundState.sign(KEY, "c", 4, 2, 3, [RoundVotes(0, False, (1 << 1000) | 1, 1 << 70)])  # >64 validators
    assert decode_consensus(encode_consensus(RoundStateMsg(wide))).state == wide  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", pack([9, 1]), pack([2, [1, 2], 0]), pack([1, [], [], 0]), pack([2]), pack("x") * 3,
     pack([3, [bytes(32), 1, 0, 9, [], bytes(64)], 0]),
     pack([3, [bytes(32), 1, 0, 1, [[0, 2, b"", b""]], bytes(64)], 0]),
     pack([3, [bytes(32), 1, 0, 1, [[0, 0, b"\x01" * 200, b""]], bytes(64)], 0]),
     pack([3, [bytes(32), 1, 0, 1, [[0, 0, b"\x01\x00", b""]], bytes(64)], 0])],
)
def test_undecodable_consensus_bytes_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_consensus(data)


def test_announcements_round_trip_and_refuse_bad_fields() -> None:
    a = JobDataAnnouncement(b"spec", b"\x01" * 32, b"\x00\x24" + b"\x02" * 36, 1234)
    assert decode_announcement(encode_announcement(a)) == a
    for bad in (
        pack([1, b"", b"\x01" * 32, b"p", 1]),
        pack([1, b"s", b"\x01" * 31, b"p", 1]),
        pack([1, b"s", b"\x01" * 32, b"", 1]),
        pack([2, b"s", b"\x01" * 32, b"p", 1]),
        b"junk",
    ):
        with pytest.raises(WireError):
            decode_announcement(bad)
    assert Status.from_wire(Status(5, bytes(32), bytes(32)).to_wire()).height == 5
    with pytest.raises(WireError):
        Status.from_wire([5, b"short", bytes(32)])


async def test_relayed_votes_are_sent_but_never_enter_the_double_sign_guard(tmp_path: Path) -> None:
    """A relayed prevote (someone else's signature) goes out as is; our own later vote is not withheld."""
    import trio

    from bootstrap.consensus import ConsensusDriver
    from ledger import consensus as c
    from ledger.chain import Chain
    from tests.ledger.chainkit import genesis4, validator_keys

    async def publish(_data: bytes) -> None:
        return None

    keys = validator_keys()
    driver = ConsensusDriver(Chain(genesis4()), config=c.test_config(), publish=publish, on_commit=lambda _b: None,
                             signing_key=keys[0], wal_path=tmp_path / "consensus.wal")
    async with trio.open_nursery() as nursery:
        driver._nursery = nursery
        theirs = Vote.sign(keys[1], driver.chain.chain_id, VoteType.PREVOTE, 1, 0, b"\x02" * 32)
        assert driver._act(c.RelayVote(theirs)) is None
        sent = decode_consensus(driver._out_recv.receive_nowait()[0])
        assert isinstance(sent, VoteMsg) and sent.vote == theirs
        assert driver.stats.votes_relayed == 1
        mine = Vote.sign(keys[0], driver.chain.chain_id, VoteType.PREVOTE, 1, 0, None)
        driver._act(c.Persist(c.WalVote(mine)))
        driver._act(c.BroadcastVote(mine))
        assert decode_consensus(driver._out_recv.receive_nowait()[0]).vote == mine
        assert driver.stats.withheld_votes == 0
        nursery.cancel_scope.cancel()
