"""The agent's trio shell without a real node: waiting for a compute pool that is still starting, and measuring
seconds per block for the planner."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from bootstrap.agent import LocalDevice, WorkerAgent
from bootstrap.home import AgentConfig
from compute.spec import MODELS

CPU = LocalDevice("cpu", "test-cpu", 16_384, 100, frozenset(MODELS))


def agent_on(pool_size: int) -> tuple[WorkerAgent, SimpleNamespace]:
    node = SimpleNamespace(pool=None, pool_ready=trio.Event(), config=SimpleNamespace(pool_size=pool_size),
                           faulty=None)
    return WorkerAgent(node, AgentConfig(), device=CPU, fetch_timeout_s=30.0), node


async def test_a_run_waits_for_a_pool_that_is_still_starting() -> None:
    agent, node = agent_on(pool_size=2)
    assert agent.planner.parallel_runs == 2  # one run per pool worker
    got: list[object] = []

    async def ask() -> None:
        got.append(await agent._pool())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still waiting: the pool has not started
        node.pool = "the pool"
        node.pool_ready.set()
    assert got == ["the pool"]


async def test_a_node_without_a_pool_is_told_so_at_once() -> None:
    agent, _ = agent_on(pool_size=0)
    with trio.fail_after(1):
        assert await agent._pool() is None


async def test_block_time_is_measured_from_the_heights_the_agent_sees(mock_clock: trio.testing.MockClock) -> None:
    agent, _ = agent_on(pool_size=1)
    assert agent.planner.block_time_s == 1.0  # the default before anything is measured
    agent._note_height(10)
    mock_clock.jump(10.0)
    agent._note_height(10)  # the same height again: no block, nothing learnt
    agent._note_height(15)  # 5 blocks in 10 s
    assert agent.planner.block_time_s == 0.8 * 1.0 + 0.2 * 2.0
    for h in range(16, 60):
        mock_clock.jump(0.25)
        agent._note_height(h)
    assert abs(agent.planner.block_time_s - 0.25) < 0.01


# ---- standing offers ------------------------------------------------------------------------------------------
def offering_node(pool_size: int, offer_until: int = 0) -> tuple[WorkerAgent, SimpleNamespace]:
    """A fake node whose key is the genesis worker w1 (offer standing through ``offer_until``); it records what
    the agent signs."""
    from tests.ledger.factories import account, make_state

    state = make_state(workers=["w1"])
    state.workers[account("w1")].offer_price, state.workers[account("w1")].offer_until = 20, offer_until
    posted: list[object] = []

    async def sign_and_submit(name: str, payload: object, **_: object) -> str:
        posted.append(payload)
        return "ab" * 32

    node = SimpleNamespace(pool=None, pool_ready=trio.Event(), config=SimpleNamespace(pool_size=pool_size),
                           faulty=None, state=state, account_of=lambda name: account("w1"),
                           sign_and_submit=sign_and_submit, posted=posted)
    return WorkerAgent(node, AgentConfig(offer_price=20, offer_blocks=20), device=CPU), node


async def test_a_coordinating_agent_with_a_pool_offers_and_stopping_withdraws() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1)
    await agent.scan(bidding=True)
    assert node.posted == [Offer(20, node.state.height + 20)]
    assert agent.status()["offering"] is True
    node.state.workers[agent.local_keys()[0].account].offer_until = node.state.height + 20  # it landed
    agent.stop()
    assert agent.can_offer() is False
    await agent.scan(bidding=False)
    assert node.posted[-1] == Offer(0, 0)


async def test_no_offer_without_a_compute_pool_or_after_the_pool_failed() -> None:
    agent, node = offering_node(pool_size=0)
    await agent.scan(bidding=True)
    assert node.posted == []
    agent, node = offering_node(pool_size=1)
    node.pool_failed = True
    await agent.scan(bidding=True)
    assert node.posted == []


async def test_shutdown_withdraws_a_live_offer_best_effort() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1, offer_until=50)
    await agent._withdraw_offers_on_exit()
    assert node.posted == [Offer(0, 0)]


async def test_withdraw_offers_posts_and_waits_for_the_commit() -> None:
    from ledger.tx import Offer

    agent, node = offering_node(pool_size=1, offer_until=50)
    waited: list[str] = []

    async def wait_for_tx(tx_id: str, timeout: float) -> dict[str, str]:
        waited.append(tx_id)
        return {"status": "committed"}

    node.wait_for_tx = wait_for_tx
    agent.stop()
    assert await agent.withdraw_offers() == ["ab" * 32] and waited == ["ab" * 32]
    assert node.posted == [Offer(0, 0)]
    await agent.scan(bidding=False)  # the withdrawal is in flight: the scan does not post another
    assert node.posted == [Offer(0, 0)]
