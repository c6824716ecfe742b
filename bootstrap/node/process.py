"""The node as a process: ``main_node`` runs one node until SIGINT/SIGTERM (``dacn node`` calls it), and
``python -m bootstrap.node`` is the same without the rest of the CLI, for tests and launchers."""

from __future__ import annotations

import gc
import logging
import resource
import signal
from pathlib import Path

import trio

from bootstrap.errors import HomeError, NodeError
from bootstrap.home import NodeConfig
from bootstrap.node.node import Node
from bootstrap.node.switches import TestSwitchError, TestSwitches
from ledger.block import BlockError
from ledger.errors import LedgerError
from ledger.store import StoreError
from p2pnet.errors import ListenError

log = logging.getLogger("bootstrap.node")


# A node's heap is large and long-lived (state, mempool, tx index, compute libraries) while executing a block
# allocates thousands of short-lived objects, and every default collection (each 700 allocations) that reaches
# the old generations walks that whole heap: 16% of a validator's samples at saturation sat in allocation sites
# of block execution. Collect the young generation less often and keep what startup built out of the walks.
NODE_GC_THRESHOLD = (50_000, 20, 100)
OPEN_FILES_WANTED = 65_536  # the soft limit asked for when the hard limit is unlimited


def tune_gc_for_node() -> None:
    """Freeze what exists now (imports, startup state) out of the collector's walks and raise its thresholds.
    Cyclic garbage is still collected, only later; called once at node process start."""
    gc.freeze()
    gc.set_threshold(*NODE_GC_THRESHOLD)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; returns (before, after).

    Every peer link and API connection costs a descriptor, and so do the node's own files (the store, the sign
    state, blobs). The common shell default of 1024 let a stranger's idle API connections exhaust them, and the
    next write of the double-sign guard failed with ``EMFILE``; the hard limit is usually far higher."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return (-1, -1)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, OPEN_FILES_WANTED)
    if soft == resource.RLIM_INFINITY or target <= soft:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return (soft, soft)
    return (soft, target)


def main_node(home: Path, config: NodeConfig, *, passphrase: str | None = None, faulty: str | None = None,
              ready_line: bool = True) -> int:
    """Run a node in this process until SIGINT/SIGTERM; the ``dacn node`` command calls this. Blocks.

    Prints one line ``READY <peer id> p2p=<multiaddr> api=<host:port>`` on stdout once everything listens, so
    launchers can wait for readiness without sleeping. Returns the process exit code."""
    try:
        switches = TestSwitches.from_env()
    except TestSwitchError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    if switches.active:
        log.warning("TEST SWITCHES ON: %s", switches)
    tune_gc_for_node()
    before, after = raise_open_file_limit()
    if after != before:
        log.info("open-file limit raised from %d to %d", before, after)
    node = Node(home, config, passphrase=passphrase, faulty=faulty, switches=switches)
    watched = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if switches.isolate_signal else [])

    async def _main() -> None:
        with trio.open_signal_receiver(*watched) as signals:
            async with trio.open_nursery() as nursery:

                async def run_node(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                    await node.run(task_status=task_status)
                    nursery.cancel_scope.cancel()  # stopped (by a signal or otherwise): end the signal loop

                await nursery.start(run_node)
                if ready_line:
                    assert node.host is not None
                    addrs = " ".join(f"p2p={a}" for a in node.host.listen_addrs)
                    api = f"{node.api_address[0]}:{node.api_address[1]}" if node.api_address else "-"
                    print(f"READY {node.peer_id} {addrs} api={api} height={node.height}", flush=True)
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        cut = node.isolate(switches.isolate_s)
                        log.warning("test switch: cut %d peer links for %gs", cut, switches.isolate_s)
                        continue
                    log.info("signal %d: shutting down", signum)
                    node.stop()
                    break  # the nursery now waits for run() to say goodbye and close the store

    try:
        trio.run(_main)
    except BaseException as exc:
        reasons = startup_failures(exc)
        if reasons is None:
            raise
        for reason in reasons:
            print(f"error: {reason}", flush=True)
        return 1
    return 0


# A node that stops on one of these has a cause to show its operator (a bad home, a taken port), not a bug.
_STARTUP_FAILURES = (HomeError, StoreError, BlockError, LedgerError, ListenError)


def startup_failures(exc: BaseException) -> list[BaseException] | None:
    """The errors inside ``exc`` (trio groups them) if all of them are operator-facing causes; None if any is
    not, so that a bug is never hidden behind a clean message."""
    if isinstance(exc, _STARTUP_FAILURES):
        return [exc]
    if not isinstance(exc, BaseExceptionGroup):
        return None
    matched, rest = exc.split(_STARTUP_FAILURES)
    if rest is not None or matched is None:
        return None
    leaves: list[BaseException] = []
    stack: list[BaseException] = [matched]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    return leaves


def _cli(argv: list[str] | None = None) -> int:
    """``python -m bootstrap.node --home DIR …``: the node alone, for tests and launchers (``dacn node`` is the
    user-facing command)."""
    import argparse
    import os

    ap = argparse.ArgumentParser(prog="python -m bootstrap.node", description="run one dacn node")
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--bootstrap", action="append", default=None, help="multiaddr of a peer (repeatable)")
    ap.add_argument("--p2p", default=None, help="HOST:PORT to listen on for peers")
    ap.add_argument("--api", default=None, help="HOST:PORT for the REST API, or 'none'")
    ap.add_argument("--faulty", default=None, help="fault injection for tests")
    ap.add_argument("--byzantine", default=None,
                    help="test only: misbehave as a validator (comma-separated: equivocate, invalid-proposals, spam)")
    ap.add_argument("--clock-skew-ms", default=None, help="test only: offset the block clock by this many ms")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.byzantine is not None:
        os.environ["DACN_TEST_BYZANTINE"] = args.byzantine
    if args.clock_skew_ms is not None:
        os.environ["DACN_TEST_CLOCK_SKEW_MS"] = args.clock_skew_ms
    try:
        config = NodeConfig.load(args.home)
        if args.bootstrap is not None:
            config.bootstrap = list(args.bootstrap)
        if args.p2p is not None:
            config.p2p_listen = args.p2p
        if args.api is not None:
            config.api_listen = None if args.api.lower() == "none" else args.api
        config.validate()
    except NodeError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return main_node(args.home, config, passphrase=os.environ.get("DACN_PASSPHRASE"), faulty=args.faulty)
