"""A load generator: signs transfers locally from funded accounts and pushes them to a node at a set rate.

Why this file is long: one run is one coroutine whose tasks (the sender, a poster per node, the chain watcher)
share the run's bookkeeping of every outstanding tx (sent, admitted, deferred, where it was routed); split into
modules they would pass that state around as a bag of dicts, and the report and settings sit beside the run they
describe.

    report = trio.run(run_load, LoadConfig(["http://127.0.0.1:5000"], rate=500, duration=10, accounts=32,
                                           faucet_home=Path("devnet/node0")))
    print(report.table())

How it works: ``accounts`` keys are derived from a seed (so a rerun reuses them); with ``faucet_home`` the
faucet key from that home funds any that hold less than they will spend (faucet transfers signed here, batch
``POST /txs``). Before the clock starts, the generator signs the run's transfers (round robin over the accounts,
each account's nonces consecutive; at most ``PRESIGN_MAX``, a longer run signs the rest as it goes), so the
offered rate is bounded by posting, not by signing on the same cores as the nodes it loads. Then every
``batch_ms`` it takes as many as the offered rate owes and hands them as one ``POST /txs`` batch to the next node
URL's poster; each node has its own poster task and connection, so a slow answer from one node does not hold up
the batches for the others (a poster still busy with its last batch makes the sender wait: offered load then
falls below the rate, honestly). A watcher follows the chain through ``/chain/head`` and ``/blocks/{h}`` and
notes when each sent tx shows up in a committed block: end-to-end latency is submit → first seen committed (so
it includes up to one poll interval). After ``duration`` it keeps watching for up to ``settle_s`` until every
accepted tx is committed. The report gives offered vs committed tx/s, latency p50/p99, block times, and
rejections by reason.

HTTP is blocking ``http.client`` (keep-alive, one connection per poster and per watcher) run in trio worker
threads, so the event loop only paces and counts. Bodies are the API's compact JSON (hex txs), serialised with
no spaces.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import math
import statistics
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from nacl.signing import SigningKey

from bootstrap.errors import NodeError
from ledger.crypto import blake2b256
from ledger.tx import Transfer, make_tx

# A sink account every load transfer pays (not one of the senders, so senders' balances only fall by known sums).
SINK = blake2b256(b"dacn-loadgen-sink")
# At most this many txs in one POST /txs (the API's bound is 4096).
MAX_BATCH = 2048
# At most this many transfers are signed before a run's clock starts (about 100 MB of prepared txs); a run that
# offers more signs the rest while it runs, as every transfer was before.
PRESIGN_MAX = 500_000
# A stalled account sends again at most this many of its oldest outstanding txs at once.
RESEND_RUN = 64


class LoadgenError(NodeError):
    """Bad load-generator settings or a node that cannot be loaded; ``field`` names the setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"loadgen {field}: {message}")
        self.field = field


