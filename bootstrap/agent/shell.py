"""The worker agent's trio shell ("auto-coordination"): bids, runs, commits and reveals for this node's worker
keys, carrying out what the sans-IO :mod:`bootstrap.agent.planner` decides.

Why this file is long: it is the one place where the agent touches the node, the pool and the disk (fetches,
runs and their outcomes, posting, the openings file, status), and each needs the same error handling.

:class:`WorkerAgent` scans after every committed block (node events, with a polling fallback), executes the
planner's actions through the node (``sign_and_submit``, ``fetch_blob``, the compute pool) and writes what
happened back into the agent's memory. Every failure is logged with its job and key; none reaches the node. It
measures seconds per block and each model's run time, so the planner's "in time" means something.

Duties drawn by the ledger (verifier, referee) are honoured even while auto-coordination is stopped: a key that
ignored them would be slashed for stalling. Stopping only stops new bids and withdraws the standing offers.

Standing offers (issue 8): while auto-coordination runs and the node can run jobs (it has a compute pool), each
local worker key keeps an ``offer`` standing ``offer_blocks`` ahead, renewed when fewer than half of them remain,
so jobs submitted with ``assign="offers"`` are assigned to it inside their submit block. Such a job appears
directly as ``assigned`` and is run like any other assignment, as soon as a scan sees it. An offer names the
longest run this node takes (``agent.max_job_time_ms``).

Claims (issue 14): a run's outcome is sorted here into a result, a claim the planner commits
(:mod:`bootstrap.agent.claims`: a deterministic error, an over-limit stop, a spec or dataset that could not be
fetched) or a failure of this node's own (retried). Every run goes to the pool under this node's caps
(``agent.max_job_time_ms``, ``agent.max_job_memory_mb``) as well as the spec's limits. Why an open job is not bid
on is kept per job (``status()["declined"]``) and logged once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import trio

from bootstrap.agent.claims import describe_claim, error_claim, failure_claim, spec_mismatch
from bootstrap.agent.device import LocalDevice, probe_device
from bootstrap.agent.faults import (
    FAKE_ARTIFACT,
    HIDDEN_MOVE,
    LAZY_SUBSAMPLE,
    Faults,
    forged,
    half_of,
    hidden_move,
    parse_faults,
)
from bootstrap.agent.planner import (
    NODE_KEY,
    OPENINGS_FILE,
    PERMANENT_REFUSALS,
    Action,
    AgentError,
    AgentMemory,
    FetchSpec,
    LocalKey,
    Opening,
    Planner,
    PostBid,
    PostCommit,
    PostConfirm,
    PostOffer,
    PostReveal,
    RunJob,
    RunRecord,
    claim_record,
    describe,
    payload_for,
)
from bootstrap.errors import NodeError
from bootstrap.jobs import ArtifactRefused, accepted_artifact
from compute.binding import confirm_seed, sketch_seed
from compute.canonical import JobResult, blake2b256
from compute.dataset import Dataset, decode_dataset
from compute.errors import ComputeError, DatasetError, SpecError
from compute.pool import JobRequest
from compute.spec import MAX_SPEC_BYTES, JobSpec
from ledger.errors import (
    LedgerError,
)
from ledger.state import CONFIRMING, Job, State
from ledger.tx import Offer
from ledger.verdict import ERROR, RESULT
from p2pnet import P2PError

log = logging.getLogger("bootstrap.agent")


OWN_ARTIFACT_WAIT_S = 2.0  # how long a confirmer asks peers for its own run's artifact missing from its store


class Unavailable(AgentError):
    """A job's spec or dataset could not be fetched (no peer served it in time): retried, then claimed."""

# ---- the trio shell ------------------------------------------------------------------------------------------
def _agent_config(config: Any) -> Any:
    """Accept a NodeConfig (uses its ``agent``), an AgentConfig, or None (defaults)."""
    if config is None:
        from bootstrap.home import AgentConfig

        return AgentConfig()
    return getattr(config, "agent", config)


