"""End to end: a worker started with ``--faulty random-results`` is caught by its verifier, slashed and loses
reputation, and the job still completes with honest parties (a referee and the appeal panel settle the
dispute); two nodes started with ``--faulty collude`` that hold worker and verifier are caught by the audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.cli.devnet import log_tail
from tests.e2e.netkit import running_devnet, settlement_payments, wait_for

pytestmark = pytest.mark.slow


def test_random_results_worker_is_slashed_and_the_job_completes(tmp_path: Path) -> None:
    with running_devnet(tmp_path / "devnet", 4, faulty={3: "random-results"}) as nodes:
        clients = [n.client(timeout=120.0) for n in nodes]
        cheat = nodes[3].peer_id
        before = clients[0].worker(cheat)
        # only the cheat bids, so it is the worker; honest nodes stop bidding but still serve when drawn as
        # verifier or referee
        for c in clients[:3]:
            assert c.post("/network/coordination/stop")["coordination"] is False
        clients[0].register_client("dave", 500)
        job = clients[0].submit_job("dave", "linear_regression", 50)
        final = clients[0].wait_job(job["job_id"], timeout=180)

        statuses = [h["status"] for h in final["history"]]
        assert final["status"] == "verified", final
        assert "disputed" in statuses  # the verifier disagreed with the cheat, and a referee was drawn
        after = clients[0].worker(cheat)
        assert after["stake"] < before["stake"]  # slashed
        assert after["reputation"] < before["reputation"]
        assert after["jobs_failed"] == before["jobs_failed"] + 1
        # the referee (committed blind) sided with the verifier and took the worker's place: it got the price; the
        # appeal panel drawn after it (the one node left) backed it too, and shares the fee with the verifier; the
        # cheat got nothing
        assert final["worker_id"] == cheat and final["referee_id"] not in (None, cheat)
        assert statuses.index("disputed") < statuses.index("revealing")
        panel = final["panel_ids"]
        assert len(panel) == 1 and cheat not in panel
        paid = settlement_payments(clients[0], nodes[0].home, final)
        assert paid.get(cheat, 0) == 0, paid
        assert paid[final["referee_id"]] == final["price"]
        assert paid[final["verifier_id"]] + paid[panel[0]] == final["verification_fee"]
        # every node saw the same verdict
        for c in clients:
            assert c.worker(cheat)["stake"] == after["stake"]


def test_two_colluding_nodes_that_agree_on_a_false_result_are_caught_by_the_audit(tmp_path: Path) -> None:
    """Issue 13: two nodes of one owner (``--faulty collude``: the same wrong summary on every colluding key) hold
    worker and verifier, so they agree. An auditor drawn after their commitments (every job here:
    ``audit_permille = 1000``) commits the true result blind; the appeal panel drawn after it backs the auditor;
    both colluders are slashed together, and the client's result is the auditor's, checked against its artifact."""
    with running_devnet(tmp_path / "devnet", 5, faulty={3: "collude", 4: "collude"},
                        params={"audit_permille": 1000}) as nodes:
        clients = [n.client(timeout=120.0) for n in nodes]
        cheats = {nodes[3].peer_id, nodes[4].peer_id}
        before = {p: clients[0].worker(p) for p in cheats}
        # Only the colluders keep offers, so they are the worker and the verifier; the honest nodes still serve
        # the duties the ledger draws them for (auditor, panel).
        for c in clients[:3]:
            assert c.post("/network/coordination/stop")["coordination"] is False
        # A colluder offers only once its compute pool has started; a job submitted before that opens for bids,
        # and its verifier is then drawn among every worker, not only among the offers.
        c0 = clients[0]
        def colluders_offer() -> bool:
            height = c0.head()["height"]
            live = {w["worker_id"] for w in c0.workers() if w["offer_until"] > height + 1}
            return cheats <= live
        wait_for("the colluders' live offers", colluders_offer, timeout=90)
        clients[0].register_client("erin", 500)
        job = clients[0].submit_job("erin", "linear_regression", 50)
        final = clients[0].wait_job(job["job_id"], timeout=240)

        assert {final["worker_id"], final["verifier_id"]} == cheats, final
        assert final["status"] == "verified" and final["verdict"] == "pair_faulty", final
        statuses = [h["status"] for h in final["history"]]
        assert statuses.index("auditing") < statuses.index("revealing")  # the auditor committed before any reveal
        assert final["referee_id"] not in cheats and final["panel_ids"] and not set(final["panel_ids"]) & cheats
        for p in cheats:
            after = clients[0].worker(p)
            assert after["stake"] < before[p]["stake"] and after["reputation"] < before[p]["reputation"]
        paid = settlement_payments(clients[0], nodes[0].home, final)
        assert not set(paid) & cheats, paid
        assert paid[final["referee_id"]] == final["price"]  # the auditor ran in the worker's place
        # The client gets the verified result: the auditor's, whose artifact matches the summary.
        result = clients[0].get(f"/job/{job['job_id']}/result")
        assert result["summary"] == final["result_summary"]
        assert result["artifact_digest"] == final["result_artifact"]


def _only_the_cheat_works(clients: list) -> None:
    """Honest nodes stop offering and bidding (they still serve the duties the ledger draws them for)."""
    for c in clients[:3]:
        assert c.post("/network/coordination/stop")["coordination"] is False


def test_a_worker_that_runs_on_half_the_data_is_outvoted_and_slashed(tmp_path: Path) -> None:
    """``--faulty lazy-subsample``: half the work gives another summary; the fingerprints differ, so a referee is
    drawn and commits blind, then the panel; the honest verifier's result is accepted and the worker slashed."""
    with running_devnet(tmp_path / "devnet", 4, faulty={3: "lazy-subsample"}) as nodes:
        clients = [n.client(timeout=120.0) for n in nodes]
        cheat = nodes[3].peer_id
        before = clients[0].worker(cheat)
        _only_the_cheat_works(clients)
        clients[0].register_client("frank", 500)
        job = clients[0].submit_job("frank", "linear_regression", 50)
        final = clients[0].wait_job(job["job_id"], timeout=180)
        assert final["worker_id"] == cheat and final["status"] == "verified", final
        assert final["verdict"] == "worker_faulty", final
        after = clients[0].worker(cheat)
        assert after["stake"] < before["stake"] and after["reputation"] < before["reputation"]
        result = clients[1].get(f"/job/{job['job_id']}/result")  # the verified one, checked against its artifact
        assert result["summary"] == final["result_summary"]


