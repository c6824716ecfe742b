"""The node's REST API: the seed's endpoints and bodies on a real chain, served on the node's own trio loop.

``create_app(node)`` builds a FastAPI app over the :class:`bootstrap.node.Node` facade; ``serve_api`` runs it with
hypercorn's trio worker inside the node's nursery. Every handler is ``async`` so it runs on the node's loop and
reads committed state without locks. Names such as ``alice`` are keys in the node's keystore (created on first
use); the node signs and gossips the transactions and the response carries the tx id and, once committed, the
height.

Every error has one shape, ``{"error": "<what was wrong>", "detail": ...}`` with a 4xx status: request validation
(FastAPI's 422 becomes a 400 naming the field), ledger rejections (400, 404 for unknown jobs/workers, 409 for
duplicates and wrong job states), compute spec/dataset errors (400) and keystore errors (400, 403 for a wrong
passphrase). A rejected request changes nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import trio
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from bootstrap.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bootstrap.api.metrics import DeviceSampler, render_metrics
from bootstrap.dashboard.routes import install_dashboard, timeline, why_waiting
from bootstrap.errors import BlobNotFound, BlobTooLarge, NodeError, NodeNotRunning, UnknownAccount
from bootstrap.home.keystore import KeystoreError, WrongPassphrase, check_key_name
from compute.canonical import decode_artifact, dequantise
from compute.errors import BackendUnavailable, ComputeError, DatasetError, SpecError
from ledger.errors import (
    AlreadyRegistered,
    DeadlinePassed,
    DecodeError,
    DuplicateAction,
    EncodeError,
    InsufficientFunds,
    InvalidField,
    InvalidTx,
    LedgerError,
    UnknownJob,
    UnknownWorker,
    WrongJobState,
)
from ledger.mempool import AlreadyInMempool, MempoolError, MempoolFull, TxTooLarge
from ledger.state import TERMINAL_STATUSES, total_supply
from ledger.tx import RegisterWorker, SignedTx, Transfer, decode_signed_tx

log = logging.getLogger("dacn.api")

API_DESCRIPTION = (
    "The REST API of one dacn node. Reads are open; on a listener that is not loopback every write (POST) needs "
    "`Authorization: Bearer <token>` (the token is in the node's home, file `api_token`). Writes are rate "
    "limited per client address and bodies are limited in size. Every error is JSON "
    "`{\"error\": ..., \"detail\": ...}` with a 4xx status. The live dashboard is at `/dashboard`, "
    "its event stream at `/events`, Prometheus metrics at `/metrics`."
)

API_VERSION = "1"
MAX_TOKENS = 2**63 - 1
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_WAIT_S = 20.0
MAX_WAIT_S = 120.0
MAX_INLINE_ARRAY = 4096
FAUCET_ATTEMPTS = 3
MAX_SYNTHETIC_CELLS = 4_000_000
WORKER_FEE_ALLOWANCE = 200
"""A worker funded from the faucet also gets this many minimum fees, so it can pay for its bids, commits and
reveals (a stake alone is bonded and cannot pay fees)."""

MODEL_ALIASES = {
    "linear": "linear_regression",
    "linreg": "linear_regression",
    "k_means": "kmeans",
    "k_means_clustering": "kmeans",
    "kmeans_clustering": "kmeans",
    "pca_analysis": "pca",
    "logistic": "logistic_regression",
    "logreg": "logistic_regression",
    "mlp": "mlp_train",
}
DEFAULT_MODEL_PARAMS: dict[str, dict[str, Any]] = {
    # k-means' default k=8 does not suit the seed's 3-cluster demo data; fewer epochs keep the MLP quick.
    "kmeans": {"k": 3},
    "mlp_train": {"epochs": 5},
}


class ApiError(Exception):
    """An error the API reports as ``{"error": message, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


# ------------------------------------------------------------------------------------------------ request bodies


def _whole_tokens(value: Any) -> int:
    """Token amounts are integers; a JSON number that is whole (``150`` or ``150.0``) is accepted as one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a whole number of tokens, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"must be a whole number of tokens, got {value!r}")
        value = int(value)
    if not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"must be between 0 and {MAX_TOKENS}, got {value}")
    return value


def _finite_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite non-negative number, got {value!r}")
    return float(value)


def _key_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a key name (a string), got {type(value).__name__}")
    try:
        return check_key_name(value)
    except KeystoreError as exc:
        raise ValueError(str(exc)) from None


TokenAmount = Annotated[int, BeforeValidator(_whole_tokens)]
WaitQuery = Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                          description="seconds to wait for the tx to commit (default 20, max 120)")]
NameParam = Annotated[str, PathParam(min_length=1, max_length=200,
                                     description="a local key name, a peer id (12D3KooW…) or 64 hex characters")]
JobIdParam = Annotated[str, PathParam(min_length=1, max_length=128, description="the job id (64 hex characters)")]
Capacity = Annotated[float, BeforeValidator(_finite_number)]
KeyName = Annotated[str, BeforeValidator(_key_name)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerRegistration(_Body):
    """The seed's worker registration: a local key name, the declared GPU, and the stake to bond."""

    worker_id: KeyName
    gpu_type: str = Field(default="", max_length=128)
    compute_capacity: Capacity = 0.0
    stake_amount: TokenAmount


class ClientRegistration(_Body):
    """The seed's client registration: a local key name and the balance it should start with."""

    client_address: KeyName
    initial_balance: TokenAmount = 0


class SyntheticData(_Body):
    """A seeded synthetic dataset (``regression``, ``blobs`` or ``classification``), at most
    4,000,000 cells (``n_samples * n_features``) so a request cannot make the node allocate without bound."""

    kind: str = Field(default="regression", max_length=32)
    n_samples: int = Field(default=256, ge=1, le=1_000_000)
    n_features: int = Field(default=4, ge=1, le=1024)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    n_classes: int = Field(default=3, ge=2, le=1000)
    noise: float = Field(default=0.1, ge=0.0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounded(self) -> SyntheticData:
        if self.n_samples * self.n_features > MAX_SYNTHETIC_CELLS:
            raise ValueError(f"n_samples * n_features = {self.n_samples * self.n_features} exceeds "
                             f"{MAX_SYNTHETIC_CELLS}")
        return self


class DatasetBody(_Body):
    """Exactly one of: a seeded ``synthetic`` generator, ``csv`` text (with an optional ``target_column``),
    inline arrays ``X`` (rows of numbers) and optional ``y``, or the ``digest`` of a dataset already on the
    network."""

    synthetic: SyntheticData | None = None
    csv: str | None = None
    target_column: int | str | None = None
    X: list[list[float]] | None = None
    y: list[float] | None = None
    digest: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetBody:
        given = [name for name in ("synthetic", "csv", "X", "digest") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of synthetic, csv, X or digest (got {given or 'none'})")
        if self.y is not None and self.X is None:
            raise ValueError("y is only allowed with X")
        if self.target_column is not None and self.csv is None:
            raise ValueError("target_column is only allowed with csv")
        return self


class JobSubmission(_Body):
    """The seed's job submission, plus optional model parameters, dataset, verification fee, device, and how the
    worker is found: ``offers`` (the default: assigned in the submit block to a worker with a standing offer,
    or a bid window when none fits) or ``bids`` (always a bid window)."""

    client_address: KeyName
    model_type: str = Field(max_length=64)
    reward: TokenAmount
    params: dict[str, Any] | None = None
    dataset: DatasetBody | None = None
    verification_fee: TokenAmount | None = None
    device: str = Field(default="any", max_length=16)
    assign: Literal["offers", "bids"] = "offers"


class RawTx(_Body):
    """A transaction signed by an external wallet: its canonical signed encoding as hex."""

    tx: str = Field(max_length=4 * 8192)


MAX_BATCH_TXS = 4096


class RawTxBatch(_Body):
    """Several signed transactions (hex), admitted one by one in the given order (``POST /txs``)."""

    txs: list[Annotated[str, Field(max_length=4 * 8192)]] = Field(max_length=MAX_BATCH_TXS)


# ------------------------------------------------------------------------------------------------- conversions


def normalise_model(name: str) -> str:
    """The compute model name for the seed's ``model_type`` (``linear_regression``, ``kmeans``, ``pca``, …)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return MODEL_ALIASES.get(key, key)


def dataset_source(body: DatasetBody | None) -> Any:
    """The ``Node.submit_job`` dataset source for a request's ``dataset`` (None: the node's default synthetic
    data for the model, as the seed did)."""
    from bootstrap.node.node import CsvSource, DigestSource, InlineSource, SyntheticSource

    if body is None:
        return None
    if body.synthetic is not None:
        return SyntheticSource(**body.synthetic.model_dump())
    if body.csv is not None:
        return CsvSource(body.csv.encode(), body.target_column)
    if body.digest is not None:
        return DigestSource(_parse_hex32(body.digest, "dataset.digest"))
    return InlineSource(body.X or [], body.y)


def jsonable(value: Any) -> Any:
    """Bytes become hex, tuples lists, dict keys strings: anything the node returns becomes valid JSON."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {(k.hex() if isinstance(k, bytes) else str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):  # numpy arrays and scalars in result displays
        return jsonable(value.tolist())
    return value


def _parse_hex32(text: str, field: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"{field}: not valid hex", {"field": field, "value": text}) from None
    if len(raw) != 32:
        raise ApiError(400, f"{field}: expected 32 bytes (64 hex characters), got {len(raw)}",
                       {"field": field, "value": text})
    return raw


def error_for(exc: BaseException) -> ApiError:
    """Map a typed error from the node or the libraries to the API's status and shape."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InsufficientFunds):
        return ApiError(400, str(exc), {"kind": "insufficient_funds", "needed": exc.needed,
                                        "available": exc.available, "shortfall": exc.needed - exc.available})
    if isinstance(exc, UnknownJob | UnknownWorker | UnknownAccount):
        return ApiError(404, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, AlreadyRegistered | DuplicateAction | AlreadyInMempool | WrongJobState | DeadlinePassed):
        return ApiError(409, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, DecodeError | InvalidField | EncodeError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__, "field": getattr(exc, "field", None)
                                        or getattr(exc, "path", None)})
    if isinstance(exc, MempoolFull):
        return ApiError(429, str(exc), {"kind": "mempool_full"})
    if isinstance(exc, TxTooLarge):
        return ApiError(413, str(exc), {"kind": "tx_too_large", "size": exc.size, "limit": exc.limit})
    if isinstance(exc, InvalidTx | MempoolError | LedgerError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, SpecError):
        return ApiError(400, str(exc), {"kind": "spec", "field": exc.field})
    if isinstance(exc, DatasetError):
        return ApiError(400, f"dataset: {exc.reason}", {"kind": "dataset", "field": "dataset"})
    if isinstance(exc, BackendUnavailable):
        return ApiError(400, str(exc), {"kind": "backend", "field": "device"})
    if isinstance(exc, ComputeError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, WrongPassphrase):
        return ApiError(403, str(exc), {"kind": "wrong_passphrase"})
    if isinstance(exc, KeystoreError):
        return ApiError(400, str(exc), {"kind": "keystore"})
    if isinstance(exc, BlobNotFound):
        return ApiError(404, str(exc), {"kind": "blob_not_found"})
    if isinstance(exc, BlobTooLarge):
        return ApiError(413, str(exc), {"kind": "blob_too_large"})
    if isinstance(exc, NodeNotRunning):
        return ApiError(409, str(exc), {"kind": "node_not_running"})
    if isinstance(exc, NodeError | ValueError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    return ApiError(500, "internal error", {"kind": type(exc).__name__})


def _validation_error(exc: RequestValidationError) -> ApiError:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        # pydantic prefixes messages from our validators with "Value error, "; drop the noise.
        msg = msg.removeprefix("Value error, ")
        problems.append({"field": field, "message": msg})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
    return ApiError(400, summary, problems)


# ------------------------------------------------------------------------------------------------- hardening

TOKEN_FILE = "api_token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal, bracketed IPv6, or ``localhost``) names this machine's loopback."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def token_required(bind_host: str) -> bool:
    """Write endpoints need the bearer token when the API listens anywhere but loopback (``0.0.0.0`` included):
    the listener, not the caller's address, decides, so a local reverse proxy cannot open the node to the world."""
    return not is_loopback(bind_host)


def ensure_api_token(home: str | Path) -> tuple[str, bool]:
    """The node's API token from ``<home>/api_token`` (mode 0600), created on first use; ``(token, created)``."""
    path = Path(home) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token, False
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token, True


@dataclass
class ApiSettings:
    """How one API listener defends itself (see :func:`settings_for`)."""

    token: str | None = None
    """Bearer token for write endpoints; ``None`` leaves them open (a loopback listener)."""
    loopback_hosts_only: bool = True
    """Refuse requests whose ``Host`` is not a loopback name: a page on another site that rebinds its DNS name to
    127.0.0.1 then cannot reach a loopback node."""
    allowed_origins: tuple[str, ...] = ()
    """Cross-origin callers allowed besides the node's own origin (CORS, and writes from a browser)."""
    write_rate_per_s: float = 10.0
    write_burst: int = 60
    rate_limit_loopback: bool = False
    """Local callers are trusted like the token trusts them; remote ones share one bucket per address."""
    max_body_bytes: int = MAX_BODY_BYTES
    max_rate_clients: int = 10_000


def settings_for(node: Any, bind_host: str) -> ApiSettings:
    """The defaults for a listener on ``bind_host``: open on loopback, token and no Host check elsewhere."""
    if token_required(bind_host):
        token, _ = ensure_api_token(node.home)
        return ApiSettings(token=token, loopback_hosts_only=False)
    return ApiSettings()


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` answers how long to wait (0 when admitted)."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        self.level = min(float(self.burst), self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    """One :class:`TokenBucket` per client address, the least recently seen forgotten beyond ``max_clients``."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.limited = 0

    def check(self, client: str) -> float:
        """Seconds ``client`` must wait before its next write (0.0: go ahead, and the write is counted)."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        wait = bucket.take(now)
        if wait > 0:
            self.limited += 1
        return wait


def _error_bytes(message: str, detail: Any = None) -> bytes:
    return json.dumps({"error": message, "detail": jsonable(detail)}).encode()


class Guard:
    """The ASGI layer in front of every route: Host and Origin checks, CORS for allowed origins, the bearer token
    and per-client rate limit on writes, the request size limit, and a last-resort JSON 500.

    It is plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so streamed responses such as ``/events`` pass
    through untouched and a client's disconnect reaches the handler."""

    def __init__(self, app: Any, settings: ApiSettings, counters: dict[str, int] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.limiter = RateLimiter(settings.write_rate_per_s, settings.write_burst, settings.max_rate_clients)
        self.counters = counters if counters is not None else {}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("", 0))[0] or ""
        host = headers.get("host", "")
        extra: list[tuple[bytes, bytes]] = []

        async def reject(status: int, message: str, detail: Any = None,
                         more: list[tuple[bytes, bytes]] | None = None) -> None:
            self._count(f"rejected_{status}")
            body = _error_bytes(message, detail)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *extra, *(more or [])]})
            await send({"type": "http.response.body", "body": body})

        if s.loopback_hosts_only and host and not is_loopback(host.rsplit(":", 1)[0] if "]" not in host
                                                              else host.split("]")[0] + "]"):
            await reject(421, f"Host {host!r:.80} is not this node's loopback address",
                         {"kind": "misdirected", "field": "Host"})
            return
        origin = headers.get("origin")
        origin_ok = origin is None or origin in s.allowed_origins or origin in (f"http://{host}", f"https://{host}")
        if origin is not None and origin_ok:
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if method == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            if not origin_ok:
                await reject(403, f"origin {origin!r:.80} may not call this node", {"kind": "cors", "field": "Origin"})
                return
            await send({"type": "http.response.start", "status": 204, "headers": [
                *extra, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", b"authorization, content-type"),
                (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if method in WRITE_METHODS:
            if not origin_ok:
                # A cross-site form POST is sent by browsers without a preflight; refuse it outright.
                await reject(403, f"origin {origin!r:.80} may not write to this node",
                             {"kind": "cors", "field": "Origin"})
                return
            if s.rate_limit_loopback or not is_loopback(client):
                wait = self.limiter.check(client)
                if wait > 0:
                    retry = max(1, math.ceil(wait))
                    await reject(429, f"too many write requests from {client}; retry in {retry}s",
                                 {"kind": "rate_limited", "retry_after_s": retry},
                                 [(b"retry-after", str(retry).encode())])
                    return
            if s.token is not None:
                auth = headers.get("authorization", "")
                given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
                if not hmac.compare_digest(given.encode(), s.token.encode()):
                    await reject(401, "write endpoints on this node need 'Authorization: Bearer <token>' "
                                      "(the token is in the node's home, file api_token)",
                                 {"kind": "unauthorized", "field": "Authorization"},
                                 [(b"www-authenticate", b'Bearer realm="dacn"')])
                    return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > s.max_body_bytes):
            await reject(413, f"request body of {length:.20} bytes exceeds {s.max_body_bytes}",
                         {"kind": "too_large", "limit": s.max_body_bytes})
            return
        if method in WRITE_METHODS:
            # Read the whole body here (bounded), so a chunked upload without Content-Length is limited too.
            chunks, size = [], 0
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > s.max_body_bytes:
                    await reject(413, f"request body exceeds {s.max_body_bytes} bytes",
                                 {"kind": "too_large", "limit": s.max_body_bytes})
                    return
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive_fn = replay
        else:
            receive_fn = receive
        started = False

        async def send_wrapped(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive_fn, send_wrapped)
        except Exception as exc:  # typed errors map to their 4xx; anything else is a bug: log it, answer JSON 500
            if started:
                raise
            err = error_for(exc)
            if err.status >= 500:
                log.exception("unhandled error in %s %s", method, scope.get("path"), exc_info=exc)
            await reject(err.status, err.message, err.detail)


# ------------------------------------------------------------------------------------------------- the app


def create_app(node: Any, settings: ApiSettings | None = None) -> FastAPI:
    """The REST API of one node (``node`` is a running :class:`bootstrap.node.Node`); ``settings`` (default: an
    open loopback listener) says how it guards itself."""
    settings = settings if settings is not None else ApiSettings()
    app = FastAPI(title="dacn node", version=API_VERSION, docs_url="/docs", redoc_url=None,
                  description=API_DESCRIPTION)
    app.state.node = node
    app.state.device = None
    app.state.settings = settings
    app.state.counters = {}
    app.add_middleware(Guard, settings=settings, counters=app.state.counters)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "detail": jsonable(exc.detail)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(exc)
        return JSONResponse({"error": err.message, "detail": err.detail}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "detail": None}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        err = error_for(exc)
        if err.status >= 500:
            log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": err.message, "detail": jsonable(err.detail)}, status_code=err.status)

    async def call(fn: Callable[..., Awaitable[Any]] | Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a node call, turning the typed errors it raises into API errors."""
        try:
            out = fn(*args, **kw)
            if hasattr(out, "__await__"):
                out = await out
            return out
        except ApiError:
            raise
        except (LedgerError, ComputeError, KeystoreError, NodeError, ValueError) as exc:
            raise error_for(exc) from exc

    def wait_s(wait: float | None) -> float:
        """The seconds to wait for a tx to commit (the ``wait`` query: default 20, at most 120)."""
        if wait is None:
            return DEFAULT_WAIT_S
        if not math.isfinite(wait) or wait < 0:
            raise ApiError(400, "wait: must be a non-negative number of seconds", {"field": "wait"})
        return min(wait, MAX_WAIT_S)

    async def tx_outcome(tx_id: str, timeout: float) -> dict[str, Any]:
        if timeout <= 0:
            return {"status": "pending", "tx_id": tx_id}
        res = jsonable(await call(node.wait_for_tx, tx_id, timeout))
        res.setdefault("tx_id", tx_id)
        return res

    def account(name: str) -> bytes:
        try:
            return node.account_of(name)
        except (UnknownAccount, KeystoreError, ValueError) as exc:
            raise ApiError(404, f"unknown account {name!r}", {"kind": "unknown_account", "reason": str(exc)}) \
                from None

    def faucet_key() -> str | None:
        """The keystore name of the chain's faucet when this node holds its key (devnets), else None."""
        faucet = node.state.params.faucet
        if faucet is None:
            return None
        for name in ("faucet", *node.keystore.names()):
            if node.keystore.exists(name) and _safe_account(node, name) == faucet:
                return name
        return None

    async def fund(to_name: str, to: bytes, target: int, timeout: float, what: str) -> dict[str, Any] | None:
        """Top ``to`` up to ``target`` from the faucet; without a faucet, fail naming the shortfall."""
        have = node.state.balance(to)
        short = target - have
        if short <= 0:
            return None
        src = faucet_key()
        if src is None:
            raise ApiError(400, f"{to_name} holds {have} tokens, needs {target} for {what} (short by {short}); "
                                "this chain has no faucet this node can use", {
                                    "kind": "insufficient_funds", "needed": target, "available": have,
                                    "shortfall": short})
        what_tx = f"faucet transfer of {short} to {to_name}"
        for attempt in range(FAUCET_ATTEMPTS):
            tx_id = await call(node.sign_and_submit, src, Transfer(to=to, amount=short))
            res = await tx_outcome(tx_id, max(timeout, 1.0))
            # Every devnet node holds the faucet key: two nodes funding at once can sign the same nonce, and
            # the loser's tx is dropped when the winner commits. Sign again at the next nonce.
            if res.get("status") == "rejected" and attempt + 1 < FAUCET_ATTEMPTS:
                log.info("%s dropped (%s); retrying", what_tx, res.get("reason"))
                continue
            if res.get("status") == "rejected":
                raise ApiError(400, f"{what_tx} was rejected: {res.get('reason')}", res)
            if res.get("status") != "committed":
                raise ApiError(409, f"{what_tx} not committed within {timeout:g}s; retry the request", res)
            return {"tx_id": tx_id, "amount": short, "height": res.get("height")}
        raise AssertionError("unreachable")

    def worker_view(acct: bytes) -> dict[str, Any]:
        w = node.state.workers.get(acct)
        if w is None:
            raise ApiError(404, f"{node.display_id(acct)} is not a registered worker", {"kind": "unknown_worker"})
        view = {"worker_id": node.display_id(acct), "account": acct.hex(), **w.to_dict(),
                "balance": node.state.balance(acct)}
        name = _local_name(node, acct)
        if name is not None:
            view["name"] = name
            declared = _read_declared(node).get(name)
            if declared is not None:
                view["declared"] = declared
        view["is_active"] = w.stake >= node.state.params.min_stake
        return view

    def job_id_of(text: str) -> bytes:
        return _parse_hex32(text, "job_id")

    def job_view(job_id: bytes) -> dict[str, Any]:
        view = node.job_view(job_id)
        if view is None:
            raise ApiError(404, f"unknown job {job_id.hex()}", {"kind": "unknown_job"})
        job = node.state.jobs.get(job_id)
        if job is not None:
            view["timeline"] = timeline(job)
            view["waiting_for"] = why_waiting(node.state, job) or view.get("waiting_for")
        return jsonable(view)

    # ------------------------------------------------------------------------------------------- general

    @app.get("/", responses={200: {"description": "the API's index (JSON), or a page linking the dashboard "
                                       "for a browser", "content": {"application/json": {}, "text/html": {}}}})
    async def index(request: Request) -> Any:
        routes = sorted(
            {(r.path, m) for r in app.routes for m in getattr(r, "methods", ()) or () if m in ("GET", "POST")}
        )
        doc = {
            "name": "dacn node",
            "api_version": API_VERSION,
            "peer_id": str(node.peer_id),
            "chain_id": node.state.chain_id,
            "endpoints": [f"{m} {p}" for p, m in routes],
            "docs": "/docs",
            "dashboard": "/dashboard",
            "metrics": "/metrics",
        }
        accept = request.headers.get("accept", "")
        if "text/html" in accept and "application/json" not in accept:
            return HTMLResponse(_index_page(doc))
        return doc

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}})
    async def metrics() -> PlainTextResponse:
        api_state = {"counters": app.state.counters, "streams_open": app.state.streams["open"]}
        return PlainTextResponse(render_metrics(node, app.state.device_sampler, api_state),
                                 media_type=METRICS_CONTENT_TYPE)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        head = node.head()
        return {
            "status": "healthy",
            "peer_id": str(node.peer_id),
            "height": head["height"],
            "chain_id": head.get("chain_id", node.state.chain_id),
            "peers": len(node.peers()),
            "validator": node.identity.public_key in node.state.validators,
            "coordination": _agent_running(node),
        }

    # ------------------------------------------------------------------------------------------- workers

    @app.post("/worker/register")
    async def register_worker(body: WorkerRegistration, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        if node.keystore.exists(body.worker_id) and account(body.worker_id) in node.state.workers:
            acct = account(body.worker_id)
            raise ApiError(409, f"{body.worker_id} is already a registered worker",
                           {"kind": "already_registered", "worker": worker_view(acct)})
        params = node.state.params
        # Checked before the key is created, so a refused registration leaves nothing behind.
        if body.stake_amount < params.min_stake:
            raise ApiError(400, f"stake_amount: {body.stake_amount} is below the chain's minimum stake "
                                f"{params.min_stake}", {"field": "stake_amount", "min_stake": params.min_stake})
        await call(node.keystore.get_or_create, body.worker_id)
        acct = account(body.worker_id)
        measured = await measured_device()
        funding = await fund(body.worker_id, acct, body.stake_amount + WORKER_FEE_ALLOWANCE * params.min_fee,
                             timeout, "its stake and fees")
        payload = RegisterWorker(
            stake=body.stake_amount,
            device_kind=measured["device_kind"],
            device_name=(body.gpu_type or measured["device_name"]).encode()[:128].decode(errors="ignore"),
            memory_mb=measured["memory_mb"],
            capacity=measured["capacity"],
        )
        tx_id = await call(node.sign_and_submit, body.worker_id, payload)
        declared = {"gpu_type": body.gpu_type, "compute_capacity": body.compute_capacity}
        _write_declared(node, body.worker_id, declared)
        outcome = await tx_outcome(tx_id, timeout)
        if outcome.get("status") == "rejected":
            raise ApiError(400, f"register_worker rejected: {outcome.get('reason')}", outcome)
        out = {
            "message": "worker registered" if outcome["status"] == "committed" else "registration submitted",
            "worker_id": body.worker_id,
            "account": node.display_id(acct),
            "declared": declared,
            "measured": measured,
            "funding": funding,
            **outcome,
        }
        return JSONResponse(jsonable(out), status_code=200 if outcome["status"] == "committed" else 202)

    async def measured_device() -> dict[str, Any]:
        """What this machine offers, measured once: a GPU's full detection, or the CPU's matmul rate (the
        CPU path stays clear of importing PyTorch, which would cost every node process seconds and memory)."""
        if app.state.device is None:
            app.state.device = (await trio.to_thread.run_sync(_measure_device)).to_dict()
            app.state.device["capacity_unit"] = "GFLOP/s (float32 matmul)"
        return dict(app.state.device)

    @app.get("/worker/{worker_id}/status")
    async def worker_status(worker_id: NameParam) -> dict[str, Any]:
        return worker_view(account(worker_id))

    @app.get("/workers")
    async def workers() -> dict[str, Any]:
        views = [worker_view(a) for a in sorted(node.state.workers)]
        return {"count": len(views), "workers": views}

    # ------------------------------------------------------------------------------------------- clients

    @app.post("/client/register")
    async def register_client(body: ClientRegistration, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        await call(node.keystore.get_or_create, body.client_address)
        acct = account(body.client_address)
        funding = await fund(body.client_address, acct, body.initial_balance, timeout, "its initial balance")
        out = {
            "message": "client registered",
            "client_address": body.client_address,
            "account": node.display_id(acct),
            "balance": node.state.balance(acct),
            "funding": funding,
        }
        return JSONResponse(jsonable(out))

    @app.get("/client/{address}/balance")
    async def client_balance(address: NameParam) -> dict[str, Any]:
        acct = account(address)
        st = node.state
        escrow = sum(j.escrow or 0 for j in st.jobs.values() if j.client == acct and not j.is_terminal)
        w = st.workers.get(acct)
        return {
            "client_address": address,
            "account": node.display_id(acct),
            "balance": st.balance(acct),
            "nonce": st.nonce(acct),
            "escrowed": escrow,
            "staked": w.stake if w is not None else 0,
        }

    @app.get("/clients")
    async def clients() -> dict[str, Any]:
        st = node.state
        submitted: dict[bytes, int] = {}
        for j in st.jobs.values():
            submitted[j.client] = submitted.get(j.client, 0) + 1
        local = {}
        for name in node.keystore.names():
            a = _safe_account(node, name)
            if a is not None:
                local[a] = name
        accounts = set(submitted) | {a for a in local if a not in st.workers}
        views = []
        for a in sorted(accounts):
            views.append({
                "account": node.display_id(a),
                "name": local.get(a),
                "balance": st.balance(a),
                "jobs_submitted": submitted.get(a, 0),
            })
        return {"count": len(views), "clients": views}

    # ------------------------------------------------------------------------------------------- jobs

    @app.post("/job/submit")
    async def submit_job(body: JobSubmission, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        model = normalise_model(body.model_type)
        params = body.params if body.params is not None else dict(DEFAULT_MODEL_PARAMS.get(model, {}))
        source = dataset_source(body.dataset)
        kwargs: dict[str, Any] = {"reward": body.reward, "device": body.device, "assign": body.assign}
        if body.verification_fee is not None:
            kwargs["verification_fee"] = body.verification_fee
        if not node.keystore.exists(body.client_address):
            raise ApiError(404, f"client_address: no local key {body.client_address!r}; register the client first",
                           {"field": "client_address"})
        res = jsonable(await call(node.submit_job, body.client_address, model, params, source, **kwargs))
        outcome = await tx_outcome(res["tx_id"], timeout)
        if outcome.get("status") == "rejected":
            raise ApiError(400, f"submit_job rejected: {outcome.get('reason')}", outcome)
        out = {"message": "job submitted", "model_type": model, **res, **outcome}
        out["tx_status"] = out.pop("status")
        view = node.job_view(bytes.fromhex(res["job_id"])) if outcome.get("status") == "committed" else None
        out["status"] = (view or {}).get("status", "pending")
        return JSONResponse(jsonable(out), status_code=200 if outcome["status"] == "committed" else 202)

    @app.get("/job/{job_id}/status")
    async def job_status(job_id: JobIdParam) -> dict[str, Any]:
        return job_view(job_id_of(job_id))

    @app.get("/job/{job_id}/result")
    async def job_result(job_id: JobIdParam) -> dict[str, Any]:
        jid = job_id_of(job_id)
        job = node.state.jobs.get(jid)
        if job is None:
            raise ApiError(404, f"unknown job {job_id}", {"kind": "unknown_job"})
        if not job.result_artifact:
            raise ApiError(404, f"job {job_id} has no accepted result yet (status {job.status})",
                           {"kind": "no_result", "status": job.status})
        out: dict[str, Any] = {"job_id": job_id, "status": job.status, "model": job.model,
                               "summary": list(job.result_summary or []),
                               "artifact_digest": job.result_artifact.hex()}
        spec = node.spec_of(job.params_digest) if hasattr(node, "spec_of") else None
        if spec is not None:
            out["precision"] = spec.precision
            out["values"] = dequantise(out["summary"], spec.precision)
        data = await call(node.fetch_blob, job.result_artifact, max_size=node.config.max_blob_bytes)
        try:
            artifact = decode_artifact(data)
        except ComputeError as exc:
            # The artifact matched its digest but is not one: the worker's data is bad, not this request.
            raise ApiError(409, f"the result artifact does not decode: {exc}", {"kind": "bad_artifact"}) from None
        out["artifact"] = {name: _artifact_value(v) for name, v in sorted(artifact.fields.items())}
        local = getattr(node.agent, "result_for", None) if getattr(node, "agent", None) is not None else None
        mine = local(jid) if local is not None else None
        if mine is not None:
            out["display"] = jsonable(mine.display)
            out["backend"] = mine.backend
            out["elapsed_s"] = mine.elapsed_s
        return out

    @app.get("/jobs")
    async def jobs(status: Annotated[str | None, Query(max_length=32)] = None) -> dict[str, Any]:
        views = [job_row(j) for j in node.state.jobs.values() if status is None or j.status == status]
        views.sort(key=lambda v: (v["submitted_at"] or 0, v["job_id"]))
        return {"count": len(views), "jobs": jsonable(views)}

    @app.get("/jobs/pending")
    async def jobs_pending() -> dict[str, Any]:
        views = [job_row(j) for j in node.state.jobs.values() if j.status not in TERMINAL_STATUSES]
        views.sort(key=lambda v: (v["submitted_at"] or 0, v["job_id"]))
        return {"count": len(views), "jobs": jsonable(views)}

    def job_row(job: Any) -> dict[str, Any]:
        """A job as the ledger has it, plus its roles as peer ids, what it waits for, and its timeline."""
        d = job.to_dict()
        for role in ("client", "worker", "verifier", "referee"):
            acct = getattr(job, role)
            d[f"{role}_id"] = node.display_id(acct) if acct is not None else None
        d["waiting_for"] = why_waiting(node.state, job)
        d["timeline"] = timeline(job)
        return d

    # ------------------------------------------------------------------------------------------- network

    @app.get("/network/stats")
    async def network_stats() -> dict[str, Any]:
        st = node.state
        by_status: dict[str, int] = {}
        for j in st.jobs.values():
            by_status[j.status] = by_status.get(j.status, 0) + 1
        done = by_status.get("verified", 0)
        finished = done + by_status.get("failed", 0) + by_status.get("refunded", 0)
        active_workers = sum(1 for w in st.workers.values() if w.stake >= st.params.min_stake)
        return jsonable({
            "height": node.height,
            "total_workers": len(st.workers),
            "active_workers": active_workers,
            "total_jobs": len(st.jobs),
            "completed_jobs": done,
            "jobs_by_status": by_status,
            "success_rate": (done / finished) if finished else None,
            "escrow_balance": sum(j.escrow or 0 for j in st.jobs.values()),
            "total_staked": sum(w.stake for w in st.workers.values()),
            "total_supply": total_supply(st),
            "coordination": _agent_running(node),
            "node": node.stats(),
        })

    def agent() -> Any:
        if getattr(node, "agent", None) is None:
            raise ApiError(409, "this node runs no worker agent (run_agent is off)", {"kind": "no_agent"})
        return node.agent

    @app.post("/network/coordination/start")
    async def coordination_start() -> dict[str, Any]:
        await call(agent().start)
        return {"message": "auto-coordination started", "coordination": _agent_running(node)}

    @app.post("/network/coordination/stop")
    async def coordination_stop() -> dict[str, Any]:
        await call(agent().stop)
        # Once stopped, no job submitted afterwards may be assigned here from a standing offer: wait for the
        # withdrawals to commit (bounded; they lapse by themselves within the offer's span anyway).
        withdrawn = await call(agent().withdraw_offers)
        return {"message": "auto-coordination stopped: no new bids, offers withdrawn (assigned duties are still "
                           "honoured)", "coordination": _agent_running(node), "offers_withdrawn": len(withdrawn)}

    @app.post("/network/coordination/trigger")
    async def coordination_trigger() -> dict[str, Any]:
        summary = await call(agent().trigger)
        return {"message": "coordination cycle run", "summary": jsonable(summary)}

    @app.get("/network/coordination")
    async def coordination_status() -> dict[str, Any]:
        return jsonable(agent().status())

    # ------------------------------------------------------------------------------------------- chain

    @app.get("/chain/head")
    async def chain_head() -> dict[str, Any]:
        return jsonable(node.head())

    @app.get("/blocks/{height}")
    async def block(
        height: Annotated[int, PathParam(ge=0, le=2**62)],
        txs: Annotated[Literal["full", "ids"], Query(
            description="`full` (the default): `txs` lists each tx's id, kind, sender, nonce and fee. `ids`: "
                        "`tx_ids` lists only the tx ids (hex, in block order) instead, computed from the stored "
                        "bytes without decoding a tx; cheap enough for a watcher that polls every block.")] = "full",
    ) -> dict[str, Any]:
        """A committed block: header fields, its txs (see ``txs``), evidence count and the commit's signers."""
        if height < 0:
            raise ApiError(400, "height: must be non-negative", {"field": "height"})
        got = node.get_block(height, ids_only=txs == "ids")
        if got is None:
            raise ApiError(404, f"no block at height {height} (head is {node.height})",
                           {"kind": "unknown_block", "head": node.height})
        return jsonable(got)

    @app.get("/peers")
    async def peers() -> dict[str, Any]:
        ps = jsonable(node.peers())
        return {"count": len(ps), "peers": ps}

    @app.post("/tx")
    async def post_tx(body: RawTx, wait: WaitQuery = 0.0) -> JSONResponse:
        try:
            raw = bytes.fromhex(body.tx)
        except ValueError:
            raise ApiError(400, "tx: not valid hex", {"field": "tx"}) from None
        stx = await call(decode_signed_tx, raw)
        tx_id = await call(node.submit_tx, stx)
        outcome = await tx_outcome(tx_id, wait_s(wait))
        if outcome.get("status") == "rejected":
            raise ApiError(400, f"tx rejected: {outcome.get('reason')}", outcome)
        return JSONResponse(jsonable(outcome), status_code=200 if outcome["status"] == "committed" else 202)

    @app.post("/txs")
    async def post_txs(body: RawTxBatch) -> dict[str, Any]:
        """Admit a batch of signed txs (load generators): one result per item, in order, never waiting for
        commits. An item's error does not stop the rest: ``{"status": "pending", "tx_id"}`` or
        ``{"status": "rejected", "error", "detail"}`` (the error ``POST /tx`` would have answered)."""
        def rejected(exc: ApiError) -> dict[str, Any]:
            return {"status": "rejected", "error": exc.message, "detail": jsonable(exc.detail)}

        results: list[dict[str, Any]] = [{} for _ in body.txs]
        decoded: list[tuple[int, SignedTx]] = []
        for i, text in enumerate(body.txs):
            try:
                try:
                    raw = bytes.fromhex(text)
                except ValueError:
                    raise ApiError(400, f"txs[{i}]: not valid hex", {"field": f"txs[{i}]"}) from None
                decoded.append((i, await call(decode_signed_tx, raw)))
            except ApiError as exc:
                results[i] = rejected(exc)
        # admitted in order and gossiped as one batch message (dacn/txs/1), not one message per tx
        outcomes = await call(node.submit_txs, [stx for _, stx in decoded])
        for (i, _), out in zip(decoded, outcomes, strict=True):
            results[i] = {"status": "pending", "tx_id": out} if isinstance(out, str) else rejected(error_for(out))
        accepted = sum(1 for r in results if r["status"] == "pending")
        return {"accepted": accepted, "rejected": len(results) - accepted, "results": results}

    install_dashboard(app, node, ApiError, jsonable)
    app.state.device_sampler = DeviceSampler()
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# ------------------------------------------------------------------------------------------------- helpers

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string", "description": "what was wrong, in words"},
                   "detail": {"description": "machine-readable particulars (field, kind, limits), or null"}},
}
_ERROR_TEXT = {
    400: "bad input: a field, a parameter or the body is invalid, or the ledger refused the transaction",
    401: "a write on a non-loopback listener without the right bearer token",
    403: "a write from a foreign origin, or a wrong keystore passphrase",
    404: "no such account, worker, job, block or result",
    409: "a conflict with the current state (duplicate, wrong job state, no agent, not committed in time)",
    413: "the request body or a transaction is too large",
    421: "a Host header that is not this node's loopback address",
    429: "too many requests (rate limit, full mempool, too many event streams); see Retry-After",
}
_READ_ERRORS = (400, 404, 409, 413, 421, 429)
_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 421, 429)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with this API's real error contract: every bad input is a 4xx with the one error shape
    (FastAPI's 422 validation answer is replaced by 400), and writes may also answer 202 (submitted, not yet
    committed)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"$ref": "#/components/schemas/Error"}
    for ops in schema.get("paths", {}).values():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for code in _WRITE_ERRORS if method == "post" else _READ_ERRORS:
                responses.setdefault(str(code), {"description": _ERROR_TEXT[code],
                                                 "content": {"application/json": {"schema": ref}}})
            if method == "post":
                responses.setdefault("202", {"description": "submitted; not committed within the wait",
                                             "content": {"application/json": {"schema": {"type": "object"}}}})
    app.openapi_schema = schema
    return schema


def _index_page(doc: dict[str, Any]) -> str:
    """A small HTML index for a person who opens the node's root URL in a browser."""
    import html

    items = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in doc["endpoints"])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>dacn node</title>"
            "<link rel='icon' href='data:,'></head><body>"
            f"<h1>dacn node</h1><p>peer <code>{html.escape(doc['peer_id'])}</code>, chain "
            f"<code>{html.escape(doc['chain_id'])}</code></p><p><a href='/dashboard'>Open the dashboard</a> · "
            f"<a href='/docs'>API docs</a> · <a href='/metrics'>metrics</a></p><ul>{items}</ul></body></html>")



def _artifact_value(value: Any) -> Any:
    """An artifact field as JSON; big arrays (per-sample labels, say) are described rather than inlined."""
    if hasattr(value, "shape") and getattr(value, "size", 0) > MAX_INLINE_ARRAY:
        return {"dtype": str(value.dtype), "shape": list(value.shape), "omitted": "too large to inline"}
    return jsonable(value)


def _measure_device() -> Any:
    from dataclasses import replace

    from bootstrap.agent.device import measure_device, probe_device
    from compute.device import measure_cpu_gflops

    quick = probe_device()
    if quick.device_kind == "gpu":
        return measure_device(0.2)
    return replace(quick, capacity=measure_cpu_gflops(0.1))


def _safe_account(node: Any, name: str) -> bytes | None:
    try:
        return node.account_of(name)
    except Exception:  # a key that cannot be opened (wrong passphrase, bad file) has no account to show
        return None


def _local_name(node: Any, acct: bytes) -> str | None:
    for name in node.keystore.names():
        if _safe_account(node, name) == acct:
            return name
    return None


def _agent_running(node: Any) -> bool | None:
    agent = getattr(node, "agent", None)
    if agent is None:
        return None
    try:
        return bool(agent.auto)
    except Exception:  # the agent's status is informational; never fail a read because of it
        return None


def _declared_path(node: Any) -> Path:
    return Path(node.home) / "declared_workers.json"


def _read_declared(node: Any) -> dict[str, Any]:
    try:
        return json.loads(_declared_path(node).read_text())
    except (OSError, ValueError):
        return {}


def _write_declared(node: Any, name: str, declared: dict[str, Any]) -> None:
    """Keep what the user declared (the seed's GPU type and capacity) beside what the node measured."""
    data = _read_declared(node)
    data[name] = declared
    path = _declared_path(node)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------- serving


async def serve_api(
    node: Any,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    settings: ApiSettings | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the node's API on ``host:port`` (port 0 picks a free one) until cancelled or ``shutdown_trigger``
    returns; ``task_status.started`` receives the bound URLs (``["http://127.0.0.1:5000"]``)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("dacn.api.server")
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 30.0
    app = create_app(node, settings if settings is not None else settings_for(node, host))
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]
