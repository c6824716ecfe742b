"""The consensus driver: one input channel feeding one ``ConsensusMachine``, a real clock, and the chain.

Everything that can change the chain goes through the input channel and is handled by one task, one item at a
time: network proposals and votes, fired timeouts, rebroadcast ticks, and blocks fetched by block sync. So the
machine's ``validate`` and ``BuildProposal`` always see the state after the last committed block, and block sync
can never race a decision. The shape follows ``tests/ledger/sim.py``'s ``SimNode``; the differences are that
messages go out through an async ``publish`` (gossip), time is trio's clock, and block time is wall-clock time.

A validator's signatures, lock and valid values go into the consensus write-ahead log (``wal``) and are fsynced
before any message leaves, and the machine is rebuilt from it on restart: a node killed mid-height resumes in
the round it left, resends the same signatures and never signs a conflicting one (which would be evidence of
equivocation and get it slashed). A log that cannot be read makes the node refuse to sign (``signing_refused``
in its status) rather than guess. A proposal's block time must be within ``max_clock_drift_ms`` of our clock
for us to prevote it, and a failure to build a block is logged and costs the round, not the driver.

Test-only faults (``byzantine`` and ``crash_at``, never set outside tests): ``crash_at=("precommit", 3)``
SIGKILLs the process right after its third own precommit was handed to gossip (a crash mid-height);
``equivocate`` signs and broadcasts a second,
conflicting vote beside every vote of its own (nil against a block, a made-up hash against nil);
``invalid-proposals`` proposes blocks whose header names a wrong state root, so honest validators refuse them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from nacl.signing import SigningKey

from bootstrap.consensus.budget import ExecBudget
from bootstrap.consensus.wal import ConsensusWal, WalCorrupt
from bootstrap.gossip import ConsensusMsg, ProposalMsg, RoundStateMsg, VoteMsg, encode_consensus
from ledger import consensus as c
from ledger.block import Block, BlockError, Vote
from ledger.chain import Chain, CommittedBlock
from ledger.crypto import blake2b256
from ledger.errors import LedgerError
from ledger.sync import Blocks

log = logging.getLogger("bootstrap.driver")

BYZANTINE_MODES = frozenset({"equivocate", "invalid-proposals", "spam"})


@dataclass(frozen=True)
class _Tick:
    """Time to rebroadcast our own messages for the current round."""


@dataclass
class _Synced:
    """Blocks fetched by block sync, to be applied by the driver task; ``done`` is set with the outcome."""

    blocks: Blocks
    done: trio.Event = field(default_factory=trio.Event)
    applied: list[int] = field(default_factory=list)
    error: BlockError | None = None


@dataclass
class DriverStats:
    proposals_in: int = 0
    votes_in: int = 0
    proposals_out: int = 0
    votes_out: int = 0
    votes_relayed: int = 0
    proposals_relayed: int = 0
    round_states_in: int = 0
    round_states_out: int = 0
    build_failures: int = 0
    decided: int = 0
    synced: int = 0
    sync_errors: int = 0
    behind_reports: int = 0
    withheld_votes: int = 0
    byzantine_votes: int = 0
    byzantine_proposals: int = 0
    publish_failures: int = 0
    last_commit_time: float = 0.0


class ConsensusDriver:
    """Runs one node's consensus: validator (with ``signing_key``) or observer (without)."""

    def __init__(
        self,
        chain: Chain,
        *,
        config: c.ConsensusConfig,
        publish: Callable[[bytes], Awaitable[Any]],
        on_commit: Callable[[CommittedBlock], None],
        on_behind: Callable[[int], None] = lambda _h: None,
        signing_key: SigningKey | None = None,
        rebroadcast_ms: int = 1000,
        wal_path: Path | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        byzantine: frozenset[str] = frozenset(),
        crash_at: tuple[str, int] | None = None,
        exec_budget_ms: int | None = None,
        perf_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        unknown = set(byzantine) - BYZANTINE_MODES
        if unknown:
            raise ValueError(f"byzantine: unknown mode(s) {sorted(unknown)}; known: {sorted(BYZANTINE_MODES)}")
        self.chain = chain
        self.byzantine = frozenset(byzantine)
        self._crash_at = crash_at
        self._signing_key = signing_key
        me = bytes(signing_key.verify_key) if signing_key is not None else None
        self.is_validator = me is not None and me in chain.validators
        self._clock_ms = clock_ms
        self._drift_ms = config.max_clock_drift_ms
        # A block must execute well within the propose timeout on every validator (see budget.py): a third of it
        # unless configured.
        budget_ms = exec_budget_ms if exec_budget_ms is not None else max(50, config.timeout_propose_ms // 3)
        self.budget = ExecBudget(budget_ms / 1000)
        self._perf = perf_clock
        self.wal = ConsensusWal(wal_path, encode_value=Block.encode, decode_value=Block.decode)
        self.signing_refused: str | None = None
        restore: list[c.WalEntry] = []
        sign_from = 0
        if self.is_validator:
            try:
                restore = self.wal.open()
            except WalCorrupt as exc:
                self.signing_refused = str(exc)
                log.error("%s", exc)
            sign_from = self.wal.sign_from(chain.next_height)
            if sign_from:
                log.warning("consensus WAL is at height %d, the chain at %d: not signing below %d",
                            self.wal.height, chain.next_height, sign_from)
        signing = self.is_validator and self.signing_refused is None
        self.machine: c.ConsensusMachine[Block] = c.ConsensusMachine(
            chain_id=chain.chain_id,
            validators=chain.validators,
            height=chain.next_height,
            value_id=chain.value_id,
            validate=self._timed_validate,
            signing_key=signing_key if signing else None,
            config=config,
            timely=self._timely,
            restore=restore,
            sign_from=sign_from,
        )
        self._publish = publish
        self._on_commit = on_commit
        self._on_behind = on_behind
        self.rebroadcast_ms = rebroadcast_ms
        self.stats = DriverStats()
        self._seq = 0
        # Unbounded on purpose: timers and ticks must never be lost; network input reaches it through bounded
        # gossip subscriptions, and handling an item is synchronous and quick.
        self._in_send, self._in_recv = trio.open_memory_channel[Any](math.inf)
        self._out_send, self._out_recv = trio.open_memory_channel[tuple[bytes, bool]](math.inf)
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------------------------------ inputs

    def feed(self, msg: ConsensusMsg) -> None:
        """A consensus message from the network (already decoded)."""
        self._in_send.send_nowait(msg)

    async def apply_synced(self, blocks: Blocks) -> _Synced:
        """Hand fetched blocks to the driver task and wait until it has applied (or refused) them."""
        item = _Synced(blocks)
        self._in_send.send_nowait(item)
        await item.done.wait()
        return item

    @property
    def height(self) -> int:
        return self.machine.height

    def status(self) -> dict[str, Any]:
        m = self.machine
        return {
            "height": m.height,
            "round": m.round,
            "step": m.step.name.lower(),
            "validator": self.is_validator,
            "signing_refused": self.signing_refused,
            "wal_fsyncs": self.wal.fsyncs,
            "inbox": self._in_recv.statistics().current_buffer_used,
            "block_tx_cap": self.budget.max_txs,
            "exec_us_per_tx": None if self.budget.cost_s is None else round(self.budget.cost_s * 1e6, 1),
            **vars(self.stats),
        }

    # ------------------------------------------------------------------------------------------ the loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._publisher)
            self._process(c.Start())
            task_status.started()
            async for item in self._in_recv:
                self._on_input(item)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.rebroadcast_ms / 1000)
            self._in_send.send_nowait(_Tick())

    async def _timer(self, delay_ms: int, event: c.TimeoutFired) -> None:
        await trio.sleep(delay_ms / 1000)
        self._in_send.send_nowait(event)

    async def _publisher(self) -> None:
        async for data, crash_after in self._out_recv:
            try:
                await self._publish(data)
            except Exception as exc:  # a publish failure must not stop consensus; rebroadcast recovers
                self.stats.publish_failures += 1
                log.warning("publishing a consensus message failed: %r", exc)
            if crash_after:
                log.warning("test switch: killing this node mid-height (DACN_TEST_CRASH_AT)")
                os.kill(os.getpid(), signal.SIGKILL)

    def _on_input(self, item: Any) -> None:
        if isinstance(item, c.TimeoutFired):
            self._process(item)
        elif isinstance(item, _Tick):
            self._seq += 1
            self._process(c.Rebroadcast())
        elif isinstance(item, ProposalMsg):
            self.stats.proposals_in += 1
            self._process(c.ProposalReceived(item.proposal, item.block))
        elif isinstance(item, VoteMsg):
            self.stats.votes_in += 1
            self._process(c.VoteReceived(item.vote))
        elif isinstance(item, RoundStateMsg):
            self.stats.round_states_in += 1
            self._process(c.RoundStateReceived(item.state))
        elif isinstance(item, _Synced):
            self._apply_synced(item)

    def _apply_synced(self, item: _Synced) -> None:
        try:
            for block, commit in item.blocks.blocks:
                if block.height < self.chain.next_height:
                    continue  # decided it ourselves meanwhile
                try:
                    committed = self.chain.apply_synced_block(block, commit)
                except BlockError as exc:
                    item.error = exc
                    self.stats.sync_errors += 1
                    log.warning("synced block %d refused: %s", block.height, exc)
                    break
                item.applied.append(block.height)
                self.stats.synced += 1
                self.stats.last_commit_time = trio.current_time()
                self._on_commit(committed)
            if item.applied:
                self._process(c.SyncedTo(self.chain.next_height))
        finally:
            item.done.set()

    def _process(self, first: c.Event) -> None:
        queue: list[c.Event] = [first]
        while queue:
            for action in self.machine.handle(queue.pop(0)):
                follow = self._act(action)
                if follow is not None:
                    queue.append(follow)

    def _timely(self, _height: int, block: Block) -> bool:
        return block.header.time_ms <= self._clock_ms() + self._drift_ms

    def _send(self, msg: ConsensusMsg, *, own_vote: Vote | None = None) -> None:
        # Nothing leaves before the log entries of what it carries are on disk.
        self.wal.sync()
        crash = False
        at = self._crash_at
        if own_vote is not None and at is not None and own_vote.vote_type.name.lower() == at[0]:
            self._crash_at = (self._crash_at[0], self._crash_at[1] - 1)
            crash = self._crash_at[1] == 0
        self._out_send.send_nowait((encode_consensus(msg), crash))

    def _logged(self, height: int, round_: int, step: int, signature: bytes) -> bool:
        """Whether this signature of ours is the one the log holds (never send one it does not)."""
        if self.wal.path is None or self.wal.signed(height, round_, step) == signature:
            return True
        self.stats.withheld_votes += 1
        log.error("consensus: refusing to send a signature for height %d round %d step %d that the WAL does not "
                  "hold (a bug)", height, round_, step)
        return False

    def _act(self, action: c.Action) -> c.Event | None:
        assert self._nursery is not None
        if isinstance(action, c.Persist):
            self.wal.append(action.entry)
        elif isinstance(action, c.BroadcastVote):
            vote = action.vote
            if not self._logged(vote.height, vote.round, int(vote.vote_type), vote.signature):
                return None
            self.stats.votes_out += 1
            self._send(VoteMsg(vote, self._seq), own_vote=vote)
            if "equivocate" in self.byzantine:
                self._equivocate(vote)
        elif isinstance(action, c.RelayVote):
            # Someone else's signed vote, passed on so peers can catch up; not a new signature of ours.
            self.stats.votes_relayed += 1
            self._send(VoteMsg(action.vote, self._seq))
        elif isinstance(action, c.BroadcastProposal):
            p = action.proposal
            if not self._logged(p.height, p.round, 0, p.signature):
                return None
            self.stats.proposals_out += 1
            self._send(ProposalMsg(p, action.value, self._seq))
        elif isinstance(action, c.RelayProposal):
            self.stats.proposals_relayed += 1
            self._send(ProposalMsg(action.proposal, action.value, self._seq))
        elif isinstance(action, c.BroadcastRoundState):
            self.stats.round_states_out += 1
            self._send(RoundStateMsg(action.state, self._seq))
        elif isinstance(action, c.ScheduleTimeout):
            self._nursery.start_soon(
                self._timer, action.delay_ms, c.TimeoutFired(action.height, action.round, action.step)
            )
        elif isinstance(action, c.BuildProposal):
            return self._build(action)
        elif isinstance(action, c.Decide):
            committed = self.chain.commit_block(action.value, action.commit)
            self.stats.decided += 1
            self.stats.last_commit_time = trio.current_time()
            self._on_commit(committed)
        elif isinstance(action, c.EvidenceFound):
            ev = action.evidence
            log.warning("equivocation by %s at height %d", ev.offender.hex()[:12], ev.height)
        elif isinstance(action, c.Behind):
            self.stats.behind_reports += 1
            self._on_behind(action.seen_height)
        else:
            log.error("consensus driver: unhandled action %r at height %d (a bug)", action, self.machine.height)
        return None

    def _timed_validate(self, height: int, block: Block) -> bool:
        """The chain's validity predicate, its time an observation of this node's per-tx cost (for a block built
        elsewhere: our own was executed when we built it, and its validation costs nothing)."""
        t0 = self._perf()
        ok = self.chain.validate(height, block)
        if block.header.proposer != self.machine.me:
            self.budget.observe(len(block.txs), self._perf() - t0)
        return ok

    def _build(self, action: c.BuildProposal) -> c.Event | None:
        me = self.machine.me
        assert me is not None
        t0 = self._perf()
        try:
            block = self.chain.build(action.height, action.round, me, self._clock_ms(), list(self.machine.evidence),
                                     max_txs=self.budget.max_txs)
        except (BlockError, LedgerError):
            # A bug, but one that must cost only this round (the propose timeout moves on), not the driver.
            self.stats.build_failures += 1
            log.exception("consensus: building the block for height %d round %d failed", action.height, action.round)
            return None
        self.budget.observe(len(block.txs), self._perf() - t0)
        if "invalid-proposals" in self.byzantine:
            self.stats.byzantine_proposals += 1
            bad = dataclasses.replace(block.header, state_root=blake2b256(b"not the state" + block.hash()))
            block = dataclasses.replace(block, header=bad)
        return c.ValueReady(action.height, action.round, block)

    def _equivocate(self, vote: Vote) -> None:
        """Test-only: a second signed vote for the same height, round and step, for something else."""
        if self._signing_key is None:
            return
        other = None if vote.block_hash else blake2b256(b"equivocation" + vote.height.to_bytes(8, "big"))
        twin = Vote.sign(self._signing_key, self.chain.chain_id, vote.vote_type, vote.height, vote.round, other)
        self.stats.byzantine_votes += 1
        self._send(VoteMsg(twin, self._seq))
