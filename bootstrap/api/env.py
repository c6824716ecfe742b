"""The environment every route shares: the node, the app's state, and the steps most handlers take (call the node
with its typed errors mapped, wait for a tx, resolve an account, fund one from the faucet, measure the device)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio
from fastapi import FastAPI

from bootstrap.agent import measure_device, probe_device
from bootstrap.api.bodies import DEFAULT_WAIT_S, FAUCET_ATTEMPTS, MAX_WAIT_S, jsonable
from bootstrap.api.errors import ApiError, error_for, parse_hex32
from bootstrap.errors import NodeError, UnknownAccount
from bootstrap.home import KeystoreError
from compute.device import measure_cpu_gflops
from compute.errors import ComputeError
from ledger.errors import LedgerError
from ledger.tx import Transfer

log = logging.getLogger("dacn.api")


class Env:
    """One API app's view of its node; every resource's routes are closures over one of these."""

    def __init__(self, app: FastAPI, node: Any) -> None:
        self.app = app
        self.node = node

    async def call(self, fn: Callable[..., Awaitable[Any]] | Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a node call, turning the typed errors it raises into API errors."""
        try:
            out = fn(*args, **kw)
            if hasattr(out, "__await__"):
                out = await out
            return out
        except ApiError:
            raise
        except (LedgerError, ComputeError, KeystoreError, NodeError, ValueError) as exc:
            raise error_for(exc) from exc

    @staticmethod
    def wait_s(wait: float | None) -> float:
        """The seconds to wait for a tx to commit (the ``wait`` query: default 20, at most 120)."""
        if wait is None:
            return DEFAULT_WAIT_S
        if not math.isfinite(wait) or wait < 0:
            raise ApiError(400, "wait: must be a non-negative number of seconds", {"field": "wait"})
        return min(wait, MAX_WAIT_S)

    async def tx_outcome(self, tx_id: str, timeout: float) -> dict[str, Any]:
        """Where tx ``tx_id`` is after waiting up to ``timeout`` seconds (``pending`` without waiting at 0)."""
        if timeout <= 0:
            return {"status": "pending", "tx_id": tx_id}
        res = jsonable(await self.call(self.node.wait_for_tx, tx_id, timeout))
        res.setdefault("tx_id", tx_id)
        return res

    def account(self, name: str) -> bytes:
        """The account of a local key name, a peer id or 64 hex characters, or a 404."""
        try:
            return self.node.account_of(name)
        except (UnknownAccount, KeystoreError, ValueError) as exc:
            raise ApiError(404, f"unknown account {name!r}", {"kind": "unknown_account", "reason": str(exc)}) \
                from None

    @staticmethod
    def job_id_of(text: str) -> bytes:
        return parse_hex32(text, "job_id")

    async def fund(self, to_name: str, to: bytes, target: int, timeout: float, what: str) -> dict[str, Any] | None:
        """Top ``to`` up to ``target`` from the faucet; without a faucet, fail naming the shortfall."""
        node = self.node
        have = node.state.balance(to)
        short = target - have
        if short <= 0:
            return None
        src = node.views.faucet_key()
        if src is None:
            raise ApiError(400, f"{to_name} holds {have} tokens, needs {target} for {what} (short by {short}); "
                                "this chain has no faucet this node can use", {
                                    "kind": "insufficient_funds", "needed": target, "available": have,
                                    "shortfall": short})
        what_tx = f"faucet transfer of {short} to {to_name}"
        for attempt in range(FAUCET_ATTEMPTS):
            tx_id = await self.call(node.sign_and_submit, src, Transfer(to=to, amount=short))
            res = await self.tx_outcome(tx_id, max(timeout, 1.0))
            # Every devnet node holds the faucet key: two nodes funding at once can sign the same nonce, and
            # the loser's tx is dropped when the winner commits. Sign again at the next nonce.
            if res.get("status") == "rejected" and attempt + 1 < FAUCET_ATTEMPTS:
                log.info("%s dropped (%s); retrying", what_tx, res.get("reason"))
                continue
            if res.get("status") in ("rejected", "failed"):
                raise ApiError(400, f"{what_tx} was {res['status']}: {res.get('reason')}", res)
            if res.get("status") != "committed":
                raise ApiError(409, f"{what_tx} not committed within {timeout:g}s; retry the request", res)
            return {"tx_id": tx_id, "amount": short, "height": res.get("height")}
        raise AssertionError("unreachable")

    async def measured_device(self) -> dict[str, Any]:
        """What this machine offers, measured once: a GPU's full detection, or the CPU's matmul rate (the
        CPU path stays clear of importing PyTorch, which would cost every node process seconds and memory)."""
        state = self.app.state
        if state.device is None:
            state.device = (await trio.to_thread.run_sync(_measure_device)).to_dict()
            state.device["capacity_unit"] = "GFLOP/s (float32 matmul)"
        return dict(state.device)

    def agent(self) -> Any:
        """The node's worker agent, or a 409 when it runs none."""
        if getattr(self.node, "agent", None) is None:
            raise ApiError(409, "this node runs no worker agent (run_agent is off)", {"kind": "no_agent"})
        return self.node.agent


def _measure_device() -> Any:
    quick = probe_device()
    if quick.device_kind == "gpu":
        return measure_device(0.2)
    return replace(quick, capacity=measure_cpu_gflops(0.1))
