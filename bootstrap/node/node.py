"""The Node: one process, one trio nursery, wiring the ledger, p2pnet and compute together.

``Node(home, config).run()`` opens the sqlite store, starts the p2p host (listen, bootstrap dials), subscribes to
the gossip topics (txs, consensus, job data), runs the consensus driver (validator or observer) and block sync,
the compute pool, the worker agent and the REST API, and reports ``task_status.started()`` once all of them
listen. ``stop()`` shuts it down gracefully: the driver stops, peers are told goodbye, the store is closed.

The read side (``state``, ``head``, ``job_view`` …) shows committed state only. The write side signs with keys
from the node's keystore, admits the tx to the local mempool (typed ledger errors on a bad tx) and gossips it.
Job data moves peer to peer: the submitting node keeps the spec and dataset in its content-addressed blob store
and announces them; others fetch by digest (``fetch_blob``) and check it.

Test-only switches (:class:`TestSwitches`, from ``DACN_TEST_*`` environment variables, all off by default) make
a node misbehave for the chaos and Byzantine tests: a skewed block clock, SIGUSR1 cutting every peer link for a
while, and a Byzantine validator (equivocating votes, invalid proposals, gossip spam).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bootstrap.consensus.driver import BYZANTINE_MODES, ConsensusDriver
from bootstrap.errors import BlobNotFound, HomeError, NodeError, NodeNotRunning, UnknownAccount, WireError
from bootstrap.gossip.wire import (
    PROTO_STATUS,
    PROTO_SYNC,
    TOPIC_CONSENSUS,
    TOPIC_JOBDATA,
    TOPIC_TX,
    TOPIC_TXS,
    JobDataAnnouncement,
    ProposalMsg,
    Status,
    VoteMsg,
    decode_announcement,
    decode_consensus,
    decode_tx_batch,
    encode_announcement,
    split_tx_batches,
)
from bootstrap.home.config import NodeConfig
from bootstrap.home.keystore import Keystore, KeystoreError
from bootstrap.home.layout import NODE_KEY, home_paths, load_home_genesis
from bootstrap.jobs.blobs import BlobStore
from bootstrap.node.events import EventBus
from compute import Dataset, JobSpec, dataset_from_csv, make_dataset, make_spec, synthetic
from compute.dataset import encode_dataset
from compute.errors import ComputeError
from compute.pool import PoolConfig
from ledger.block import BlockError
from ledger.chain import Chain, CommittedBlock
from ledger.crypto import blake2b256
from ledger.errors import BadNonce, BadSignature, DecodeError, InvalidTx, LedgerError
from ledger.genesis import Genesis, genesis_state
from ledger.jobs import ASSIGN_BY_BIDS, ASSIGN_BY_OFFERS
from ledger.mempool import Admission, AlreadyInMempool, Mempool, MempoolConfig, MempoolError
from ledger.state import TERMINAL_STATUSES, Job, State
from ledger.store import StoreError, open_chain
from ledger.sync import GetBlocks, decode_sync_message, serve
from ledger.tx import Payload, SignedTx, SubmitJob, decode_signed_tx, make_tx
from p2pnet import Host, Identity, P2PError, PeerId, Received, ValidationResult
from p2pnet.errors import InvalidPeerId

log = logging.getLogger("bootstrap.node")

ZERO_HASH = bytes(32)
# How many committed tx ids (→ height) the node remembers for wait_for_tx after the fact.
TX_INDEX_SIZE = 200_000
# Consensus messages decoded by the gossip validator and not yet delivered to the driver.
CONSENSUS_DECODED_KEEP = 1024
DISPLAY_ID_CACHE = 4096  # accounts whose peer-id text is remembered (cleared when full: a flood cannot grow it)


# ------------------------------------------------------------------------------------------ dataset sources


@dataclass(frozen=True)
class SyntheticSource:
    """A seeded generator from ``compute.synthetic`` (bit-identical everywhere)."""

    kind: str = "regression"
    n_samples: int = 200
    n_features: int = 4
    seed: int = 0
    n_classes: int = 3
    noise: float = 0.1


@dataclass(frozen=True)
class CsvSource:
    """CSV text; ``target_column`` (index or header name) becomes y."""

    data: bytes
    target_column: int | str | None = None


@dataclass(frozen=True)
class InlineSource:
    """Rows given directly (JSON bodies): X as a list of rows, optional y."""

    X: list[list[float]]
    y: list[float] | None = None


@dataclass(frozen=True)
class DigestSource:
    """A dataset already in this node's blob store (or fetchable from peers) by its digest."""

    digest: bytes


DatasetSource = SyntheticSource | CsvSource | InlineSource | DigestSource

_DEFAULT_KIND = {"kmeans": "blobs", "pca": "blobs", "logistic_regression": "classification",
                 "mlp_train": "classification"}


def default_dataset(model: str, seed: int = 0) -> SyntheticSource:
    """What the seed did without a dataset: a small synthetic one suited to the model."""
    return SyntheticSource(kind=_DEFAULT_KIND.get(model, "regression"), n_samples=200, n_features=4, seed=seed)


class TestSwitchError(NodeError):
    """A ``DACN_TEST_*`` variable holds a value the node cannot use; ``field`` names the variable."""

    __test__ = False

    def __init__(self, field: str, value: str, reason: str) -> None:
        super().__init__(f"{field}={value!r:.80}: {reason}")
        self.field, self.value = field, value


MAX_CLOCK_SKEW_MS = 60_000