class WorkerAgent:
    """Runs the planner after every block and carries out its actions through the node."""

    def __init__(self, node: Any, config: Any = None, *, faults: Faults | str | None = None,
                 device: LocalDevice | None = None, poll_interval_s: float = 1.0,
                 max_dataset_bytes: int | None = None, fetch_timeout_s: float = 30.0) -> None:
        cfg = _agent_config(config)
        self.node = node
        self.config = cfg
        if faults is None:
            faults = getattr(node, "faulty", None)
        self.faults = faults if isinstance(faults, Faults) else parse_faults(faults)
        self.device = device or probe_device()
        pool_size = getattr(getattr(node, "config", None), "pool_size", 1)
        self.planner = Planner(self.device, cfg.bid_permille, cfg.max_concurrent_jobs, self.faults,
                               max_open_bids=cfg.max_open_bids,
                               parallel_runs=max(1, pool_size if isinstance(pool_size, int) else 1),
                               offer_price=int(getattr(cfg, "offer_price", 20)),
                               offer_blocks=int(getattr(cfg, "offer_blocks", 20)),
                               max_job_time_ms=int(getattr(cfg, "max_job_time_ms", 0)),
                               max_job_memory_mb=int(getattr(cfg, "max_job_memory_mb", 0)),
                               duty_slots=int(getattr(cfg, "duty_slots", 1)))
        # Offers invite assignments at any moment: only a node that has a compute pool makes them. Nor does a
        # node without one bid or fetch open jobs' specs: it could not run what it won (and stalled, losing
        # reputation), and a flood of open jobs cost it a spec fetch each from its peers.
        self.has_pool = not (isinstance(pool_size, int) and pool_size <= 0)
        self.planner.can_compute = self.has_pool
        self.memory = AgentMemory()
        self.auto = bool(cfg.auto_coordinate)
        self.keystore_workers = bool(getattr(cfg, "keystore_workers", True))
        self.poll_interval_s = poll_interval_s
        blob_cap = getattr(getattr(node, "config", None), "max_blob_bytes", 256 * 1024 * 1024)
        self.max_dataset_bytes = max_dataset_bytes or blob_cap
        self.max_artifact_bytes = blob_cap
        self.fetch_timeout_s = fetch_timeout_s
        self.counters: dict[str, int] = {k: 0 for k in (
            "scans", "bids", "offers", "commits", "claims", "reveals", "confirms", "runs_ok", "runs_failed", "refused",
            "errors",
            # confirmations checked against the accepted summary only: this key's own artifact could not be had
            "confirms_unsketched")}
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)
        self.last_scan_height = -1
        self._last_block: tuple[int, float] | None = None  # (height, trio time) when a new height was first seen
        self._datasets: OrderedDict[bytes, Dataset] = OrderedDict()
        self._key_cache: dict[str, bytes] = {}
        self._scan_lock = trio.Lock()
        self._wake_send, self._wake_recv = trio.open_memory_channel[None](1)
        self._nursery: trio.Nursery | None = None
        self._openings_path: Path | None = None
        self._declines_logged: set[bytes] = set()

    # -- control (the API's coordination endpoints) --
    def start(self) -> None:
        """Auto-coordination on: bid on open jobs again."""
        self.auto = True
        self.wake()

    def stop(self) -> None:
        """Auto-coordination off: no new bids, offers withdrawn (duties already drawn are still honoured)."""
        self.auto = False
        self.wake()  # the next scan withdraws the standing offers

    async def withdraw_offers(self, timeout_s: float = 10.0) -> list[str]:
        """Withdraw every local key's live offer now and wait (at most ``timeout_s``) until the withdrawals are
        committed, so that once this returns no job submitted later is assigned to this node from an offer.
        Call after ``stop()``; returns the withdrawal tx ids."""
        async with self._scan_lock:  # no scan posts its own withdrawal (or a renewal) meanwhile
            tx_ids = await self._post_withdrawals()
        for tx_id in tx_ids:
            await self.node.wait_for_tx(tx_id, timeout_s)
        return tx_ids

    async def _post_withdrawals(self) -> list[str]:
        """Post ``offer(0, 0)`` for each local key with a live offer or one still on its way in (the
        withdrawal's later nonce lands after it); the withdrawal tx ids."""
        state = self.node.state
        tx_ids = []
        for k in self.local_keys():
            w = state.workers.get(k.account)
            posted = self.memory.offers_posted.get(k.account)
            in_flight = posted is not None and posted[1] > 0
            if w is not None and (w.offer_live_at(state.height + 1) or in_flight):
                self.memory.offers_posted[k.account] = (state.height, 0)
                tx_ids.append(await self.node.sign_and_submit(k.name, Offer(0, 0)))
        return tx_ids

    def can_offer(self) -> bool:
        """Whether this node should keep offers standing: coordinating, with a compute pool that has started and
        did not fail. An offer brings an assignment at once, and a pool still importing its libraries (seconds,
        tens of them on a loaded machine) could miss the commit deadline of what it brought."""
        ready = getattr(self.node, "pool_ready", None)
        started = ready is None or ready.is_set()
        return self.auto and self.has_pool and started and not getattr(self.node, "pool_failed", False)

    def wake(self) -> None:
        """Ask for a scan soon (coalesced)."""
        with contextlib.suppress(trio.WouldBlock):
            self._wake_send.send_nowait(None)

    async def trigger(self) -> dict[str, Any]:
        """One scan now, bids included even when auto-coordination is off; returns what it did."""
        actions = await self.scan(bidding=True)
        return {"height": self.last_scan_height, "actions": [describe(a) for a in actions]}

    # -- the loop --
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scan after every committed block until cancelled."""
        home = getattr(self.node, "home", None)
        if home is not None:
            self._openings_path = Path(home) / "data" / OPENINGS_FILE
            self._load_openings()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_events)
            task_status.started()
            try:
                while True:
                    with trio.move_on_after(self.poll_interval_s):
                        await self._wake_recv.receive()
                    await self.scan(bidding=self.auto)
            finally:
                self._nursery = None
                await self._withdraw_offers_on_exit()

    async def _withdraw_offers_on_exit(self) -> None:
        """Best effort on shutdown: withdraw live offers so no job is assigned to a node that went away (if
        this fails, the offers lapse by themselves within ``offer_blocks``)."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await self._post_withdrawals()
            except Exception as exc:  # the node may be half torn down already
                log.info("agent could not withdraw its offers on exit: %s", exc)

    async def _watch_events(self) -> None:
        events = getattr(self.node, "events", None)
        if events is None:
            return  # polling alone still works
        while True:
            channel = events.subscribe(256)
            async with channel:
                async for event in channel:
                    if event.get("type") == "block":
                        self.wake()
            # The bus dropped us (we fell behind): resubscribe, and scan in case we missed a block.
            self.wake()
            await trio.sleep(0)

    async def scan(self, *, bidding: bool) -> list[Action]:
        """Plan against the committed state and carry the actions out; never raises."""
        async with self._scan_lock:
            try:
                state = self.node.state
                self._note_height(state.height)
                self.last_scan_height = state.height
                self.counters["scans"] += 1
                self._prune(state)
                plan = self.planner.decide(state, self.local_keys(), self.memory, bidding=bidding,
                                           offering=self.can_offer())
                actions = plan.actions
                self._note_declines(plan.declined)
            except Exception as exc:  # a bug in planning must not stop the node following the chain
                self.counters["errors"] += 1
                log.exception("agent scan failed: %s", exc)
                return []
            for action in actions:
                try:
                    await self._execute(action, state.height)
                except Exception as exc:
                    self.counters["errors"] += 1
                    log.exception("agent action %s failed: %s", describe(action), exc)
            return actions

    def _note_declines(self, declined: dict[bytes, str]) -> None:
        """Keep why each open job is not bid on (for ``status()``), logging a job's first reason only."""
        self.memory.declined = dict(declined)
        for job_id, reason in declined.items():
            if job_id not in self._declines_logged:
                self._declines_logged.add(job_id)
                log.info("agent declines job %s: %s", job_id.hex()[:16], reason)

    def _note_height(self, height: int) -> None:
        """Measure seconds per block (a moving average) so the planner can turn windows into time."""
        now = trio.current_time()
        last = self._last_block
        if last is not None and height > last[0]:
            per_block = (now - last[1]) / (height - last[0])
            self.planner.block_time_s = 0.8 * self.planner.block_time_s + 0.2 * per_block
        if last is None or height > last[0]:
            self._last_block = (height, now)

    def local_keys(self) -> list[LocalKey]:
        """The node key and (if enabled) every keystore key, with their accounts; unreadable keys are skipped."""
        names = [NODE_KEY]
        keystore = getattr(self.node, "keystore", None)
        if self.keystore_workers and keystore is not None:
            names += [n for n in keystore.names() if n != NODE_KEY]
        out = []
        for name in names:
            account = self._key_cache.get(name)
            if account is None:
                try:
                    account = self.node.account_of(name)
                except Exception as exc:  # a key we cannot open (passphrase, corrupt file) cannot work
                    log.debug("agent skips key %r: %s", name, exc)
                    continue
                self._key_cache[name] = account
            out.append(LocalKey(name, account))
        return out

    def _prune(self, state: State) -> None:
        m = self.memory
        done = ({k[0] for k in m.openings} | {k[0] for k in m.posted} | set(m.run_failures) | set(m.unavailable)
                | set(m.confirm_failures) | self._declines_logged)
        stale = [j for j in done if j not in state.active_jobs]
        for job_id in stale:
            m.forget_job(job_id)
            self._declines_logged.discard(job_id)
        if stale:
            self._save_openings()
        while len(self.memory.results) > 1024:
            self.memory.results.pop(next(iter(self.memory.results)))

    # -- actions --
    async def _execute(self, action: Action, height: int) -> None:
        self.recent.append({**describe(action), "height": height})
        if isinstance(action, FetchSpec):
            self.memory.fetching.add(action.digest)
            self._spawn(self._fetch_spec_task, action.digest, height)
        elif isinstance(action, RunJob):
            self.memory.running.add(action.job_id)
            self._spawn(self._run_task, action, height)
        elif isinstance(action, PostConfirm):
            self.memory.checking.add(action.job_id)
            self._spawn(self._confirm_task, action, height)
        elif isinstance(action, PostOffer):
            await self._post_offer(action, height)
        else:
            if isinstance(action, PostCommit) and action.opening is not None:
                # Keep the opening before the commitment can land, so a crash cannot strand it.
                self.memory.openings[(action.job_id, action.key.account)] = action.opening
                self._save_openings()
            await self._post(action, height)

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise AgentError(None, "agent is not running (no nursery for background work)")
        self._nursery.start_soon(fn, *args)

    async def _post_offer(self, action: PostOffer, height: int) -> None:
        self.memory.offers_posted[action.key.account] = (height, action.until)
        try:
            tx_id = await self.node.sign_and_submit(action.key.name, payload_for(action))
        except LedgerError as exc:  # ineligible for now, mempool full: tried again after retry_after_blocks
            self.counters["errors"] += 1
            log.warning("agent offer by %s not admitted: %s", action.key.name, exc)
            return
        self.counters["offers"] += 1
        log.info("agent %s key %s price %d until %d tx %s", "offer" if action.until else "offer withdrawal",
                 action.key.name, action.price, action.until, tx_id[:16])

    async def _post(self, action: PostBid | PostCommit | PostReveal | PostConfirm, height: int) -> None:
        kind = {PostBid: "bid", PostCommit: "commit", PostReveal: "reveal", PostConfirm: "confirm"}[type(action)]
        memo = (action.job_id, action.key.account, kind)
        self.memory.posted[memo] = height
        try:
            tx_id = await self.node.sign_and_submit(action.key.name, payload_for(action))
        except PERMANENT_REFUSALS as exc:
            self.memory.refused[memo] = str(exc)
            self.counters["refused"] += 1
            log.info("agent %s for job %s by %s refused: %s", kind, action.job_id.hex()[:16], action.key.name, exc)
            return
        except LedgerError as exc:  # mempool full, nonce races: retried after retry_after_blocks
            self.counters["errors"] += 1
            log.warning("agent %s for job %s by %s not admitted: %s", kind, action.job_id.hex()[:16],
                        action.key.name, exc)
            return
        self.counters[kind + "s"] += 1
        claim = action.opening if isinstance(action, PostCommit) else None
        if claim is not None and claim.outcome != RESULT:
            self.counters["claims"] += 1
            log.warning("agent commits a claim for job %s key %s: %s (tx %s)", action.job_id.hex()[:16],
                        action.key.name, describe_claim(claim.outcome, claim.summary), tx_id[:16])
            return
        log.info("agent %s job %s key %s tx %s", kind, action.job_id.hex()[:16], action.key.name, tx_id[:16])

    async def _confirm_task(self, action: PostConfirm, height: int) -> None:
        """Fetch the accepted artifact, check it is the accepted result, and confirm it; an artifact that is not
        is refused for good (logged with what differs), one that could not be fetched is tried again."""
        job_hex = action.job_id.hex()[:16]
        try:
            job = self.node.state.jobs.get(action.job_id)
            if job is None or job.status != CONFIRMING or job.result_artifact != action.artifact_digest:
                return
            spec = await self._spec(job.params_digest)
            data = await self._fetch(action.artifact_digest, self.max_artifact_bytes, "artifact")
            own = await self._own_artifact(job, action)
            # A copy: the loop may move the job on while the check runs on its worker thread.
            await trio.to_thread.run_sync(accepted_artifact, job.clone(), spec, data, own)
        except ArtifactRefused as exc:
            self.memory.refused[(action.job_id, action.key.account, "confirm")] = str(exc)
            self.counters["refused"] += 1
            log.warning("agent does not confirm the artifact of job %s (key %s): %s", job_hex, action.key.name, exc)
            return
        except SpecError as exc:  # a job whose spec does not decode accepted no result: nothing to confirm
            self.memory.refused[(action.job_id, action.key.account, "confirm")] = str(exc)
            return
        except Unavailable as exc:
            self.memory.confirm_failures[action.job_id] = (self.node.state.height, exc.reason)
            log.warning("agent could not fetch the artifact of job %s to confirm it: %s", job_hex, exc.reason)
            return
        except Exception as exc:  # a bug: logged with its job, tried again next block, never the node's end
            self.memory.confirm_failures[action.job_id] = (self.node.state.height, repr(exc))
            self.counters["errors"] += 1
            log.exception("agent check of job %s's artifact for key %s failed: %s", job_hex, action.key.name, exc)
            return
        finally:
            self.memory.checking.discard(action.job_id)
        await self._post(action, height)
        self.wake()

    async def _own_artifact(self, job: Job, action: PostConfirm) -> tuple[bytes, int] | None:
        """This key's own artifact of ``job`` and the seed of the second sketch it checks the accepted one with
        (``compute.binding.confirm_seed``, from the hash of the block that accepted the result, which did not
        exist when the author committed). ``None`` (the accepted summary alone is checked, and that is logged)
        when the key revealed no result of its own, its artifact is the accepted one, or it cannot be had."""
        claim = job.reveals.get(action.key.account)
        if claim is None or claim[2] != RESULT or claim[1] == job.result_artifact:
            return None
        chain = getattr(self.node, "chain", None)  # a node stand-in in tests may hold none
        accepted_at = next((h for status, h in reversed(job.history) if status == CONFIRMING), None)
        accepting = chain.block_hash(accepted_at) if chain is not None and accepted_at else None
        try:
            if accepting is None:
                raise Unavailable(None, f"the block at height {accepted_at} that accepted it is not kept here")
            # Its own run's artifact is in this node's store; a peer is asked only briefly, since the
            # confirmation must fit the window and the accepted summary is still checked without it.
            blobs = getattr(self.node, "blobs", None)
            mine = blobs.get(claim[1]) if blobs is not None else None
            if mine is None:
                mine = await self._fetch(claim[1], self.max_artifact_bytes, "own artifact", OWN_ARTIFACT_WAIT_S)
        except Unavailable as exc:
            self.counters["confirms_unsketched"] += 1
            log.warning("agent checks job %s's artifact against the accepted summary only (key %s): %s",
                        job.job_id.hex()[:16], action.key.name, exc.reason)
            return None
        return mine, confirm_seed(job.job_id, accepting)

    async def _fetch_spec_task(self, digest: bytes, height: int) -> None:
        try:
            await self._spec(digest)
            self.memory.spec_problems.pop(digest, None)
            self.wake()
        except SpecError:
            self.wake()  # kept in bad_specs by _spec: declined, and claimed as an error where it is a duty
        except Exception as exc:
            self.memory.spec_problems[digest] = (height, f"spec unavailable: {exc}")
            log.warning("agent could not fetch spec %s: %s", digest.hex()[:16], exc)
        finally:
            self.memory.fetching.discard(digest)

    async def _fetch(self, digest: bytes, max_size: int, what: str, timeout_s: float | None = None) -> bytes:
        """A blob from this node or its peers; not getting it in time (``timeout_s``, else the agent's fetch
        timeout) raises :class:`Unavailable`."""
        try:
            with trio.fail_after(self.fetch_timeout_s if timeout_s is None else timeout_s):
                return await self.node.fetch_blob(digest, max_size=max_size)
        except (NodeError, P2PError, OSError, trio.TooSlowError) as exc:
            raise Unavailable(None, f"{what} {digest.hex()[:16]} could not be fetched: {exc or 'timed out'}") from exc

    async def _spec(self, digest: bytes) -> JobSpec:
        """The spec named ``digest``; bytes that do not decode raise ``SpecError`` (kept in ``bad_specs``: every
        node fetching them gets the same bytes, so the same error)."""
        spec = self.memory.specs.get(digest)
        if spec is None:
            bad = self.memory.bad_specs.get(digest)
            if bad is not None:
                raise SpecError("spec", bad[1])
            data = await self._fetch(digest, MAX_SPEC_BYTES, "spec")
            try:
                spec = JobSpec.decode(data)
            except SpecError as exc:
                self.memory.bad_specs[digest] = (error_claim(exc)[1][0], f"the spec does not decode: {exc}")
                raise
            if spec.digest != digest:  # the fetch checked the bytes' digest; this would be a bug
                raise AgentError(None, "spec bytes do not match the job's spec digest")
            self.memory.specs[digest] = spec
        return spec

    async def _dataset(self, digest: bytes) -> Dataset:
        """The dataset named ``digest``; bytes that do not decode raise ``DatasetError``."""
        ds = self._datasets.get(digest)
        if ds is not None:
            self._datasets.move_to_end(digest)
            return ds
        data = await self._fetch(digest, self.max_dataset_bytes, "dataset")
        ds = await trio.to_thread.run_sync(decode_dataset, data, digest)
        self._datasets[digest] = ds
        while len(self._datasets) > 4:
            self._datasets.popitem(last=False)
        return ds

    async def _run_task(self, action: RunJob, height: int) -> None:
        job_hex = action.job_id.hex()[:16]
        memory = self.memory
        try:
            pool = await self._pool()
            if pool is None:
                raise AgentError(action.job_id, "this node has no compute pool (pool_size = 0)")
            started = trio.current_time()  # waiting for the pool to start is not what a run costs
            memory.fetching_jobs.add(action.job_id)
            try:
                spec = await self._spec(action.spec_digest)
                job = self.node.state.jobs.get(action.job_id)
                if job is not None and spec_mismatch(job, spec) is not None:
                    self.wake()  # the spec is known now: the planner claims the mismatch as an error
                    return
                dataset = await self._dataset(action.dataset_digest)
            finally:
                memory.fetching_jobs.discard(action.job_id)
            memory.unavailable.pop(action.job_id, None)
            if self.faults.run_applies(action.roles, LAZY_SUBSAMPLE):
                dataset = half_of(dataset)
            outcome = await pool.run(JobRequest(spec, dataset, max_time_ms=self.planner.max_job_time_ms,
                                                max_memory_mb=self.planner.memory_cap_mb))
            if not outcome.ok:
                f = outcome.failure
                claim = failure_claim(f) if f is not None else None
                if claim is None:
                    raise AgentError(action.job_id, f"run failed ({f.kind}): {f.message}" if f else "run failed")
                self._claimed(action, claim, f"run failed ({f.kind}): {f.message}" if f else "run failed")
                return
            result = outcome.result
            assert result is not None
            if self.faults.run_applies(action.roles, FAKE_ARTIFACT):
                result = forged(result)
            if self.faults.run_applies(action.roles, HIDDEN_MOVE):
                result = hidden_move(result, sketch_seed(spec.digest, action.dataset_digest))
            # Fetching the dataset is part of what the next run of this model may cost too.
            memory.note_run(spec.model, trio.current_time() - started)
            result_digest = self._keep_result(result)
            memory.results[action.job_id] = RunRecord(
                list(result.summary), result.artifact_digest, result_digest, result.elapsed_s, result.backend)
            self.counters["runs_ok"] += 1
            log.info("agent ran job %s (%s) for %s in %.2fs", job_hex, spec.model, action.roles, outcome.wall_s)
            self.wake()
        except Unavailable as exc:
            memory.unavailable[action.job_id] = (height, exc.reason)
            self.counters["runs_failed"] += 1
            log.warning("agent run of job %s for %s: %s (retried until the commit deadline is near)", job_hex,
                        action.roles, exc.reason)
        except (SpecError, DatasetError) as exc:  # the spec or dataset bytes do not decode: on every node
            bad = memory.bad_specs.get(action.spec_digest) if isinstance(exc, SpecError) else None
            self._claimed(action, error_claim(exc) if bad is None else (ERROR, [bad[0]]), str(exc))
        except (AgentError, ComputeError, NodeError, OSError, trio.TooSlowError) as exc:
            self._run_failed(action, height, exc)
        except Exception as exc:  # anything else is a bug, but still must not take the node down
            log.exception("agent run of job %s crashed", job_hex)
            self._run_failed(action, height, exc)
        finally:
            memory.running.discard(action.job_id)

    def _claimed(self, action: RunJob, claim: tuple[int, list[int]], reason: str) -> None:
        """Keep a claim the run supports, for the planner to commit."""
        outcome, summary = claim
        self.memory.results[action.job_id] = claim_record(outcome, summary, reason)
        self.memory.unavailable.pop(action.job_id, None)
        self.counters["runs_failed"] += 1
        log.warning("agent run of job %s for %s: %s; claiming %s", action.job_id.hex()[:16], action.roles, reason,
                    describe_claim(outcome, summary))
        self.wake()

    async def _pool(self) -> Any:
        """The node's compute pool, waiting for it while it is still starting (its children import for seconds,
        and a job can be assigned before that: failing the run then would burn its attempts)."""
        pool = getattr(self.node, "pool", None)
        ready = getattr(self.node, "pool_ready", None)
        size = getattr(getattr(self.node, "config", None), "pool_size", 0)
        if pool is None and ready is not None and isinstance(size, int) and size > 0:
            with trio.move_on_after(self.fetch_timeout_s):
                await ready.wait()
            pool = getattr(self.node, "pool", None)
        return pool

    def _run_failed(self, action: RunJob, height: int, exc: BaseException) -> None:
        count = self.memory.run_failures.get(action.job_id, (0, 0, ""))[0] + 1
        self.memory.run_failures[action.job_id] = (count, height, str(exc))
        self.counters["runs_failed"] += 1
        log.warning("agent run of job %s for %s failed (attempt %d): %s", action.job_id.hex()[:16], action.roles,
                    count, exc)

    def _keep_result(self, result: JobResult) -> bytes:
        """Store the artifact (under its own digest, the one the ledger records) and the full result bytes."""
        blobs = getattr(self.node, "blobs", None)
        encoded = result.encode()
        if blobs is None:
            return blake2b256(encoded)
        blobs.put_expected(result.artifact, result.artifact_digest)
        return blobs.put(encoded)

    def result_for(self, job_id: bytes) -> JobResult | None:
        """The full result this node computed for ``job_id``, if it ran it and still has it."""
        record = self.memory.results.get(job_id)
        blobs = getattr(self.node, "blobs", None)
        if record is None or blobs is None:
            return None
        data = blobs.get(record.result_digest)
        return None if data is None else JobResult.decode(data)

    # -- persistence of openings (so a restart between commit and reveal can still reveal) --
    def _save_openings(self) -> None:
        path = self._openings_path
        if path is None:
            return
        doc = [[j.hex(), a.hex(), list(o.summary), o.artifact_digest.hex(), o.salt.hex(), o.outcome]
               for (j, a), o in self.memory.openings.items()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("agent could not save its openings to %s: %s", path, exc)

    def _load_openings(self) -> None:
        path = self._openings_path
        if path is None or not path.exists():
            return
        try:
            for j, a, summary, artifact, salt, *rest in json.loads(path.read_text()):
                # Files written before claims existed have no outcome: every opening in them is a result.
                outcome = int(rest[0]) if rest else RESULT
                self.memory.openings[(bytes.fromhex(j), bytes.fromhex(a))] = Opening(
                    tuple(int(v) for v in summary), bytes.fromhex(artifact), bytes.fromhex(salt), outcome)
        except (OSError, ValueError, TypeError) as exc:
            log.error("agent could not read its openings from %s: %s", path, exc)

    # -- read side --
    def status(self) -> dict[str, Any]:
        state = self.node.state
        p = self.planner
        keys = []
        for k in self.local_keys():
            w = state.workers.get(k.account)
            entry: dict[str, Any] = {"name": k.name, "account": k.account.hex(), "registered": w is not None}
            if w is not None:
                entry.update(stake=w.stake, reputation=w.reputation, active_jobs=w.active_jobs,
                             jobs_done=w.jobs_done, jobs_failed=w.jobs_failed, offer_price=w.offer_price,
                             offer_until=w.offer_until, offer_max_time_ms=w.offer_max_time_ms,
                             offer_live=w.offer_live_at(state.height + 1))
            keys.append(entry)
        return {
            "running": self.auto,
            "offering": self.can_offer(),
            "faulty": self.faults.describe(),
            "device": self.device.to_dict(),
            "last_scan_height": self.last_scan_height,
            "block_time_s": round(self.planner.block_time_s, 3),
            "run_estimates_s": {m: round(self.planner.run_estimate_s(m, self.memory), 2)
                                for m in sorted(self.memory.run_seconds)},
            "limits": {"max_job_time_ms": p.max_job_time_ms, "max_job_memory_mb": p.memory_cap_mb,
                       "pool_slots": p.parallel_runs, "duty_slots": p.duty_lane, "work_slots": p.work_lanes},
            "keys": keys,
            "declined": {j.hex(): reason for j, reason in sorted(self.memory.declined.items())},
            "claims": {j.hex(): {"claim": describe_claim(r.outcome, r.summary), "reason": r.reason}
                       for j, r in self.memory.results.items() if r.outcome != RESULT and j in state.active_jobs},
            "jobs_running": sorted(j.hex() for j in self.memory.running),
            "results": len(self.memory.results),
            "counters": dict(self.counters),
            "recent": list(self.recent)[-20:],
        }