@dataclass(frozen=True)
class LoadConfig:
    """What to offer: ``rate`` tx/s for ``duration`` s from ``accounts`` senders, pushed to ``node_urls``."""

    node_urls: list[str]
    rate: float
    duration: float
    accounts: int = 16
    faucet_home: Path | None = None
    seed: bytes = b"dacn-loadgen"
    batch_ms: int = 100
    amount: int = 1
    fee: int | None = None
    settle_s: float = 30.0
    poll_ms: int = 100
    http_timeout: float = 30.0
    resend_s: float = 5.0
    recipients: tuple[bytes, ...] = ()
    """Accounts the transfers pay, in turn (one transfer each, round robin); empty: every transfer pays
    :data:`SINK`. A benchmark of a large state names existing accounts here, so each transfer writes a leaf of the
    full tree, as a payment to a stranger does."""
    spread: bool = False
    """Hand whole batches to the nodes in turn, so one sender's consecutive nonces land on different nodes and
    meet again only by gossip; by default each account sends to one node (account k to node k mod n), as a
    wallet does."""

    def validate(self) -> None:
        if not self.node_urls:
            raise LoadgenError("node", "at least one node URL is needed")
        for url in self.node_urls:
            u = urllib.parse.urlsplit(url)
            if u.scheme != "http" or not u.hostname:
                raise LoadgenError("node", f"{url!r} is not an http://HOST:PORT URL")
        if not (math.isfinite(self.rate) and 0 < self.rate <= 1_000_000):
            raise LoadgenError("rate", f"must be in (0, 1e6] tx/s, got {self.rate!r}")
        if not (math.isfinite(self.duration) and 0 < self.duration <= 86_400):
            raise LoadgenError("duration", f"must be in (0, 86400] seconds, got {self.duration!r}")
        if type(self.accounts) is not int or not 1 <= self.accounts <= 100_000:
            raise LoadgenError("accounts", f"must be an integer in 1..100000, got {self.accounts!r}")
        if any(type(r) is not bytes or len(r) != 32 for r in self.recipients):
            raise LoadgenError("recipients", "each recipient must be a 32-byte account id")
        if not 1 <= self.batch_ms <= 10_000:
            raise LoadgenError("batch_ms", f"must be in 1..10000, got {self.batch_ms!r}")
        if type(self.amount) is not int or self.amount < 1:
            raise LoadgenError("amount", f"must be a positive integer, got {self.amount!r}")
        if self.fee is not None and (type(self.fee) is not int or self.fee < 0):
            raise LoadgenError("fee", f"must be a non-negative integer, got {self.fee!r}")
        if not (math.isfinite(self.resend_s) and self.resend_s > 0):
            raise LoadgenError("resend_s", f"must be > 0, got {self.resend_s!r}")
        if not (math.isfinite(self.settle_s) and self.settle_s >= 0):
            raise LoadgenError("settle_s", f"must be >= 0, got {self.settle_s!r}")
        if self.faucet_home is not None and not (Path(self.faucet_home) / "keys" / "faucet.json").exists():
            raise LoadgenError("faucet_home", f"{self.faucet_home} has no keys/faucet.json (not a devnet home?)")


