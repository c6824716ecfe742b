"""Clients: registration (a local key and a starting balance from the faucet), one account's balance, the list."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bootstrap.api.bodies import ClientRegistration, NameParam, WaitQuery, jsonable
from bootstrap.api.env import Env


def add_routes(app: FastAPI, env: Env) -> None:
    """``POST /client/register``, ``GET /client/{address}/balance``, ``GET /clients``."""
    node = env.node
    call, wait_s, account = env.call, env.wait_s, env.account

    @app.post("/client/register")
    async def register_client(body: ClientRegistration, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        await call(node.keystore.get_or_create, body.client_address)
        acct = account(body.client_address)
        funding = await env.fund(body.client_address, acct, body.initial_balance, timeout, "its initial balance")
        out = {
            "message": "client registered",
            "client_address": body.client_address,
            "account": node.display_id(acct),
            "balance": node.state.balance(acct),
            "funding": funding,
        }
        return JSONResponse(jsonable(out))

    @app.get("/client/{address}/balance")
    async def client_balance(address: NameParam) -> dict[str, Any]:
        return node.views.client_balance(address, account(address))

    @app.get("/clients")
    async def clients() -> dict[str, Any]:
        views = node.views.clients()
        return {"count": len(views), "clients": views}

