"""The node's live dashboard: the page itself, its server-sent event stream, and the read endpoints it draws from.

``install_dashboard(app, node)`` adds to the API app (the stream is in ``stream``, the chart data in ``plots``; what
the page shows of blocks and jobs comes from the node's read models, ``bootstrap.views``):

* ``GET /dashboard`` — one static HTML page (``static/`` beside this module), vanilla JS and CSS, no build step, no CDN;
* ``GET /static/{name}`` — its script and stylesheet;
* ``GET /events`` — the node's event bus as ``text/event-stream`` (``block``, ``tx``, ``job``, ``peer``), with a
  heartbeat comment every few seconds; a client that falls behind is dropped by the bus and its stream ends (the
  browser reconnects and reloads its snapshot);
* ``GET /blocks`` — recent block summaries, newest first, for the block panel and the block-time chart;
* ``GET /job/{job_id}/plot`` — a finished job's result as chart-ready points (k-means clusters and PCA
  projections as scatter plots, a regression's fit, an MLP's loss curve), computed here from the job's dataset
  and accepted artifact so the page only draws.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

import numpy as np
import trio
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bootstrap.dashboard.plots import plot_data
from bootstrap.dashboard.stream import (
    EVENT_KINDS,
    MAX_STREAMS,
    MAX_STREAMS_PER_CLIENT,
    STREAM_BUFFER,
    _stream,
    is_loopback_address,
)
from compute.canonical import decode_artifact
from compute.dataset import decode_dataset
from compute.errors import ComputeError

STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
JOB_ID_PATH = Annotated[str, Path(min_length=1, max_length=128, description="the job id (64 hex characters)")]


def _static(name: str) -> bytes:
    return resources.files("bootstrap.dashboard").joinpath("static", name).read_bytes()


def install_dashboard(app: FastAPI, node: Any, api_error: type[Exception], jsonable: Any) -> None:
    """Add the dashboard's routes to ``app`` (see the module docstring). ``api_error`` is the API's error class
    (status, message, detail) so errors keep the one JSON shape."""
    streams: dict[str, Any] = {"open": 0, "served": 0, "by_client": {}}
    app.state.streams = streams

    @app.get("/dashboard", response_class=HTMLResponse, tags=["dashboard"],
             responses={200: {"content": {"text/html": {}}, "description": "the dashboard page"}})
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(_static("dashboard.html"), headers={"cache-control": "no-cache"})

    @app.get("/static/{name}", tags=["dashboard"], response_class=Response,
             responses={200: {"content": {"text/javascript": {}, "text/css": {}},
                              "description": "the dashboard's script or stylesheet"}})
    async def static(name: Annotated[str, Path(max_length=64)]) -> Response:
        kind = STATIC_FILES.get(name)
        if kind is None:
            raise api_error(404, f"no static file {name!r}", {"kind": "not_found", "field": "name"})
        return Response(_static(name), media_type=kind, headers={"cache-control": "no-cache"})

    @app.get("/events", tags=["dashboard"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "server-sent events: block, tx, job, peer (and hello, dropped)"}})
    async def events(request: Request,
                     types: Annotated[str | None, Query(max_length=64, description="comma-separated event types "
                                                        "to receive (default: all)")] = None) -> StreamingResponse:
        wanted = set(EVENT_KINDS)
        if types:
            wanted = {t.strip() for t in types.split(",") if t.strip()}
            unknown = wanted - set(EVENT_KINDS)
            if unknown:
                raise api_error(400, f"types: unknown event type(s) {sorted(unknown)}; known: {list(EVENT_KINDS)}",
                                {"field": "types"})
        if streams["open"] >= MAX_STREAMS:
            raise api_error(429, f"too many open event streams ({MAX_STREAMS}); close one and retry",
                            {"kind": "too_many_streams"})
        host = request.client.host if request.client is not None else ""
        client = None if is_loopback_address(host) else host
        per = streams["by_client"]
        if client is not None and per.get(client, 0) >= MAX_STREAMS_PER_CLIENT:
            raise api_error(429, f"too many open event streams from {client} ({MAX_STREAMS_PER_CLIENT}); "
                                 "close one and retry", {"kind": "too_many_streams", "per_client": True})
        channel = node.events.subscribe(STREAM_BUFFER)
        streams["open"] += 1
        streams["served"] += 1
        if client is not None:
            per[client] = per.get(client, 0) + 1
        return StreamingResponse(_stream(node, channel, wanted, streams, client), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.get("/blocks", tags=["chain"])
    async def recent_blocks(limit: Annotated[int, Query(ge=1, le=200)] = 50,
                            before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> dict[str, Any]:
        """Block summaries, newest first: height, hash, time, tx count, proposer, and the gap to the previous."""
        return node.views.recent_blocks(limit, before)

    @app.get("/job/{job_id}/plot", tags=["jobs"])
    async def job_plot(job_id: JOB_ID_PATH) -> dict[str, Any]:
        """A finished job's result as chart-ready points for the dashboard."""
        try:
            jid = bytes.fromhex(job_id)
        except ValueError:
            jid = b""
        if len(jid) != 32:
            raise api_error(400, "job_id: expected 64 hex characters", {"field": "job_id", "value": job_id[:80]})
        job = node.state.jobs.get(jid)
        if job is None:
            raise api_error(404, f"unknown job {job_id}", {"kind": "unknown_job"})
        if not job.result_artifact:
            raise api_error(404, f"job {job_id} has no accepted result yet (status {job.status})",
                            {"kind": "no_result", "status": job.status})
        try:
            artifact = await node.fetch_blob(job.result_artifact, max_size=node.config.max_blob_bytes)
            data = await node.fetch_blob(job.dataset_digest, max_size=node.config.max_blob_bytes)
        except Exception as exc:  # typed blob errors: not held here and no peer had it
            raise api_error(404, f"the job's data is not available on this node: {exc}",
                            {"kind": "blob_not_found"}) from None

        def build() -> dict[str, Any]:
            ds = decode_dataset(data, job.dataset_digest)
            fields = decode_artifact(artifact).fields
            return plot_data(job.model, np.asarray(ds.X), None if ds.y is None else np.asarray(ds.y), fields)

        try:
            out = await trio.to_thread.run_sync(build)
        except (ComputeError, KeyError, ValueError, IndexError) as exc:
            raise api_error(409, f"this job's result cannot be drawn: {exc}", {"kind": "bad_artifact"}) from None
        return {"job_id": job_id, "status": job.status, **jsonable(out)}