@dataclass(frozen=True)
class TestSwitches:
    """Test-only faults. ``byzantine``: modes from ``bootstrap.driver.BYZANTINE_MODES`` (``spam`` floods gossip
    with invalid txs and consensus garbage at ``spam_rate`` messages/s); ``clock_skew_ms``: offset of the block
    clock (bounded by ``MAX_CLOCK_SKEW_MS``); ``isolate_signal``: SIGUSR1 cuts every peer link for ``isolate_s``."""

    __test__ = False  # not a pytest test class, whatever its name

    byzantine: frozenset[str] = frozenset()
    clock_skew_ms: int = 0
    isolate_signal: bool = False
    isolate_s: float = 5.0
    spam_rate: int = 200

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TestSwitches:
        """``DACN_TEST_BYZANTINE`` (comma-separated modes), ``DACN_TEST_CLOCK_SKEW_MS``, ``DACN_TEST_ISOLATE_S``
        (enables SIGUSR1), ``DACN_TEST_SPAM_RATE``."""
        env = os.environ if env is None else env
        raw = env.get("DACN_TEST_BYZANTINE", "")
        modes = frozenset(m.strip() for m in raw.split(",") if m.strip())
        if modes - BYZANTINE_MODES:
            raise TestSwitchError("DACN_TEST_BYZANTINE", raw, f"known modes: {', '.join(sorted(BYZANTINE_MODES))}")

        def number(name: str, default: float, lo: float, hi: float) -> float:
            text = env.get(name, "")
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise TestSwitchError(name, text, "not a number") from None
            if not lo <= value <= hi:
                raise TestSwitchError(name, text, f"must be within [{lo:g}, {hi:g}]")
            return value

        skew = number("DACN_TEST_CLOCK_SKEW_MS", 0, -MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS)
        isolate = number("DACN_TEST_ISOLATE_S", 0, 0, 3600)
        rate = number("DACN_TEST_SPAM_RATE", 200, 1, 100_000)
        return cls(byzantine=modes, clock_skew_ms=int(skew), isolate_signal=isolate > 0,
                   isolate_s=isolate or 5.0, spam_rate=int(rate))

    @property
    def active(self) -> bool:
        return bool(self.byzantine or self.clock_skew_ms or self.isolate_signal)


