"""Job submission and job data: a client's job built and checked here, its spec and dataset kept and announced,
and any job's blobs fetched from peers by digest.

:class:`JobDesk` builds the spec and dataset (``compute`` checks them, typed errors before any tx), signs
``SubmitJob`` and has the mempool admit it (so a client that cannot pay stores and announces nothing), keeps both
blobs in the content-addressed store, announces them on the job-data topic, and only then gossips the tx. It
remembers who announced which dataset, so a worker fetches from a provider first.

What would make every run fail is refused before any tx too (issue 14: a job nobody can run costs the client its
fee and the workers their time): the spec against the dataset's shape (``compute.shapes``: k above the rows, more
components than the data has, a single class, …), a result summary longer than the chain's ``max_summary_len``,
and a commit window too short for the run's time limit (the error names the window needed and its extra fee).

Disk is spent only on jobs that exist: an announcement ties its spec to no chain tx and costs its sender nothing,
so announced specs wait in a bounded cache in memory (``ANNOUNCED_KEEP`` specs, at most
``ANNOUNCED_PER_PROVIDER`` per provider and per relaying peer, oldest out) and reach the blob store when a
committed job names them. Before, 20,000 announcements from one peer became 18,600 files on every node.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

import trio

from bootstrap.errors import BlobNotFound, BlobTooLarge, NodeNotRunning
from bootstrap.gossip import TOPIC_JOBDATA, JobDataAnnouncement, encode_announcement
from bootstrap.jobs.sources import DatasetSource, build_dataset, dataset_from_upload, default_dataset
from compute import JobSpec, make_spec
from compute.dataset import Dataset, decode_dataset, encode_dataset
from compute.errors import ComputeError
from compute.shapes import check_shape
from ledger.errors import InvalidField
from ledger.jobs import ASSIGN_BY_BIDS, ASSIGN_BY_OFFERS, job_terms
from ledger.tx import SubmitJob
from p2pnet import P2PError, PeerId, blob_digest

PROVIDERS_KEPT = 8  # announcers remembered per dataset
ANNOUNCED_KEEP = 512  # announced specs cached in memory (each at most MAX_SPEC_BYTES)
ANNOUNCED_PER_PROVIDER = 32  # of those, named by one provider, and relayed by one peer


class JobDesk:
    """One node's job desk. ``node`` is the facade it uses (blobs, host, config, counters, peer id, and
    ``sign_and_submit`` for the submit tx)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._providers: dict[bytes, list[PeerId]] = {}
        # spec digest -> (spec bytes, provider, relaying peer), oldest first; per-provider and per-relayer counts
        self._announced: OrderedDict[bytes, tuple[bytes, bytes, bytes | None]] = OrderedDict()
        self._by_provider: Counter[bytes] = Counter()
        self._by_relayer: Counter[bytes] = Counter()

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
        time_limit_ms: int | None = None,
        memory_limit_mb: int = 4096,
        bid_window: int = 0,
        commit_window: int = 0,
        reveal_window: int = 0,
        fee: int | None = None,
        assign: str = "bids",
    ) -> dict[str, Any]:
        """Build and check the job's spec and dataset, sign ``SubmitJob`` with key ``client`` and have the mempool
        admit it, keep both blobs in the store, announce them, then gossip the tx. Compute errors (bad model,
        params or data, a spec that fails on the data's shape or whose summary the chain cannot carry), the
        chain's refusal of the job's terms (``ledger.jobs.job_terms``: e.g. ``WindowTooShort`` for a window too
        short for ``time_limit_ms``; None: the chain's default run time) and ledger refusals (a client that
        cannot pay) raise typed before anything is stored. ``assign="offers"`` asks the
        ledger to assign the job in its submit block from standing offers."""
        node = self.node
        blobs, host = node.blobs, node.host
        if blobs is None or host is None:
            raise NodeNotRunning("the node is not running")
        if type(reward) is not int or reward <= 0:
            raise InvalidField("submit_job.reward", f"must be a positive integer, got {reward!r}")
        if assign not in (ASSIGN_BY_OFFERS, ASSIGN_BY_BIDS):
            raise InvalidField("submit_job.assign", f"expected 'offers' or 'bids', got {assign!r}")
        vfee = max(1, reward // 10) if verification_fee is None else verification_fee
        # Building, encoding and hashing a dataset of millions of cells takes a while: a worker thread does it,
        # so the node's consensus and gossip do not wait on one client's submission.
        built = await trio.to_thread.run_sync(build_dataset, dataset if dataset is not None
                                              else default_dataset(model))
        shaped: Dataset
        if isinstance(built, bytes):
            digest = built
            data = await trio.to_thread.run_sync(blobs.get, digest)
            if data is None:
                data = await self.fetch_blob(digest, max_size=node.config.max_blob_bytes)
            shaped = await trio.to_thread.run_sync(decode_dataset, data, digest)  # its shape is checked below
        else:
            shaped = built
            # The digest compute made while building is the hash of this encoding (its tests hold it to that):
            # the bytes are hashed once, not again here nor by the store.
            data, digest = await trio.to_thread.run_sync(encode_dataset, built), built.digest
            if len(data) > blobs.max_bytes:
                raise BlobTooLarge(len(data), blobs.max_bytes)
        chain = node.state.params
        if time_limit_ms is not None and (type(time_limit_ms) is not int or time_limit_ms < 1):
            raise InvalidField("submit_job.time_limit_ms", f"must be a positive number of ms, got {time_limit_ms!r}")
        # The chain's own rule, run here first: a window too short for the run says which window it needs.
        terms = job_terms(chain, bid_window=bid_window, commit_window=commit_window, reveal_window=reveal_window,
                          time_limit_ms=time_limit_ms or 0, min_memory_mb=min_memory_mb)
        time_limit_ms = terms.time_limit_ms
        if fee is None:  # the chain charges longer windows in the fee: pay it rather than fail in the block
            fee = node.config.default_fee + terms.surcharge
        spec = make_spec(model, params, digest, device=device, min_memory_mb=min_memory_mb,
                         time_limit_ms=time_limit_ms, memory_limit_mb=memory_limit_mb)
        # A spec every run of which fails, or whose summary no reveal can carry: refused here, not paid for.
        await trio.to_thread.run_sync(lambda: check_shape(spec, shaped, max_summary_len=chain.max_summary_len))
        spec_bytes = spec.encode()
        spec_digest = blob_digest(spec_bytes)
        payload = SubmitJob(
            model=model, params_digest=spec_digest, dataset_digest=digest, reward=reward, verification_fee=vfee,
            tolerance_abs=spec.tolerance.abs, tolerance_ppm=spec.tolerance.ppm, device=device,
            min_memory_mb=spec.requirements.min_memory_mb, bid_window=bid_window, commit_window=commit_window,
            reveal_window=reveal_window, assign=assign, time_limit_ms=time_limit_ms,
        )
        # The mempool admits the tx first (a client that cannot pay stores and announces nothing); the data is
        # announced before the tx is gossiped: a job assigned at submission is run as soon as its block commits,
        # and its worker must find the spec and dataset by then.
        stx = await node.txs.sign_and_admit(client, payload, fee=fee)
        blobs.put(spec_bytes)
        if not isinstance(built, bytes):
            await trio.to_thread.run_sync(blobs.put, data, digest)
        ann = JobDataAnnouncement(spec_bytes, digest, node.peer_id.to_bytes(), len(data))
        self.note_announcement(ann)
        await host.gossip.publish(TOPIC_JOBDATA, encode_announcement(ann))
        await node.txs.publish_admitted(stx)
        tx_id = stx.tx_id.hex()
        return {"job_id": tx_id, "tx_id": tx_id, "spec_digest": spec_digest.hex(), "dataset_digest": digest.hex()}

    async def upload_dataset(self, body: bytes, fmt: str, target_column: int | str | None = None) -> dict[str, Any]:
        """Parse, check and keep an uploaded dataset (``.npy``, ``.npz`` or CSV bytes), all on a worker thread, and
        say its digest and shape; a job then names it by digest. It is announced with the first job that uses it,
        and collected like any job data no live job needs (``bootstrap.jobs.collect``)."""
        blobs = self.node.blobs
        if blobs is None:
            raise NodeNotRunning("the node is not running")

        def work() -> dict[str, Any]:
            ds = dataset_from_upload(body, fmt, target_column)
            data = encode_dataset(ds)
            if len(data) > blobs.max_bytes:
                raise BlobTooLarge(len(data), blobs.max_bytes)
            digest = blobs.put(data, ds.digest)  # the hash of this encoding, made while building it
            return {"digest": digest.hex(), "n_samples": int(ds.X.shape[0]), "n_features": int(ds.X.shape[1]),
                    "has_target": ds.y is not None, "bytes": len(data), "format": fmt}

        return await trio.to_thread.run_sync(work)

    async def announce_job_data(self, spec_bytes: bytes) -> None:
        """Re-announce a spec whose dataset this node holds (e.g. after a restart, for late workers)."""
        node = self.node
        assert node.host is not None and node.blobs is not None
        spec = JobSpec.decode(spec_bytes)
        size = node.blobs.size(spec.dataset_digest)
        if size is None:
            raise BlobNotFound(spec.dataset_digest, 0, "not held locally")
        ann = JobDataAnnouncement(spec_bytes, spec.dataset_digest, node.peer_id.to_bytes(), size)
        await node.host.gossip.publish(TOPIC_JOBDATA, encode_announcement(ann))

    def announcement_welcome(self, a: JobDataAnnouncement, relayer: bytes | None,
                             spec_digest: bytes | None = None) -> bool:
        """Whether an announcement is news this node takes (and so forwards): a spec it neither holds nor has
        cached, from a provider and a relaying peer still within their shares of the cache. ``spec_digest`` is
        the spec's digest when the caller has it already."""
        if spec_digest is None:
            spec_digest = blob_digest(a.spec)
        blobs = self.node.blobs
        if spec_digest in self._announced or (blobs is not None and blobs.has(spec_digest)):
            return False
        if self._by_provider[a.provider] >= ANNOUNCED_PER_PROVIDER:
            return False
        return relayer is None or self._by_relayer[relayer] < ANNOUNCED_PER_PROVIDER

    def note_announcement(self, a: JobDataAnnouncement, relayer: bytes | None = None) -> None:
        """Cache an announced spec (so job views can show it, bounded; see the module docstring) and remember its
        announcer as a provider of the dataset."""
        self.node.counters["announcements"] += 1
        spec_digest = blob_digest(a.spec)
        if self.announcement_welcome(a, relayer, spec_digest):
            while len(self._announced) >= ANNOUNCED_KEEP:
                self._drop_announced(next(iter(self._announced)))
            self._announced[spec_digest] = (a.spec, a.provider, relayer)
            self._by_provider[a.provider] += 1
            if relayer is not None:
                self._by_relayer[relayer] += 1
        provider = PeerId.from_bytes(a.provider)
        known = self._providers.setdefault(a.dataset_digest, [])
        if provider not in known:
            known.append(provider)
            del known[:-PROVIDERS_KEPT]
        while len(self._providers) > ANNOUNCED_KEEP:
            del self._providers[next(iter(self._providers))]

    def _drop_announced(self, spec_digest: bytes) -> None:
        _, provider, relayer = self._announced.pop(spec_digest)
        for table, key in ((self._by_provider, provider), (self._by_relayer, relayer)):
            if key is not None:
                table[key] -= 1
                if table[key] <= 0:
                    del table[key]

    @property
    def announced_cached(self) -> int:
        return len(self._announced)

    def keep_specs_of(self, spec_digests: Iterable[bytes]) -> int:
        """Move the cached specs that committed jobs name into the blob store; how many moved."""
        blobs = self.node.blobs
        moved = 0
        for d in spec_digests:
            if d in self._announced and blobs is not None:
                blobs.put(self._announced[d][0])
                self._drop_announced(d)
                moved += 1
        return moved

    def providers(self, digest: bytes) -> list[PeerId]:
        """Peers known (from announcements) to hold ``digest``."""
        return list(self._providers.get(digest, []))

    async def fetch_blob(self, digest: bytes, *, max_size: int, timeout: float = 30.0) -> bytes:
        """The blob named ``digest``: the local store first, then announced providers, then any connected peer.
        The digest is checked (by the host) before the bytes are kept locally and returned."""
        node = self.node
        blobs, host = node.blobs, node.host
        if blobs is None or host is None:
            raise NodeNotRunning("the node is not running")
        data = blobs.get(digest)
        if data is not None:
            return data
        cached = self._announced.get(digest)
        if cached is not None:  # a spec announced to us: someone is about to need it, keep it
            blobs.put(cached[0])
            self._drop_announced(digest)
            return cached[0]
        connected = host.peers()
        order = [p for p in self._providers.get(digest, []) if p in connected]
        order += [p for p in connected if p not in order]
        tried, last = 0, ""
        for peer in order:
            tried += 1
            try:
                with trio.fail_after(timeout):
                    data = await host.fetch_blob(peer, digest, max_size=max_size)
            except (P2PError, trio.TooSlowError) as exc:
                last = f"{peer.short()}: {exc!r}"[:200]
                continue
            blobs.put_expected(data, digest)
            node.counters["blobs_fetched"] += 1
            return data
        raise BlobNotFound(digest, tried, last)

    def spec_of(self, digest: bytes) -> JobSpec | None:
        """A job spec from the local blob store or the announcement cache, if this node has seen it."""
        blobs = self.node.blobs
        if blobs is None:
            return None
        data = blobs.get(digest)
        if data is None:
            cached = self._announced.get(digest)
            data = cached[0] if cached is not None else None
        if data is None:
            return None
        try:
            return JobSpec.decode(data)
        except ComputeError:
            return None
