"""Helpers for the end-to-end tests: devnets of real node processes on free loopback ports, and ledger checks
read straight from a node's store (``bootstrap.cli.export_state``) or over its API."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bootstrap.cli import NodeClient, export_state
from bootstrap.cli.devnet import DevnetNode, devnet_down, devnet_up, find_port_base


@contextmanager
def running_devnet(directory: Path, n: int, *, validators: int | None = None, faulty: dict[int, str] | None = None,
                   timeout: float = 120.0, params: dict[str, Any] | None = None) -> Iterator[list[DevnetNode]]:
    """A devnet on free ports (``params`` overrides genesis parameters); every node process is stopped when the
    block ends, whatever happened."""
    api = find_port_base(n)
    p2p = find_port_base(n, avoid=range(api, api + n))
    try:
        yield devnet_up(directory, n, validators=validators, api_port=api, p2p_port=p2p, faulty=faulty,
                        timeout=timeout, params=params)
    finally:
        if (directory / "devnet.json").exists():
            devnet_down(directory, timeout=10.0)


def post_raw(url: str, body: str) -> tuple[int, Any]:
    """POST a JSON text exactly as curl -d would send it."""
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(what: str, check: Callable[[], Any], timeout: float, poll_s: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def common_block(clients: Sequence[NodeClient]) -> list[tuple[int, str, str]]:
    """(height, block hash, state root before it) of the lowest head height, as each node reports it."""
    h = min(c.head()["height"] for c in clients)
    return [(h, (b := c.get(f"/blocks/{h}"))["hash"], b["state_root_before"]) for c in clients]


def balances_at(home: str | Path, height: int) -> dict[str, int]:
    """Every account's balance (by peer id) at ``height``, replayed from a node's own store."""
    return {a: v["balance"] for a, v in export_state(Path(home), height)["accounts"].items()}


def settlement_payments(client: NodeClient, home: str | Path, job: dict[str, Any]) -> dict[str, int]:
    """What each account received in the block that settled ``job``: its balance change in that block, with the
    fees it paid there added back and the fees it earned as proposer taken out (the other movements a block
    makes to a worker's balance)."""
    height = next(h["height"] for h in job["history"] if h["status"] == job["status"])
    before, after = balances_at(home, height - 1), balances_at(home, height)
    block = client.get(f"/blocks/{height}")
    fees: dict[str, int] = {}
    for tx in block["txs"]:
        fees[tx["sender"]] = fees.get(tx["sender"], 0) + tx["fee"]
    total_fees = sum(fees.values())
    out = {}
    for acct in set(before) | set(after):
        delta = after.get(acct, 0) - before.get(acct, 0) + fees.get(acct, 0)
        if acct == block["proposer"]:
            delta -= total_fees
        if delta:
            out[acct] = delta
    return out
