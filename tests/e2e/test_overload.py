"""Load past trouble, end to end with real processes: a ``kill -9`` of a validator under steady load costs a dip,
not the rest of the run.

Found by the review (issue 17, case 11): the txs a killed validator had admitted but not gossiped were gone, the
nonce gaps they left stranded everything their senders sent after them, and throughput fell from ~1,000 to ~32
txs per block for the rest of the run. Here a 4-validator devnet carries the load generator at a rate well
below saturation (every node's ``POST /txs``), one validator is killed with SIGKILL and restarted from its store,
and the chain's committed rate, read from the blocks' own BFT times, must come back to its level before the kill
within a minute, with every tx the load generator had accepted committed in the end.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.cli.devnet import create_devnet, devnet_down, find_port_base, node_pid, start_node, wait_ready
from bootstrap.cli.loadgen import LoadConfig, LoadReport, run_load

pytestmark = pytest.mark.slow

RATE = 1000.0  # tx/s offered: about half of what this devnet commits at saturation here (~2,000-4,000)
DURATION = 75.0
KILL_AFTER = 20.0
WINDOW_S = 10.0  # committed tx/s is measured over windows this long, from the blocks' times


def _load_in_thread(cfg: LoadConfig) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    """The load generator on a thread of its own; the event is set when its first batch has been posted."""
    out: dict[str, Any] = {}
    posting = threading.Event()

    def go() -> None:
        try:
            out["report"] = trio.run(partial(run_load, cfg, on_progress=lambda _report: posting.set()))
        except BaseException as exc:  # reported by the test after join
            out["error"] = exc
        finally:
            posting.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out, posting


def _rate(blocks: list[tuple[float, int]], lo: float, hi: float) -> float:
    """Committed tx/s over the blocks whose time falls in ``[lo, hi)``."""
    return sum(n for t, n in blocks if lo <= t < hi) / (hi - lo)


def test_kill9_of_a_validator_under_load_costs_a_dip_not_the_run(tmp_path: Path) -> None:
    d = tmp_path / "devnet"
    api = find_port_base(4)
    p2p = find_port_base(4, avoid=range(api, api + 4))
    nodes = create_devnet(d, 4, validators=4, api_port=api, p2p_port=p2p)
    procs = {i: start_node(d, nodes[i]) for i in range(4)}
    try:
        wait_ready(nodes, directory=d, timeout=120, procs=procs)
        cfg = LoadConfig([n.api_url for n in nodes], rate=RATE, duration=DURATION, accounts=32,
                         faucet_home=Path(nodes[0].home), settle_s=60, batch_ms=200,
                         spread=True)  # every sender's nonces on every node: the kill leaves gaps everywhere
        loader, result, posting = _load_in_thread(cfg)
        client = nodes[0].client(timeout=10)
        # the loader funds its accounts and signs the run's transfers first (about 10 s here); the clock starts
        # at its first posted batch, not at the funding blocks
        assert posting.wait(timeout=180), "the load generator never posted"
        assert "error" not in result, result.get("error")
        load_started = time.time()
        time.sleep(KILL_AFTER)  # the load runs on its own clock: this is how long it runs before the kill
        victim = 2
        pid = node_pid(d, victim)
        assert pid is not None
        killed_at = time.time()
        os.killpg(pid, signal.SIGKILL)
        procs.pop(victim).wait(timeout=10)
        procs[victim] = start_node(d, nodes[victim])
        loader.join(timeout=DURATION + 180)
        assert not loader.is_alive(), "the load generator did not finish"
        assert "error" not in result, result.get("error")
        report: LoadReport = result["report"]

        blocks = []
        for h in range(report.first_height, report.last_height + 1):
            b = client.get(f"/blocks/{h}?txs=ids")
            blocks.append((b["time_ms"] / 1000, len(b["tx_ids"])))
        before = _rate(blocks, load_started + 5, killed_at)
        assert before > 0.8 * RATE, f"the devnet did not carry the load before the kill: {before:.0f} tx/s"
        # windows starting every second after the kill; the first that is back at the level before it
        starts = [killed_at + k for k in range(int(DURATION - KILL_AFTER - WINDOW_S))]
        after = [(s - killed_at, _rate(blocks, s, s + WINDOW_S)) for s in starts]
        back = next((s for s, r in after if r >= 0.9 * before), None)
        med = statistics.median(r for _, r in after)
        assert back is not None and back <= 60, (
            f"committed tx/s before the kill {before:.0f}, after it never back to 90% within a minute "
            f"(median of the windows after: {med:.0f}; {[round(r) for _, r in after]})")
        # nothing it accepted is lost: every tx the loader saw accepted committed once the load settled
        assert report.uncommitted == 0, report.to_dict()
        assert report.committed >= report.accepted, report.to_dict()
    finally:
        for i, p in procs.items():
            if p.poll() is None:
                pid = node_pid(d, i)
                if pid is not None:
                    os.killpg(pid, signal.SIGKILL)
                p.wait(timeout=10)
        if (d / "devnet.json").exists():
            devnet_down(d, timeout=10.0)
