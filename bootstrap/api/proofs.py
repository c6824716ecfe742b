"""``GET /proof/{section}/{id}``: a record of the state with everything a light client needs to check it
(``ledger.lightclient``; ``dacn verify-proof`` checks it offline against the genesis validators)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi import Path as PathParam

from bootstrap.api.bodies import jsonable
from bootstrap.api.env import Env
from bootstrap.api.errors import ApiError, parse_hex32
from ledger.lightclient import StateProof, VerifiedRecord, decode_record

MAX_PROOF_WAIT_S = 30.0


def proof_answer(sp: StateProof) -> dict[str, Any]:
    """The JSON answer: the claimed record (unchecked: verify ``proof``), its height and the proof's hex."""
    height = sp.anchor.height - 1
    record = None if sp.record is None else decode_record(sp.section, sp.key, sp.record)
    claimed = VerifiedRecord(height, sp.section, sp.key, record).to_dict()
    return {**jsonable(claimed), "anchor_height": sp.anchor.height, "state_root": sp.anchor.state_root.hex(),
            "proof": sp.encode().hex()}


def add_routes(app: FastAPI, env: Env) -> None:
    """``GET /proof/{section}/{id}``."""
    node = env.node

    @app.get("/proof/{section}/{ident}")
    async def proof(
        section: Literal["account", "worker", "job", "allowance"],
        ident: Annotated[str, PathParam(max_length=128, description="an account or worker (key name, peer id or "
                                        "64 hex), a job id, or an allowance's owner")],
        spender: Annotated[str | None, Query(max_length=128, description="allowance only: the spender")] = None,
        wait: Annotated[float, Query(description="seconds to wait for the next block, which fixes the root "
                                     f"(at most {MAX_PROOF_WAIT_S:g})")] = 10.0,
        height: Annotated[int | None, Query(ge=0, description="a past height (the node rebuilds that state from "
                                            "a kept snapshot); default the head")] = None,
    ) -> dict[str, Any]:
        """The record (or its absence) at the current height (or ``height``), with its tree path, the state header
        and the header and commit of the next block, whose state root covers it. The record shown is what the node
        claims; check ``proof`` with ``dacn verify-proof`` before trusting it."""
        timeout = min(env.wait_s(wait), MAX_PROOF_WAIT_S)
        key = parse_hex32(ident, "id") if section == "job" else env.account(ident)
        if section == "allowance":
            if spender is None:
                raise ApiError(400, "spender: an allowance proof needs ?spender=", {"field": "spender"})
            key += env.account(spender)
        elif spender is not None:
            raise ApiError(400, "spender: only for /proof/allowance", {"field": "spender"})
        sp = await env.call(node.proofs.prove, section, key, timeout=timeout, height=height)
        return proof_answer(sp)
