"""The node's REST API, one module per resource over a shared environment.

``app`` builds the FastAPI app and serves it on the node's loop; the routes are ``general`` (index, metrics,
health), ``workers``, ``clients``, ``jobs``, ``network`` (stats, coordination) and ``chain`` (head, blocks, peers,
txs), plus the dashboard's (``bootstrap.dashboard``). Beside them: ``env`` (what every handler shares),
``bodies`` (request bodies and conversions), ``errors`` (the one error shape and the status map), ``guard`` (Host,
Origin, token, rate limit, body size) and ``metrics`` (the Prometheus rendering).
"""

from bootstrap.api.app import create_app, serve_api
from bootstrap.api.bodies import jsonable
from bootstrap.api.errors import ApiError, error_for
from bootstrap.api.guard import (
    TOKEN_FILE,
    ApiSettings,
    Guard,
    RateLimiter,
    TokenBucket,
    ensure_api_token,
    is_loopback,
    settings_for,
    token_required,
)
from bootstrap.api.metrics import CONTENT_TYPE, DeviceSampler, Exposition, render_metrics

__all__ = [
    "CONTENT_TYPE", "TOKEN_FILE", "ApiError", "ApiSettings", "DeviceSampler", "Exposition", "Guard", "RateLimiter",
    "TokenBucket", "create_app", "ensure_api_token", "error_for", "is_loopback", "jsonable", "render_metrics",
    "serve_api", "settings_for", "token_required"
]
