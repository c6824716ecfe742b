"""Workers: registration (a local key, the declared GPU, the stake, funded from the faucet on a devnet), one
worker's status, and the list."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bootstrap.api.bodies import WORKER_FEE_ALLOWANCE, NameParam, WaitQuery, WorkerRegistration, jsonable
from bootstrap.api.env import Env
from bootstrap.api.errors import ApiError
from bootstrap.home import NODE_KEY, write_declared
from ledger.tx import RegisterWorker


def add_routes(app: FastAPI, env: Env) -> None:
    """``POST /worker/register``, ``GET /worker/{worker_id}/status``, ``GET /workers``."""
    node = env.node
    call, wait_s, tx_outcome, account = env.call, env.wait_s, env.tx_outcome, env.account

    def worker_view(acct: bytes) -> dict[str, Any]:
        view = node.views.worker(acct)
        if view is None:
            raise ApiError(404, f"{node.display_id(acct)} is not a registered worker", {"kind": "unknown_worker"})
        return view

    @app.post("/worker/register")
    async def register_worker(body: WorkerRegistration, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        if node.keystore.exists(body.worker_id) and account(body.worker_id) in node.state.workers:
            acct = account(body.worker_id)
            raise ApiError(409, f"{body.worker_id} is already a registered worker",
                           {"kind": "already_registered", "worker": node.views.worker(acct)})
        params = node.state.params
        # Checked before the key is created, so a refused registration leaves nothing behind.
        if body.stake_amount < params.min_stake:
            raise ApiError(400, f"stake_amount: {body.stake_amount} is below the chain's minimum stake "
                                f"{params.min_stake}", {"field": "stake_amount", "min_stake": params.min_stake})
        await call(node.keystore.get_or_create, body.worker_id)
        acct = account(body.worker_id)
        measured = await env.measured_device()
        funding = await env.fund(body.worker_id, acct, body.stake_amount + WORKER_FEE_ALLOWANCE * params.min_fee,
                             timeout, "its stake and fees")
        payload = RegisterWorker(
            stake=body.stake_amount,
            device_kind=measured["device_kind"],
            device_name=(body.gpu_type or measured["device_name"]).encode()[:128].decode(errors="ignore"),
            memory_mb=measured["memory_mb"],
            capacity=measured["capacity"],
            # This node runs the key: the ledger never gives it a second role on a job another local key holds.
            operator=node.account_of(NODE_KEY),
        )
        tx_id = await call(node.sign_and_submit, body.worker_id, payload)
        declared = {"gpu_type": body.gpu_type, "compute_capacity": body.compute_capacity}
        write_declared(node.home, body.worker_id, declared)
        outcome = await tx_outcome(tx_id, timeout)
        if outcome.get("status") in ("rejected", "failed"):
            raise ApiError(400, f"register_worker {outcome['status']}: {outcome.get('reason')}", outcome)
        out = {
            "message": "worker registered" if outcome["status"] == "committed" else "registration submitted",
            "worker_id": body.worker_id,
            "account": node.display_id(acct),
            "declared": declared,
            "measured": measured,
            "funding": funding,
            **outcome,
        }
        return JSONResponse(jsonable(out), status_code=200 if outcome["status"] == "committed" else 202)

    @app.get("/worker/{worker_id}/status")
    async def worker_status(worker_id: NameParam) -> dict[str, Any]:
        return worker_view(account(worker_id))

    @app.get("/workers")
    async def workers() -> dict[str, Any]:
        views = node.views.workers()
        return {"count": len(views), "workers": views}
