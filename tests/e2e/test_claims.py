"""End to end over real node processes (issue 14, "honest workers are never punished"): a job nobody can run ends
``failed`` with a small trouble share for its workers and nobody slashed.

(a) A client signs a raw ``SubmitJob`` naming random spec and dataset digests: no node serves them, so both
    workers keep trying to fetch, claim "unavailable" a few blocks before the commit deadline, and the job ends
    ``failed``/"unavailable".
(b) A spec that passes ``make_spec`` but fails on its data (k above the dataset's rows) is put in a node's blob
    store with its dataset (the job desk would refuse it) and submitted with a raw tx: both workers' runs raise the
    same SpecError, both claim its code, and the job ends ``failed``/"spec_error".

Before issue 14 both jobs left every worker without a commitment: stall-slashed at the commit deadline and
reassigned until refunded (``commit_timeout``), so the status and verdict checks below fail on that code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrap.home import Keystore
from bootstrap.jobs import BlobStore
from compute.dataset import encode_dataset, synthetic
from compute.spec import make_spec
from ledger.crypto import account_of
from ledger.tx import SubmitJob, make_tx
from tests.e2e.netkit import running_devnet, settlement_payments, wait_for

pytestmark = pytest.mark.slow

COMMIT_WINDOW = 12  # a 1 s run needs 4 devnet blocks; 12 leaves room to retry the fetches, and keeps the test short
TIME_LIMIT_MS = 1_000


def test_jobs_nobody_can_run_fail_with_the_trouble_share_and_nobody_is_slashed(tmp_path: Path) -> None:
    with running_devnet(tmp_path / "devnet", 4) as nodes:
        clients = [n.client(timeout=60.0) for n in nodes]
        c0 = clients[0]
        # every worker's agent has its offer standing: both jobs are assigned inside their submit blocks
        wait_for("four live offers", lambda: all(w["offer_until"] > c0.head()["height"] + 1 for w in c0.workers())
                 and len(c0.workers()) == 4, timeout=60)
        before = {w["worker_id"]: w for w in c0.workers()}

        faucet = Keystore(Path(nodes[0].home) / "keys").load("faucet")
        chain_id = c0.health()["chain_id"]
        nonce = c0.get(f"/client/{account_of(faucet).hex()}/balance")["nonce"]

        def submit(spec_digest: bytes, dataset_digest: bytes, model: str, nonce: int) -> str:
            payload = SubmitJob(model, spec_digest, dataset_digest, 100, 20, 2, 10, "any", 0, 0, COMMIT_WINDOW, 0,
                                "offers", TIME_LIMIT_MS)
            stx = make_tx(payload, faucet, chain_id, nonce=nonce, fee=1)
            out = c0.post("/tx", {"tx": stx.encode().hex()}, wait=30)
            assert out["status"] == "committed", out
            return stx.tx_id.hex()

        # (a) digests nobody serves
        missing = submit(os.urandom(32), os.urandom(32), "kmeans", nonce)
        # (b) a spec that fails on its data: 50 clusters asked of 20 rows
        data = synthetic("blobs", 20, 2, seed=1)
        spec = make_spec("kmeans", {"k": 50}, data.digest, min_memory_mb=0, memory_limit_mb=1024,
                         time_limit_ms=TIME_LIMIT_MS)
        store = BlobStore(Path(nodes[0].home) / "data" / "blobs")  # node 0 serves its store to every peer
        spec_digest = store.put(spec.encode())
        assert store.put(encode_dataset(data)) == data.digest
        broken = submit(spec_digest, data.digest, "kmeans", nonce + 1)

        done = {}
        for name, job_id in (("missing", missing), ("broken", broken)):
            done[name] = wait_for(f"job {name} to end", lambda j=job_id: (v := c0.job(j))["status"] in (
                "verified", "failed", "refunded") and v, timeout=60)
        a, b = done["missing"], done["broken"]
        assert (a["status"], a["verdict"]) == ("failed", "unavailable"), a
        # worker and verifier (and an auditor, when the job drew one: devnet stakes are small against the pay)
        assert [o["outcome"] for o in a["outcomes"]] in (["unavailable"] * 2, ["unavailable"] * 3)
        assert (b["status"], b["verdict"]) == ("failed", "spec_error"), b
        assert [o["outcome"] for o in b["outcomes"]] in (["error"] * 2, ["error"] * 3)
        assert b["result_summary"][0] < 1000  # compute's code for the SpecError on params.k, the same from both
        assert "nobody was penalised" in a["verdict_words"] and "fails on its data" in b["verdict_words"]
        assert [s["step"] for s in a["timeline"]][-1] == "failed" and "could not fetch" in a["timeline"][-2]["note"]

        # nobody slashed: stake, reputation and failures as before, on every node
        for c in clients:
            for w in c.workers():
                was = before[w["worker_id"]]
                assert (w["stake"], w["reputation"], w["jobs_failed"]) == (
                    was["stake"], was["reputation"], was["jobs_failed"]), w
        # each party got the trouble share of its pay (the rest went back to the client)
        trouble = 100  # the chain's trouble_permille
        by_block: dict[int, list[dict]] = {}  # both jobs may settle in one block: compare what that block paid
        for job in (a, b):
            height = next(h["height"] for h in job["history"] if h["status"] == job["status"])
            by_block.setdefault(height, []).append(job)
        for jobs in by_block.values():
            paid = settlement_payments(c0, nodes[0].home, jobs[0])
            expected: dict[str, int] = {}
            for job in jobs:
                fee = job["verification_fee"]
                shares = [(job["worker_id"], job["price"]), (job["verifier_id"], fee)]
                if job["referee_id"]:  # an auditor ran it too: verifier and auditor share the fee
                    shares[1:] = [(job["verifier_id"], fee - fee // 2), (job["referee_id"], fee // 2)]
                for who, pay in shares:
                    expected[who] = expected.get(who, 0) + pay * trouble // 1000
            assert {who: paid.get(who) for who in expected} == expected, paid
        claims = sum(c.get("/network/coordination")["counters"]["claims"] for c in clients)
        parties = sum(len(job["outcomes"]) for job in (a, b))  # worker and verifier, and an auditor if drawn
        assert claims == parties  # each party one claim
