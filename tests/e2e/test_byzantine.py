"""End to end, real processes: one of four validators is Byzantine (the node's test-only switch
``DACN_TEST_BYZANTINE``). First it equivocates (a second, conflicting vote beside each of its own) and proposes
invalid blocks: the chain stays live and safe, none of its proposals commit, and the equivocation evidence lands
in a block and slashes its stake. Then it is restarted as a gossip spammer (garbage and forged txs, consensus
garbage): honest nodes reject the spam and ban the spammer, commit none of it, and the chain stays live and
safe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootstrap.cli import NodeClient
from bootstrap.cli.devnet import create_devnet, devnet_down, find_port_base, start_node, stop_node, wait_ready
from bootstrap.node import MAX_CLOCK_SKEW_MS, TestSwitchError, TestSwitches
from tests.e2e.netkit import wait_for


def stats(c: NodeClient) -> dict[str, Any]:
    return c.get("/network/stats")


def same_chain(clients: list[NodeClient], start: int = 1) -> int:
    """Assert every node has the same block hash at every common height from ``start``; return that height."""
    top = min(c.head()["height"] for c in clients)
    for h in range(start, top + 1):
        hashes = {c.get(f"/blocks/{h}")["hash"] for c in clients}
        assert len(hashes) == 1, f"fork at height {h}: {hashes}"
    return top


@pytest.mark.slow
def test_byzantine_validator_is_slashed_and_the_chain_stays_safe_and_live(tmp_path: Path) -> None:
    d = tmp_path / "devnet"
    api = find_port_base(4)
    p2p = find_port_base(4, avoid=range(api, api + 4))
    nodes = create_devnet(d, 4, validators=4, api_port=api, p2p_port=p2p)
    bad = nodes[3]
    try:
        procs = {n.index: start_node(d, n) for n in nodes[:3]}
        procs[3] = start_node(d, bad, env={"DACN_TEST_BYZANTINE": "equivocate,invalid-proposals"})
        wait_ready(nodes, directory=d, timeout=120, procs=procs)
        clients = [n.client(timeout=30) for n in nodes]
        honest = clients[:3]
        supply = stats(honest[0])["total_supply"]
        stake0 = honest[0].worker(bad.peer_id)["stake"]

        # evidence of its double votes is put into a block by an honest proposer, and slashes it
        def evidence_block() -> int | None:
            for h in range(1, honest[0].head()["height"] + 1):
                if honest[0].get(f"/blocks/{h}")["evidence"] > 0:
                    return h
            return None

        ev_height = wait_for("a block carrying equivocation evidence", evidence_block, timeout=60, poll_s=0.5)
        wait_for("the equivocator's stake slashed on every honest node",
                 lambda: all(c.worker(bad.peer_id)["stake"] < stake0 for c in honest), timeout=20)
        h0 = honest[0].head()["height"]
        # live: several more heights, each of which had the Byzantine proposer's turn in some round
        wait_for("8 more blocks", lambda: honest[0].head()["height"] >= h0 + 8, timeout=60)
        top = same_chain(clients)
        assert top >= h0 + 4
        byz = stats(clients[3])["node"]["chain"]["consensus"]
        assert byz["byzantine_votes"] > 0 and byz["byzantine_proposals"] > 0, byz  # the switch did act
        proposers = {honest[0].get(f"/blocks/{h}")["proposer"] for h in range(1, top + 1)}
        assert bad.peer_id not in proposers  # none of its (invalid) proposals was committed
        assert ev_height <= top
        slashed = honest[0].worker(bad.peer_id)["stake"]
        assert all(c.worker(bad.peer_id)["stake"] == slashed for c in honest)
        assert all(stats(c)["total_supply"] == supply for c in honest)  # slashed stake moved, not destroyed

        # now a spammer: honest nodes reject its gossip, commit none of it, and keep going
        stop_node(d, 3, timeout=5)
        rejected0 = sum(stats(c)["node"]["node"]["txs_gossip_rejected"] for c in honest)
        procs[3] = start_node(d, bad, env={"DACN_TEST_BYZANTINE": "spam", "DACN_TEST_SPAM_RATE": "300"})
        h1 = honest[0].head()["height"]
        wait_for("honest nodes rejecting spam", lambda: sum(
            stats(c)["node"]["node"]["txs_gossip_rejected"] for c in honest) > rejected0, timeout=30)
        # its score sinks below the ban threshold: every honest node cuts it off (it keeps redialling)
        wait_for("the spammer banned by every honest node", lambda: all(
            bad.peer_id not in {p["peer_id"] for p in c.get("/peers")["peers"]} for c in honest), timeout=30)
        assert stats(clients[3])["node"]["node"]["spam_sent"] > 0
        wait_for("6 more blocks under spam", lambda: honest[0].head()["height"] >= h1 + 6, timeout=60)
        top2 = same_chain(clients[:3], start=top)
        assert all(len(honest[0].get(f"/blocks/{h}")["txs"]) == 0 or all(
            tx["kind"] != "transfer" or tx["sender"] != bad.peer_id for tx in honest[0].get(f"/blocks/{h}")["txs"])
            for h in range(h1, top2 + 1))
        assert all(stats(c)["total_supply"] == supply for c in honest)
    finally:
        devnet_down(d, timeout=10)


def test_switches_are_off_by_default_and_parse_from_the_environment() -> None:
    assert not TestSwitches.from_env({}).active
    sw = TestSwitches.from_env({"DACN_TEST_BYZANTINE": "equivocate, spam", "DACN_TEST_CLOCK_SKEW_MS": "-250",
                                "DACN_TEST_ISOLATE_S": "3", "DACN_TEST_SPAM_RATE": "50"})
    assert sw.byzantine == {"equivocate", "spam"} and sw.clock_skew_ms == -250
    assert sw.isolate_signal and sw.isolate_s == 3 and sw.spam_rate == 50 and sw.active


@pytest.mark.parametrize(("env", "field"), [
    ({"DACN_TEST_BYZANTINE": "lie"}, "DACN_TEST_BYZANTINE"),
    ({"DACN_TEST_CLOCK_SKEW_MS": "soon"}, "DACN_TEST_CLOCK_SKEW_MS"),
    ({"DACN_TEST_CLOCK_SKEW_MS": str(MAX_CLOCK_SKEW_MS + 1)}, "DACN_TEST_CLOCK_SKEW_MS"),
    ({"DACN_TEST_ISOLATE_S": "-1"}, "DACN_TEST_ISOLATE_S"),
    ({"DACN_TEST_SPAM_RATE": "0"}, "DACN_TEST_SPAM_RATE"),
])
def test_bad_switch_values_raise_typed(env: dict[str, str], field: str) -> None:
    with pytest.raises(TestSwitchError) as err:
        TestSwitches.from_env(env)
    assert err.value.field == field
