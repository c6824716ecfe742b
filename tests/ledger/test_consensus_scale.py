"""Consensus at scale, by simulation: 10 validators, each the node's consensus driver and an in-memory chain,
gossiping over ``p2pnet.testing.MemoryNetwork`` under a mock clock (``bench.scale_sim``)."""

import pytest

from bench.scale_sim import ConsensusResult, run_consensus


@pytest.fixture(scope="module")
def ten() -> ConsensusResult:
    return run_consensus(10, blocks=5, seed=2)


def test_every_validator_commits_the_same_blocks(ten: ConsensusResult) -> None:
    assert len(ten.committed) == 10
    assert all(len(c) >= 5 for c in ten.committed)
    assert ten.agree
    first = ten.committed[0][:5]
    assert len(set(first)) == 5  # five different blocks, not one counted five times
    assert all(c[:5] == first for c in ten.committed)


def test_a_fault_free_network_decides_in_round_zero(ten: ConsensusResult) -> None:
    assert ten.rounds_over_zero == 0
    # Commit timeout (150 ms) plus three gossip phases over 10..20 ms links: well under the propose timeout.
    assert 0.15 < ten.seconds_per_block < 0.6


def test_traffic_per_block_is_counted(ten: ConsensusResult) -> None:
    # Every validator signs a prevote and a precommit per block, and each crosses at least V - 1 links.
    assert ten.frames_per_block >= 2 * 10 * 9
    assert ten.bytes_per_block > 100 * ten.frames_per_block  # a vote frame is ~200 bytes
    assert ten.cpu_per_block > 0
