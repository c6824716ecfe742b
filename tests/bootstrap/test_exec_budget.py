"""The proposer's block-size cap by measured execution time (``bootstrap.consensus.budget``): the moving average
of per-tx cost, its floor and ceiling, and the driver proposing smaller blocks after a slow one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.consensus.budget import FLOOR_TXS, MIN_OBSERVED_TXS, ExecBudget
from ledger.block import MAX_BLOCK_TXS


def test_the_cap_follows_the_measured_cost_within_floor_and_ceiling() -> None:
    b = ExecBudget(0.5)
    assert b.max_txs == MAX_BLOCK_TXS  # nothing measured yet: the ledger's cap
    b.observe(MIN_OBSERVED_TXS - 1, 100.0)  # a small block's time is fixed costs: ignored
    assert b.cost_s is None and b.max_txs == MAX_BLOCK_TXS
    b.observe(1000, 0.1)  # 100 us a tx: 5,000 in half a second
    assert b.max_txs == 5000
    b.observe(1000, 1.0)  # one slow block (1 ms a tx) moves the average a third of the way, not all of it
    assert b.cost_s == pytest.approx(0.7 * 1e-4 + 0.3 * 1e-3)
    assert b.max_txs == int(0.5 / b.cost_s)
    for _ in range(30):  # a machine that stays slow: the cap sinks to the floor and no lower
        b.observe(1000, 100.0)
    assert b.max_txs == FLOOR_TXS
    for _ in range(60):  # and fast again: back up to the ledger's cap
        b.observe(1000, 1e-4)
    assert b.max_txs == MAX_BLOCK_TXS
    with pytest.raises(ValueError):
        ExecBudget(0)


async def test_a_slow_build_makes_the_next_proposal_smaller(tmp_path: Path) -> None:
    """The driver times each build (here with a clock that says the first build of 1,000 txs took 2 s) and its
    next proposal holds what fits in the budget; the block stays valid whatever its size."""
    import trio

    from bootstrap.consensus import ConsensusDriver
    from ledger import consensus as c
    from ledger.block import proposer_for
    from ledger.chain import Chain
    from tests.ledger.chainkit import genesis4, users, validator_keys

    async def publish(_data: bytes) -> None:
        return None

    ticks = iter([0.0, 2.0, 10.0, 10.1])
    chain = Chain(genesis4())
    proposer = proposer_for(chain.validators, chain.next_height, 0)
    key = next(k for k in validator_keys() if bytes(k.verify_key) == proposer)
    wallets = users(8)
    for i in range(1000):
        chain.mempool.add(wallets[i % 8].transfer(wallets[(i + 1) % 8].account, 1).encode())
    driver = ConsensusDriver(chain, config=c.test_config(), publish=publish, on_commit=lambda _b: None,
                             signing_key=key, wal_path=tmp_path / "consensus.wal", exec_budget_ms=600,
                             perf_clock=lambda: next(ticks))
    async with trio.open_nursery() as nursery:
        driver._nursery = nursery
        h = chain.next_height
        first = driver._build(c.BuildProposal(h, 0))
        assert isinstance(first, c.ValueReady) and len(first.value.txs) == 1000
        assert driver.budget.max_txs == 300  # 2 ms a tx, 600 ms of budget
        second = driver._build(c.BuildProposal(h, 0))
        assert isinstance(second, c.ValueReady) and len(second.value.txs) == 300
        assert chain.validate(h, second.value)
        assert driver.status()["block_tx_cap"] == driver.budget.max_txs
        nursery.cancel_scope.cancel()
