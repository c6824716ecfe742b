"""``dacn demo`` end to end on real processes: every model verified, the nodes agree, the keep-running path
prints the URLs and Ctrl-C stops every node."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.cli.demo import JOBS, run_demo
from bootstrap.cli.devnet import find_port_base, load_devnet, node_pid

pytestmark = pytest.mark.slow


def test_demo_runs_every_model_to_verified_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    lines: list[str] = []
    api = find_port_base(4)
    p2p = find_port_base(4, avoid=range(api, api + 4))

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    rc = run_demo(tmp_path / "demo", api_port=api, p2p_port=p2p, timeout=180, say=lines.append,
                  wait_for_interrupt=ctrl_c)
    text = "\n".join(lines)
    assert rc == 0, text
    for model, _client, _reward, _params in JOBS:
        assert any(model in ln and "verified" in ln and "price" in ln for ln in lines), model
    assert "all 4 nodes hold block" in text
    assert f"http://127.0.0.1:{api + 3}" in text and "press Ctrl-C" in text
    assert "stopped 4 node(s)" in text
    nodes = load_devnet(tmp_path / "demo")
    assert all(node_pid(tmp_path / "demo", n.index) is None for n in nodes)
