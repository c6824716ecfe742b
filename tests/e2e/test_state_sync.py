"""End to end, issue 15: a validator that never ran joins a chain that has run for a while, by state sync.

Five validators share a genesis, but only four start (four of five are more than two thirds, so blocks commit). After
the chain has passed several snapshots and moved balances, the fifth starts with an empty store: it takes a peer's
snapshot, checks it against a commit signed by the validator set, block-syncs the rest, agrees with the others on
block and state, answers for the balances moved before it existed, and its precommits appear in commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.cli.client import ApiRequestError, NodeUnreachable
from bootstrap.cli.devnet import create_devnet, devnet_down, find_port_base, log_tail, start_node, wait_ready
from tests.e2e.netkit import common_block, wait_for

pytestmark = pytest.mark.slow

LATE = 4  # the validator held back
RUN_TO = 45  # past the snapshots at 20 and 40 (the devnet takes one every 20 blocks)


def test_a_new_validator_joins_a_running_chain_by_state_sync_and_votes(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    api = find_port_base(5)
    p2p = find_port_base(5, avoid=range(api, api + 5))
    nodes = create_devnet(directory, 5, api_port=api, p2p_port=p2p)
    assert all(n.validator for n in nodes)
    try:
        for node in nodes[:LATE]:
            start_node(directory, node)
        wait_ready(nodes[:LATE], directory=directory, timeout=120)
        clients = [n.client(timeout=60.0) for n in nodes]
        c0 = clients[0]
        funded = {c0.register_client("grace", 700)["account"]: 700,
                  clients[1].register_client("heidi", 300)["account"]: 300}
        wait_for(f"height {RUN_TO}", lambda: c0.head()["height"] >= RUN_TO, 180)
        # never started: an empty data folder, no store and no consensus log
        assert not any((Path(nodes[LATE].home) / "data").glob("chain.sqlite*"))

        start_node(directory, nodes[LATE])
        late = clients[LATE]
        try:
            late.wait_healthy(timeout=120)
        except NodeUnreachable as exc:
            raise AssertionError(f"{exc}\nnode{LATE}'s log:\n{log_tail(directory, LATE, 40)}") from None
        log = log_tail(directory, LATE, 400)
        assert "state sync: verified the state at height" in log, log
        synced = int(log.split("state sync: verified the state at height ")[-1].split()[0])
        assert synced >= 40, synced
        with pytest.raises(ApiRequestError) as missing:
            late.get("/blocks/1")  # it never replayed from genesis
        assert missing.value.status == 410  # not kept here (an archive node has it)

        target = c0.head()["height"]
        wait_for(f"node{LATE} to follow the chain", lambda: late.head()["height"] >= target, 90)
        same = common_block([c0, late])
        assert same[0] == same[1], same
        for acct, amount in funded.items():  # funded before it existed, read from its own state
            assert late.balance(acct)["balance"] == c0.balance(acct)["balance"] == amount
        me = late.health()["peer_id"]

        def signed_recently() -> bool:
            head = c0.head()["height"]
            return any(me in c0.get(f"/blocks/{h}")["commit"]["signers"] for h in range(head - 3, head + 1))

        wait_for(f"node{LATE}'s precommit in a commit", signed_recently, 90)
        # and it proposes on its turn: a block by it, committed after it joined
        start = late.head()["height"]
        wait_for(f"a block proposed by node{LATE}", lambda: any(
            c0.get(f"/blocks/{h}")["proposer"] == me
            for h in range(start, c0.head()["height"] + 1)), 60)
    finally:
        devnet_down(directory, timeout=10.0)