def _status_waiting_for(job: Job) -> str | None:
    s = job.status
    if s == "open":
        return f"bids until height {job.bid_deadline}"
    if s == "assigned":
        missing = [r for r, a in (("worker", job.worker), ("verifier", job.verifier)) if a not in job.commits]
        return f"commits from {' and '.join(missing) or 'nobody'} by height {job.deadline}"
    if s == "revealing":
        missing = [r for r, a in (("worker", job.worker), ("verifier", job.verifier)) if a not in job.reveals]
        return f"reveals from {' and '.join(missing) or 'nobody'} by height {job.deadline}"
    if s == "disputed":
        return f"the referee's commit and reveal by height {job.deadline}"
    return None


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
        self.blobs: BlobStore | None = None
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
        self._sync_wake = trio.Event()
        self._providers: dict[bytes, list[PeerId]] = {}
        self._tx_heights: OrderedDict[bytes, int] = OrderedDict()
        self._display_ids: dict[bytes, str] = {}
        self._consensus_decoded: dict[int, tuple[bytes, ProposalMsg | VoteMsg]] = {}
        self._tx_waiters: dict[bytes, trio.Event] = {}
        self._tx_rejected: OrderedDict[bytes, str] = OrderedDict()
        # Waited-on txs that were in our mempool at some point: only those can be declared dropped.
        self._tx_was_pending: set[bytes] = set()
        self._job_status: dict[bytes, str] = {}
        self.counters: dict[str, int] = {
            "txs_submitted": 0, "txs_gossip_in": 0, "txs_gossip_rejected": 0, "blocks_committed": 0,
            "sync_requests": 0, "sync_failures": 0, "blobs_fetched": 0, "announcements": 0,
            # dacn/txs/1: batches (and the txs in them) received, refused as garbage, and published
            "tx_batches_in": 0, "tx_batch_txs_in": 0, "tx_batches_rejected": 0, "tx_batches_out": 0,
            "tx_batch_txs_out": 0,
        }

    # ============================================================================================ lifecycle

    def _open(self) -> None:
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
        mempool = Mempool(
            self.genesis.chain_id, genesis_state(self.genesis), MempoolConfig(max_txs=self.config.mempool_max_txs)
        )
        try:
            self.chain = open_chain(
                self.paths["chain"], self.genesis, snapshot_every=self.config.snapshot_every, mempool=mempool
            )
        except StoreError as exc:
            raise HomeError(str(self.paths["chain"]), str(exc)) from exc
        self.mempool = self.chain.mempool
        self.blobs = BlobStore(self.paths["blobs"], max_bytes=self.config.max_blob_bytes)
        for job_id in self.chain.state.active_jobs:
            self._job_status[job_id] = self.chain.state.jobs[job_id].status

    def _close(self) -> None:
        self.events.close()
        if self.chain is not None and self.chain.store is not None:
            try:
                self.chain.store.close()  # type: ignore[attr-defined]
            except Exception as exc:  # closing twice or after a crash: report, never mask the real error
                log.warning("closing the store failed: %r", exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or cancellation); ``task_status.started()`` once everything listens."""
        self._open()
        assert self.identity is not None and self.chain is not None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                host = Host(self.identity, self.config.host_config(str(self.paths["peers"])))
                self.host = host
                host.set_request_handler(PROTO_STATUS, self._serve_status)
                host.set_request_handler(PROTO_SYNC, self._serve_sync)
                assert self.blobs is not None
                host.set_blob_provider(self.blobs.get)
                await nursery.start(host.run)
                txs = host.gossip.subscribe(TOPIC_TX, self._validate_tx)
                tx_batches = host.gossip.subscribe(TOPIC_TXS, self._validate_tx_batch)
                cons = host.gossip.subscribe(TOPIC_CONSENSUS, self._validate_consensus)
                jobdata = host.gossip.subscribe(TOPIC_JOBDATA, self._validate_jobdata)
                nursery.start_soon(self._drain, txs, None)
                nursery.start_soon(self._drain, tx_batches, None)
                nursery.start_soon(self._drain, cons, self._on_consensus)
                nursery.start_soon(self._drain, jobdata, self._on_jobdata)
                self.driver = ConsensusDriver(
                    self.chain,
                    config=self.config.consensus(),
                    publish=self._publish_consensus,
                    on_commit=self._on_commit,
                    on_behind=self._on_behind,
                    signing_key=self.identity.signing_key,
                    rebroadcast_ms=self.config.rebroadcast_ms,
                    sign_state_path=self.paths["data"] / "sign_state.json",
                    clock_ms=self._clock_ms,
                    byzantine=self.switches.byzantine,
                )
                await nursery.start(self.driver.run)
                if "spam" in self.switches.byzantine:
                    nursery.start_soon(self._spam)
                nursery.start_soon(self._sync_loop)
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

    # ============================================================================================ test switches

    def _clock_ms(self) -> int:
        return int(time.time() * 1000) + self.switches.clock_skew_ms

    def isolate(self, seconds: float) -> int:
        """Test-only: cut every peer link and refuse those peers for ``seconds`` (then discovery reconnects).
        Returns how many links were cut."""
        if self.host is None:
            return 0
        peers = self.host.peers()
        for peer in peers:
            self.host.ban(peer, "test switch: links cut", seconds)
        return len(peers)

    async def _spam(self) -> None:
        """Test-only Byzantine spam: garbage and badly signed txs on the tx topic, garbage on consensus."""
        assert self.host is not None and self.identity is not None and self.chain is not None
        import secrets

        from ledger.tx import Transfer

        me = self.identity.signing_key
        i = 0
        while True:
            i += 1
            kind = i % 3
            if kind == 0:
                topic, data = TOPIC_TX, secrets.token_bytes(64 + i % 200)
            elif kind == 1:
                stx = make_tx(Transfer(to=secrets.token_bytes(32), amount=1), me, self.chain.chain_id,
                              nonce=self.chain.state.nonce(self.identity.public_key) + i, fee=1)
                forged = SignedTx(stx.tx, stx.body_bytes, bytes(64))  # a signature that cannot verify
                topic, data = TOPIC_TX, forged.encode()
            else:
                topic, data = TOPIC_CONSENSUS, secrets.token_bytes(100)
            try:
                await self.host.gossip.publish(topic, data)
            except P2PError as exc:
                log.debug("spam publish failed: %s", exc)
            self.counters["spam_sent"] = self.counters.get("spam_sent", 0) + 1
            await trio.sleep(1 / self.switches.spam_rate)

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
        from bootstrap.agent.pool import open_compute_pool

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
        try:
            from bootstrap.agent.shell import WorkerAgent  # W's module; the node runs without it while it lands
        except ImportError as exc:
            log.warning("no worker agent (%s); this node follows the chain but runs no jobs", exc)
            return
        self.agent = WorkerAgent(self, self.config, faults=self.faulty)
        await nursery.start(self.agent.run)

    async def _start_api(self, nursery: trio.Nursery) -> None:
        hp = self.config.api_host_port()
        if hp is None:
            return
        from bootstrap.api.app import serve_api  # H's module

        urls = await nursery.start(serve_api, self, hp[0], hp[1])
        self.api_address = hp
        if isinstance(urls, list) and urls:
            # "http://127.0.0.1:5000" → the bound address (port 0 in the config means "any free port")
            host_part, _, port_text = str(urls[0]).rpartition("/")[2].rpartition(":")
            if port_text.isdigit():
                self.api_address = (host_part.strip("[]") or hp[0], int(port_text))

    # ============================================================================================ gossip

    async def _drain(self, channel: trio.MemoryReceiveChannel[Received], handler: Any) -> None:
        async for msg in channel:
            if handler is not None:
                handler(msg)

    def _validate_tx(self, peer: PeerId, data: bytes) -> ValidationResult:
        """Mempool admission is the validator: accept what it admits, blame senders of garbage.

        Gossip does not keep a sender's txs in nonce order (a relayed copy can overtake the direct one); the
        mempool queues early nonces itself and promotes them when their turn comes."""
        assert self.mempool is not None
        self.counters["txs_gossip_in"] += 1
        try:
            admission = self.mempool.admit(data)
        except AlreadyInMempool:
            return ValidationResult.IGNORE
        except DecodeError:
            self.counters["txs_gossip_rejected"] += 1
            return ValidationResult.REJECT
        except InvalidTx as exc:
            if type(exc).__name__ == "BadSignature":
                self.counters["txs_gossip_rejected"] += 1
                return ValidationResult.REJECT
            return ValidationResult.IGNORE  # stale nonce, spent balance …: not the relaying peer's fault
        except MempoolError:
            return ValidationResult.IGNORE
        self._note_admission(admission)
        return ValidationResult.ACCEPT  # queued early txs too: signature checked, and others may need them

    def _validate_tx_batch(self, peer: PeerId, data: bytes) -> ValidationResult:
        """A ``dacn/txs/1`` batch: admit each new tx, then forward the batch once (ACCEPT) if any was new.

        REJECT (the relayer is blamed) if the batch or any tx in it does not decode or any new tx's signature is
        bad; every signature is checked before anything is admitted, so a bad item cannot leave us holding txs we
        then decline to relay (the honest batch carrying them would find nothing new and stop here). IGNORE if
        nothing in it was new. Txs refused for state reasons (a stale nonce, a spent balance) are not the
        relayer's fault: like early nonces, they do not change the verdict."""
        assert self.mempool is not None
        mempool = self.mempool
        self.counters["tx_batches_in"] += 1
        try:
            stxs = [decode_signed_tx(raw) for raw in decode_tx_batch(data)]
            fresh = [stx for stx in stxs if mempool.get(stx.tx_id) is None]
            for stx in fresh:
                mempool.check_signature(stx)
        except (WireError, DecodeError, BadSignature):
            self.counters["tx_batches_rejected"] += 1
            return ValidationResult.REJECT
        self.counters["tx_batch_txs_in"] += len(stxs)
        new = 0
        for stx in fresh:
            try:
                admission = mempool.admit_tx(stx)
            except LedgerError:  # a state reason, a full pool, or the same tx twice in the batch
                continue
            self._note_admission(admission)
            new += 1
        return ValidationResult.ACCEPT if new else ValidationResult.IGNORE

    def _note_admission(self, admission: Admission) -> None:
        """Bookkeeping for txs that became pending: waiters may now learn of a drop, watchers see them."""
        now_pending = admission.promoted if admission.queued else (admission.tx, *admission.promoted)
        if admission.queued and admission.tx.tx_id in self._tx_waiters:
            self._tx_was_pending.add(admission.tx.tx_id)
        for stx in now_pending:
            if stx.tx_id in self._tx_waiters:
                self._tx_was_pending.add(stx.tx_id)
            self.events.publish({"type": "tx", "tx_id": stx.tx_id.hex(), "kind": stx.kind, "status": "pending",
                                 "sender": self.display_id(stx.sender)})

    def _validate_consensus(self, peer: PeerId, data: bytes) -> ValidationResult:
        assert self.chain is not None
        try:
            msg = decode_consensus(data)
        except WireError:
            return ValidationResult.REJECT
        cid = self.chain.chain_id
        if isinstance(msg, ProposalMsg):
            p = msg.proposal
            ok = p.proposer in self.chain.validators and p.verify(cid) and msg.block.hash() == p.block_hash
        else:
            ok = msg.vote.validator in self.chain.validators and msg.vote.verify(cid)
        if not ok:
            return ValidationResult.REJECT
        # Gossip delivers this same bytes object next: keep the decoded message (a proposal carries a whole
        # block) so _on_consensus does not decode it again. Keyed by identity, holding the bytes, so a reused id
        # cannot match other data; bounded, oldest out, for messages accepted but never delivered.
        self._consensus_decoded[id(data)] = (data, msg)
        while len(self._consensus_decoded) > CONSENSUS_DECODED_KEEP:
            del self._consensus_decoded[next(iter(self._consensus_decoded))]
        return ValidationResult.ACCEPT

    def _on_consensus(self, msg: Received) -> None:
        if self.driver is None:
            return
        kept = self._consensus_decoded.pop(id(msg.data), None)
        try:
            decoded = kept[1] if kept is not None and kept[0] is msg.data else decode_consensus(msg.data)
            self.driver.feed(decoded)
        except WireError:  # the validator accepted it, so this cannot happen; never crash on it either
            log.warning("undecodable consensus message from %s", msg.source.short())

    async def _publish_consensus(self, data: bytes) -> None:
        assert self.host is not None
        await self.host.gossip.publish(TOPIC_CONSENSUS, data)

    def _validate_jobdata(self, peer: PeerId, data: bytes) -> ValidationResult:
        try:
            a = decode_announcement(data)
            spec = JobSpec.decode(a.spec)
            PeerId.from_bytes(a.provider)
        except (WireError, ComputeError, InvalidPeerId, P2PError):
            return ValidationResult.REJECT
        if spec.dataset_digest != a.dataset_digest:
            return ValidationResult.REJECT
        return ValidationResult.ACCEPT

    def _on_jobdata(self, msg: Received) -> None:
        try:
            a = decode_announcement(msg.data)
            self._note_announcement(a)
        except (WireError, P2PError, NodeError) as exc:
            log.warning("bad job data announcement from %s: %s", msg.source.short(), exc)

    def _note_announcement(self, a: JobDataAnnouncement) -> None:
        assert self.blobs is not None
        self.counters["announcements"] += 1
        self.blobs.put(a.spec)  # specs are small: every node keeps them, so job views can show them
        provider = PeerId.from_bytes(a.provider)
        known = self._providers.setdefault(a.dataset_digest, [])
        if provider not in known:
            known.append(provider)
            del known[:-8]

    # ============================================================================================ commits and sync

    def _on_commit(self, cb: CommittedBlock) -> None:
        """Called by the driver for every block it commits (decided or synced), in height order."""
        assert self.chain is not None and self.mempool is not None
        block = cb.block
        height = block.height
        self.counters["blocks_committed"] += 1
        for tx_id in block.tx_ids:
            self._tx_heights[tx_id] = height
            self._tx_was_pending.discard(tx_id)
            ev = self._tx_waiters.pop(tx_id, None)
            if ev is not None:
                ev.set()
        while len(self._tx_heights) > TX_INDEX_SIZE:
            self._tx_heights.popitem(last=False)
        # Txs we are waiting on that the mempool dropped after this commit can no longer be included (the
        # mempool promoted queued txs whose turn came when the chain updated it).
        for tx_id in list(self._tx_waiters):
            if tx_id in self.mempool or self.mempool.is_queued(tx_id):
                self._tx_was_pending.add(tx_id)
            elif tx_id in self._tx_was_pending:
                self._tx_rejected[tx_id] = f"dropped from the mempool after height {height}: no longer valid"
                self._tx_was_pending.discard(tx_id)
                self._tx_waiters.pop(tx_id).set()
        while len(self._tx_rejected) > 10_000:
            self._tx_rejected.popitem(last=False)
        self.events.publish({
            "type": "block", "height": height, "hash": block.hash().hex(), "txs": len(block.txs),
            "state_root": cb.state_root.hex(), "time_ms": block.header.time_ms,
            "proposer": self.display_id(block.header.proposer),
        })
        for tx_id in block.tx_ids:
            self.events.publish({"type": "tx", "tx_id": tx_id.hex(), "status": "committed",
                                 "height": height})
        self._emit_job_changes(height)

    def _emit_job_changes(self, height: int) -> None:
        state = self.state
        seen = set(self._job_status)
        for job_id in list(state.active_jobs) + [j for j in seen if j not in state.active_jobs]:
            job = state.jobs.get(job_id)
            if job is None:
                continue
            before = self._job_status.get(job_id)
            if job.status != before:
                self.events.publish({"type": "job", "job_id": job_id.hex(), "status": job.status,
                                     "previous": before, "height": height})
            if job.status in TERMINAL_STATUSES:
                self._job_status.pop(job_id, None)
            else:
                self._job_status[job_id] = job.status

    def _on_behind(self, seen_height: int) -> None:
        self._sync_wake.set()

    async def _serve_status(self, peer: PeerId, payload: Any) -> list:
        assert self.chain is not None
        return self._status().to_wire()

    def _status(self) -> Status:
        assert self.chain is not None
        head = self.chain.last_header
        return Status(self.chain.height, head.hash() if head is not None else ZERO_HASH, self.chain.root)

    async def _serve_sync(self, peer: PeerId, payload: Any) -> bytes:
        assert self.chain is not None
        if not isinstance(payload, bytes):
            raise WireError("sync", "expected GetBlocks bytes")
        try:
            req = decode_sync_message(payload)
        except DecodeError as exc:
            raise WireError("sync", str(exc)) from None
        if not isinstance(req, GetBlocks):
            raise WireError("sync", "expected a GetBlocks request")
        return serve(self.chain, req).encode()

    async def _sync_loop(self) -> None:
        """Catch up from peers: when consensus says we are behind, and every ``sync_interval_ms`` anyway."""
        while True:
            with trio.move_on_after(self.config.sync_interval_ms / 1000):
                await self._sync_wake.wait()
            self._sync_wake = trio.Event()
            try:
                await self.sync_once()
            except Exception as exc:  # one bad peer or a transient error must not end sync
                self.counters["sync_failures"] += 1
                log.warning("block sync round failed: %r", exc)

    async def sync_once(self) -> int:
        """Ask peers for their height and fetch missing blocks from the highest; returns blocks applied."""
        assert self.host is not None and self.chain is not None and self.driver is not None
        host = self.host
        heights: dict[PeerId, int] = {}

        async def ask(peer: PeerId) -> None:
            try:
                heights[peer] = Status.from_wire(await host.request(peer, PROTO_STATUS, None, timeout=2.0)).height
            except (P2PError, WireError) as exc:
                log.debug("status from %s failed: %s", peer.short(), exc)

        async with trio.open_nursery() as n:
            for peer in host.peers()[:16]:
                n.start_soon(ask, peer)
        applied = 0
        for peer, height in sorted(heights.items(), key=lambda kv: -kv[1]):
            while height > self.chain.height:
                start = self.chain.next_height
                req = GetBlocks(start, min(height, start + 15))
                self.counters["sync_requests"] += 1
                try:
                    raw = await host.request(peer, PROTO_SYNC, req.encode(), timeout=5.0)
                    resp = decode_sync_message(raw) if isinstance(raw, bytes) else None
                except (P2PError, DecodeError) as exc:
                    self.counters["sync_failures"] += 1
                    log.info("sync from %s failed: %s", peer.short(), exc)
                    break
                if resp is None or isinstance(resp, GetBlocks) or not resp.blocks:
                    break
                result = await self.driver.apply_synced(resp)
                applied += len(result.applied)
                if result.error is not None or not result.applied:
                    break
            if self.chain.height >= height:
                break
        return applied

    # ============================================================================================ read side

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
        assert self.chain is not None
        h = self.chain.last_header
        return {
            "height": self.chain.height,
            "block_hash": (h.hash() if h is not None else ZERO_HASH).hex(),
            "state_root": self.chain.root.hex(),
            "time_ms": h.time_ms if h is not None else self.chain.genesis.genesis_time,
            "chain_id": self.chain.chain_id,
            "proposer": self.display_id(h.proposer) if h is not None else None,
        }

    def get_block(self, height: int, *, ids_only: bool = False) -> dict[str, Any] | None:
        """A committed block as JSON-friendly data, or None if this node does not have it.

        Each tx is listed as its id, kind, sender, nonce and fee under ``txs``; with ``ids_only`` the block has
        ``tx_ids`` (hex, in block order) instead, hashed from the stored bytes without decoding any tx: a commit
        watcher (the load generator's) needs only those, and decoding every tx of every block again for it cost a
        few percent of a saturated node."""
        assert self.chain is not None
        if not 1 <= height <= self.chain.height:
            return None
        got = self.chain.get_blocks(height, height, limit=1)
        if not got:
            return None
        block, commit = got[0]
        h = block.header
        out: dict[str, Any] = {
            "height": h.height, "hash": block.hash().hex(), "round": h.round, "time_ms": h.time_ms,
            "prev_hash": h.prev_hash.hex(), "proposer": self.display_id(h.proposer),
            "state_root_before": h.state_root.hex(), "tx_root": h.tx_root.hex(),
        }
        if ids_only:
            out["tx_ids"] = [tx_id.hex() for tx_id in block.tx_ids]
        else:
            txs = []
            for raw in block.txs:
                try:
                    stx = decode_signed_tx(raw)
                    txs.append({"tx_id": stx.tx_id.hex(), "kind": stx.kind, "sender": self.display_id(stx.sender),
                                "nonce": stx.nonce, "fee": stx.fee})
                except DecodeError:  # committed blocks only hold valid txs; never fail a read on it anyway
                    txs.append({"tx_id": blake2b256(raw).hex(), "kind": "?"})
            out["txs"] = txs
        return {
            **out,
            "evidence": len(block.evidence),
            "commit": {"round": commit.round, "signers": [self.display_id(s.validator) for s in commit.signatures]},
        }

    def peers(self) -> list[dict[str, Any]]:
        if self.host is None:
            return []
        out = []
        for p in self.host.peers():
            conn = self.host.connection(p)
            out.append({
                "peer_id": str(p),
                "addrs": list(conn.listen_addrs) if conn is not None else [],
                "direction": ("outbound" if conn.outbound else "inbound") if conn is not None else "?",
                "remote_addr": conn.remote_addr if conn is not None else None,
                "score": round(self.host.gossip.score(p), 3),
                "validator": p.public_key in (self.chain.validators if self.chain else []),
            })
        return out

    def stats(self) -> dict[str, Any]:
        state = self.state
        by_status: dict[str, int] = {}
        for job in state.jobs.values():
            by_status[job.status] = by_status.get(job.status, 0) + 1
        assert self.mempool is not None
        metrics = self.host.metrics() if self.host is not None else {}
        return {
            "node": {"peer_id": str(self.peer_id), "moniker": self.config.moniker,
                     "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0.0,
                     "validator": bool(self.driver and self.driver.is_validator), **self.counters},
            "chain": {**self.head(), "validators": len(state.validators),
                      "consensus": self.driver.status() if self.driver else None},
            "mempool": {"txs": len(self.mempool), "bytes": self.mempool.bytes, "evicted": self.mempool.evicted,
                        "queued": len(self.mempool.queued), "queued_evicted": self.mempool.queued_evicted,
                        "queued_dropped": self.mempool.queued_dropped, "promoted": self.mempool.promoted},
            "gossip": {"peers": metrics.get("peers", 0), "topics": metrics.get("topics", {})},
            "jobs": {"total": len(state.jobs), "active": len(state.active_jobs), "by_status": by_status},
            "workers": {"total": len(state.workers)},
            "events": {"subscribers": self.events.subscribers, "dropped_subscribers": self.events.dropped_subscribers},
        }

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

    def display_id(self, account: bytes) -> str:
        """The ``12D3KooW…`` text of an account (remembered: every admitted tx's event and every tx of a block
        read renders its sender, and the base58 encoding is a big-integer conversion)."""
        text = self._display_ids.get(account)
        if text is None:
            text = str(PeerId.from_public_key(account))
            if len(self._display_ids) >= DISPLAY_ID_CACHE:
                self._display_ids.clear()
            self._display_ids[account] = text
        return text

    # ============================================================================================ write side

    def _admit_local(self, stx: SignedTx) -> None:
        """Admit a tx submitted here (typed ledger errors if it is bad), without gossiping it yet."""
        if self.mempool is None or self.host is None:
            raise NodeNotRunning("the node is not running")
        admission = self.mempool.admit_tx(stx)  # decoded once, by the caller
        self.counters["txs_submitted"] += 1
        self._note_admission(admission)

    async def submit_tx(self, stx: SignedTx) -> str:
        """Admit a signed tx to the mempool (typed ledger errors if it is bad) and gossip it; its id in hex."""
        self._admit_local(stx)
        assert self.host is not None
        await self.host.gossip.publish(TOPIC_TX, stx.encode())
        return stx.tx_id.hex()

    async def submit_txs(self, stxs: Sequence[SignedTx]) -> list[str | LedgerError]:
        """``POST /txs``: admit each tx in order, then gossip the admitted ones as ``dacn/txs/1`` batches (split
        to the wire bounds). Per tx, its id in hex or the ledger error that refused it; one bad tx does not stop
        the rest."""
        if self.mempool is None or self.host is None:
            raise NodeNotRunning("the node is not running")
        out: list[str | LedgerError] = []
        admitted: list[bytes] = []
        for stx in stxs:
            try:
                self._admit_local(stx)
            except LedgerError as exc:
                out.append(exc)
                continue
            out.append(stx.tx_id.hex())
            admitted.append(stx.encode())
        if admitted:
            batches = split_tx_batches(admitted)
            # Shielded: these txs are in our mempool already, and a client hanging up must not leave them
            # unannounced (publish waits at most the gossip forward timeout per peer).
            with trio.CancelScope(shield=True):
                for data in batches:
                    await self.host.gossip.publish(TOPIC_TXS, data)
            self.counters["tx_batches_out"] += len(batches)
            self.counters["tx_batch_txs_out"] += len(admitted)
        return out

    async def submit_raw_tx(self, raw: bytes) -> str:
        """``POST /tx``: an externally signed tx's bytes (decoded and checked like gossip)."""
        return await self.submit_tx(decode_signed_tx(raw))

    def next_nonce(self, account: bytes) -> int:
        """The nonce a new tx from ``account`` needs: committed nonce plus its pending txs here."""
        assert self.mempool is not None
        return self.mempool.next_nonce(account)

    async def sign_and_submit(self, key_name: str, payload: Payload, *, fee: int | None = None) -> str:
        """Sign ``payload`` with keystore key ``key_name`` (created on first use) at the next nonce, submit it."""
        if self.keystore is None or self.chain is None:
            raise NodeNotRunning("the node is not running")
        key = self.keystore.get_or_create(key_name) if key_name != NODE_KEY else self.keystore.load(NODE_KEY)
        account = bytes(key.verify_key)
        use_fee = max(self.state.params.min_fee, self.config.default_fee) if fee is None else fee
        for attempt in range(3):
            stx = make_tx(payload, key, self.chain.chain_id, nonce=self.next_nonce(account), fee=use_fee)
            try:
                return await self.submit_tx(stx)
            except BadNonce:
                # Another node used the same shared key (the devnet faucet) at this nonce; take the next one.
                if attempt == 2:
                    raise
                await trio.sleep(0)
        raise AssertionError("unreachable")

    async def wait_for_tx(self, tx_id_hex: str, timeout: float) -> dict[str, Any]:
        """Wait until the tx is committed (or known rejected), at most ``timeout`` seconds."""
        try:
            tx_id = bytes.fromhex(tx_id_hex)
        except ValueError:
            raise NodeError(f"tx id must be 64 hex characters, got {tx_id_hex!r:.80}") from None
        if len(tx_id) != 32:
            raise NodeError(f"tx id must be 64 hex characters, got {tx_id_hex!r:.80}")
        ev: trio.Event | None = None
        if tx_id not in self._tx_heights and tx_id not in self._tx_rejected:
            ev = self._tx_waiters.setdefault(tx_id, trio.Event())
            if self.mempool is not None and (tx_id in self.mempool or self.mempool.is_queued(tx_id)):
                self._tx_was_pending.add(tx_id)
            with trio.move_on_after(timeout):
                await ev.wait()
        if tx_id in self._tx_heights:
            return {"status": "committed", "tx_id": tx_id_hex, "height": self._tx_heights[tx_id]}
        if tx_id in self._tx_rejected:
            return {"status": "rejected", "tx_id": tx_id_hex, "reason": self._tx_rejected[tx_id]}
        in_pool = self.mempool is not None and (tx_id in self.mempool or self.mempool.is_queued(tx_id))
        if ev is not None and self._tx_waiters.get(tx_id) is ev and not in_pool:
            del self._tx_waiters[tx_id]  # nobody waits any more (another waiter re-adds it)
            self._tx_was_pending.discard(tx_id)
        return {"status": "pending", "tx_id": tx_id_hex, "in_mempool": in_pool}

    def build_dataset(self, source: DatasetSource) -> Dataset | bytes:
        """A Dataset from a source (compute errors pass through typed); a DigestSource gives the digest only."""
        if isinstance(source, SyntheticSource):
            return synthetic(source.kind, source.n_samples, source.n_features, source.seed,
                             n_classes=source.n_classes, noise=source.noise)
        if isinstance(source, CsvSource):
            return dataset_from_csv(source.data, source.target_column)
        if isinstance(source, InlineSource):
            import numpy as np

            try:
                X = np.asarray(source.X, dtype=np.float64)
                y = None if source.y is None else np.asarray(source.y, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                from compute.errors import DatasetError

                raise DatasetError(f"inline data is not a numeric matrix: {exc}") from None
            return make_dataset(X, y)
        if isinstance(source, DigestSource):
            return source.digest
        raise NodeError(f"unknown dataset source {type(source).__name__}")

    async def submit_job(
        self,
        client: str,
        model: str,
        params: dict[str, Any] | None,
        dataset: DatasetSource | None,
        *,
        reward: int,
        verification_fee: int | None = None,
        device: str = "any",
        min_memory_mb: int = 0,
        time_limit_ms: int = 600_000,
        memory_limit_mb: int = 4096,
        bid_window: int = 0,
        commit_window: int = 0,
        reveal_window: int = 0,
        fee: int | None = None,
        assign: str = "bids",
    ) -> dict[str, Any]:
        """Build and check the job's spec and dataset, keep both in the blob store, announce them, and sign
        ``SubmitJob`` with key ``client``. Compute errors (bad model, params or data) raise typed before any tx.
        ``assign="offers"`` asks the ledger to assign the job in its submit block from standing offers."""
        if self.blobs is None or self.host is None:
            raise NodeNotRunning("the node is not running")
        from ledger.errors import InvalidField

        if type(reward) is not int or reward <= 0:
            raise InvalidField("submit_job.reward", f"must be a positive integer, got {reward!r}")
        if assign not in (ASSIGN_BY_OFFERS, ASSIGN_BY_BIDS):
            raise InvalidField("submit_job.assign", f"expected 'offers' or 'bids', got {assign!r}")
        vfee = max(1, reward // 10) if verification_fee is None else verification_fee
        built = self.build_dataset(dataset if dataset is not None else default_dataset(model))
        if isinstance(built, bytes):
            digest = built
            data = self.blobs.get(digest)
            if data is None:
                data = await self.fetch_blob(digest, max_size=self.config.max_blob_bytes)
        else:
            data = encode_dataset(built)
            digest = self.blobs.put(data)
            if digest != built.digest:
                raise NodeError("dataset digest differs from the blob digest (compute and p2pnet disagree)")
        spec = make_spec(model, params, digest, device=device, min_memory_mb=min_memory_mb,
                         time_limit_ms=time_limit_ms, memory_limit_mb=memory_limit_mb)
        spec_bytes = spec.encode()
        spec_digest = self.blobs.put(spec_bytes)
        payload = SubmitJob(
            model=model, params_digest=spec_digest, dataset_digest=digest, reward=reward, verification_fee=vfee,
            tolerance_abs=spec.tolerance.abs, tolerance_ppm=spec.tolerance.ppm, device=device,
            min_memory_mb=spec.requirements.min_memory_mb, bid_window=bid_window, commit_window=commit_window,
            reveal_window=reveal_window, assign=assign,
        )
        # Announce the data before the tx: a job assigned at submission is run as soon as its block commits,
        # and its worker must find the spec and dataset by then.
        ann = JobDataAnnouncement(spec_bytes, digest, self.peer_id.to_bytes(), len(data))
        self._note_announcement(ann)
        await self.host.gossip.publish(TOPIC_JOBDATA, encode_announcement(ann))
        tx_id = await self.sign_and_submit(client, payload, fee=fee)
        return {"job_id": tx_id, "tx_id": tx_id, "spec_digest": spec_digest.hex(), "dataset_digest": digest.hex()}

    async def announce_job_data(self, spec_bytes: bytes) -> None:
        """Re-announce a spec whose dataset this node holds (e.g. after a restart, for late workers)."""
        assert self.host is not None and self.blobs is not None
        spec = JobSpec.decode(spec_bytes)
        size = self.blobs.size(spec.dataset_digest)
        if size is None:
            raise BlobNotFound(spec.dataset_digest, 0, "not held locally")
        ann = JobDataAnnouncement(spec_bytes, spec.dataset_digest, self.peer_id.to_bytes(), size)
        await self.host.gossip.publish(TOPIC_JOBDATA, encode_announcement(ann))

    def providers(self, digest: bytes) -> list[PeerId]:
        """Peers known (from announcements) to hold ``digest``."""
        return list(self._providers.get(digest, []))

    async def fetch_blob(self, digest: bytes, *, max_size: int, timeout: float = 30.0) -> bytes:
        """The blob named ``digest``: the local store first, then announced providers, then any connected peer.
        The digest is checked (by the host) before the bytes are kept locally and returned."""
        if self.blobs is None or self.host is None:
            raise NodeNotRunning("the node is not running")
        data = self.blobs.get(digest)
        if data is not None:
            return data
        connected = self.host.peers()
        order = [p for p in self._providers.get(digest, []) if p in connected]
        order += [p for p in connected if p not in order]
        tried, last = 0, ""
        for peer in order:
            tried += 1
            try:
                with trio.fail_after(timeout):
                    data = await self.host.fetch_blob(peer, digest, max_size=max_size)
            except (P2PError, trio.TooSlowError) as exc:
                last = f"{peer.short()}: {exc!r}"[:200]
                continue
            self.blobs.put_expected(data, digest)
            self.counters["blobs_fetched"] += 1
            return data
        raise BlobNotFound(digest, tried, last)

    def spec_of(self, digest: bytes) -> JobSpec | None:
        """A job spec from the local blob store, if this node has seen it."""
        if self.blobs is None:
            return None
        data = self.blobs.get(digest)
        if data is None:
            return None
        try:
            return JobSpec.decode(data)
        except ComputeError:
            return None

    def job_view(self, job_id: bytes) -> dict[str, Any] | None:
        """The ledger's job plus what this node knows locally: spec, dataset and result availability, and
        what the job is waiting for. A job whose submit tx is still pending shows as ``pending``."""
        job = self.state.jobs.get(job_id)
        if job is None:
            if self.mempool is not None and job_id in self.mempool:
                return {"job_id": job_id.hex(), "status": "pending",
                        "waiting_for": "the submit transaction to be committed"}
            if job_id in self._tx_rejected:
                return {"job_id": job_id.hex(), "status": "rejected", "reason": self._tx_rejected[job_id]}
            return None
        d = job.to_dict()
        for role in ("client", "worker", "verifier", "referee"):
            acct = getattr(job, role)
            d[f"{role}_id"] = self.display_id(acct) if acct is not None else None
        spec = self.spec_of(job.params_digest)
        d["spec"] = None if spec is None else {
            "model": spec.model, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.params.items()},
            "precision": spec.precision, "tolerance": {"abs": spec.tolerance.abs, "ppm": spec.tolerance.ppm},
            "device": spec.requirements.device,
        }
        assert self.blobs is not None
        d["dataset_local"] = self.blobs.has(job.dataset_digest)
        d["result_local"] = bool(job.result_artifact) and self.blobs.has(job.result_artifact)
        d["waiting_for"] = _status_waiting_for(job)
        d["height"] = self.height
        return d


# ================================================================================================ process entry


# A node's heap is large and long-lived (state, mempool, tx index, compute libraries) while executing a block
# allocates thousands of short-lived objects, and every default collection (each 700 allocations) that reaches
# the old generations walks that whole heap: 16% of a validator's samples at saturation sat in allocation sites
# of block execution. Collect the young generation less often and keep what startup built out of the walks.
NODE_GC_THRESHOLD = (50_000, 20, 100)


def tune_gc_for_node() -> None:
    """Freeze what exists now (imports, startup state) out of the collector's walks and raise its thresholds.
    Cyclic garbage is still collected, only later; called once at node process start."""
    gc.freeze()
    gc.set_threshold(*NODE_GC_THRESHOLD)


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
    except (HomeError, StoreError, BlockError, LedgerError) as exc:
        print(f"error: {exc}", flush=True)
        return 1
    return 0


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

