"""Consensus across kill -9, power loss and lost messages: a Hypothesis campaign over the real machine and the
real write-ahead log (files on disk), four validators on the simulated network.

Schedules: validators killed at any action of any batch (after it persisted and before it sent, between two
sends, ...), one to three of them, two at once, restarted after a while, with or without power loss (what was
not fsynced is gone, the last record maybe torn); one validator down for good while messages are lost,
duplicated, delayed and reordered; and one Byzantine validator (equivocating votes and proposals, invalid
proposals, withheld votes, votes for future rounds, replays, a lying clock). After the network heals: agreement,
validity (no block from beyond the clocks), no honest validator ever sent two different signatures for one step,
and every honest validator passes the highest honest height within 10 s.

CI runs a bounded number per kind; ``DACN_CAMPAIGN_EXAMPLES=2000`` runs the long campaign (the command and counts
are in BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.consensus import ConsensusWal
from ledger import consensus as c
from tests.ledger.sim import Byzantine, LinkFaults, SimNetwork, SimNode, run_sim
from tests.ledger.test_consensus_sim import CHAIN, BytesApp, seeded_keys, vid

N = 4
LIVE_MS = 10_000


class TimedApp(BytesApp):
    """Values carry the proposer's clock, so a proposer restarted in a round would build a different value."""

    def build(self, height, round_, proposer, now_ms, evidence) -> bytes:
        return b"ok|%d|%d|%s|%d|%d" % (height, round_, proposer.hex().encode(), len(evidence), now_ms)


def value_time(value: bytes) -> int:
    fields = value.split(b"|")
    return int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else 0


def timely(_height: int, value: bytes) -> bool:
    """The driver's rule: a fresh value's time may be at most the drift bound ahead of our clock."""
    return value_time(value) <= int(trio.current_time() * 1000) + c.test_config().max_clock_drift_ms


def lying_clock(_h: int, _r: int, value: bytes) -> bytes:
    fields = value.split(b"|")
    fields[5] = b"%d" % (value_time(value) + 3_600_000)  # an hour ahead of everyone
    return b"|".join(fields)


@dataclass(frozen=True)
class Crash:
    node: int
    at_ms: int
    after_actions: int  # dies at this many actions after at_ms: anywhere inside a batch
    down_ms: int  # -1: never comes back
    power_loss: bool
    torn_bytes: int  # with power loss: how much of the unsynced tail survives (a torn record)


@dataclass
class Schedule:
    crashes: list[Crash]
    fault_ms: int
    loss: float
    duplicate: float
    delay_max_ms: int
    byz_index: int | None = None
    byz_mode: str | None = None


@dataclass
class Run:
    """Every incarnation of each validator (a restart is a new one), heights at heal time, who is up at the end."""

    incarnations: list[list[SimNode]] = field(default_factory=lambda: [[] for _ in range(N)])
    at_heal: list[int] = field(default_factory=list)
    end_ms: int = 0
    alive: list[bool] = field(default_factory=lambda: [True] * N)


def _make_node(i: int, app: TimedApp, net: SimNetwork, keys: list, acct: dict, wal_path: Path, byz) -> SimNode:
    wal = ConsensusWal(wal_path, encode_value=bytes, decode_value=bytes)
    entries = wal.open()
    m = c.ConsensusMachine(
        chain_id=CHAIN,
        validators=[bytes(k.verify_key) for k in keys],
        height=app.next_height,
        value_id=vid,
        validate=app.validate,
        signing_key=keys[i],
        config=c.test_config(),
        restore=entries,
        sign_from=wal.sign_from(app.next_height),
        timely=timely,
    )
    return SimNode(i, m, app, net, acct, byzantine=byz, key=keys[i], wal=wal)


def _power_loss(path: Path, wal: ConsensusWal, torn_bytes: int) -> None:
    """What survives losing power: the fsynced prefix, plus maybe a torn piece of what was written after it."""
    size = path.stat().st_size if path.exists() else 0
    keep = min(size, wal.synced_size + torn_bytes)
    if path.exists():
        os.truncate(path, keep)


