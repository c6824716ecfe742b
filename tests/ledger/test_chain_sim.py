"""Four validators running real blocks (mempool, execution, state roots) over the simulated network."""

from __future__ import annotations

import dataclasses
import random

import trio
import trio.testing

from ledger import consensus as c
from ledger.block import Block
from ledger.chain import Chain
from tests.ledger.chainkit import genesis4, users, validator_keys
from tests.ledger.sim import Byzantine, LinkFaults, SimNetwork, SimNode, run_sim


def invalid_block(h: int, r: int, block: Block) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, state_root=b"\x66" * 32))


def twin_block(h: int, r: int, block: Block) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1))


async def run_chain(byz_index, byz_mode, txs, sim_ms, seed=0, faults=None):
    g = genesis4(workers=["validator-0", "validator-1", "validator-2", "validator-3"])
    keys = validator_keys()
    net = SimNetwork(random.Random(seed), faults or LinkFaults(1, 30, 0.05, 0.05))
    acct = {bytes(k.verify_key): i for i, k in enumerate(keys)}
    nodes = []
    for i, k in enumerate(keys):
        chain = Chain(g)
        for t in txs:
            chain.mempool.add(t.encode())
        m = c.ConsensusMachine(
            chain_id=g.chain_id,
            validators=g.validators,
            height=1,
            value_id=chain.value_id,
            validate=chain.validate,
            signing_key=k,
            config=c.test_config(),
        )
        byz = Byzantine(byz_mode, invalid_block, twin_block) if i == byz_index else None
        nodes.append(SimNode(i, m, chain, net, acct, byzantine=byz, key=k))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        for n in nodes:
            await nursery.start(n.run)
        await trio.sleep(sim_ms / 1000)
        nursery.cancel_scope.cancel()
    return nodes


def check(nodes, honest):
    chains = [nodes[i].app for i in honest]
    top = min(ch.height for ch in chains)
    assert top >= 3
    for h in range(1, top + 1):
        hashes = {ch.get_blocks(h, h)[0][0].hash() for ch in chains}
        assert len(hashes) == 1, f"disagreement at height {h}"
    return chains


def backlog(n_per_user: int):
    ws = users(8)
    return [ws[i % 8].transfer(ws[(i + 1) % 8].account, 1) for i in range(8 * n_per_user)]


def run(*args, **kw):
    """Run the chain simulation deterministically: the scheduler is seeded with the network's seed."""
    return run_sim(lambda: run_chain(*args, **kw), seed=kw.get("seed", 0))


def test_honest_chain_commits_the_backlog_and_agrees_on_state():
    txs = backlog(25)
    nodes = run(None, None, txs, 8_000)
    chains = check(nodes, range(4))
    committed = sum(len(b.txs) for b, _ in chains[0].get_blocks(1, chains[0].height))
    assert committed == len(txs)
    assert len({ch.root for ch in chains if ch.height == chains[0].height}) == 1


def test_invalid_proposer_never_gets_a_block_in():
    nodes = run(1, "invalid", backlog(5), 10_000, seed=3)
    chains = check(nodes, [0, 2, 3])
    for b, _ in chains[0].get_blocks(1, chains[0].height):
        assert b.header.proposer != nodes[1].machine.me


def test_equivocator_is_slashed_through_evidence_in_a_block():
    nodes = run(2, "equivocate", backlog(5), 12_000, seed=4, faults=LinkFaults(1, 20))
    chains = check(nodes, [0, 1, 3])
    me = nodes[2].machine.me
    included = [e for b, _ in chains[0].get_blocks(1, chains[0].height) for e in b.evidence]
    assert included and all(e.offender == me for e in included)
    assert chains[0].state.workers[me].stake < 5_000
