"""The API's own routes: its index (JSON, or a page for a browser), Prometheus metrics, and health."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from bootstrap.api.env import Env
from bootstrap.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bootstrap.api.metrics import render_metrics

API_VERSION = "1"


def add_routes(app: FastAPI, env: Env) -> None:
    """``GET /``, ``GET /metrics`` and ``GET /health``."""
    node = env.node

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
            return HTMLResponse(index_page(doc))
        return doc

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"}})
    async def metrics() -> PlainTextResponse:
        api_state = {"counters": app.state.counters, "streams_open": app.state.streams["open"],
                     "gate": getattr(app.state, "gate", None)}
        return PlainTextResponse(render_metrics(node, app.state.device_sampler, api_state),
                                 media_type=METRICS_CONTENT_TYPE)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return node.views.health()


def index_page(doc: dict[str, Any]) -> str:
    """A small HTML index for a person who opens the node's root URL in a browser."""
    import html

    items = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in doc["endpoints"])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>dacn node</title>"
            "<link rel='icon' href='data:,'></head><body>"
            f"<h1>dacn node</h1><p>peer <code>{html.escape(doc['peer_id'])}</code>, chain "
            f"<code>{html.escape(doc['chain_id'])}</code></p><p><a href='/dashboard'>Open the dashboard</a> · "
            f"<a href='/docs'>API docs</a> · <a href='/metrics'>metrics</a></p><ul>{items}</ul></body></html>")

