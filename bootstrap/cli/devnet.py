"""A local devnet: N node processes on loopback, started in the background and managed through a directory.

Layout of a devnet directory::

    devnet.json          the nodes: index, home, peer id, API URL, p2p address, role, extra flags
    node0/ … nodeN-1/    node homes (``bootstrap.home.make_testnet``: one genesis, a faucet, every key a worker)
    pids/node<i>.pid     the running process of node i
    logs/node<i>.log     its stdout and stderr

Node i serves its API on ``api_port + i`` and p2p on ``p2p_port + i``, and bootstraps from node 0 only.
``up`` waits (with a progress line) until every node answers ``/health`` and a block has committed; ``down``
stops the processes and keeps their data, so a second ``up`` restarts the same chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.cli.client import ClientError, NodeClient
from bootstrap.errors import NodeError

STATE_FILE = "devnet.json"


class DevnetError(NodeError):
    """A devnet could not be started, found or stopped; the message says which node and why."""


@dataclass
class DevnetNode:
    """One node of a devnet, as recorded in ``devnet.json``."""

    index: int
    home: str
    peer_id: str
    api_url: str
    p2p_addr: str
    validator: bool
    faulty: str | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def role(self) -> str:
        return ("validator + worker" if self.validator else "worker") + (f" (faulty: {self.faulty})"
                                                                           if self.faulty else "")

    def client(self, timeout: float = 30.0) -> NodeClient:
        return NodeClient(self.api_url, timeout=timeout)


def _paths(d: Path, i: int) -> tuple[Path, Path]:
    return d / "pids" / f"node{i}.pid", d / "logs" / f"node{i}.log"


def load_devnet(directory: Path) -> list[DevnetNode]:
    """The nodes recorded in ``directory``; raises :class:`DevnetError` when it holds no devnet."""
    path = Path(directory) / STATE_FILE
    try:
        doc = json.loads(path.read_text())
        return [DevnetNode(**n) for n in doc["nodes"]]
    except FileNotFoundError:
        raise DevnetError(f"{directory}: no devnet here (run `dacn devnet up --dir {directory}`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DevnetError(f"{path}: unreadable devnet state: {exc}") from None


def _save(directory: Path, nodes: Sequence[DevnetNode]) -> None:
    path = Path(directory) / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"nodes": [asdict(n) for n in nodes]}, indent=1) + "\n")
    tmp.replace(path)


def ports_free(host: str, ports: Sequence[int]) -> bool:
    """Whether every port can be bound on ``host`` right now."""
    socks = []
    try:
        for p in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            # Servers (hypercorn, trio listeners) set SO_REUSEADDR, so a port in TIME_WAIT is free for them too.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default where unreadable)."""
    try:
        low, high = (int(x) for x in Path(path).read_text().split()[:2])
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def find_port_base(count: int, *, host: str = "127.0.0.1", avoid: Sequence[int] = (), tries: int = 200) -> int:
    """A base port ``b`` with ``b .. b+count-1`` all free (and none in ``avoid``), for tests that need fixed
    offsets.

    The run lies outside the kernel's ephemeral range: a node's port must stay free while the node is down
    (killed and restarted), and any outgoing connection on the machine could otherwise take it as its local port
    in the meantime, leaving the restarted node unable to bind. Candidates are random, so parallel runs rarely
    collide.
    """
    rng = random.SystemRandom()
    low, high = ephemeral_range()
    spans = [(lo, hi) for lo, hi in ((10000, low - 1), (high + 1, 65535)) if hi - lo + 1 >= count]
    for _ in range(tries):
        if spans:
            lo, hi = rng.choice(spans)
            base = rng.randint(lo, hi - count + 1)
        else:  # the whole range is ephemeral: take what the kernel offers
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                base = s.getsockname()[1]
        ports = range(base, base + count)
        if base + count <= 65536 and not set(ports) & set(avoid) and ports_free(host, ports):
            return base
    raise DevnetError(f"no run of {count} free ports found on {host}")


