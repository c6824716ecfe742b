"""The chain and its txs: the head, one committed block, this node's peers, and signed txs from external
wallets, one (``POST /tx``) or a batch (``POST /txs``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from bootstrap.api.bodies import RawTx, RawTxBatch, WaitQuery, jsonable
from bootstrap.api.env import Env
from bootstrap.api.errors import ApiError, error_for
from ledger.tx import SignedTx, decode_signed_tx


def add_routes(app: FastAPI, env: Env) -> None:
    """``GET /chain/head``, ``GET /blocks/{height}``, ``GET /peers``, ``GET /tx/{tx_id}``, ``POST /tx``,
    ``POST /txs``."""
    node = env.node
    call, wait_s, tx_outcome = env.call, env.wait_s, env.tx_outcome

    @app.get("/chain/head")
    async def chain_head() -> dict[str, Any]:
        return jsonable(node.head())

    @app.get("/blocks/{height}", responses={410: {
        "description": "a committed block this node no longer keeps (pruned, or before its state sync); "
                       "`detail.first_height` is the lowest it keeps, and an archive node keeps every block",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})
    async def block(
        height: Annotated[int, PathParam(ge=0, le=2**62)],
        txs: Annotated[Literal["full", "ids"], Query(
            description="`full` (the default): `txs` lists each tx's id, kind, sender, nonce and fee. `ids`: "
                        "`tx_ids` lists only the tx ids (hex, in block order) instead, computed from the stored "
                        "bytes without decoding a tx; cheap enough for a watcher that polls every block.")] = "full",
    ) -> dict[str, Any]:
        """A committed block: header fields, its txs (see ``txs``), evidence count and the commit's signers. A block
        below the lowest this node keeps is a 410 naming that height (``detail.first_height``)."""
        if height < 0:
            raise ApiError(400, "height: must be non-negative", {"field": "height"})
        got = node.get_block(height, ids_only=txs == "ids")
        if got is None:
            first = node.first_height
            if 1 <= height < first:  # committed, but not kept here: gone for good on this node, so a 410
                raise ApiError(410, f"block {height} is not kept here: this node keeps blocks from height {first} "
                                    "on (older ones are pruned, or were never fetched after state sync); an archive "
                                    "node (keep_blocks = 0) keeps every block",
                               {"kind": "block_pruned", "first_height": first, "head": node.height})
            raise ApiError(404, f"no block at height {height} (head is {node.height})",
                           {"kind": "unknown_block", "head": node.height})
        return jsonable(got)

    @app.get("/peers")
    async def peers() -> dict[str, Any]:
        ps = jsonable(node.peers())
        return {"count": len(ps), "peers": ps}

    @app.get("/tx/{tx_id}")
    async def tx_status(tx_id: Annotated[str, PathParam(min_length=64, max_length=64,
                                                        description="the tx id (64 hex characters)")]) -> Any:
        """Where a tx is now, without waiting: ``committed`` (``height``), ``failed`` in its block (its fee paid,
        ``reason``), ``pending``, ``queued`` (its nonce is ahead; ``waiting_for_nonce``), ``dropped`` (``reason``;
        sign it again and resubmit) or ``unknown`` to this node."""
        return jsonable(await call(node.tx_status, tx_id))

    @app.post("/tx")
    async def post_tx(body: RawTx, wait: WaitQuery = 0.0) -> JSONResponse:
        try:
            raw = bytes.fromhex(body.tx)
        except ValueError:
            raise ApiError(400, "tx: not valid hex", {"field": "tx"}) from None
        stx = await call(decode_signed_tx, raw)
        tx_id = await call(node.submit_tx, stx)
        outcome = await tx_outcome(tx_id, wait_s(wait))
        if outcome.get("status") in ("rejected", "failed"):
            raise ApiError(400, f"tx {outcome['status']}: {outcome.get('reason')}", outcome)
        return JSONResponse(jsonable(outcome), status_code=200 if outcome["status"] == "committed" else 202)

    @app.post("/txs")
    async def post_txs(body: RawTxBatch) -> dict[str, Any]:
        """Admit a batch of signed txs (load generators): one result per item, in order, never waiting for
        commits. An item's error does not stop the rest: ``{"status": "pending", "tx_id"}`` or
        ``{"status": "rejected", "error", "detail"}`` (the error ``POST /tx`` would have answered)."""
        def rejected(exc: ApiError) -> dict[str, Any]:
            return {"status": "rejected", "error": exc.message, "detail": jsonable(exc.detail)}

        results: list[dict[str, Any]] = [{} for _ in body.txs]
        decoded: list[tuple[int, SignedTx]] = []
        for i, text in enumerate(body.txs):
            try:
                try:
                    raw = bytes.fromhex(text)
                except ValueError:
                    raise ApiError(400, f"txs[{i}]: not valid hex", {"field": f"txs[{i}]"}) from None
                decoded.append((i, await call(decode_signed_tx, raw)))
            except ApiError as exc:
                results[i] = rejected(exc)
        # admitted in order and gossiped as one batch message (dacn/txs/1), not one message per tx
        outcomes = await call(node.submit_txs, [stx for _, stx in decoded])
        for (i, _), out in zip(decoded, outcomes, strict=True):
            results[i] = {"status": "pending", "tx_id": out} if isinstance(out, str) else rejected(error_for(out))
        accepted = sum(1 for r in results if r["status"] == "pending")
        return {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
