"""The consensus write-ahead log on disk: what it gives back after kill -9 and power loss, how it fails closed,
and the driver that refuses to sign without it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from bootstrap.consensus import ConsensusDriver, ConsensusWal, WalCorrupt
from bootstrap.consensus import wal as wal_mod
from ledger import consensus as c
from ledger.block import Proposal, Vote, VoteType
from ledger.chain import Chain
from tests.ledger.chainkit import genesis4, validator_keys

KEY = SigningKey(b"\x07" * 32)
CHAIN = "wal-chain"


def new_wal(path: Path) -> ConsensusWal:
    return ConsensusWal(path, encode_value=bytes, decode_value=bytes)


def sample(height: int = 5) -> list[c.WalEntry]:
    value = b"block at %d" % height
    p = Proposal.sign(KEY, CHAIN, height, 1, -1, b"\x01" * 32)
    v = Vote.sign(KEY, CHAIN, VoteType.PREVOTE, height, 1, b"\x01" * 32)
    nil = Vote.sign(KEY, CHAIN, VoteType.PRECOMMIT, height, 1, None)
    return [c.WalValue(height, value), c.WalProposal(p), c.WalVote(v), c.WalLock(height, 1, b"\x01" * 32, 1, b""),
            c.WalVote(nil)]


def test_entries_come_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    w = new_wal(path)
    assert w.open() == []
    for e in sample():
        w.append(e)
    w.sync()
    w.close()
    again = new_wal(path)
    assert again.open() == sample()
    assert again.height == 5
    p = sample()[1].proposal  # type: ignore[union-attr]
    assert again.signed(5, 1, 0) == p.signature
    assert again.signed(5, 1, int(VoteType.PREVOTE)) is not None and again.signed(5, 2, 1) is None


def test_a_torn_last_record_is_cut_off_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "consensus.wal"
    w = new_wal(path)
    w.open()
    entries = sample()
    for e in entries[:-1]:
        w.append(e)
    w.sync()
    good = path.stat().st_size
    w.append(entries[-1])  # power fails while this one is being written: half of it reaches the disk
    w.close()
    os.truncate(path, good + 11)
    with caplog.at_level(logging.WARNING):
        again = new_wal(path)
        assert again.open() == entries[:-1]
    assert "torn last record" in caplog.text
    assert path.stat().st_size == good
    again.append(entries[-1])  # appending goes on from the cut
    again.sync()
    again.close()
    assert new_wal(path).open() == entries


def test_a_damaged_record_before_the_last_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    w = new_wal(path)
    w.open()
    for e in sample():
        w.append(e)
    w.sync()
    w.close()
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorrupt) as exc:
        new_wal(path).open()
    assert exc.value.offset == 0 and str(path) in str(exc.value) and "will not sign" in str(exc.value)


def test_a_new_height_replaces_the_file_durably_and_it_does_not_grow(tmp_path: Path, monkeypatch) -> None:
    synced_dirs: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced_dirs.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(wal_mod.os, "fsync", fsync)
    path = tmp_path / "consensus.wal"
    w = new_wal(path)
    w.open()
    sizes = []
    for h in range(1, 30):
        for e in sample(h):
            w.append(e)
        w.sync()
        sizes.append(path.stat().st_size)
    assert max(sizes) - min(sizes) < 8  # one height at a time, whatever the chain's length
    assert synced_dirs.count(True) >= 29  # every rename is followed by an fsync of the directory
    w.close()
    assert new_wal(path).open() == sample(29)


def _driver(tmp_path: Path, wal_path: Path) -> ConsensusDriver:
    async def publish(_data: bytes) -> None:
        return None

    return ConsensusDriver(Chain(genesis4()), config=c.test_config(), publish=publish, on_commit=lambda _b: None,
                           signing_key=validator_keys()[0], wal_path=wal_path)


def test_a_driver_with_an_unreadable_wal_refuses_to_sign(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    path.write_bytes(b"\x00\x00\x00\x05garbage-that-is-not-a-record" * 3)
    d = _driver(tmp_path, path)
    assert d.signing_refused is not None and str(path) in d.signing_refused
    assert d.machine.me is None  # it follows the chain as an observer and signs nothing
    assert d.status()["signing_refused"] == d.signing_refused


def test_a_driver_whose_wal_is_ahead_of_its_chain_does_not_sign_below_it(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    k = validator_keys()[0]
    w = new_wal(path)
    w.open()
    w.append(c.WalVote(Vote.sign(k, genesis4().chain_id, VoteType.PREVOTE, 3, 0, None)))
    w.sync()
    w.close()
    d = _driver(tmp_path, path)
    assert d.machine.sign_from == 4 and d.machine.height == 1


async def test_a_failing_block_build_costs_the_round_not_the_driver(tmp_path: Path, monkeypatch) -> None:
    from ledger.block import BlockError

    d = _driver(tmp_path, tmp_path / "consensus.wal")

    def broken(*_a, **_k):
        raise BlockError("time overflow")

    monkeypatch.setattr(d.chain, "build", broken)
    async with trio.open_nursery() as nursery:
        d._nursery = nursery
        assert d._act(c.BuildProposal(1, 0)) is None
        nursery.cancel_scope.cancel()
    assert d.stats.build_failures == 1


def test_case2_through_the_file_a_restarted_machine_resends_and_never_conflicts(tmp_path: Path) -> None:
    """The case-2 restart, through the real file: what was sent before the crash is what is sent after it."""
    keys = [SigningKey(bytes([i + 31]) * 32) for i in range(4)]
    vals = [bytes(k.verify_key) for k in keys]
    path = tmp_path / "consensus.wal"

    def make(restore=()):
        return c.ConsensusMachine(chain_id=CHAIN, validators=vals, height=1, value_id=lambda v: v.ljust(32, b"."),
                                  validate=lambda h, v: True, signing_key=keys[0], config=c.test_config(),
                                  restore=restore)

    w = new_wal(path)
    w.open()
    sent: list[Vote] = []

    def run(m, event):
        for a in m.handle(event):
            if isinstance(a, c.Persist):
                w.append(a.entry)
            elif isinstance(a, c.BroadcastVote):
                w.sync()
                sent.append(a.vote)

    m = make()
    run(m, c.Start())
    run(m, c.TimeoutFired(1, 0, c.Step.NEW_HEIGHT))
    run(m, c.TimeoutFired(1, 0, c.Step.PROPOSE))
    w.close()
    w = new_wal(path)
    restarted = make(restore=w.open())
    run(restarted, c.Start())
    run(restarted, c.ProposalReceived(Proposal.sign(keys[1], CHAIN, 1, 0, -1, b"X".ljust(32, b".")), b"X"))
    for i in (1, 2, 3):
        run(restarted, c.VoteReceived(Vote.sign(keys[i], CHAIN, VoteType.PREVOTE, 1, 0, b"X".ljust(32, b"."))))
    prevotes = {v.signature for v in sent if v.vote_type is VoteType.PREVOTE and v.round == 0}
    assert len(prevotes) == 1  # the nil prevote, sent again; never a second one for X