async def live(
    i: int, make: Callable[[int], SimNode], crashes: list[Crash], wal_path: Path, run: Run
) -> None:
    """Run validator ``i``; at each of its crashes kill it (at the chosen action), keep it down, maybe take the
    unsynced tail of its WAL with the power, and start it again from what is on disk."""
    pending = sorted(crashes, key=lambda cr: cr.at_ms)
    while True:
        node = make(i)
        run.incarnations[i].append(node)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            crash = pending.pop(0) if pending else None
            if crash is not None:
                await trio.sleep_until(crash.at_ms / 1000)
                node.crash_after = crash.after_actions
        node.wal.close()
        store = getattr(node.app, "store", None)
        if store is not None:
            store.close()
        if crash is None:
            return
        run.alive[i] = False
        if crash.down_ms < 0:
            return
        await trio.sleep(crash.down_ms / 1000)
        if crash.power_loss:
            _power_loss(wal_path, node.wal, crash.torn_bytes)
        run.alive[i] = True


async def play(net: SimNetwork, sched: Schedule, make: Callable[[int], SimNode], wal_paths: list[Path]) -> Run:
    """Every validator's life under the schedule's faults and crashes, then the heal and ``LIVE_MS`` more."""
    run = Run()
    by_node: dict[int, list[Crash]] = {}
    for cr in sched.crashes:
        by_node.setdefault(cr.node, []).append(cr)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        for i in range(N):
            nursery.start_soon(live, i, make, by_node.get(i, []), wal_paths[i], run)
        net.default = LinkFaults(1, sched.delay_max_ms, sched.loss, sched.duplicate)
        last_crash = max((cr.at_ms + max(cr.down_ms, 0) for cr in sched.crashes), default=0)
        await trio.sleep_until(max(sched.fault_ms, last_crash + 500) / 1000)
        net.heal()
        net.default = LinkFaults(1, 20)
        run.at_heal = [nodes[-1].app.next_height for nodes in run.incarnations]
        await trio.sleep(LIVE_MS / 1000)
        run.end_ms = int(trio.current_time() * 1000)
        nursery.cancel_scope.cancel()
    return run


async def run_schedule(seed: int, sched: Schedule, tmp: Path) -> Run:
    net = SimNetwork(random.Random(seed))
    keys = seeded_keys(seed, N)
    vals = [bytes(k.verify_key) for k in keys]
    acct = {v: i for i, v in enumerate(vals)}
    apps = [TimedApp(vals) for _ in range(N)]  # each validator's committed blocks: they survive its crashes
    paths = [tmp / f"wal-{seed}-{i}" for i in range(N)]
    for p in paths:
        p.unlink(missing_ok=True)

    def byz_for(i: int) -> Byzantine | None:
        if i != sched.byz_index:
            return None
        invalid = lying_clock if sched.byz_mode == "clock" else (lambda h, r, v: b"bad" + v)
        return Byzantine(sched.byz_mode or "", make_invalid=invalid, make_conflicting=lambda h, r, v: v + b"|twin")

    return await play(net, sched, lambda i: _make_node(i, apps[i], net, keys, acct, paths[i], byz_for(i)), paths)


def check(run: Run, sched: Schedule) -> None:
    honest = [i for i in range(N) if i != sched.byz_index]
    # Agreement and validity, over everything any honest validator ever committed.
    by_height: dict[int, bytes] = {}
    for i in honest:
        app = run.incarnations[i][-1].app
        assert app.committed_invalid == []
        for h, (value, commit) in enumerate(app.log, start=1):
            assert commit.height == h
            assert by_height.setdefault(h, vid(value)) == vid(value), f"fork at height {h} (node {i})"
            assert value_time(value) <= run.end_ms + c.test_config().max_clock_drift_ms, "a block from the future"
    # No honest validator ever sent two different signatures for one (height, round, step), across restarts.
    for i in honest:
        signed: dict[tuple[int, int, int], bytes] = {}
        for node in run.incarnations[i]:
            for h, r, step, sig in node.sent_own:
                assert signed.setdefault((h, r, step), sig) == sig, f"node {i} double-signed at {(h, r, step)}"
    # Liveness: every honest validator that is up passes the highest honest height at heal time.
    live = [i for i in honest if run.alive[i]]
    target = max(run.at_heal[i] for i in honest) + 1
    for i in live:
        heights = [nodes[-1].app.next_height for nodes in run.incarnations]
        assert heights[i] > target, (i, run.at_heal, heights)


