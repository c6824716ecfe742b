"""The network: the seed's statistics, and auto-coordination (start, stop, one cycle now, its status)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bootstrap.api.bodies import jsonable
from bootstrap.api.env import Env


def add_routes(app: FastAPI, env: Env) -> None:
    """``GET /network/stats`` and ``/network/coordination`` (``GET``; ``POST`` start, stop, trigger)."""
    node = env.node
    call = env.call

    @app.get("/network/stats")
    async def network_stats() -> dict[str, Any]:
        return jsonable(node.views.network_stats())

    agent = env.agent

    @app.post("/network/coordination/start")
    async def coordination_start() -> dict[str, Any]:
        await call(agent().start)
        return {"message": "auto-coordination started", "coordination": node.views.agent_running()}

    @app.post("/network/coordination/stop")
    async def coordination_stop() -> dict[str, Any]:
        await call(agent().stop)
        # Once stopped, no job submitted afterwards may be assigned here from a standing offer: wait for the
        # withdrawals to commit (bounded; they lapse by themselves within the offer's span anyway).
        withdrawn = await call(agent().withdraw_offers)
        return {"message": "auto-coordination stopped: no new bids, offers withdrawn (assigned duties are still "
                           "honoured)", "coordination": node.views.agent_running(), "offers_withdrawn": len(withdrawn)}

    @app.post("/network/coordination/trigger")
    async def coordination_trigger() -> dict[str, Any]:
        summary = await call(agent().trigger)
        return {"message": "coordination cycle run", "summary": jsonable(summary)}

    @app.get("/network/coordination")
    async def coordination_status() -> dict[str, Any]:
        return jsonable(agent().status())
