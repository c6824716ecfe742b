"""Block sync: a node behind fetches blocks with commits, verifies them, and refuses forgeries."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.block import BadCommit, DecodeError
from ledger.chain import Chain
from ledger.sync import Blocks, BlockSyncer, GetBlocks, decode_sync_message, serve
from tests.ledger.chainkit import genesis4, next_block, sign_commit, users, validator_keys


def ahead_chain(n: int) -> Chain:
    chain = Chain(genesis4())
    a, b = users(2)
    for _ in range(n):
        block, commit = next_block(chain, [a.transfer(b.account, 1)])
        chain.commit_block(block, commit)
    return chain


def test_behind_node_catches_up_to_the_same_root():
    leader = ahead_chain(20)
    follower = Chain(genesis4())
    syncer = BlockSyncer(follower)
    req = syncer.note_peer_height(leader.next_height)
    while req is not None:
        wire = decode_sync_message(req.encode())
        assert wire == req
        resp = decode_sync_message(serve(leader, wire).encode())
        result = syncer.on_blocks(resp)
        assert result.error is None and result.applied
        req = syncer.next_request()
    assert follower.height == 20 and follower.root == leader.root


def test_forged_commit_is_refused_before_applying():
    leader = ahead_chain(2)
    follower = Chain(genesis4())
    (b1, c1), (b2, c2) = leader.get_blocks(1, 2)
    weak = sign_commit(b1, validator_keys(), signers=2)
    res = BlockSyncer(follower).on_blocks(Blocks(((b1, weak),)))
    assert isinstance(res.error, BadCommit) and follower.height == 0
    bad_sig = dataclasses.replace(
        c1, signatures=(c1.signatures[0], c1.signatures[1], dataclasses.replace(c1.signatures[2], signature=bytes(64)))
    )
    res = BlockSyncer(follower).on_blocks(Blocks(((b1, bad_sig),)))
    assert isinstance(res.error, BadCommit) and follower.height == 0
    res = BlockSyncer(follower).on_blocks(Blocks(((b1, c2),)))  # a commit for another block
    assert isinstance(res.error, BadCommit)
    res = BlockSyncer(follower).on_blocks(Blocks(((b1, c1), (b2, c2))))
    assert res.applied == [1, 2] and follower.root == leader.root


def test_sync_messages_reject_garbage():
    with pytest.raises(DecodeError):
        decode_sync_message(b"\x93\x01\x05\x02")  # to below from
    with pytest.raises(DecodeError):
        decode_sync_message(b"\x91\x09")
    assert decode_sync_message(GetBlocks(3, 9).encode()) == GetBlocks(3, 9)
    assert serve(Chain(genesis4()), GetBlocks(1, 5)) == Blocks(())
