"""Gossip at scale, by simulation: 100 hosts on the in-memory network under a mock clock (``bench.scale_sim``)."""

import pytest

from bench.scale_sim import GossipResult, percentile, run_gossip


@pytest.fixture(scope="module")
def hundred() -> GossipResult:
    return run_gossip(100, 20, size=300, seed=3)


def test_every_node_gets_every_message(hundred: GossipResult) -> None:
    assert hundred.expected == 20 * 99
    assert hundred.missing == {}
    assert hundred.delivered == hundred.expected


def test_duplicates_and_copies_are_bounded_by_the_mesh(hundred: GossipResult) -> None:
    # A node receives a copy from each mesh peer at most (plus one from a flooding publisher), never a storm.
    assert hundred.worst_duplicates <= hundred.messages * (hundred.d_hi + 1)
    # Each node forwards a message to its mesh only: ~D copies, not its whole peer list.
    assert 1.0 <= hundred.copies_per_node_msg <= hundred.d_hi
    assert hundred.duplicates_per_node_msg < hundred.copies_per_node_msg


def test_cost_and_latency_are_measured(hundred: GossipResult) -> None:
    # Bytes per node per message: at least one 300-byte copy received, at most D_hi + 1 copies plus control.
    assert 300 <= hundred.bytes_per_node_msg <= (hundred.d_hi + 1) * 400
    assert hundred.background_bytes_per_node_s > 0  # keepalives and heartbeats are counted, and subtracted
    # 10..20 ms links: a typical node has a message within a few hops. The last one may wait for IHAVE/IWANT
    # repair while discovery reshuffles connections (heartbeat 0.5 s), but never for more than a few heartbeats.
    assert 0.02 <= hundred.hop_p50 < 0.25
    assert hundred.hop_p50 <= hundred.full_p50 <= hundred.full_p99 < 2.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN
