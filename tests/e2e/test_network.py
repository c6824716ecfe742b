"""End to end, real processes on loopback: 4 validators and 2 worker-only nodes joined through node 0.

The seed's basic flow with its exact request bodies against node 0; one job of every model submitted from a
different node, each reaching ``verified`` with the client, worker and verifier paid exactly; every node on the
same block and state root; total supply unchanged. Then a validator is killed (blocks keep committing) and
restarted (it catches up to the same state root).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.cli import NodeClient, export_state, main
from bootstrap.cli.client import ApiRequestError, NodeUnreachable
from bootstrap.cli.devnet import DevnetNode, log_tail, node_pid, start_node, stop_node
from bootstrap.home import load_home_genesis
from ledger.encoding import pack, unpack
from ledger.lightclient import ProofRejected, StateProof, verify_state_proof
from tests.e2e.netkit import (
    common_block,
    post_raw,
    running_devnet,
    settlement_payments,
    wait_for,
)

pytestmark = pytest.mark.slow

# The seed README's "Basic Flow Test" bodies, as its curl commands send them.
SEED_STEPS = [
    ("/worker/register",
     '{"worker_id": "test_worker", "gpu_type": "RTX 4090", "compute_capacity": 82.6, "stake_amount": 150}'),
    ("/client/register", '{"client_address": "test_client", "initial_balance": 1000}'),
    ("/job/submit", '{"client_address": "test_client", "model_type": "linear_regression", "reward": 50}'),
    ("/network/coordination/trigger", None),
]
# model, submitting node, reward, params: every model, each from another node (4 and 5 are worker-only)
MODEL_JOBS = [
    ("kmeans", 1, 60, {"k": 3}),
    ("pca", 2, 40, None),
    ("logistic_regression", 3, 45, None),
    ("mlp_train", 4, 80, {"hidden": [8], "epochs": 3}),
    ("linear_regression", 5, 30, {"alpha": 0.5}),
]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[DevnetNode]]]:
    directory = tmp_path_factory.mktemp("e2e") / "devnet"
    with running_devnet(directory, 6, validators=4) as nodes:
        yield directory, nodes


def test_seed_flow_and_every_model_verified_and_paid(net: tuple[Path, list[DevnetNode]]) -> None:
    _, nodes = net
    clients = [n.client(timeout=120.0) for n in nodes]
    assert [n.validator for n in nodes] == [True] * 4 + [False] * 2
    for c in clients:  # joined through node 0 only, yet each node reaches more than node 0
        wait_for("peers beyond node 0", lambda c=c: c.peers()["count"] >= 2, 30)
    supply_at_start = clients[0].stats()["total_supply"]

    # -- the seed's basic flow, unchanged bodies, against node 0
    base = nodes[0].api_url
    answers = []
    for path, body in SEED_STEPS:
        status, doc = post_raw(base + path, body if body is not None else "")
        assert status == 200, (path, doc)
        answers.append(doc)
    assert answers[0]["status"] == "committed" and answers[1]["balance"] == 1000
    seed_job = answers[2]["job_id"]
    stats = clients[0].stats()
    assert stats["total_workers"] == 7 and stats["total_jobs"] == 1  # 6 node keys + test_worker

    # -- one job of every model, from different nodes, each by its own client, all submitted back to back (as
    # users would: no waiting for one job to be taken before the next goes out)
    for i, (_, at, _, _) in enumerate(MODEL_JOBS):
        assert clients[at].register_client(f"client{i}", 500)["balance"] == 500
    submitted = []
    for i, (model, at, reward, params) in enumerate(MODEL_JOBS):
        r = clients[at].submit_job(f"client{i}", model, reward, params=params)
        submitted.append((r["job_id"], at, f"client{i}", reward))

    finals = {}
    for job_id, at, _, _ in [(seed_job, 0, "test_client", 50), *submitted]:
        view = clients[at].wait_job(job_id, timeout=180)
        assert view["status"] == "verified", view
        finals[job_id] = view

    # -- payments: the client paid price + fee (+ its tx fee), worker got the price, verifier the fee
    home0 = nodes[0].home
    for job_id, at, name, reward in submitted:
        view = finals[job_id]
        spent = 500 - clients[at].balance(name)["balance"]
        assert spent == view["price"] + view["verification_fee"] + 1, view  # min_fee is 1 on a devnet
        assert 0 < view["price"] <= reward
        paid = settlement_payments(clients[0], home0, view)
        settled_here = [v for v in finals.values() if v["history"][-1]["height"] == view["history"][-1]["height"]]
        expected: dict[str, int] = {}
        for v in settled_here:
            fee = v["verification_fee"]
            # agreed; or audited (an auditor drawn after the commitments agreed, and shares the fee)
            assert v["verdict"] in ("agreed", "audited") and not v["panel_ids"], v
            shares = [(v["verifier_id"], fee)] if v["verdict"] == "agreed" else [
                (v["verifier_id"], fee - fee // 2), (v["referee_id"], fee // 2)]
            for acct, amount in ((v["worker_id"], v["price"]), *shares, (v["client_id"], v["reward"] - v["price"])):
                expected[acct] = expected.get(acct, 0) + amount
        for acct in (view["worker_id"], view["verifier_id"], view["client_id"]):
            assert paid.get(acct, 0) == expected[acct], (acct, paid, expected)
        assert view["worker_id"] != view["verifier_id"]

    # -- every node on the same chain and state, total supply unchanged
    same = common_block(clients)
    assert len({(h, b, r) for h, b, r in same}) == 1, same
    for c in clients:
        assert c.stats()["total_supply"] == supply_at_start
    worker_only_heights = [clients[i].head()["height"] for i in (4, 5)]
    assert min(worker_only_heights) >= same[0][0]
    # replayed from node 0's own store, genesis and the latest state hold the same supply
    assert export_state(Path(home0), 0)["total_supply"] == supply_at_start
    assert export_state(Path(home0))["total_supply"] == supply_at_start


def test_a_killed_validator_restarts_and_catches_up(net: tuple[Path, list[DevnetNode]]) -> None:
    directory, nodes = net
    clients = [n.client(timeout=60.0) for n in nodes]
    victim = nodes[3]
    pid = node_pid(directory, 3)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for("node3 gone", lambda: node_pid(directory, 3) is None, 10)
    h0 = clients[0].head()["height"]
    # three of four validators are more than 2/3: the chain goes on without it
    wait_for("blocks after the kill", lambda: clients[0].head()["height"] >= h0 + 3, 60)
    tx = clients[1].register_client("during_outage", 77)
    assert tx["balance"] == 77

    start_node(directory, victim)
    try:
        try:
            NodeClient(victim.api_url).wait_healthy(timeout=60)
        except NodeUnreachable as exc:
            raise AssertionError(f"{exc}\nnode3's log:\n{log_tail(directory, 3, 40)}") from None
        target = clients[0].head()["height"]
        wait_for("node3 to catch up", lambda: clients[3].head()["height"] >= target, 60)
        same = common_block([clients[0], clients[3]])
        assert same[0] == same[1], same
        # what was committed while it was down is in its state now
        assert clients[3].balance(clients[1].balance("during_outage")["account"])["balance"] == 77
    finally:
        stop_node(directory, 3, timeout=10.0)  # a no-op when it already died; the fixture stops the rest


def test_verify_proof_confirms_a_balance_from_every_node_and_rejects_a_lie(
        net: tuple[Path, list[DevnetNode]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory, every = net
    nodes = [n for n in every if node_pid(directory, n.index) is not None]  # the restart test stops node 3
    clients = [n.client(timeout=60.0) for n in nodes]
    clients[2].register_client("light_client_check", 4321)
    account = clients[2].balance("light_client_check")["account"]
    trusted = ["--home", nodes[-1].home]  # a genesis file is all the trust there is
    wait_for("every node has the balance",
             lambda: all(c.balance(account)["balance"] == 4321 for c in clients), 60)
    rc = main(["verify-proof", "account", account, "--node", nodes[0].api_url,
               *[a for n in nodes[1:] for a in ("--also", n.api_url)], *trusted])
    out = capsys.readouterr()
    assert rc == 0, out.err
    shown = [json.loads(part) for part in out.out.replace("}\n{", "}\x00{").split("\x00")]
    assert len(shown) == len(nodes)
    assert all(s["verified"] and s["record"] == {"balance": 4321, "nonce": 0} for s in shown), shown

    # a verified job's outcome: the result digest the client is served is the one the validators' commit fixes
    done = clients[0].get("/jobs", status="verified", limit=1)["jobs"]
    assert done, "the seed flow left verified jobs"
    job_id = done[0]["job_id"]
    rc = main(["verify-proof", "job", job_id, "--node", nodes[1].api_url, "--also", nodes[2].api_url, *trusted])
    out = capsys.readouterr()
    assert rc == 0, out.err
    proven = [json.loads(part)["record"] for part in out.out.replace("}\n{", "}\x00{").split("\x00")]
    digest = clients[1].job_result(job_id)["artifact_digest"]
    assert len(proven) == 2 and all(r["status"] == "verified" and r["result_artifact"] == digest for r in proven)

    # an account nobody funded is proven absent
    assert main(["verify-proof", "account", "ab" * 32, "--node", nodes[1].api_url, *trusted]) == 0
    assert json.loads(capsys.readouterr().out)["record"] is None

    # a node that lies: the same answer with a richer record (or any byte changed) does not verify
    answer = clients[-1].get(f"/proof/account/{account}")
    sp = StateProof.decode(bytes.fromhex(answer["proof"]))
    key, (balance, nonce) = unpack(sp.record, max_size=4096)
    forged = dataclasses.replace(sp, record=pack([key, [balance + 1_000_000, nonce]]))
    for bad, check in ((forged, "tree"), (dataclasses.replace(sp, tree_root=bytes(32)), "state_root")):
        path = tmp_path / f"{check}.json"
        path.write_text(json.dumps({**answer, "record": None, "proof": bad.encode().hex()}))
        assert main(["verify-proof", "--file", str(path), *trusted]) == 1
        assert f"proof rejected ({check})" in capsys.readouterr().err
    genesis = load_home_genesis(Path(nodes[0].home))
    with pytest.raises(ProofRejected, match="commit"):
        verify_state_proof(sp, chain_id=genesis.chain_id, validators=[bytes(32)] * 4)


def test_a_validator_with_a_wiped_store_rejoins_by_state_sync_and_signs_again(
        net: tuple[Path, list[DevnetNode]]) -> None:
    """Node 3 (stopped by the restart test) loses its chain store, keeps its keys and consensus WAL, and starts
    again: it takes a peer's snapshot, checked against the commits, instead of replaying from genesis, follows
    the chain to the same block, and its precommits appear in commits again."""
    directory, nodes = net
    if node_pid(directory, 3) is not None:
        stop_node(directory, 3, timeout=10.0)
    clients = [n.client(timeout=60.0) for n in nodes]
    wait_for("a snapshot with a committed block after it",
             lambda: clients[0].head()["height"] >= 22, 120)
    data = Path(nodes[3].home) / "data"
    for path in data.glob("chain.sqlite*"):  # the database, its log, and its snapshot files' folder
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert (data / "consensus.wal").exists()  # what it signed stays: it never signs those heights again
    start_node(directory, nodes[3])
    try:
        try:
            NodeClient(nodes[3].api_url).wait_healthy(timeout=90)
        except NodeUnreachable as exc:
            raise AssertionError(f"{exc}\nnode3's log:\n{log_tail(directory, 3, 40)}") from None
        log = log_tail(directory, 3, 400)
        assert "state sync: verified the state at height" in log, log
        synced = int(log.split("state sync: verified the state at height ")[-1].split()[0])
        assert synced >= 20
        with pytest.raises(ApiRequestError) as missing:
            clients[3].get(f"/blocks/{synced - 1}")  # blocks below the snapshot were never fetched
        assert missing.value.status == 410  # not kept here (an archive node has it)
        target = clients[0].head()["height"]
        wait_for("node3 to follow the chain", lambda: clients[3].head()["height"] >= target, 60)
        same = common_block([clients[0], clients[3]])
        assert same[0] == same[1], same
        me = clients[3].health()["peer_id"]

        def signed_recently() -> bool:
            head = clients[0].head()["height"]
            return any(me in clients[0].get(f"/blocks/{h}")["commit"]["signers"] for h in range(head - 3, head + 1))

        wait_for("node3's precommit in a commit", signed_recently, 60)
    finally:
        stop_node(directory, 3, timeout=10.0)
