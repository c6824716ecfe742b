"""A simulation harness for consensus: N validators in one trio process over a faulty in-memory network.

``SimNetwork`` delivers Python objects between node ids with per-link delay (uniform jitter, which also reorders),
loss, duplication and partitions, driven by a seeded ``random.Random`` so a failing schedule replays exactly.
``SimNode`` is the driver the node layer should copy: one input channel (network messages, fired timeouts,
rebroadcast ticks), one ``ConsensusMachine``, and an application (``SimApp``) that builds, validates and commits
values and serves block sync. Given a write-ahead log (``wal``: anything with ``append`` and ``sync``, such as
``bootstrap.consensus.ConsensusWal``) it persists the machine's entries and syncs before sending, as the node's
driver does; ``crash_after`` kills it after that many actions, at any point of a batch, for restart campaigns.
Run it with :func:`run_sim`, which uses ``trio.testing.MockClock(autojump_threshold=0)`` and seeds trio's
scheduler, so one seed replays one schedule exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
import trio.testing

from ledger import consensus as c
from ledger.block import Commit, Proposal, RoundState, Vote
from ledger.types import AccountId


def _seed_trio_scheduler(seed: int) -> None:
    """Make trio's run-queue order a function of ``seed``.

    Trio shuffles (under Hypothesis) or randomly reverses each batch of runnable tasks with its module-level
    ``random.Random``. Which node's task runs first decides the order of ``SimNetwork``'s RNG draws, so an
    unseeded scheduler makes a seeded schedule unrepeatable. Hypothesis seeds that RNG only inside ``@given``
    (trio registers it with ``register_random``); this does the same for every simulation run. It reaches into
    trio's internals, so fail loudly if they move rather than silently losing determinism.
    """
    from trio._core import _run

    rng = getattr(_run, "_r", None)
    if not isinstance(rng, random.Random) or not hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        raise RuntimeError("trio's scheduler RNG moved: update _seed_trio_scheduler for this trio version")
    # The deterministic mode sorts each batch by task creation order before the seeded shuffle; without it the
    # batch keeps the order tasks were woken in, which for tied deadlines follows id() of their cancel scopes.
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    rng.seed(seed)


def run_sim(async_fn: Callable[..., Any], *args: Any, seed: int) -> Any:
    """``trio.run`` under a jumping mock clock with the scheduler seeded: same seed, same run, every time."""
    _seed_trio_scheduler(seed)
    return trio.run(async_fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


@dataclass
class LinkFaults:
    """Faults on one directed link. Delays are uniform in [min, max] ms, so messages overtake each other."""

    delay_min_ms: int = 1
    delay_max_ms: int = 20
    loss: float = 0.0
    duplicate: float = 0.0


@dataclass(frozen=True)
class Envelope:
    src: int
    payload: Any


@dataclass(frozen=True)
class ProposalMsg:
    proposal: Proposal
    value: Any


@dataclass(frozen=True)
class VoteMsg:
    vote: Vote


@dataclass(frozen=True)
class RoundStateMsg:
    state: RoundState


@dataclass(frozen=True)
class GetBlocksMsg:
    from_height: int
    to_height: int


@dataclass(frozen=True)
class BlocksMsg:
    blocks: list[tuple[Any, Commit]]


@dataclass(frozen=True)
class Tick:
    """Time to rebroadcast our own messages for the current round."""


@dataclass
class NetStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    partitioned: int = 0
    after_shutdown: int = 0


class SimNetwork:
    """An in-memory network between integer node ids; ``send`` never blocks and never raises."""

    def __init__(self, rng: random.Random, default: LinkFaults | None = None) -> None:
        self.rng = rng
        self.default = default or LinkFaults()
        self.links: dict[tuple[int, int], LinkFaults] = {}
        self.groups: list[set[int]] | None = None
        self.inboxes: dict[int, trio.MemorySendChannel[Any]] = {}
        self.stats = NetStats()
        self.down: set[int] = set()
        self._nursery: trio.Nursery | None = None
        self._closed = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the delivery tasks; start with ``await nursery.start(net.run)``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                # Nodes torn down after the network may still send during cancellation: count, don't crash.
                self._closed = True

    def register(self, node: int) -> tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]]:
        send, recv = trio.open_memory_channel[Any](math.inf)
        self.inboxes[node] = send
        self.down.discard(node)
        return send, recv

    def unregister(self, node: int) -> None:
        """The node is down: what is in flight to it, or sent to it until it registers again, is lost."""
        self.down.add(node)

    def partition(self, groups: list[set[int]]) -> None:
        self.groups = groups

    def heal(self) -> None:
        self.groups = None
        self.links.clear()

    def _connected(self, a: int, b: int) -> bool:
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    def send(self, src: int, dst: int, payload: Any) -> None:
        self.stats.sent += 1
        if self._closed:
            self.stats.after_shutdown += 1
            return
        if not self._connected(src, dst):
            self.stats.partitioned += 1
            return
        faults = self.links.get((src, dst), self.default)
        if faults.loss and self.rng.random() < faults.loss:
            self.stats.lost += 1
            return
        copies = 2 if faults.duplicate and self.rng.random() < faults.duplicate else 1
        self.stats.duplicated += copies - 1
        assert self._nursery is not None, "start the network first"
        for _ in range(copies):
            delay = self.rng.randint(faults.delay_min_ms, faults.delay_max_ms) / 1000
            self._nursery.start_soon(self._deliver, src, dst, payload, delay)

    def broadcast(self, src: int, payload: Any) -> None:
        for dst in sorted(self.inboxes):
            if dst != src:
                self.send(src, dst, payload)

    async def _deliver(self, src: int, dst: int, payload: Any, delay: float) -> None:
        await trio.sleep(delay)
        # A partition that starts while a message is in flight cuts it too.
        if not self._connected(src, dst):
            self.stats.partitioned += 1
            return
        if dst in self.down:
            self.stats.lost += 1
            return
        self.stats.delivered += 1
        self.inboxes[dst].send_nowait(Envelope(src, payload))


class SimApp(Protocol):
    """What the driver needs from the application: build, validate, commit, and serve/apply synced blocks."""

    next_height: int

    def value_id(self, value: Any) -> bytes: ...
    def validate(self, height: int, value: Any) -> bool: ...
    def build(self, height: int, round_: int, proposer: AccountId, now_ms: int, evidence: list[Any]) -> Any: ...
    def commit(self, value: Any, commit: Commit) -> None: ...
    def get_blocks(self, from_height: int, to_height: int) -> list[tuple[Any, Commit]]: ...
    def apply_synced(self, value: Any, commit: Commit) -> bool: ...


@dataclass
class Byzantine:
    """How a faulty validator misbehaves: ``equivocate`` signs conflicting votes/proposals to different halves of
    the network; ``invalid`` (and ``clock``, a lying clock) proposes values built by ``make_invalid``;
    ``withhold`` sends each vote to one validator only; ``future`` adds votes for rounds ahead; ``replay``
    resends its earlier votes with every new one."""

    mode: str
    make_invalid: Callable[[int, int, Any], Any] | None = None
    make_conflicting: Callable[[int, int, Any], Any] | None = None


@dataclass
class SimNode:
    """One validator: a single input channel feeding one consensus machine, as the node's driver will."""

    node_id: int
    machine: c.ConsensusMachine[Any]
    app: SimApp
    net: SimNetwork
    account_to_node: dict[AccountId, int]
    rebroadcast_ms: int = 1000
    byzantine: Byzantine | None = None
    key: Any = None
    decided: list[tuple[int, bytes]] = field(default_factory=list)
    evidence: list[Any] = field(default_factory=list)
    wal: Any = None
    crash_after: int | None = None
    crashed: bool = False
    sent_votes: list[Vote] = field(default_factory=list)
    # Every signature of our own that left this node: (height, round, step, signature); step 0 is a proposal.
    sent_own: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    _inbox: trio.MemorySendChannel[Any] | None = None
    _nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, recv = self.net.register(self.node_id)
        self._inbox = send
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            self._process(c.Start())
            task_status.started()
            async for item in recv:
                if self.crashed:
                    break
                self._on_input(item)

    def _crash(self) -> None:
        """Die here, as ``kill -9`` would: no further action of this batch is carried out."""
        self.crashed = True
        self.net.unregister(self.node_id)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.rebroadcast_ms / 1000)
            assert self._inbox is not None
            self._inbox.send_nowait(Tick())

    async def _timer(self, delay_ms: int, event: c.TimeoutFired) -> None:
        await trio.sleep(delay_ms / 1000)
        assert self._inbox is not None
        self._inbox.send_nowait(event)

    def _on_input(self, item: Any) -> None:
        if isinstance(item, c.TimeoutFired):
            self._process(item)
        elif isinstance(item, Tick):
            self._process(c.Rebroadcast())
        elif isinstance(item, Envelope):
            msg = item.payload
            if isinstance(msg, ProposalMsg):
                self._process(c.ProposalReceived(msg.proposal, msg.value))
            elif isinstance(msg, VoteMsg):
                self._process(c.VoteReceived(msg.vote))
            elif isinstance(msg, RoundStateMsg):
                self._process(c.RoundStateReceived(msg.state))
            elif isinstance(msg, GetBlocksMsg):
                blocks = self.app.get_blocks(msg.from_height, msg.to_height)
                if blocks:
                    self.net.send(self.node_id, item.src, BlocksMsg(blocks))
            elif isinstance(msg, BlocksMsg):
                applied = False
                for value, commit in msg.blocks:
                    if commit.height == self.app.next_height:
                        if not self.app.apply_synced(value, commit):
                            break
                        self.decided.append((commit.height, self.app.value_id(value)))
                        applied = True
                if applied:
                    self._process(c.SyncedTo(self.app.next_height))

    def _now_ms(self) -> int:
        return int(trio.current_time() * 1000)

    def _process(self, first: c.Event) -> None:
        # Events produced by our own actions (a built value) are handled before the next input is read.
        queue: list[c.Event] = [first]
        while queue and not self.crashed:
            for action in self.machine.handle(queue.pop(0)):
                if self.crash_after is not None:
                    if self.crash_after <= 0:
                        self._crash()
                        return
                    self.crash_after -= 1
                follow = self._act(action)
                if follow is not None:
                    queue.append(follow)

    def _sync(self) -> None:
        if self.wal is not None:
            self.wal.sync()

    def _act(self, action: c.Action) -> c.Event | None:
        assert self._nursery is not None
        if isinstance(action, c.Persist):
            if self.wal is not None:
                self.wal.append(action.entry)
        elif isinstance(action, c.BroadcastVote):
            self._sync()
            v = action.vote
            self.sent_own.append((v.height, v.round, int(v.vote_type), v.signature))
            self._broadcast_vote(action.vote)
        elif isinstance(action, c.RelayVote):
            # Passing on a vote already signed (by anyone): plain broadcast, never re-signed or equivocated.
            self._sync()
            self.net.broadcast(self.node_id, VoteMsg(action.vote))
        elif isinstance(action, c.BroadcastProposal):
            self._sync()
            p = action.proposal
            self.sent_own.append((p.height, p.round, 0, p.signature))
            self._broadcast_proposal(action.proposal, action.value)
        elif isinstance(action, c.RelayProposal):
            self._sync()
            self.net.broadcast(self.node_id, ProposalMsg(action.proposal, action.value))
        elif isinstance(action, c.BroadcastRoundState):
            self._sync()
            self.net.broadcast(self.node_id, RoundStateMsg(action.state))
        elif isinstance(action, c.ScheduleTimeout):
            self._nursery.start_soon(
                self._timer, action.delay_ms, c.TimeoutFired(action.height, action.round, action.step)
            )
        elif isinstance(action, c.BuildProposal):
            me = self.machine.me
            assert me is not None
            value = self.app.build(action.height, action.round, me, self._now_ms(), list(self.machine.evidence))
            if self.byzantine is not None and self.byzantine.mode in ("invalid", "clock"):
                assert self.byzantine.make_invalid is not None
                value = self.byzantine.make_invalid(action.height, action.round, value)
            return c.ValueReady(action.height, action.round, value)
        elif isinstance(action, c.Decide):
            self.app.commit(action.value, action.commit)
            self.decided.append((action.commit.height, action.commit.block_hash))
        elif isinstance(action, c.EvidenceFound):
            self.evidence.append(action.evidence)
        elif isinstance(action, c.Behind):
            node = self.account_to_node.get(action.validator)
            if node is not None and node != self.node_id:
                self.net.send(self.node_id, node, GetBlocksMsg(self.app.next_height, action.seen_height - 1))
        return None

    def _halves(self) -> tuple[list[int], list[int]]:
        others = [n for n in sorted(self.net.inboxes) if n != self.node_id]
        return others[: len(others) // 2], others[len(others) // 2 :]

    def _broadcast_vote(self, vote: Vote) -> None:
        byz = self.byzantine
        if byz is not None and byz.mode in ("future", "replay"):
            self.net.broadcast(self.node_id, VoteMsg(vote))
            self.sent_votes.append(vote)
            if byz.mode == "future":
                # Votes for rounds nobody has reached, to drag honest validators ahead (one is never f + 1).
                for ahead in (1, 3, 7):
                    fake = Vote.sign(self.key, self.machine.chain_id, vote.vote_type, vote.height,
                                     vote.round + ahead, None)
                    self.net.broadcast(self.node_id, VoteMsg(fake))
            else:
                for old in self.sent_votes[-12:-1]:  # replays of its earlier votes, older heights included
                    self.net.broadcast(self.node_id, VoteMsg(old))
            return
        if byz is not None and byz.mode == "withhold":
            # Its votes reach one other validator only (which may relay them), so views split.
            others = [n for n in sorted(self.net.inboxes) if n != self.node_id]
            self.net.send(self.node_id, others[vote.round % len(others)], VoteMsg(vote))
            return
        if self.byzantine is None or self.byzantine.mode != "equivocate" or vote.block_hash is None:
            self.net.broadcast(self.node_id, VoteMsg(vote))
            return
        # Sign a conflicting vote (nil) for the same step: the first half sees one version, the second half both
        # (in either order), as gossip relaying would show them.
        other = Vote.sign(self.key, self.machine.chain_id, vote.vote_type, vote.height, vote.round, None)
        first, second = self._halves()
        for n in first:
            self.net.send(self.node_id, n, VoteMsg(vote))
        for n in second:
            self.net.send(self.node_id, n, VoteMsg(other))
            self.net.send(self.node_id, n, VoteMsg(vote))

    def _broadcast_proposal(self, proposal: Proposal, value: Any) -> None:
        byz = self.byzantine
        if byz is None or byz.mode != "equivocate" or byz.make_conflicting is None:
            self.net.broadcast(self.node_id, ProposalMsg(proposal, value))
            return
        alt = byz.make_conflicting(proposal.height, proposal.round, value)
        alt_p = Proposal.sign(
            self.key,
            self.machine.chain_id,
            proposal.height,
            proposal.round,
            proposal.pol_round,
            self.app.value_id(alt),
        )
        first, second = self._halves()
        for n in first:
            self.net.send(self.node_id, n, ProposalMsg(proposal, value))
        for n in second:
            self.net.send(self.node_id, n, ProposalMsg(alt_p, alt))
