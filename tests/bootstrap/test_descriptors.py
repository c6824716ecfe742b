"""A node process under a 1024 open-file limit (the common shell default) and a flood of idle API connections.

Idle TCP connections cost a stranger nothing and need no token; at a soft limit of 1024 they once exhausted the
node's descriptors, the double-sign guard's next write failed with ``EMFILE`` and the node exited. The node now
raises its soft limit to the hard one at start, so the same flood leaves it committing blocks.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio

from bootstrap.home import NodeConfig, init_home

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOFT_LIMIT = 1024
IDLE_CONNECTIONS = 1100  # more than the soft limit allows, far fewer than the hard one


def _start_with_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_LIMIT, hard))


def _height(api: str) -> int:
    with urllib.request.urlopen(f"http://{api}/chain/head", timeout=5) as resp:
        return int(json.loads(resp.read())["height"])


async def test_idle_api_connections_beyond_a_1024_limit_do_not_stop_the_node(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE_CONNECTIONS + 512:
        pytest.skip(f"the hard open-file limit here ({hard}) leaves no room above {IDLE_CONNECTIONS} connections")
    info = init_home(tmp_path / "n0", config=NodeConfig.test(api_listen="127.0.0.1:0", run_agent=False))
    log = tmp_path / "node.log"
    with open(log, "ab") as err:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bootstrap.node", "--home", str(info.home)], stdout=subprocess.PIPE,
            stderr=err, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_start_with_soft_limit)
    sockets: list[socket.socket] = []
    try:
        buf = b""
        assert proc.stdout is not None
        with trio.fail_after(30):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"node exited before READY:\n{log.read_text()[-2000:]}"
                buf += chunk
        api = next(f[4:] for f in buf.split(b"\n", 1)[0].decode().split() if f.startswith("api="))
        host, port = api.rsplit(":", 1)
        # from eleven loopback addresses, 100 each: under the API's per-address cap, so every one is held open
        for k in range(IDLE_CONNECTIONS):
            sockets.append(socket.create_connection((host, int(port)), timeout=5,
                                                    source_address=(f"127.0.0.{2 + k // 100}", 0)))
        start = await trio.to_thread.run_sync(_height, api)
        with trio.fail_after(30):
            while (await trio.to_thread.run_sync(_height, api)) < start + 3:
                assert proc.returncode is None, f"node exited:\n{log.read_text()[-2000:]}"
                await trio.sleep(0.2)
        assert proc.returncode is None
    finally:
        for s in sockets:
            s.close()
        proc.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await proc.wait()