# ---------------------------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still "exists"; it is not a running node
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def node_pid(directory: Path, index: int) -> int | None:
    """The pid of node ``index`` if its pid file names a live process."""
    pid_file, _ = _paths(Path(directory), index)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def node_command(node: DevnetNode, python: str = sys.executable) -> list[str]:
    cmd = [python, "-m", "bootstrap.cli", "node", "--home", node.home]
    if node.faulty:
        cmd += ["--faulty", node.faulty]
    return cmd + list(node.extra_args)


def start_node(directory: Path, node: DevnetNode, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start one node in the background (its own session, output to its log); refuses if it already runs."""
    directory = Path(directory)
    if (pid := node_pid(directory, node.index)) is not None:
        raise DevnetError(f"node{node.index} already runs (pid {pid})")
    pid_file, log_file = _paths(directory, node.index)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ)
    child_env.update({"PYTHONUNBUFFERED": "1"})
    child_env.update(env or {})
    with open(log_file, "ab") as log:
        log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(node_command(node))}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            node_command(node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the launching terminal must not reach the nodes
            env=child_env,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop_node(directory: Path, index: int, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> bool:
    """Signal node ``index`` and wait for it to exit; escalate to SIGKILL of its process group after
    ``timeout``. Returns whether a process was running."""
    directory = Path(directory)
    pid = node_pid(directory, index)
    if pid is None:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _pid_alive(pid):
        # The node leads its own session, so this also ends its compute children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
    _paths(directory, index)[0].unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child (started by another `dacn` invocation)
        os.waitpid(pid, os.WNOHANG)


def log_tail(directory: Path, index: int, lines: int = 20) -> str:
    _, log_file = _paths(Path(directory), index)
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------- the devnet


def create_devnet(
    directory: Path,
    n: int,
    *,
    validators: int | None = None,
    api_port: int = 5000,
    p2p_port: int = 4001,
    host: str = "127.0.0.1",
    faulty: dict[int, str] | None = None,
    chain_id: str = "dacn-devnet",
    params: dict[str, Any] | None = None,
) -> list[DevnetNode]:
    """Make the homes and ``devnet.json`` (no processes yet)."""
    from bootstrap.home import make_testnet

    directory = Path(directory)
    if (directory / STATE_FILE).exists():
        raise DevnetError(f"{directory} already holds a devnet")
    faulty = faulty or {}
    for i in faulty:
        if not 0 <= i < n:
            raise DevnetError(f"faulty node index {i} out of range 0..{n - 1}")
    infos = make_testnet(n, directory, validators=validators, p2p_port=p2p_port, api_port=api_port, host=host,
                         chain_id=chain_id, params=params)
    nodes = [
        DevnetNode(
            index=i,
            home=str(info.home),
            peer_id=str(info.peer_id),
            api_url=f"http://{host}:{api_port + i}",
            p2p_addr=info.multiaddr(),
            validator=info.validator,
            faulty=faulty.get(i),
        )
        for i, info in enumerate(infos)
    ]
    _save(directory, nodes)
    return nodes


def wait_ready(
    nodes: Sequence[DevnetNode],
    *,
    directory: Path | None = None,
    timeout: float = 120.0,
    min_height: int = 1,
    progress: Callable[[str], None] | None = None,
    procs: dict[int, subprocess.Popen] | None = None,
) -> dict[int, dict[str, Any]]:
    """Poll every node's ``/health`` until all answer at ``min_height`` or above; a node whose process died is
    reported at once with the tail of its log. Returns each node's last health answer."""
    deadline = time.monotonic() + timeout
    healthy: dict[int, dict[str, Any]] = {}
    last_line = ""
    while True:
        heights = []
        for node in nodes:
            proc = (procs or {}).get(node.index)
            if proc is not None and proc.poll() is not None:
                tail = log_tail(directory, node.index) if directory is not None else ""
                raise DevnetError(f"node{node.index} exited with status {proc.returncode} while starting:\n{tail}")
            try:
                h = node.client(timeout=2.0).health(timeout=2.0)
            except ClientError:
                healthy.pop(node.index, None)
                continue
            heights.append(h.get("height", 0))
            if h.get("height", 0) >= min_height:
                healthy[node.index] = h
            else:
                healthy.pop(node.index, None)
        answering = len(heights)
        line = (f"waiting for nodes: {answering}/{len(nodes)} answering, {len(healthy)}/{len(nodes)} at height "
                f">= {min_height} (heights {sorted(heights) if heights else '-'})")
        if progress is not None and line != last_line:
            progress(line)
            last_line = line
        if len(healthy) == len(nodes):
            return healthy
        if time.monotonic() >= deadline:
            raise DevnetError(f"devnet not ready after {timeout:g}s: {line}")
        time.sleep(0.25)


def devnet_up(
    directory: Path,
    n: int = 4,
    *,
    validators: int | None = None,
    api_port: int = 5000,
    p2p_port: int = 4001,
    host: str = "127.0.0.1",
    faulty: dict[int, str] | None = None,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
    params: dict[str, Any] | None = None,
) -> list[DevnetNode]:
    """Create the devnet if ``directory`` holds none, start every node that is not running, and wait until all
    are healthy and a block has committed. On failure the processes this call started are stopped again."""
    directory = Path(directory)
    if (directory / STATE_FILE).exists():
        nodes = load_devnet(directory)
        if n is not None and n != len(nodes) and progress is not None:
            progress(f"{directory} already holds a {len(nodes)}-node devnet; restarting it as it is")
    else:
        for label, base in (("api", api_port), ("p2p", p2p_port)):
            if not ports_free(host, range(base, base + n)):
                raise DevnetError(f"{label} ports {base}..{base + n - 1} on {host} are not all free")
        nodes = create_devnet(directory, n, validators=validators, api_port=api_port, p2p_port=p2p_port,
                              host=host, faulty=faulty, params=params)
    procs: dict[int, subprocess.Popen] = {}
    try:
        for node in nodes:
            if node_pid(directory, node.index) is None:
                procs[node.index] = start_node(directory, node)
        if progress is not None:
            progress(f"started {len(procs)} node process(es); {len(nodes) - len(procs)} already running")
        wait_ready(nodes, directory=directory, timeout=timeout, progress=progress, procs=procs)
    except BaseException:
        for i in procs:
            stop_node(directory, i, timeout=5.0)
        raise
    return nodes


def devnet_status(directory: Path) -> list[dict[str, Any]]:
    """One row per node: its record, whether its process runs, and its ``/health`` answer if it gave one."""
    directory = Path(directory)
    rows = []
    for node in load_devnet(directory):
        row: dict[str, Any] = {**asdict(node), "role": node.role, "pid": node_pid(directory, node.index)}
        try:
            row["health"] = node.client(timeout=2.0).health(timeout=2.0)
        except ClientError as exc:
            row["health"] = None
            row["error"] = str(exc)
        rows.append(row)
    return rows


def devnet_down(directory: Path, *, timeout: float = 15.0) -> list[int]:
    """Stop every node (SIGTERM, then SIGKILL after ``timeout``); their homes and data stay. Returns the
    indexes of the nodes that were running."""
    directory = Path(directory)
    stopped = []
    for node in load_devnet(directory):
        if stop_node(directory, node.index, timeout=timeout):
            stopped.append(node.index)
    return stopped


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of a devnet's nodes (for ``dacn devnet up/status`` and the demo)."""
    header = ("node", "peer id", "API", "role", "pid", "height")
    lines = []
    for r in rows:
        health = r.get("health") or {}
        lines.append((
            f"node{r['index']}", r["peer_id"], r["api_url"], r.get("role", ""),
            str(r.get("pid") or "-"), str(health.get("height", "down") if health else "down"),
        ))
    widths = [max(len(header[c]), *(len(row[c]) for row in lines)) for c in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return "\n".join(out + [fmt.format(*row) for row in lines])
