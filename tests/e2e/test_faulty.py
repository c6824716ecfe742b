"""End to end: a worker started with ``--faulty random-results`` is caught by its verifier, slashed and loses
reputation, and the job still completes with honest parties (a referee settles the dispute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.netkit import running_devnet, settlement_payments

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
        # the referee sided with the verifier and took the worker's place: it got the price, the verifier its
        # fee, the cheat nothing
        assert final["worker_id"] == cheat and final["referee_id"] not in (None, cheat)
        paid = settlement_payments(clients[0], nodes[0].home, final)
        assert paid.get(cheat, 0) == 0, paid
        assert paid[final["referee_id"]] == final["price"]
        assert paid[final["verifier_id"]] == final["verification_fee"]
        # every node saw the same verdict
        for c in clients:
            assert c.worker(cheat)["stake"] == after["stake"]
