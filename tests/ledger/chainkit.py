"""Shared helpers for chain tests: a 4-validator genesis, funded wallets, and a one-node commit loop."""

from __future__ import annotations

from nacl.signing import SigningKey

from ledger import consensus as c
from ledger.block import Block, Commit, CommitSig, Vote, VoteType
from ledger.chain import Chain
from tests.ledger.factories import Wallet, key, make_genesis

VALIDATOR_NAMES = ["validator-0", "validator-1", "validator-2", "validator-3"]
T0 = 1_700_000_000_000


def genesis4(**kw):
    balances = {f"user-{i}": 10_000_000 for i in range(8)}
    return make_genesis(balances=balances, validators=VALIDATOR_NAMES, **kw)


def validator_keys() -> list[SigningKey]:
    return [key(n) for n in VALIDATOR_NAMES]


def users(n: int = 8) -> list[Wallet]:
    return [Wallet(f"user-{i}") for i in range(n)]


def sign_commit(block: Block, keys: list[SigningKey], round_: int = 0, signers: int = 3) -> Commit:
    sigs = []
    for k in keys[:signers]:
        v = Vote.sign(k, block.header.chain_id, VoteType.PRECOMMIT, block.height, round_, block.hash())
        sigs.append(CommitSig(v.validator, v.signature))
    return Commit(block.height, round_, block.hash(), tuple(sigs))


def next_block(chain: Chain, txs=(), keys=None, evidence=(), round_: int = 0) -> tuple[Block, Commit]:
    """Add ``txs`` to the mempool, build the next block as its proposer and sign a commit for it."""
    for t in txs:
        chain.mempool.add(t.encode())
    proposer = c.proposer_for(chain.validators, chain.next_height, round_)
    now = (chain.last_header.time_ms if chain.last_header else T0) + 1000
    block = chain.build(chain.next_height, round_, proposer, now, evidence)
    return block, sign_commit(block, keys or validator_keys(), round_)
