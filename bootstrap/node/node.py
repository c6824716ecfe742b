"""The Node: one process, one trio nursery, wiring the rooms of the application and the three libraries.

``Node(home, config).run()`` opens the sqlite store, starts the p2p host (listen, bootstrap dials), subscribes to
the gossip topics (txs, consensus, job data), runs the consensus driver (validator or observer) and block sync,
the compute pool, the worker agent and the REST API, and reports ``task_status.started()`` once all of them
listen. ``stop()`` shuts it down gracefully: the driver stops, peers are told goodbye, the store is closed.

This module only wires and runs. What each part does lives in its room: gossip validators in
``bootstrap.gossip``, tx submission and the commit index in ``bootstrap.txs``, block sync in ``bootstrap.sync``,
job submission and blobs in ``bootstrap.jobs``, the read models in ``bootstrap.views``. The methods below are the
node's facade for the API, the agent, the CLI and tests: each delegates to the room that owns it.

The read side (``state``, ``head``, ``job_view`` …) shows committed state only. The write side signs with keys
from the node's keystore, admits the tx to the local mempool (typed ledger errors on a bad tx) and gossips it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from bootstrap.agent import WorkerAgent, open_compute_pool
from bootstrap.consensus import ConsensusDriver
from bootstrap.errors import HomeError, NodeNotRunning, UnknownAccount
from bootstrap.gossip import (
    PROTO_STATUS,
    PROTO_SYNC,
    TOPIC_CONSENSUS,
    TOPIC_JOBDATA,
    TOPIC_TX,
    TOPIC_TXS,
    ConsensusTopic,
    JobDataTopic,
    ProposalMsg,
    TxTopics,
    VoteMsg,
)
from bootstrap.home import NODE_KEY, Keystore, KeystoreError, NodeConfig, home_paths, load_home_genesis
from bootstrap.jobs import BlobCollector, BlobStore, DatasetSource, JobDesk, build_dataset
from bootstrap.node.events import EventBus
from bootstrap.node.proofs import ProofDesk
from bootstrap.node.switches import TestSwitches, isolate, spam
from bootstrap.sync import PROTO_SNAPSHOT, BlockSync, SnapshotServer, StateSyncer, SyncProgress, store_is_empty
from bootstrap.txs import TxDesk
from bootstrap.views import JobIndex, Views
from compute import Dataset, JobSpec
from compute.errors import ComputeError
from compute.pool import PoolConfig
from ledger.chain import Chain, CommittedBlock
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.mempool import Mempool, MempoolConfig
from ledger.state import State
from ledger.store import StoreError, open_chain
from ledger.tx import Payload, SignedTx
from p2pnet import Host, Identity, P2PError, PeerId, Received

log = logging.getLogger("bootstrap.node")

# Gossip lanes of the tx topics, in messages (``p2pnet.Gossip.subscribe``): a batch of 256 signed txs takes ~13 ms
# to check here, so 64 queued batches are under a second of work; beyond it new copies are shed, not queued.
TX_LANE = 4096
TX_BATCH_LANE = 64


class Node:
    """A running dacn node; see the module docstring. Attributes are set by :meth:`run`."""

    def __init__(
        self, home: Path, config: NodeConfig, *, passphrase: str | None = None, faulty: str | None = None,
        switches: TestSwitches | None = None,
    ) -> None:
        config.validate()
        self.switches = switches or TestSwitches()
        self.home = Path(home)
        self.config = config
        self.passphrase = passphrase
        self.faulty = faulty
        self.paths = home_paths(self.home)
        self.identity: Identity | None = None
        self.keystore: Keystore | None = None
        self.genesis: Genesis | None = None
        self.chain: Chain | None = None
        self.mempool: Mempool | None = None
        self.host: Host | None = None
        self._protected_set: tuple[bytes, ...] = ()
        self.blobs: BlobStore | None = None
        self.blob_collector: BlobCollector | None = None
        self.events = EventBus()
        self.driver: ConsensusDriver | None = None
        self.agent: Any = None
        self.pool: Any = None
        self.pool_ready = trio.Event()
        self.pool_failed = False
        self.api_address: tuple[str, int] | None = None
        self.started = trio.Event()
        self.started_at = 0.0
        self._stop = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.job_index = JobIndex()  # pages of jobs, counts per status (bootstrap.views.index)
        self.counters: dict[str, int] = {
            "txs_submitted": 0, "txs_gossip_in": 0, "txs_gossip_rejected": 0, "blocks_committed": 0,
            "sync_requests": 0, "sync_failures": 0, "blobs_fetched": 0, "announcements": 0,
            # dacn/txs/1: batches (and the txs in them) received, refused as garbage, and published
            "tx_batches_in": 0, "tx_batch_txs_in": 0, "tx_batches_rejected": 0, "tx_batches_out": 0,
            "tx_batch_txs_out": 0,
            # submitted txs refused while admission had used its share of the loop (bootstrap.txs.governor)
            "txs_refused_busy": 0,
            # submitted txs refused while the txs waiting here exceeded max_backlog_s of commits (the same module)
            "txs_refused_backlog": 0,
            # job data collected (bootstrap.jobs.collect)
            "blob_sweeps": 0, "blobs_collected": 0, "blob_bytes_collected": 0, "blob_sweep_failures": 0,
        }
        # The rooms; those that need the store or the host get them in _open and run.
        self.views = Views(self)
        self.txs = TxDesk(self)
        self.jobs = JobDesk(self)
        self.proofs = ProofDesk(self)
        self.tx_topics: TxTopics | None = None
        self.consensus_topic: ConsensusTopic | None = None
        self.jobdata_topic = JobDataTopic(self.jobs.announcement_welcome, self.jobs.note_announcement)
        self.sync: BlockSync | None = None
        self.snapshots: SnapshotServer | None = None
        self.state_sync: SyncProgress | None = None  # what a state sync at start did (None: none was tried)

    # ============================================================================================ lifecycle

    def _open(self) -> None:
        self._open_home()
        self._open_chain()

    def _open_home(self) -> None:
        if not self.paths["genesis"].exists():
            raise HomeError(str(self.home), "not a node home (no genesis.json; run `dacn init`)")
        self.keystore = Keystore(self.paths["keys"], self.passphrase)
        try:
            if not self.keystore.exists(NODE_KEY):
                raise HomeError(str(self.home), "no node key in keys/ (run `dacn init`)")
            self.identity = Identity(self.keystore.load(NODE_KEY))
        except KeystoreError as exc:
            raise HomeError(str(self.home), str(exc)) from exc
        self.genesis = load_home_genesis(self.home)
        self.paths["data"].mkdir(parents=True, exist_ok=True)

    def _open_chain(self) -> None:
        assert self.genesis is not None
        # The chain hands the mempool its committed state; an empty one stands in until then (building the genesis
        # state here would cost seconds at a million accounts, for nothing).
        mempool = Mempool(self.genesis.chain_id, State(self.genesis.chain_id, self.genesis.params),
                          MempoolConfig(max_txs=self.config.mempool_max_txs))
        try:
            self.chain = open_chain(
                self.paths["chain"], self.genesis, snapshot_every=self.config.snapshot_every,
                keep_snapshots=self.config.keep_snapshots, keep_blocks=self.config.keep_blocks, mempool=mempool,
                restored=self.state_sync.state if self.state_sync is not None else None,
            )
        except StoreError as exc:
            raise HomeError(str(self.paths["chain"]), str(exc)) from exc
        self.mempool = self.chain.mempool
        self.blobs = BlobStore(self.paths["blobs"], max_bytes=self.config.max_blob_bytes)
        self.tx_topics = TxTopics(self.mempool, self.txs.note_admission, self.counters)
        self.consensus_topic = ConsensusTopic(self.chain, self._feed_consensus)
        self.sync = BlockSync(self.chain, self.counters, self.config.sync_interval_ms / 1000)
        self.snapshots = SnapshotServer(self.chain)
        self.job_index.rebuild(self.chain.state)
        if gc.get_freeze_count():
            # The process keeps its startup heap out of the collector's walks (tune_gc_for_node); the state just
            # loaded is most of the heap (1.9M tracked objects at a million accounts, 0.3 s a full collection).
            gc.freeze()

    async def _state_sync(self, host: Host) -> None:
        assert self.genesis is not None
        log.info("state sync: the store is empty; asking peers for a snapshot (up to %d s for the first peer)",
                 self.config.state_sync_wait_s)
        self.state_sync = await StateSyncer(host, self.genesis, self.paths["chain"]).run(
            self.config.state_sync_wait_s)
        if self.state_sync.height is None:
            log.info("state sync: %s; replaying the chain from genesis",
                     self.state_sync.reason or "no snapshot checked out")

    def _close(self) -> None:
        self.events.close()
        if self.chain is not None and self.chain.store is not None:
            try:
                self.chain.store.close()  # type: ignore[attr-defined]
            except Exception as exc:  # closing twice or after a crash: report, never mask the real error
                log.warning("closing the store failed: %r", exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or cancellation); ``task_status.started()`` once everything listens."""
        self._open_home()
        # A node with an empty store and peers to ask starts at a peer's verified snapshot (bootstrap.sync).
        sync_first = (self.config.state_sync and bool(self.config.bootstrap)
                      and store_is_empty(self.paths["chain"]))
        if not sync_first:
            self._open_chain()
        assert self.identity is not None and self.genesis is not None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                host = Host(self.identity, self.config.host_config(str(self.paths["peers"])))
                self.host = host
                if sync_first:
                    host.protect(PeerId.from_public_key(v) for v in self.genesis.validators)
                    await nursery.start(host.run)
                    await self._state_sync(host)
                    self._open_chain()
                    if self.state_sync is not None:
                        self.state_sync.state = None  # the chain holds it now
                assert self.chain is not None and self.blobs is not None and self.sync is not None
                assert self.tx_topics is not None and self.consensus_topic is not None
                self._protect_validators()
                self.txs.publish = host.gossip.publish
                self.tx_topics.note_invalid, self.tx_topics.lagging = host.gossip.note_invalid, self.sync.is_behind
                host.set_request_handler(PROTO_STATUS, self.sync.serve_status)
                host.set_request_handler(PROTO_SYNC, self.sync.serve_sync)
                host.set_request_handler(PROTO_SNAPSHOT, self.snapshots.serve)
                host.set_blob_reader(self.blobs.read_chunk)
                if not sync_first:
                    await nursery.start(host.run)
                # Tx topics get lanes of their own: checking signed txs must not delay the votes behind them.
                txs = host.gossip.subscribe(TOPIC_TX, self.tx_topics.validate_tx, lane=TX_LANE)
                tx_batches = host.gossip.subscribe(TOPIC_TXS, self.tx_topics.validate_tx_batch, lane=TX_BATCH_LANE)
                cons = host.gossip.subscribe(TOPIC_CONSENSUS, self.consensus_topic.validate)
                jobdata = host.gossip.subscribe(TOPIC_JOBDATA, self.jobdata_topic.validate)
                nursery.start_soon(self._drain, txs, None)
                nursery.start_soon(self._drain, tx_batches, None)
                nursery.start_soon(self._drain, cons, self.consensus_topic.deliver)
                nursery.start_soon(self._drain, jobdata, self.jobdata_topic.deliver)
                self.driver = ConsensusDriver(
                    self.chain,
                    config=self.config.consensus(),
                    publish=self._publish_consensus,
                    on_commit=self._on_commit,
                    on_behind=self.sync.wake,
                    signing_key=self.identity.signing_key,
                    rebroadcast_ms=self.config.rebroadcast_ms,
                    wal_path=self.paths["data"] / "consensus.wal",
                    clock_ms=self._clock_ms,
                    byzantine=self.switches.byzantine,
                    crash_at=self.switches.crash_at,
                    exec_budget_ms=self.config.block_exec_budget_ms or None,
                )
                self.sync.attach(host, self.driver)
                await nursery.start(self.driver.run)
                if "spam" in self.switches.byzantine:
                    nursery.start_soon(spam, self, self.switches.spam_rate)
                nursery.start_soon(self.sync.run)
                self.blob_collector = BlobCollector(
                    self.blobs, lambda: self.chain.state, self.counters,  # type: ignore[union-attr]
                    interval_s=self.config.blob_sweep_interval_s, retention_s=self.config.blob_retention_s,
                    max_total_bytes=self.config.blob_store_max_bytes)
                nursery.start_soon(self.blob_collector.run)
                if self.config.pool_size > 0:
                    nursery.start_soon(self._run_pool)
                await self._start_agent(nursery)
                await self._start_api(nursery)
                self.started_at = time.time()
                self.started.set()
                log.info("node %s up: p2p %s, height %d, %s", self.identity.peer_id.short(),
                         [str(a) for a in host.listen_addrs], self.chain.height,
                         "validator" if self.driver.is_validator else "observer")
                task_status.started()
                await self._stop.wait()
                await self._goodbye()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._close()

    def stop(self) -> None:
        """Ask ``run`` to finish gracefully (goodbye to peers, close the store). Safe to call more than once."""
        self._stop.set()

    def _clock_ms(self) -> int:
        return int(time.time() * 1000) + self.switches.clock_skew_ms

    def isolate(self, seconds: float) -> int:
        """Test-only: cut every peer link and refuse those peers for ``seconds`` (then discovery reconnects).
        Returns how many links were cut."""
        return isolate(self.host, seconds)

    async def _goodbye(self) -> None:
        if self.host is None:
            return
        async def bye(conn: Any) -> None:
            try:
                await conn.close_gracefully("node shutting down")
            except P2PError as exc:  # already closing: nothing more to say
                log.debug("goodbye to %s: %s", conn.peer_id.short(), exc)

        with trio.move_on_after(2.0):
            async with trio.open_nursery() as n:
                for peer in self.host.peers():
                    conn = self.host.connection(peer)
                    if conn is not None:
                        n.start_soon(bye, conn)

    async def _run_pool(self) -> None:
        cfg = PoolConfig(size=self.config.pool_size, preload=tuple(self.config.pool_preload))
        try:
            async with open_compute_pool(cfg) as pool:
                self.pool = pool
                self.pool_ready.set()
                await trio.sleep_forever()
        except ComputeError as exc:
            self.pool_failed = True  # the agent then makes no offers (it could not run what they bring)
            log.error("the compute pool did not start: %s (this node will not run jobs)", exc)

    async def _start_agent(self, nursery: trio.Nursery) -> None:
        if not self.config.run_agent:
            return
        self.agent = WorkerAgent(self, self.config, faults=self.faulty)
        await nursery.start(self.agent.run)

    async def _start_api(self, nursery: trio.Nursery) -> None:
        hp = self.config.api_host_port()
        if hp is None:
            return
        from bootstrap.api import serve_api  # FastAPI and pydantic load only for a node that serves its API

        urls = await nursery.start(serve_api, self, hp[0], hp[1])
        self.api_address = hp
        if isinstance(urls, list) and urls:
            # "http://127.0.0.1:5000" → the bound address (port 0 in the config means "any free port")
            host_part, _, port_text = str(urls[0]).rpartition("/")[2].rpartition(":")
            if port_text.isdigit():
                self.api_address = (host_part.strip("[]") or hp[0], int(port_text))

    # ============================================================================================ wiring

    async def _drain(self, channel: trio.MemoryReceiveChannel[Received], handler: Any) -> None:
        async for msg in channel:
            if handler is not None:
                handler(msg)

    def _feed_consensus(self, msg: ProposalMsg | VoteMsg) -> None:
        if self.driver is not None:
            self.driver.feed(msg)

    async def _publish_consensus(self, data: bytes) -> None:
        assert self.host is not None
        await self.host.gossip.publish(TOPIC_CONSENSUS, data)

    def _protect_validators(self) -> None:
        """The validator set keeps its slots on our host whatever strangers do (issue 17, case 5)."""
        assert self.chain is not None and self.host is not None
        validators = tuple(self.chain.validators)
        if validators != self._protected_set:
            self._protected_set = validators
            self.host.protect(PeerId.from_public_key(v) for v in validators)

    def _on_commit(self, cb: CommittedBlock) -> None:
        """Called by the driver for every block it commits (decided or synced), in height order."""
        block = cb.block
        height = block.height
        if self.host is not None:
            self._protect_validators()
        self.counters["blocks_committed"] += 1
        self.txs.on_commit(cb)
        jobs = self.state.jobs
        self.jobs.keep_specs_of(jobs[r.tx_id].params_digest for r in cb.receipts
                                if r.kind == "submit_job" and r.ok and r.tx_id in jobs)
        self.events.publish({
            "type": "block", "height": height, "hash": block.hash().hex(), "txs": len(block.txs),
            "state_root": cb.state_root.hex(), "time_ms": block.header.time_ms,
            "proposer": self.display_id(block.header.proposer),
        })
        for tx_id in block.tx_ids:
            self.events.publish({"type": "tx", "tx_id": tx_id.hex(), "status": "committed",
                                 "height": height})
        self._emit_job_changes(height, [r.tx_id for r in cb.receipts if r.kind == "submit_job" and r.ok]
                               + [e.fields["job_id"] for e in cb.events if e.kind == "job_pruned"])
        self.proofs.on_commit()

    def _emit_job_changes(self, height: int, named: list[bytes]) -> None:
        """Update the job index from the jobs this block can have changed (the unfinished ones, those it
        submitted and those retention pruned) and publish each status change (not a pruning: nothing happened to
        the job)."""
        state = self.state
        touched = [*self.job_index.unfinished_ids(), *state.active_jobs, *named]
        for job_id, before, now in self.job_index.update(state, touched):
            if now is not None:
                self.events.publish({"type": "job", "job_id": job_id.hex(), "status": now,
                                     "previous": before, "height": height})

    # ============================================================================================ facade: reads

    @property
    def state(self) -> State:
        """The committed ledger state (read it, never mutate it)."""
        if self.chain is None:
            raise NodeNotRunning("the node has not opened its store yet")
        return self.chain.state

    @property
    def height(self) -> int:
        return 0 if self.chain is None else self.chain.height

    @property
    def peer_id(self) -> PeerId:
        if self.identity is None:
            raise NodeNotRunning("the node has not loaded its key yet")
        return self.identity.peer_id

    def head(self) -> dict[str, Any]:
        return self.views.head()

    def get_block(self, height: int, *, ids_only: bool = False) -> dict[str, Any] | None:
        """A committed block as JSON-friendly data, or None (see :meth:`bootstrap.views.Views.block`)."""
        return self.views.block(height, ids_only=ids_only)

    @property
    def first_height(self) -> int:
        """The lowest block this node keeps (see :meth:`bootstrap.views.Views.first_height`)."""
        return 1 if self.chain is None else self.views.first_height()

    def peers(self) -> list[dict[str, Any]]:
        return self.views.peers()

    def stats(self) -> dict[str, Any]:
        return self.views.stats()

    def job_view(self, job_id: bytes) -> dict[str, Any] | None:
        """The ledger's job plus what this node knows locally (see :meth:`bootstrap.views.Views.job`)."""
        return self.views.job(job_id)

    def display_id(self, account: bytes) -> str:
        """The ``12D3KooW…`` text of an account."""
        return self.views.display_id(account)

    def account_of(self, name_or_id: str) -> bytes:
        """A keystore name, a peer id (``12D3KooW…``) or 64 hex characters → the raw 32-byte account."""
        if not isinstance(name_or_id, str) or not name_or_id:
            raise UnknownAccount(str(name_or_id), "empty")
        if len(name_or_id) == 64:
            try:
                return bytes.fromhex(name_or_id)
            except ValueError:
                pass
        if name_or_id.startswith("12D3KooW"):
            try:
                return PeerId.from_string(name_or_id).public_key
            except P2PError as exc:
                raise UnknownAccount(name_or_id, f"not a valid peer id: {exc}") from None
        if self.keystore is None:
            raise NodeNotRunning("the keystore is not open")
        try:
            if not self.keystore.exists(name_or_id):
                raise UnknownAccount(name_or_id, "no local key by this name")
            return bytes(self.keystore.load(name_or_id).verify_key)
        except KeystoreError as exc:
            raise UnknownAccount(name_or_id, str(exc)) from None

    # ============================================================================================ facade: txs

    async def submit_tx(self, stx: SignedTx) -> str:
        return await self.txs.submit_tx(stx)

    async def submit_txs(self, stxs: Sequence[SignedTx]) -> list[str | LedgerError]:
        return await self.txs.submit_txs(stxs)

    async def submit_raw_tx(self, raw: bytes) -> str:
        return await self.txs.submit_raw_tx(raw)

    def next_nonce(self, account: bytes) -> int:
        return self.txs.next_nonce(account)

    async def sign_and_submit(self, key_name: str, payload: Payload, *, fee: int | None = None) -> str:
        """Sign ``payload`` with keystore key ``key_name`` (created on first use) at the next nonce, submit it."""
        return await self.txs.sign_and_submit(key_name, payload, fee=fee)

    async def wait_for_tx(self, tx_id_hex: str, timeout: float) -> dict[str, Any]:
        """Wait until the tx is committed (or known rejected), at most ``timeout`` seconds."""
        return await self.txs.wait_for_tx(tx_id_hex, timeout)

    def tx_status(self, tx_id_hex: str) -> dict[str, Any]:
        """Where a tx is now, without waiting (see :meth:`bootstrap.txs.TxDesk.tx_status`)."""
        return self.txs.tx_status(tx_id_hex)

    async def sync_once(self) -> int:
        """One round of block sync; returns blocks applied."""
        assert self.sync is not None
        return await self.sync.sync_once()

    # ============================================================================================ facade: jobs

    def build_dataset(self, source: DatasetSource) -> Dataset | bytes:
        return build_dataset(source)

    async def submit_job(self, client: str, model: str, params: dict[str, Any] | None,
                         dataset: DatasetSource | None, **kwargs: Any) -> dict[str, Any]:
        """Build, keep, announce and submit a job (see :meth:`bootstrap.jobs.JobDesk.submit_job`)."""
        return await self.jobs.submit_job(client, model, params, dataset, **kwargs)

    async def upload_dataset(self, body: bytes, fmt: str, target_column: int | str | None = None) -> dict[str, Any]:
        """Keep an uploaded dataset (see :meth:`bootstrap.jobs.JobDesk.upload_dataset`)."""
        return await self.jobs.upload_dataset(body, fmt, target_column)

    async def announce_job_data(self, spec_bytes: bytes) -> None:
        await self.jobs.announce_job_data(spec_bytes)

    def providers(self, digest: bytes) -> list[PeerId]:
        return self.jobs.providers(digest)

    async def fetch_blob(self, digest: bytes, *, max_size: int, timeout: float = 30.0) -> bytes:
        """The blob named ``digest``, from the local store or a peer (digest checked)."""
        return await self.jobs.fetch_blob(digest, max_size=max_size, timeout=timeout)

    def spec_of(self, digest: bytes) -> JobSpec | None:
        return self.jobs.spec_of(digest)