def _run(seed: int, sched: Schedule, tmp: Path) -> Run:
    return run_sim(run_schedule, seed, sched, tmp, seed=seed)


crash_st = st.builds(
    Crash,
    node=st.integers(0, N - 1),
    at_ms=st.integers(0, 6_000),
    after_actions=st.integers(0, 12),
    down_ms=st.integers(0, 3_000),
    power_loss=st.booleans(),
    torn_bytes=st.integers(0, 40),
)


@st.composite
def restart_schedules(draw: Any) -> Schedule:
    """Kill -9 and restart, one to three validators, maybe two at once, with light network faults."""
    crashes = draw(st.lists(crash_st, min_size=1, max_size=3))
    if draw(st.booleans()) and len(crashes) >= 2:
        # Two at once: the second dies at the same instant as the first, on another node.
        a, b = crashes[0], crashes[1]
        crashes[1] = Crash((a.node + 1) % N, a.at_ms, b.after_actions, b.down_ms, b.power_loss, b.torn_bytes)
    return Schedule(crashes, fault_ms=draw(st.integers(500, 6_000)), loss=draw(st.sampled_from([0.0, 0.05, 0.2])),
                    duplicate=draw(st.sampled_from([0.0, 0.1])), delay_max_ms=draw(st.sampled_from([5, 50, 300])))


@st.composite
def down_for_good_schedules(draw: Any) -> Schedule:
    """One validator dies and stays dead; the other three live through loss, duplication and reordering."""
    node = draw(st.integers(0, N - 1))
    crash = Crash(node, draw(st.integers(0, 4_000)), draw(st.integers(0, 12)), -1, False, 0)
    return Schedule([crash], fault_ms=draw(st.integers(1_000, 8_000)), loss=draw(st.sampled_from([0.05, 0.2, 0.5])),
                    duplicate=draw(st.sampled_from([0.0, 0.1, 0.3])),
                    delay_max_ms=draw(st.sampled_from([5, 50, 300, 1500])))


@st.composite
def byzantine_schedules(draw: Any) -> Schedule:
    """One Byzantine validator, and one honest validator killed and restarted while the network is faulty."""
    byz = draw(st.integers(0, N - 1))
    mode = draw(st.sampled_from(["equivocate", "invalid", "withhold", "future", "replay", "clock"]))
    victim = draw(st.sampled_from([i for i in range(N) if i != byz]))
    crash = Crash(victim, draw(st.integers(0, 5_000)), draw(st.integers(0, 12)), draw(st.integers(0, 2_000)),
                  draw(st.booleans()), draw(st.integers(0, 40)))
    return Schedule([crash], fault_ms=draw(st.integers(500, 5_000)), loss=draw(st.sampled_from([0.0, 0.05, 0.2])),
                    duplicate=draw(st.sampled_from([0.0, 0.1])), delay_max_ms=draw(st.sampled_from([5, 50, 300])),
                    byz_index=byz, byz_mode=mode)


