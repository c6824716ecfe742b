"""The node's REST API: the seed's endpoints and bodies on a real chain, served on the node's own trio loop.

``create_app(node)`` builds a FastAPI app over the :class:`bootstrap.node.Node` facade; ``serve_api`` runs it with
hypercorn's trio worker inside the node's nursery. The routes live one resource to a module (``general``,
``workers``, ``clients``, ``jobs``, ``network``, ``chain``, and the dashboard's), each a few handlers over the
shared :class:`~bootstrap.api.env.Env`; the guard, the bodies and the error map sit beside them. Every handler
is ``async`` so it runs on the node's loop and reads committed state without locks. Names such as ``alice`` are keys
in the node's keystore (created on first use); the node signs and gossips the transactions and the response carries
the tx id and, once committed, the height.

Every error has one shape, ``{"error": "<what was wrong>", "detail": ...}`` with a 4xx status: request validation
(FastAPI's 422 becomes a 400 naming the field), ledger rejections (400, 404 for unknown jobs/workers, 409 for
duplicates and wrong job states), compute spec/dataset errors (400) and keystore errors (400, 403 for a wrong
passphrase). A rejected request changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bootstrap.api.bodies import jsonable
from bootstrap.api.chain import add_routes as chain_routes
from bootstrap.api.clients import add_routes as clients_routes
from bootstrap.api.env import Env
from bootstrap.api.errors import ApiError, error_for, validation_error
from bootstrap.api.general import API_VERSION
from bootstrap.api.general import add_routes as general_routes
from bootstrap.api.guard import ApiSettings, Guard, settings_for
from bootstrap.api.jobs import add_routes as jobs_routes
from bootstrap.api.metrics import DeviceSampler
from bootstrap.api.network import add_routes as network_routes
from bootstrap.api.proofs import add_routes as proof_routes
from bootstrap.api.server import ConnectionGate, descriptor_budget, serve_gated
from bootstrap.api.workers import add_routes as workers_routes
from bootstrap.dashboard import install_dashboard

log = logging.getLogger("dacn.api")

API_DESCRIPTION = (
    "The REST API of one dacn node. Reads are open; on a listener that is not loopback every write (POST) needs "
    "`Authorization: Bearer <token>` (the token is in the node's home, file `api_token`). Writes are rate "
    "limited per client address and bodies are limited in size. Every error is JSON "
    "`{\"error\": ..., \"detail\": ...}` with a 4xx status. The live dashboard is at `/dashboard`, "
    "its event stream at `/events`, Prometheus metrics at `/metrics`."
)

# The order routes are added in is the order FastAPI matches them and the OpenAPI document lists them.
RESOURCES = (general_routes, workers_routes, clients_routes, jobs_routes, network_routes, chain_routes,
             proof_routes)


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
    app.state.gate = None  # set by serve_api: a test client's app has no TCP listener
    app.add_middleware(Guard, settings=settings, counters=app.state.counters)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "detail": jsonable(exc.detail)}, status_code=exc.status,
                            headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc)
        return JSONResponse({"error": err.message, "detail": err.detail}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "detail": None}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        err = error_for(exc)
        if err.status >= 500:
            log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": err.message, "detail": jsonable(err.detail)}, status_code=err.status,
                            headers=err.headers or None)

    env = Env(app, node)
    for add_routes in RESOURCES:
        add_routes(app, env)
    install_dashboard(app, node, ApiError, jsonable)
    app.state.device_sampler = DeviceSampler()
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# ------------------------------------------------------------------------------------------------- openapi

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

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("dacn.api.server")
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 30.0
    # A connection that sends nothing for this long is closed (headers are capped at 16 KiB by h11), so idle or
    # half-open sockets do not hold the node's descriptors for ever.
    config.read_timeout = 30
    settings = settings if settings is not None else settings_for(node, host)
    app = create_app(node, settings)
    total = settings.max_connections if settings.max_connections is not None else min(4096, descriptor_budget())
    app.state.gate = ConnectionGate(per_ip=settings.max_connections_per_ip, total=total)
    await serve_gated(app, config, app.state.gate, shutdown_trigger=shutdown_trigger, task_status=task_status)
