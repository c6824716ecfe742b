"""The devnet launcher with real background processes: up (progress, readiness), status, down keeping the data,
up again on the same chain, busy ports refused, a node that dies at start reported with its log."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bootstrap.cli import main
from bootstrap.cli.devnet import (
    DevnetError,
    create_devnet,
    devnet_down,
    devnet_up,
    ephemeral_range,
    find_port_base,
    load_devnet,
    log_tail,
    node_pid,
    start_node,
)
from bootstrap.node.process import startup_failures
from p2pnet.errors import ListenError

pytestmark = pytest.mark.slow


def test_up_status_down_up_keeps_the_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "net"
    api = find_port_base(2)
    p2p = find_port_base(2, avoid=range(api, api + 2))
    try:
        rc = main(["devnet", "up", "--nodes", "2", "--dir", str(d), "--api-port", str(api), "--p2p-port", str(p2p),
                   "--timeout", "90"])
        out = capsys.readouterr().out
        assert rc == 0
        assert "waiting for nodes" in out and "devnet ready" in out
        nodes = load_devnet(d)
        for n in nodes:
            assert n.peer_id in out and n.api_url in out
        assert nodes[1].api_url == f"http://127.0.0.1:{api + 1}"
        assert (d / "pids" / "node0.pid").exists() and (d / "logs" / "node1.log").exists()

        assert main(["devnet", "status", "--dir", str(d), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert all(r["pid"] and r["health"]["height"] >= 1 for r in rows)
        height_before = max(r["health"]["height"] for r in rows)
        pids = [r["pid"] for r in rows]

        assert main(["devnet", "down", "--dir", str(d)]) == 0
        assert "stopped 2 node(s)" in capsys.readouterr().out
        assert [node_pid(d, i) for i in range(2)] == [None, None]
        assert main(["devnet", "status", "--dir", str(d)]) == 1  # down nodes make status fail
        assert "down" in capsys.readouterr().out

        again = devnet_up(d, 2, api_port=api, p2p_port=p2p, timeout=90)
        assert [n.peer_id for n in again] == [n.peer_id for n in nodes]
        assert sorted(node_pid(d, i) for i in range(2)) != sorted(pids)
        h = again[0].client().head()["height"]
        assert h >= height_before  # the same chain, continued, not a new one
    finally:
        if (d / "devnet.json").exists():
            devnet_down(d, timeout=10)


def test_busy_ports_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DevnetError, match="not all free"):
            devnet_up(tmp_path / "net", 2, api_port=port, p2p_port=find_port_base(2, avoid=(port, port + 1)))
    assert not (tmp_path / "net" / "devnet.json").exists()


def test_a_node_that_dies_at_start_is_reported_and_the_others_stopped(tmp_path: Path) -> None:
    d = tmp_path / "net"
    api = find_port_base(2)
    p2p = find_port_base(2, avoid=range(api, api + 2))
    nodes = create_devnet(d, 2, api_port=api, p2p_port=p2p)
    (Path(nodes[1].home) / "genesis.json").write_text("{not json")
    try:
        with pytest.raises(DevnetError, match="node1 exited") as exc:
            devnet_up(d, 2, timeout=60)
        assert "genesis" in str(exc.value)  # the tail of its log says why
        assert [node_pid(d, i) for i in range(2)] == [None, None]
    finally:
        devnet_down(d, timeout=10)


def test_port_runs_lie_outside_the_ephemeral_range(tmp_path: Path) -> None:
    # A killed node's port stays free for its restart only if no outgoing connection can take it meanwhile.
    low, high = ephemeral_range()
    for _ in range(50):
        base = find_port_base(4)
        assert all(not low <= p <= high for p in range(base, base + 4)), (base, low, high)
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("1024\t65535\n")
    assert ephemeral_range(str(ranges)) == (1024, 65535)
    assert ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)


@pytest.mark.parametrize("which", ["api", "p2p"])
def test_a_taken_port_stops_the_node_with_a_clear_error(tmp_path: Path, which: str) -> None:
    # An outgoing connection bound to the node's port: SO_REUSEADDR does not get past it.
    api = find_port_base(1)
    p2p = find_port_base(1, avoid=[api])
    nodes = create_devnet(tmp_path / "net", 1, api_port=api, p2p_port=p2p)
    with socket.socket() as server, socket.socket() as holder:
        server.bind(("127.0.0.1", 0))
        server.listen()
        holder.bind(("127.0.0.1", api if which == "api" else p2p))
        holder.connect(server.getsockname())
        proc = start_node(tmp_path / "net", nodes[0])
        assert proc.wait(60) == 1
    what = "the API" if which == "api" else "peers"
    tail = log_tail(tmp_path / "net", 0)
    assert f"error: cannot listen for {what} on" in tail and "Address already in use" in tail, tail
    assert "Traceback" not in tail, tail


def test_startup_failures_never_hide_a_bug() -> None:
    taken = ListenError("peers", "/ip4/127.0.0.1/tcp/1", "Address already in use")
    assert startup_failures(taken) == [taken]
    assert startup_failures(ExceptionGroup("n", [ExceptionGroup("m", [taken])])) == [taken]
    assert startup_failures(ExceptionGroup("n", [taken, KeyError("bug")])) is None
    assert startup_failures(KeyError("bug")) is None
