"""Nodes as real processes on loopback: kill -9 under load, restart and resync, graceful SIGTERM.

Each validator runs ``python -m bootstrap.node`` in its own process; readiness is the ``READY`` line it prints
once it listens. The test process runs one more node in-process, an observer of the same testnet, and uses it to
submit load and to ask each validator for its height, head and blocks over the real p2p protocols.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trio

from bootstrap.gossip import PROTO_STATUS, PROTO_SYNC, Status
from bootstrap.home import HomeInfo, NodeConfig, init_home, make_testnet
from bootstrap.node import Node
from ledger.store import open_chain
from ledger.sync import Blocks, GetBlocks, decode_sync_message
from ledger.tx import Transfer
from p2pnet import PeerId

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    info: HomeInfo
    process: trio.Process
    log: Path
    peer_id: PeerId | None = None
    addr: str = ""
    height_at_start: int = -1


async def start_child(
    info: HomeInfo, bootstrap: list[str], timeout: float = 30.0, env: dict[str, str] | None = None
) -> Child:
    """Start a node process and wait for its READY line (bounded), or fail with its log."""
    log = info.home / "node.log"
    args = [sys.executable, "-m", "bootstrap.node", "--home", str(info.home), "--api", "none", "--log-level",
            os.environ.get("DACN_TEST_NODE_LOG", "WARNING")]
    for b in bootstrap:
        args += ["--bootstrap", b]
    with open(log, "ab") as err:
        proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    child = Child(info, proc, log)
    buf = b""
    assert proc.stdout is not None
    with trio.move_on_after(timeout):
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode()
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"node {info.home.name} did not get ready: {line!r}\n{log.read_text()[-2000:]}")
    fields = line.split()
    child.peer_id = PeerId.from_string(fields[1])
    child.addr = next(f[4:] for f in fields if f.startswith("p2p="))
    child.height_at_start = int(next(f[7:] for f in fields if f.startswith("height=")))
    return child


@asynccontextmanager
async def reaped(children: list[Child]) -> AsyncIterator[list[Child]]:
    """Every child process is killed when the test ends, whatever happens."""
    try:
        yield children
    finally:
        for c in children:
            if c.process.returncode is None:
                c.process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            for c in children:
                await c.process.wait()


async def status_of(observer: Node, peer: PeerId) -> Status | None:
    assert observer.host is not None
    try:
        return Status.from_wire(await observer.host.request(peer, PROTO_STATUS, None, timeout=2.0))
    except Exception:
        return None


async def block_hash_at(observer: Node, peer: PeerId, height: int) -> bytes | None:
    assert observer.host is not None
    raw = await observer.host.request(peer, PROTO_SYNC, GetBlocks(height, height).encode(), timeout=5.0)
    resp = decode_sync_message(raw)
    assert isinstance(resp, Blocks)
    return resp.blocks[0][0].hash() if resp.blocks else None


async def wait_until(predicate: object, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout) as scope:
        while not await predicate():  # type: ignore[operator]
            await trio.sleep(0.1)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@asynccontextmanager
async def validators_and_observer(tmp_path: Path) -> AsyncIterator[tuple[list[Child], list[str], Node, trio.Nursery]]:
    """Four validator processes and an in-process observer of their testnet, past its first blocks; every child
    is killed and the observer stopped at the end."""
    infos = make_testnet(5, tmp_path, validators=4, config=NodeConfig.test(run_agent=False))
    children: list[Child] = []
    async with reaped(children), trio.open_nursery() as nursery:
        children.append(await start_child(infos[0], []))
        boot = [children[0].addr]
        for info in infos[1:4]:
            children.append(await start_child(info, boot))
        observer = Node(infos[4].home, replace(infos[4].config, bootstrap=boot))
        await nursery.start(observer.run)
        try:
            await wait_until(lambda: _async(observer.height >= 3), 30, "the first blocks")
            yield children, boot, observer, nursery
        finally:
            observer.stop()
            nursery.cancel_scope.cancel()


async def test_kill9_under_load_keeps_committing_and_the_restarted_validator_resyncs(tmp_path: Path) -> None:
    async with validators_and_observer(tmp_path) as (children, boot, observer, nursery):
        # load: transfers submitted at the observer, gossiped to the validators
        committed: list[str] = []
        pending: list[str] = []

        async def load() -> None:
            for i in range(400):
                pending.append(await observer.sign_and_submit("faucet", Transfer(bytes([i % 250 + 1]) * 32, 1)))
                await trio.sleep(0.02)

        nursery.start_soon(load)
        await wait_until(lambda: _async(len(pending) >= 50), 30, "load to start")
        victim = children[2]
        assert victim.peer_id is not None
        before = await status_of(observer, victim.peer_id)
        assert before is not None and before.height >= 1
        victim.process.send_signal(signal.SIGKILL)
        await victim.process.wait()
        killed_at = observer.height
        # three of four validators keep the chain going
        await wait_until(lambda: _async(observer.height >= killed_at + 5), 40, "blocks after the kill")
        for tx in list(pending[:60]):
            r = await observer.wait_for_tx(tx, 20)
            assert r["status"] == "committed", r
            committed.append(tx)
        # restart it: the store reopens at (at least) the height it had reported, then it syncs
        again = await start_child(victim.info, boot)
        children.append(again)
        assert again.peer_id == victim.peer_id
        assert again.height_at_start >= before.height
        target = observer.height

        async def caught_up() -> bool:
            s = await status_of(observer, again.peer_id)  # type: ignore[arg-type]
            return s is not None and s.height >= target

        await wait_until(caught_up, 60, f"the restarted validator to reach height {target}")
        # blocks are hash-linked: the same block at ``target`` means the same chain below it, so every tx
        # committed before, during and after the kill is in the restarted node's store
        assert max(observer.txs.heights[bytes.fromhex(t)] for t in committed) <= target
        ours = bytes.fromhex(observer.get_block(target)["hash"])  # type: ignore[index]
        assert await block_hash_at(observer, again.peer_id, target) == ours
        # same state root once both stand at the same head
        s = await status_of(observer, again.peer_id)  # type: ignore[arg-type]
        assert s is not None
        await wait_until(lambda: _async(observer.height >= s.height), 20, "the observer at the same head")
        if observer.height == s.height:
            assert s.state_root == observer.chain.root  # type: ignore[union-attr]


async def test_validators_killed_mid_height_over_and_over_never_fork_lose_txs_or_get_slashed(tmp_path: Path) -> None:
    """Validators SIGKILL themselves right after sending a prevote (so: between prevote and precommit) or right
    after a precommit, restart from their store and write-ahead log, and are killed again, under load; once two
    at once. Afterwards: one chain, every committed tx in it, one state root, no evidence, nobody slashed."""
    import random

    rng = random.Random(12)
    async with validators_and_observer(tmp_path) as (children, boot, observer, nursery):
        stakes = {v: observer.chain.state.workers[v].stake for v in observer.chain.validators}  # type: ignore[union-attr]
        pending: list[str] = []

        async def load() -> None:
            for i in range(100_000):
                pending.append(await observer.sign_and_submit("faucet", Transfer(bytes([i % 250 + 1]) * 32, 1)))
                await trio.sleep(0.05)

        nursery.start_soon(load)
        live = {i: children[i] for i in range(4)}
        kills = 0
        plan = [[1], [2], [3, 1], [0], [2], [1, 3], [0]]  # [3, 1] and [1, 3]: two at once
        for victims in plan:
            for v in victims:
                point = rng.choice(["prevote", "precommit"])
                old = live[v]
                old.process.send_signal(signal.SIGKILL)
                await old.process.wait()
                # Back up, armed to kill itself again right after its next few votes of that kind.
                crash_at = f"{point}:{rng.randint(1, 4)}"
                armed = await start_child(old.info, boot, env={"DACN_TEST_CRASH_AT": crash_at})
                children.append(armed)
                live[v] = armed
            for v in victims:
                with trio.move_on_after(60):
                    await live[v].process.wait()  # it killed itself mid-height
                if live[v].process.returncode is None:
                    seen = [await status_of(observer, c.peer_id) for c in live.values()]  # type: ignore[arg-type]
                    raise AssertionError(f"validator {v} did not reach its crash point: observer at "
                                         f"{observer.height}, validators {[s and s.height for s in seen]}, "
                                         f"driver {observer.driver and observer.driver.status()}")
                assert live[v].process.returncode == -signal.SIGKILL
                assert "killing this node mid-height" in live[v].log.read_text()
                kills += 1
                again = await start_child(live[v].info, boot)
                children.append(again)
                live[v] = again
            h = observer.height
            await wait_until(lambda h=h: _async(observer.height >= h + 2), 60, "blocks after the restarts")
        assert kills == 9
        # Every tx the observer saw committed is in the one chain every validator holds.
        top = observer.height
        for v, child in live.items():
            async def at_top(child: Child = child) -> bool:
                s = await status_of(observer, child.peer_id)  # type: ignore[arg-type]
                return s is not None and s.height >= top

            await wait_until(at_top, 60, f"validator {v} to reach height {top}")
            ours = bytes.fromhex(observer.get_block(top)["hash"])  # type: ignore[index]
            assert await block_hash_at(observer, child.peer_id, top) == ours  # type: ignore[arg-type]
        committed = [t for t in pending if bytes.fromhex(t) in observer.txs.heights]
        assert len(committed) > 50
        assert all(observer.txs.heights[bytes.fromhex(t)] <= observer.height for t in committed)
        for h in range(1, top + 1):
            block = observer.chain.get_blocks(h, h)[0][0]  # type: ignore[union-attr]
            assert block.evidence == (), f"evidence at height {h}: an honest validator double-signed"
        state = observer.chain.state  # type: ignore[union-attr]
        assert {v: state.workers[v].stake for v in stakes} == stakes and state.slashed_pool == 0


async def _async_value(v: bool) -> bool:
    return v


def _async(v: bool) -> object:
    return _async_value(v)


async def test_sigterm_shuts_a_node_down_gracefully(tmp_path: Path) -> None:
    infos = make_testnet(2, tmp_path, validators=1, config=NodeConfig.test(run_agent=False))
    children: list[Child] = []
    async with reaped(children), trio.open_nursery() as nursery:
        child = await start_child(infos[0], [])
        children.append(child)
        observer = Node(infos[1].home, replace(infos[1].config, bootstrap=[child.addr]))
        await nursery.start(observer.run)
        try:
            await wait_until(lambda: _async(observer.height >= 2 and bool(observer.peers())), 30, "blocks")
            child.process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                code = await child.process.wait()
            assert code == 0, child.log.read_text()[-2000:]
            # it said goodbye: the observer's connection closes promptly
            await wait_until(lambda: _async(not observer.peers()), 10, "the connection to close")
            height = observer.height
        finally:
            observer.stop()
            nursery.cancel_scope.cancel()
    # the store was closed cleanly and reopens at (at least) the height the network saw
    chain = open_chain(infos[0].home / "data" / "chain.sqlite", observer.genesis)  # type: ignore[arg-type]
    try:
        assert chain.height >= height
    finally:
        chain.store.close()  # type: ignore[union-attr]


async def test_node_process_refuses_a_bad_home(tmp_path: Path) -> None:
    init_home(tmp_path / "ok", config=NodeConfig.test(run_agent=False))
    proc = await trio.run_process(
        [sys.executable, "-m", "bootstrap.node", "--home", str(tmp_path / "missing")], capture_stdout=True,
        check=False, cwd=ROOT,
    )
    assert proc.returncode == 2 and b"error:" in proc.stdout