@pytest.mark.parametrize(("mode", "model"), [("fake-artifact", "linear_regression"), ("hidden-move", "mlp_train")])
def test_a_forged_artifact_beside_an_honest_summary_is_never_confirmed_and_never_paid(
        tmp_path: Path, mode: str, model: str) -> None:
    """``--faulty fake-artifact``: the worker reveals the honest summary but publishes an artifact with a weight
    changed. Worker and verifier agree, so the ledger accepts the summary; but the verifier, which must confirm the
    artifact before anyone is paid, fetches it, recomputes the summary from it and refuses to. With no
    confirmation by the deadline the job fails: the client gets its escrow back, the forger is not paid (nor
    slashed: an unconfirmed artifact cannot be told from a lost one), and no node serves the forged weights.
    ``--faulty hidden-move``: the weights are moved where the job's public sketch does not look, so the accepted
    summary still agrees; the verifier's second sketch, seeded by the block that accepted it, sees the move."""
    from bootstrap.cli import ApiRequestError

    with running_devnet(tmp_path / "devnet", 4, faulty={3: mode}) as nodes:
        clients = [n.client(timeout=120.0) for n in nodes]
        _only_the_cheat_works(clients)
        clients[0].register_client("grace", 500)
        job = clients[0].submit_job("grace", model, 50)
        final = clients[0].wait_job(job["job_id"], timeout=180)
        statuses = [h["status"] for h in final["history"]]
        assert final["worker_id"] == nodes[3].peer_id, final
        assert (final["status"], final["verdict"]) == ("failed", "artifact_unconfirmed"), final
        assert statuses[-2:] == ["confirming", "failed"]
        paid = settlement_payments(clients[0], nodes[0].home, final)
        assert paid.get(nodes[3].peer_id, 0) == 0 and paid.get(final["verifier_id"], 0) == 0, paid
        assert paid[final["client_id"]] == final["reward"] + final["verification_fee"], paid  # the whole escrow
        with pytest.raises(ApiRequestError) as refused:
            clients[0].get(f"/job/{job['job_id']}/result")
        assert refused.value.status == 404 and refused.value.detail["kind"] == "no_result", refused.value
        # Refused by the check each mode is caught by: the summary recomputed from the artifact, or the second
        # sketch (the hidden move agrees with the accepted summary).
        confirmers = {final["verifier_id"], final.get("referee_id")}
        logs = "".join(log_tail(tmp_path / "devnet", i, 400) for i, n in enumerate(nodes) if n.peer_id in confirmers)
        why = "after the artifact was committed" if mode == "hidden-move" else "differs from the verified one"
        assert "does not confirm the artifact" in logs and why in logs, logs[-3000:]