@dataclass
class LoadReport:
    """What a run offered and what the chain committed; ``committed_ids`` are the tx ids seen in blocks."""

    rate: float
    duration: float
    offered: int = 0
    accepted: int = 0
    committed: int = 0
    send_seconds: float = 0.0
    commit_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    """First offer → seen committed, back-pressure waits included: what the client lived through."""
    admitted_latencies_ms: list[float] = field(default_factory=list)
    """The POST a node accepted → seen committed: how long an admitted tx waited for the chain."""
    rejections: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)  # refused for back-pressure, kept and resent
    send_errors: Counter[str] = field(default_factory=Counter)
    block_times_ms: list[int] = field(default_factory=list)
    block_txs: list[int] = field(default_factory=list)
    first_height: int = 0
    last_height: int = 0
    committed_ids: set[str] = field(default_factory=set)
    uncommitted: int = 0
    """Txs offered and not seen committed by the end of the settle time."""
    admitted_uncommitted: int = 0
    """Of those, the ones a node had accepted: what the network lost (the others it kept refusing)."""
    resent: int = 0
    signed_late: int = 0  # transfers signed during the run (the prepared ones ran out), not before its clock

    @property
    def offered_tps(self) -> float:
        return self.offered / self.send_seconds if self.send_seconds > 0 else 0.0

    @property
    def committed_tps(self) -> float:
        """Committed txs over the time from the first send to the block that committed the last of them."""
        return self.committed / self.commit_seconds if self.commit_seconds > 0 else 0.0

    def percentile_ms(self, q: float, *, admitted: bool = False) -> float:
        """The ``q`` quantile of latency from first offer, or with ``admitted`` from the accepting POST."""
        values = self.admitted_latencies_ms if admitted else self.latencies_ms
        if not values:
            return math.nan
        s = sorted(values)
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]

    @property
    def block_time_median_ms(self) -> float:
        return statistics.median(self.block_times_ms) if self.block_times_ms else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate, "duration": self.duration, "offered": self.offered, "accepted": self.accepted,
            "committed": self.committed, "uncommitted": self.uncommitted,
            "admitted_uncommitted": self.admitted_uncommitted, "resent": self.resent,
            "offered_tps": round(self.offered_tps, 1), "committed_tps": round(self.committed_tps, 1),
            "latency_p50_ms": round(self.percentile_ms(0.5), 1), "latency_p99_ms": round(self.percentile_ms(0.99), 1),
            "admitted_latency_p50_ms": round(self.percentile_ms(0.5, admitted=True), 1),
            "admitted_latency_p99_ms": round(self.percentile_ms(0.99, admitted=True), 1),
            "block_time_median_ms": self.block_time_median_ms, "blocks": len(self.block_times_ms),
            "max_block_txs": max(self.block_txs, default=0), "heights": [self.first_height, self.last_height],
            "rejections": dict(self.rejections), "deferred": dict(self.deferred),
            "send_errors": dict(self.send_errors),
            "signed_late": self.signed_late,
        }

    def table(self) -> str:
        d = self.to_dict()
        rows = [("offered tx/s", f"{d['offered_tps']:.1f} ({self.offered} txs in {self.send_seconds:.1f} s)"),
                ("accepted by the node", str(self.accepted)),
                ("committed tx/s", f"{d['committed_tps']:.1f} ({self.committed} txs in {self.commit_seconds:.1f} s)"),
                ("sent, not committed", str(self.uncommitted)),
                ("of those accepted by a node", str(self.admitted_uncommitted)),
                ("resent (a stalled account's oldest, unseen after resend_s; back-pressured ones)", str(self.resent)),
                ("latency p50 / p99 ms", f"{d['latency_p50_ms']} / {d['latency_p99_ms']}"),
                ("admitted → committed p50 / p99 ms",
                 f"{d['admitted_latency_p50_ms']} / {d['admitted_latency_p99_ms']}"),
                ("blocks, median block time ms", f"{d['blocks']}, {d['block_time_median_ms']}"),
                ("largest block (txs)", str(d["max_block_txs"]))]
        rows += [(f"rejected: {reason}", str(n)) for reason, n in self.rejections.most_common(8)]
        rows += [(f"deferred (resent): {reason}", str(n)) for reason, n in self.deferred.most_common(4)]
        rows += [(f"send error: {reason}", str(n)) for reason, n in self.send_errors.most_common(4)]
        return "\n".join(["| figure | value |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows)])


# ------------------------------------------------------------------------------------------------ HTTP


class _Http:
    """One keep-alive connection to one node; blocking calls, meant for ``trio.to_thread.run_sync``."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urllib.parse.urlsplit(url)
        self.url = url
        self.host, self.port, self.timeout = u.hostname or "127.0.0.1", u.port or 80, timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, OSError, ValueError):
                self.close()  # a stale keep-alive connection: reconnect once
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


async def _call(h: _Http, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(h.call, method, path, body)


async def _get(h: _Http, path: str) -> Any:
    try:
        status, doc = await _call(h, "GET", path)
    except (http.client.HTTPException, OSError, ValueError) as exc:
        raise LoadgenError("node", f"{h.url}{path}: no answer ({exc!r})") from None
    if status != 200:
        raise LoadgenError("node", f"{h.url}{path} -> {status}: {doc}")
    return doc


# ------------------------------------------------------------------------------------------------ accounts


def account_keys(seed: bytes, n: int) -> list[SigningKey]:
    """The ``n`` load accounts' keys, derived from ``seed`` (the same seed gives the same accounts)."""
    return [SigningKey(blake2b256(seed + i.to_bytes(4, "big"))) for i in range(n)]


def load_faucet_key(home: Path) -> SigningKey:
    """The devnet faucet's key from a node home (``keys/faucet.json``; ``DACN_PASSPHRASE`` if encrypted)."""
    import os

    from bootstrap.home import FAUCET_KEY, Keystore, KeystoreError, home_paths

    try:
        return Keystore(home_paths(Path(home))["keys"], os.environ.get("DACN_PASSPHRASE")).load(FAUCET_KEY)
    except KeystoreError as exc:
        raise LoadgenError("faucet_home", str(exc)) from None


# Refusals that say "not now" rather than "never": the tx is kept and sent again later.
RETRYABLE = frozenset({"mempool_full", "future_queue_full", "rate_limited", "node_busy"})


def _reason(result: dict[str, Any]) -> str:
    detail = result.get("detail")
    kind = detail.get("kind") if isinstance(detail, dict) else None
    return str(kind or result.get("error") or "unknown")[:80]


class Account:
    """A sender: its key and the next nonce to sign."""

    __slots__ = ("address", "key", "nonce")

    def __init__(self, key: SigningKey, nonce: int) -> None:
        self.key, self.address, self.nonce = key, bytes(key.verify_key), nonce


class Prepared:
    """Signed transfers ready to post, in the order they will be offered; signs more on demand once empty."""

    def __init__(self, accounts: list[Account], chain_id: str, amount: int, fee: int,
                 recipients: tuple[bytes, ...] = ()) -> None:
        self.accounts, self.chain_id, self.amount, self.fee = accounts, chain_id, amount, fee
        self.transfers = [Transfer(to=r, amount=amount) for r in recipients] or [Transfer(to=SINK, amount=amount)]
        self.ready: collections.deque[tuple[int, int, str, str]] = collections.deque()  # account, nonce, id, hex
        self.signed = 0
        self.signed_late = 0  # signed during the run because the prepared ones ran out

    def sign(self, n: int) -> None:
        """Sign the next ``n`` transfers (round robin over the accounts) and append them to :attr:`ready`."""
        accounts, ready, transfers = self.accounts, self.ready, self.transfers
        for _ in range(n):
            k = self.signed % len(accounts)
            acct = accounts[k]
            transfer = transfers[self.signed % len(transfers)]
            stx = make_tx(transfer, acct.key, self.chain_id, nonce=acct.nonce, fee=self.fee)
            ready.append((k, acct.nonce, stx.tx_id.hex(), stx.encode().hex()))
            acct.nonce += 1
            self.signed += 1

    def take(self, n: int) -> list[tuple[int, int, str, str]]:
        """The next ``n`` transfers: prepared ones first, then signed here and now."""
        short = n - len(self.ready)
        if short > 0:
            self.sign(short)
            self.signed_late += short
        ready = self.ready
        return [ready.popleft() for _ in range(n)]


async def _account_state(h: _Http, address: bytes) -> tuple[int, int]:
    doc = await _get(h, f"/client/{address.hex()}/balance")
    return int(doc["balance"]), int(doc["nonce"])


async def fund_accounts(cfg: LoadConfig, h: _Http, chain_id: str, fee: int) -> list[Account]:
    """Read each load account's balance and nonce; top up from the faucet those short of what the run spends."""
    keys = account_keys(cfg.seed, cfg.accounts)
    per_account = math.ceil(cfg.rate * cfg.duration / cfg.accounts) + 1
    need = per_account * (cfg.amount + fee) + 10 * (cfg.amount + fee)
    accounts, short = [], []
    for key in keys:
        balance, nonce = await _account_state(h, bytes(key.verify_key))
        accounts.append(Account(key, nonce))
        if balance < need:
            short.append((bytes(key.verify_key), 2 * need - balance))
    if not short:
        return accounts
    if cfg.faucet_home is None:
        raise LoadgenError("faucet_home", f"{len(short)} load accounts need funds and no faucet home was given")
    faucet = load_faucet_key(cfg.faucet_home)
    _balance, nonce = await _account_state(h, bytes(faucet.verify_key))
    for _attempt in range(5):
        txs = [make_tx(Transfer(to=to, amount=amount), faucet, chain_id, nonce=nonce + i, fee=fee).encode().hex()
               for i, (to, amount) in enumerate(short)]
        for start in range(0, len(txs), 1024):
            status, doc = await _call(h, "POST", "/txs", {"txs": txs[start:start + 1024]})
            if status != 200:
                raise LoadgenError("node", f"funding batch refused: {status} {doc}")
        deadline = trio.current_time() + 60
        while trio.current_time() < deadline:
            pending = [a for a, _ in short if (await _account_state(h, a))[0] < need]
            if not pending:
                return accounts
            await trio.sleep(0.3)
        # Someone else used the faucet's nonces meanwhile (every devnet node holds the faucet key): sign again.
        _balance, nonce = await _account_state(h, bytes(faucet.verify_key))
        short = [(a, amt) for a, amt in short if (await _account_state(h, a))[0] < need]
    raise LoadgenError("faucet_home", f"could not fund {len(short)} load accounts after 5 attempts")


# ------------------------------------------------------------------------------------------------ the run


async def run_load(cfg: LoadConfig, *, on_progress: Any = None) -> LoadReport:
    """Fund the accounts, offer the load, follow the chain until it is committed (or ``settle_s`` runs out)."""
    cfg.validate()
    nodes = [_Http(u, cfg.http_timeout) for u in cfg.node_urls]
    watchers = [_Http(u, cfg.http_timeout) for u in cfg.node_urls]
    watch = watchers[0]

    async def follow(path: str) -> Any:
        """GET from the first node that answers (a node may be down for a while: chaos tests kill them)."""
        nonlocal watch
        last: LoadgenError | None = None
        for _ in range(len(watchers)):
            try:
                return await _get(watch, path)
            except LoadgenError as exc:
                last = exc
                watch = watchers[(watchers.index(watch) + 1) % len(watchers)]
        assert last is not None
        raise last

    try:
        head = await _get(watch, "/chain/head")
        chain_id = str(head["chain_id"])
        fee = cfg.fee if cfg.fee is not None else 1
        accounts = await fund_accounts(cfg, watch, chain_id, fee)
        report = LoadReport(rate=cfg.rate, duration=cfg.duration)
        total = round(cfg.rate * cfg.duration)
        prepared = Prepared(accounts, chain_id, cfg.amount, fee, cfg.recipients)
        # Signing during the run took CPU from the nodes and the posting on the same cores: sign before the clock.
        await trio.to_thread.run_sync(prepared.sign, min(total, PRESIGN_MAX))
        sent_at: dict[str, float] = {}
        admitted_at: dict[str, float] = {}  # when the POST that a node accepted was sent
        done = trio.Event()
        sending_over = trio.Event()
        start_height = int((await _get(watch, "/chain/head"))["height"])
        report.first_height = start_height + 1
        t0 = time.perf_counter()
        last_commit = t0

        async def watcher() -> None:
            nonlocal last_commit
            h = start_height
            prev_time: int | None = None
            settle_deadline = math.inf
            while True:
                try:
                    top = int((await follow("/chain/head"))["height"])
                except LoadgenError:
                    top = h  # every node is down right now: try again next poll
                while h < top:
                    try:
                        block = await follow(f"/blocks/{h + 1}?txs=ids")
                    except LoadgenError:
                        break
                    h += 1
                    now = time.perf_counter()
                    if prev_time is not None:
                        report.block_times_ms.append(int(block["time_ms"]) - prev_time)
                    prev_time = int(block["time_ms"])
                    # Only the ids (``?txs=ids``); a node from before that option ignores it and lists ``txs``.
                    tids = block.get("tx_ids")
                    if tids is None:
                        tids = [tx["tx_id"] for tx in block["txs"]]
                    report.block_txs.append(len(tids))
                    report.last_height = h
                    for tid in tids:
                        sent = sent_at.pop(tid, None)
                        admitted = admitted_at.pop(tid, None)
                        forget(tid)
                        if sent is not None:
                            report.committed += 1
                            report.committed_ids.add(tid)
                            report.latencies_ms.append(1000 * (now - sent))
                            if admitted is not None:
                                report.admitted_latencies_ms.append(1000 * (now - admitted))
                            last_commit = now
                if sending_over.is_set():
                    if settle_deadline == math.inf:
                        settle_deadline = time.perf_counter() + cfg.settle_s
                    if not sent_at or time.perf_counter() >= settle_deadline:
                        done.set()
                        return
                await trio.sleep(cfg.poll_ms / 1000)

        # Per account, the txs sent and not yet seen committed (nonce -> tx id, hex, last send). A tx that a
        # node lost (it died before gossiping it, or the POST failed) leaves a nonce gap that stalls every later
        # tx of its account, so once an account's oldest one is ``resend_s`` old, its oldest ``RESEND_RUN`` that
        # are old are sent again; resending the same signed bytes is harmless (a node that has it answers
        # AlreadyInMempool or NonceQueued, from a lookup).
        outstanding: list[dict[int, list[Any]]] = [{} for _ in accounts]
        # Which node each account sends to (unless ``spread``); a node that cannot be reached hands its accounts
        # to the next one, and the batch it failed is sent there soon, as a wallet fails over.
        home = [k % len(nodes) for k in range(len(accounts))]
        where: dict[str, tuple[int, int]] = {}
        # Txs a node refused for back-pressure ("not now"), sent again once its Retry-After has passed, oldest
        # first. While this backlog is large the sender offers nothing new: that is honouring back-pressure.
        deferred_q: collections.deque[tuple[float, str, str]] = collections.deque()

        def forget(tid: str) -> None:
            loc = where.pop(tid, None)
            if loc is not None:
                outstanding[loc[0]].pop(loc[1], None)

        def fail_over(index: int, batch: list[str], ids: list[str]) -> None:
            if cfg.spread:
                return  # still outstanding: a stalled account resends its oldest after resend_s
            soon = time.perf_counter() + 0.5
            for raw, tid in zip(batch, ids, strict=True):
                loc = where.get(tid)
                if loc is not None and tid in sent_at:
                    if home[loc[0]] == index:
                        home[loc[0]] = (index + 1) % len(nodes)
                    deferred_q.append((soon, tid, raw))

        async def post(index: int, node: _Http, batch: list[str], ids: list[str], resends: int) -> None:
            fresh = len(batch) - resends
            posted = time.perf_counter()
            try:
                status, doc = await _call(node, "POST", "/txs", {"txs": batch})
            except (http.client.HTTPException, OSError, ValueError) as exc:
                report.send_errors[type(exc).__name__] += fresh
                fail_over(index, batch, ids)
                return
            if status != 200 or not isinstance(doc, dict):
                report.send_errors[f"HTTP {status}"] += fresh
                fail_over(index, batch, ids)
                return
            for k, (tid, res) in enumerate(zip(ids, doc["results"], strict=True)):
                if res.get("status") == "pending":
                    report.accepted += k < fresh
                    if tid in sent_at:  # not seen committed already (a block may beat the answer)
                        admitted_at.setdefault(tid, posted)
                elif _reason(res) in RETRYABLE:
                    # back-pressure (a full mempool or future queue): the tx stays outstanding and is sent again
                    # after the node's Retry-After, so no nonce gap is left behind it
                    report.deferred[_reason(res)] += 1
                    detail = res.get("detail")
                    wait = detail.get("retry_after_s") if isinstance(detail, dict) else None
                    wait = float(wait) if isinstance(wait, int | float) and 0 < wait <= 60 else 1.0
                    deferred_q.append((time.perf_counter() + wait, tid, batch[k]))
                elif k < fresh or _reason(res) not in ("AlreadyInMempool", "BadNonce", "NonceQueued"):
                    # refused for its own sake: it will never commit, whatever we resend
                    report.rejections[_reason(res)] += 1
                    sent_at.pop(tid, None)
                    forget(tid)

        async def poster(index: int, node: _Http,
                         batches: trio.MemoryReceiveChannel[tuple[list[str], list[str], int]]) -> None:
            """Post one node's batches, one at a time over its own keep-alive connection."""
            async for batch, ids, resends in batches:
                await post(index, node, batch, ids, resends)
                if on_progress is not None:
                    on_progress(report)

        def due_resends(now: float) -> tuple[list[str], list[str]]:
            batch, ids = [], []
            while deferred_q and deferred_q[0][0] <= now and len(batch) < MAX_BATCH // 2:
                _at, tid, raw = deferred_q.popleft()
                if tid in sent_at:  # not committed meanwhile (a copy sent elsewhere may have been)
                    batch.append(raw)
                    ids.append(tid)
            for pend in outstanding:
                if len(batch) >= MAX_BATCH // 2:
                    break
                # Nonces enter ``pend`` in increasing order, so its first entry is the oldest outstanding one.
                oldest = next(iter(pend.values()), None)
                if oldest is None or now - oldest[2] < cfg.resend_s:
                    continue
                # The account is stalled at its oldest nonce. Whatever a node lost is usually a run of nonces (a
                # whole batch, or txs evicted from a full future queue), not one: resending only the oldest
                # filled one nonce per account per block, while everything behind the gap waited.
                for entry in itertools.islice(pend.values(), RESEND_RUN):
                    if len(batch) >= MAX_BATCH // 2:
                        break
                    if now - entry[2] >= cfg.resend_s:
                        entry[2] = now
                        batch.append(entry[1])
                        ids.append(entry[0])
            report.resent += len(batch)
            return batch, ids

        # Unbuffered: the sender hands a poster its next batch only once the last one is posted.
        channels = [trio.open_memory_channel[tuple[list[str], list[str], int]](0) for _ in nodes]

        async def sender() -> None:
            tick = cfg.batch_ms / 1000
            turn = 0
            while not done.is_set():
                elapsed = time.perf_counter() - t0
                owed = min(total, int(cfg.rate * elapsed) + 1) - report.offered
                now = time.perf_counter()
                more, more_ids = due_resends(now)
                batch, ids = [], []
                room = 0 if len(deferred_q) > MAX_BATCH else MAX_BATCH - len(more)
                for k, nonce, tid, raw in prepared.take(max(0, min(owed, room))):
                    outstanding[k][nonce] = [tid, raw, now]
                    where[tid] = (k, nonce)
                    batch.append(raw)
                    ids.append(tid)
                    sent_at[tid] = now  # before the POST returns: a block may commit it before it does
                report.offered += len(batch)
                if report.offered >= total and not sending_over.is_set():
                    report.send_seconds = time.perf_counter() - t0
                    sending_over.set()
                if (batch or more) and cfg.spread:
                    await channels[turn % len(channels)][0].send((batch + more, ids + more_ids, len(more)))
                    turn += 1
                elif batch or more:
                    # each node gets its accounts' share: fresh txs first, then resends (post counts them so)
                    shares: list[tuple[list[str], list[str], list[str], list[str]]] = [
                        ([], [], [], []) for _ in channels]
                    for raw, tid in zip(batch, ids, strict=True):
                        share = shares[home[where[tid][0]]]
                        share[0].append(raw)
                        share[1].append(tid)
                    for raw, tid in zip(more, more_ids, strict=True):
                        loc = where.get(tid)
                        share = shares[home[loc[0]] if loc is not None else 0]
                        share[2].append(raw)
                        share[3].append(tid)
                    for (send, _recv), (raws, tids, again, again_ids) in zip(channels, shares, strict=True):
                        if raws or again:
                            await send.send((raws + again, tids + again_ids, len(again)))
                await trio.sleep(max(0.0, t0 + tick * math.floor(elapsed / tick + 1) - time.perf_counter()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            for index, (node, (_send, receive)) in enumerate(zip(nodes, channels, strict=True)):
                nursery.start_soon(poster, index, node, receive)
            nursery.start_soon(sender)
            await done.wait()
            nursery.cancel_scope.cancel()
        report.commit_seconds = last_commit - t0 if report.committed else 0.0
        report.uncommitted = len(sent_at)
        report.admitted_uncommitted = sum(tid in sent_at for tid in admitted_at)
        report.signed_late = prepared.signed_late
        return report
    finally:
        for h in (*nodes, *watchers):
            h.close()