# 10 schedules per kind by default (about 6 s each kind); DACN_CAMPAIGN_EXAMPLES sets the count for a long run.
CAMPAIGN = settings(
    max_examples=int(os.environ.get("DACN_CAMPAIGN_EXAMPLES", "0")) or max(10, settings.default.max_examples // 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@CAMPAIGN
@given(seed=st.integers(0, 2**32 - 1), sched=restart_schedules())
def test_restarts_keep_agreement_no_double_signing_and_liveness(tmp_path: Path, seed: int, sched: Schedule) -> None:
    check(_run(seed, sched, tmp_path), sched)


@CAMPAIGN
@given(seed=st.integers(0, 2**32 - 1), sched=down_for_good_schedules())
def test_one_validator_down_for_good_with_message_loss_stays_live(tmp_path: Path, seed: int, sched: Schedule) -> None:
    check(_run(seed, sched, tmp_path), sched)


@CAMPAIGN
@given(seed=st.integers(0, 2**32 - 1), sched=byzantine_schedules())
def test_byzantine_validator_and_a_restart_keep_safety_and_liveness(tmp_path: Path, seed: int, sched: Schedule) -> None:
    check(_run(seed, sched, tmp_path), sched)


# ------------------------------------------------------------------------------- the same over the real chain


async def run_chain_schedule(seed: int, sched: Schedule, tmp: Path) -> tuple[list[list[SimNode]], list[int], list]:
    """Restarts over real blocks: each validator's chain lives in a sqlite store on disk and is reopened from it
    (snapshot and replay) on every restart, its WAL from its file; transfers keep the blocks non-empty."""
    from ledger.block import Block
    from ledger.errors import LedgerError
    from ledger.store import open_chain
    from tests.ledger.chainkit import genesis4, users, validator_keys

    g = genesis4(workers=["validator-0", "validator-1", "validator-2", "validator-3"])
    keys = validator_keys()
    acct = {bytes(k.verify_key): i for i, k in enumerate(keys)}
    net = SimNetwork(random.Random(seed))
    wallets = users(8)
    backlog = [wallets[i % 8].transfer(wallets[(i + 1) % 8].account, 1).encode() for i in range(8 * 20)]
    base = tmp / f"chain-{seed}"
    base.mkdir(parents=True, exist_ok=True)

    def make(i: int) -> SimNode:
        chain = open_chain(base / f"v{i}.sqlite", g)
        for raw in backlog:  # as gossip would hand them over again; those already committed are refused
            with contextlib.suppress(LedgerError):
                chain.mempool.add(raw)
        wal = ConsensusWal(base / f"v{i}.wal", encode_value=Block.encode, decode_value=Block.decode)
        entries = wal.open()
        m = c.ConsensusMachine(
            chain_id=g.chain_id, validators=g.validators, height=chain.next_height, value_id=chain.value_id,
            validate=chain.validate, signing_key=keys[i], config=c.test_config(), restore=entries,
            sign_from=wal.sign_from(chain.next_height),
        )
        return SimNode(i, m, chain, net, acct, key=keys[i], wal=wal)

    run = await play(net, sched, make, [base / f"v{i}.wal" for i in range(N)])
    heads = [open_chain(base / f"v{i}.sqlite", g) for i in range(N)]
    return run.incarnations, run.at_heal, heads


CHAIN_CAMPAIGN = settings(
    max_examples=int(os.environ.get("DACN_CHAIN_CAMPAIGN_EXAMPLES", "0")) or 4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@CHAIN_CAMPAIGN
@given(seed=st.integers(0, 2**32 - 1), sched=restart_schedules())
def test_restarts_over_real_blocks_and_stores_keep_one_chain_and_one_state(
    tmp_path: Path, seed: int, sched: Schedule
) -> None:
    incarnations, at_heal, heads = run_sim(run_chain_schedule, seed, sched, tmp_path, seed=seed)
    # One chain: the same block at every height any two validators hold, and the same state root where they meet.
    top = min(h.height for h in heads)
    for height in range(1, top + 1):
        assert len({h.get_blocks(height, height)[0][0].hash() for h in heads}) == 1, f"fork at height {height}"
    lowest = min(heads, key=lambda h: h.height)
    assert all(h.root == lowest.root for h in heads if h.height == lowest.height)
    # Nobody double-signed, so no block carries evidence and nobody was slashed.
    for i, nodes in enumerate(incarnations):
        signed: dict[tuple[int, int, int], bytes] = {}
        for node in nodes:
            for h, r, step, sig in node.sent_own:
                assert signed.setdefault((h, r, step), sig) == sig, f"validator {i} double-signed at {(h, r, step)}"
    assert all(not b.evidence for height in range(1, top + 1) for b, _c in heads[0].get_blocks(height, height))
    assert heads[0].state.slashed_pool == 0
    assert all(h.next_height > max(at_heal) + 1 for h in heads), ([h.height for h in heads], at_heal)
    for h in heads:
        h.store.close()
