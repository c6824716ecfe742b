"""The node's read models: every view the API, the dashboard and the CLI show, in one place.

:class:`Views` reads the node's committed state, its chain, peers and local keys; it never writes. The API and
the dashboard ask it for a view instead of reaching into the node's state, so what a resource shows is defined
once. Values are plain Python (bytes where the ledger has bytes); the API renders them as JSON.
"""

from __future__ import annotations

import time
from typing import Any

from bootstrap.home import read_declared
from bootstrap.views.index import decode_cursor, encode_cursor
from bootstrap.views.jobs import reveal_outcomes, status_waiting_for, timeline, verdict_words, why_waiting
from ledger.crypto import blake2b256
from ledger.errors import DecodeError
from ledger.state import Job, total_supply
from ledger.tx import decode_signed_tx
from p2pnet import PeerId

ZERO_HASH = bytes(32)
DISPLAY_ID_CACHE = 4096  # accounts whose peer-id text is remembered (cleared when full: a flood cannot grow it)


class Views:
    """Read models over one node (``node`` is the :class:`bootstrap.node.Node` facade, read through its
    attributes). Every method reads committed state only."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._display_ids: dict[bytes, str] = {}

    # ------------------------------------------------------------------------------------------- identities

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

    def safe_account(self, name: str) -> bytes | None:
        """The account of local key ``name``, or None for a key that cannot be opened (wrong passphrase, bad
        file): such a key has no account to show."""
        try:
            return self.node.account_of(name)
        except Exception:
            return None

    def local_name(self, acct: bytes) -> str | None:
        """The keystore name this node holds for ``acct``, if any."""
        for name in self.node.keystore.names():
            if self.safe_account(name) == acct:
                return name
        return None

    def faucet_key(self) -> str | None:
        """The keystore name of the chain's faucet when this node holds its key (devnets), else None."""
        node = self.node
        faucet = node.state.params.faucet
        if faucet is None:
            return None
        for name in ("faucet", *node.keystore.names()):
            if node.keystore.exists(name) and self.safe_account(name) == faucet:
                return name
        return None

    def agent_running(self) -> bool | None:
        """Whether auto-coordination is on (None: this node runs no agent)."""
        agent = getattr(self.node, "agent", None)
        if agent is None:
            return None
        try:
            return bool(agent.auto)
        except Exception:  # the agent's status is informational; never fail a read because of it
            return None

    # ------------------------------------------------------------------------------------------- chain

    def head(self) -> dict[str, Any]:
        """The last committed block's height, hash, state root, time and proposer."""
        chain = self.node.chain
        assert chain is not None
        h = chain.last_header
        return {
            "height": chain.height,
            "block_hash": (h.hash() if h is not None else ZERO_HASH).hex(),
            "state_root": chain.root.hex(),
            "time_ms": h.time_ms if h is not None else chain.genesis.genesis_time,
            "chain_id": chain.chain_id,
            "proposer": self.display_id(h.proposer) if h is not None else None,
        }

    def first_height(self) -> int:
        """The lowest block this node keeps: 1, or above it when it pruned older blocks (``keep_blocks``) or joined
        by state sync. Every block from it to the head is kept."""
        chain = self.node.chain
        assert chain is not None
        return chain.first_height

    def block(self, height: int, *, ids_only: bool = False) -> dict[str, Any] | None:
        """A committed block as JSON-friendly data, or None if this node does not have it (above the head, or below
        :meth:`first_height`).

        Each tx is listed as its id, kind, sender, nonce and fee under ``txs``; with ``ids_only`` the block has
        ``tx_ids`` (hex, in block order) instead, hashed from the stored bytes without decoding any tx: a commit
        watcher (the load generator's) needs only those, and decoding every tx of every block again for it cost a
        few percent of a saturated node."""
        chain = self.node.chain
        assert chain is not None
        if not 1 <= height <= chain.height:
            return None
        got = chain.get_blocks(height, height, limit=1)
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

    def recent_blocks(self, limit: int, before: int | None) -> dict[str, Any]:
        """Block summaries, newest first: height, hash, time, tx count, proposer, and the gap to the previous; with
        ``first_height``, the lowest block kept here, so a page that ends there is known to end for that reason
        (older blocks are pruned here; an archive node keeps them)."""
        node = self.node
        first = self.first_height()
        top = node.height if before is None else min(node.height, before - 1)
        out: list[dict[str, Any]] = []
        prev_time: int | None = None
        heights = list(range(top, max(first - 1, top - limit), -1))
        for h in heights + ([heights[-1] - 1] if heights and heights[-1] > first else []):
            b = self.block(h)
            if b is None:
                continue
            if out and prev_time is not None and out[-1]["height"] == h + 1:
                out[-1]["block_time_ms"] = prev_time - b["time_ms"]
            prev_time = b["time_ms"]
            if h in heights:
                out.append({"height": h, "hash": b["hash"], "time_ms": b["time_ms"], "txs": len(b["txs"]),
                            "round": b["round"], "proposer": b["proposer"], "block_time_ms": None,
                            "kinds": sorted({t.get("kind", "?") for t in b["txs"]})})
        return {"count": len(out), "head": node.height, "first_height": first, "blocks": out}

    # ------------------------------------------------------------------------------------------- network

    def peers(self) -> list[dict[str, Any]]:
        """Connected peers: id, addresses, direction, gossip score and whether each is a validator."""
        node = self.node
        host = node.host
        if host is None:
            return []
        out = []
        for p in host.peers():
            conn = host.connection(p)
            out.append({
                "peer_id": str(p),
                "addrs": list(conn.listen_addrs) if conn is not None else [],
                "direction": ("outbound" if conn.outbound else "inbound") if conn is not None else "?",
                "remote_addr": conn.remote_addr if conn is not None else None,
                "score": round(host.gossip.score(p), 3),
                "validator": p.public_key in (node.chain.validators if node.chain else []),
            })
        return out

    def stats(self) -> dict[str, Any]:
        """The node's counters, chain head, consensus state, mempool, gossip, jobs and event bus in one dict."""
        node = self.node
        state = node.state
        by_status = node.job_index.counts()  # kept per status as blocks commit: no walk over every job
        mempool = node.mempool
        assert mempool is not None
        metrics = node.host.metrics() if node.host is not None else {}
        driver = node.driver
        return {
            "node": {"peer_id": str(node.peer_id), "moniker": node.config.moniker,
                     "uptime_s": round(time.time() - node.started_at, 1) if node.started_at else 0.0,
                     "validator": bool(driver and driver.is_validator), **node.counters},
            "chain": {**self.head(), "validators": len(state.validators),
                      "consensus": driver.status() if driver else None},
            "mempool": {"txs": len(mempool), "bytes": mempool.bytes, "evicted": mempool.evicted,
                        "queued": len(mempool.queued), "queued_evicted": mempool.queued_evicted,
                        "queued_dropped": mempool.queued_dropped, "promoted": mempool.promoted,
                        "refused_high_water": mempool.refused_high_water, "refused_state": mempool.refused_cheap},
            "gossip": {"peers": metrics.get("peers", 0), "topics": metrics.get("topics", {})},
            "jobs": {"total": len(state.jobs), "active": len(state.active_jobs), "by_status": by_status},
            "workers": {"total": len(state.workers)},
            "events": {"subscribers": node.events.subscribers,
                       "dropped_subscribers": node.events.dropped_subscribers},
        }

    def health(self) -> dict[str, Any]:
        """A liveness summary: height, chain, peer count, whether this node validates and coordinates."""
        node = self.node
        head = self.head()
        refused = node.driver.signing_refused if node.driver is not None else None
        return {
            # A validator that refuses to sign (its consensus WAL is damaged) still answers, but is not healthy.
            "status": "healthy" if refused is None else "degraded",
            "peer_id": str(node.peer_id),
            "height": head["height"],
            "chain_id": head.get("chain_id", node.state.chain_id),
            "peers": len(self.peers()),
            "validator": node.identity.public_key in node.state.validators,
            "coordination": self.agent_running(),
            "signing_refused": refused,
        }

    def network_stats(self) -> dict[str, Any]:
        """The seed's network statistics (workers, jobs, success rate, escrow, stake, supply) plus node stats."""
        node = self.node
        st = node.state
        index = node.job_index
        by_status = index.counts()
        done = by_status.get("verified", 0)
        finished = done + by_status.get("failed", 0) + by_status.get("refunded", 0)
        active_workers = sum(1 for w in st.workers.values() if w.stake >= st.params.min_stake)
        return {
            "height": node.height,
            "total_workers": len(st.workers),
            "active_workers": active_workers,
            "total_jobs": index.total(),
            "completed_jobs": done,
            "jobs_by_status": by_status,
            "success_rate": (done / finished) if finished else None,
            # A finished job holds no escrow, so the unfinished ones are all there is to add up.
            "escrow_balance": sum(st.jobs[j].escrow or 0 for j in st.active_jobs),
            "total_staked": sum(w.stake for w in st.workers.values()),
            "total_supply": total_supply(st),  # a running sum kept with the state tree: no walk of the accounts
            "coordination": self.agent_running(),
            "node": self.stats(),
        }


    # ------------------------------------------------------------------------------------------- jobs

    def job(self, job_id: bytes) -> dict[str, Any] | None:
        """The ledger's job plus what this node knows locally: spec, dataset and result availability, and
        what the job is waiting for. A job whose submit tx is still pending shows as ``pending``."""
        node = self.node
        job = node.state.jobs.get(job_id)
        if job is None:
            if node.mempool is not None and job_id in node.mempool:
                return {"job_id": job_id.hex(), "status": "pending",
                        "waiting_for": "the submit transaction to be committed"}
            reason = node.txs.rejected_reason(job_id)
            if reason is not None:
                return {"job_id": job_id.hex(), "status": "rejected", "reason": reason}
            return None
        d = self._job_with_roles(job)
        spec = node.spec_of(job.params_digest)
        d["spec"] = None if spec is None else {
            "model": spec.model, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.params.items()},
            "precision": spec.precision, "tolerance": {"abs": spec.tolerance.abs, "ppm": spec.tolerance.ppm},
            "device": spec.requirements.device,
        }
        blobs = node.blobs
        assert blobs is not None
        d["dataset_local"] = blobs.has(job.dataset_digest)
        d["result_local"] = bool(job.result_artifact) and blobs.has(job.result_artifact)
        d["waiting_for"] = status_waiting_for(job)
        d["height"] = node.height
        return d

    def job_detail(self, job_id: bytes) -> dict[str, Any] | None:
        """:meth:`job` with its timeline and, for an open job, why it is still waiting (``GET /job/{id}/status``)."""
        view = self.job(job_id)
        if view is None:
            return None
        state = self.node.state
        job = state.jobs.get(job_id)
        if job is not None:
            view["timeline"] = timeline(job)
            view["waiting_for"] = why_waiting(state, job) or view.get("waiting_for")
        return view

    def _job_with_roles(self, job: Job) -> dict[str, Any]:
        """The ledger's record of a job with each role (client, worker, verifier, referee) as a peer id too."""
        d = job.to_dict()
        for role in ("client", "worker", "verifier", "referee"):
            acct = getattr(job, role)
            d[f"{role}_id"] = self.display_id(acct) if acct is not None else None
        d["panel_ids"] = [self.display_id(a) for a in job.panel]
        d["confirmer_ids"] = [self.display_id(a) for a in job.confirmers]
        d["outcomes"] = reveal_outcomes(job)
        d["verdict_words"] = verdict_words(job.verdict, job.result_summary) if job.verdict else None
        return d

    def job_row(self, job: Job) -> dict[str, Any]:
        """A job as the ledger has it, plus its roles as peer ids, what it waits for, and its timeline."""
        d = self._job_with_roles(job)
        d["waiting_for"] = why_waiting(self.node.state, job)
        d["timeline"] = timeline(job)
        return d

    def jobs(self, status: str | None = None, *, unfinished: bool = False, cursor: str | None = None,
             limit: int = 100, newest_first: bool = True) -> dict[str, Any]:
        """One page of job rows from the node's job index: all jobs, those in ``status``, or (``unfinished``)
        every non-terminal one, newest or oldest first, after ``cursor`` (from the previous page's
        ``next_cursor``); with the number that match, the count per status, and the next page's cursor (None at
        the end). Raises :class:`bootstrap.views.CursorError` for a cursor this index never handed out."""
        index = self.node.job_index
        after = decode_cursor(cursor) if cursor else None
        ids, last = index.page(status=status, unfinished=unfinished, after=after, limit=limit,
                               newest_first=newest_first)
        jobs = self.node.state.jobs
        return {
            "count": index.count(status, unfinished=unfinished),
            "counts": index.counts(),
            "order": "newest" if newest_first else "oldest",
            "jobs": [self.job_row(jobs[j]) for j in ids],
            "next_cursor": encode_cursor(last) if last is not None else None,
        }

    # ------------------------------------------------------------------------------------------- accounts

    def worker(self, acct: bytes) -> dict[str, Any] | None:
        """A registered worker's ledger record, balance, local name and declaration; None if not registered."""
        node = self.node
        w = node.state.workers.get(acct)
        if w is None:
            return None
        view = {"worker_id": self.display_id(acct), "account": acct.hex(), **w.to_dict(),
                "balance": node.state.balance(acct)}
        name = self.local_name(acct)
        if name is not None:
            view["name"] = name
            declared = read_declared(node.home).get(name)
            if declared is not None:
                view["declared"] = declared
        view["is_active"] = w.stake >= node.state.params.min_stake
        return view

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker, by account."""
        views = []
        for a in sorted(self.node.state.workers):
            view = self.worker(a)
            assert view is not None
            views.append(view)
        return views

    def client_balance(self, address: str, acct: bytes) -> dict[str, Any]:
        """An account's balance, nonce, escrow held in its unfinished jobs, and stake."""
        st = self.node.state
        escrow = sum(j.escrow or 0 for j in map(st.jobs.__getitem__, st.active_jobs) if j.client == acct)
        w = st.workers.get(acct)
        return {
            "client_address": address,
            "account": self.display_id(acct),
            "balance": st.balance(acct),
            "nonce": st.nonce(acct),
            "escrowed": escrow,
            "staked": w.stake if w is not None else 0,
        }

    def clients(self) -> list[dict[str, Any]]:
        """Accounts that submitted jobs, and local keys that are not workers: name, balance, jobs submitted."""
        node = self.node
        st = node.state
        submitted = node.job_index.clients()
        local = {}
        for name in node.keystore.names():
            a = self.safe_account(name)
            if a is not None:
                local[a] = name
        accounts = set(submitted) | {a for a in local if a not in st.workers}
        return [{
            "account": self.display_id(a),
            "name": local.get(a),
            "balance": st.balance(a),
            "jobs_submitted": submitted.get(a, 0),
        } for a in sorted(accounts)]
