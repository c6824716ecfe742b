"""The node's live dashboard: the page itself, its server-sent event stream, and the read endpoints it draws from.

``install_dashboard(app, node)`` adds to the API app:

* ``GET /dashboard`` — one static HTML page (``bootstrap/static``), vanilla JS and CSS, no build step, no CDN;
* ``GET /static/{name}`` — its script and stylesheet;
* ``GET /events`` — the node's event bus as ``text/event-stream`` (``block``, ``tx``, ``job``, ``peer``), with a
  heartbeat comment every few seconds; a client that falls behind is dropped by the bus and its stream ends (the
  browser reconnects and reloads its snapshot);
* ``GET /blocks`` — recent block summaries, newest first, for the block panel and the block-time chart;
* ``GET /job/{job_id}/plot`` — a finished job's result as chart-ready points (k-means clusters and PCA
  projections as scatter plots, a regression's fit, an MLP's loss curve), computed here from the job's dataset
  and accepted artifact so the page only draws.

The bus has no peer events of its own, so each stream compares the node's peer set once a second and emits
``peer`` events for the differences.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

import numpy as np
import trio
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from compute.canonical import decode_artifact
from compute.dataset import decode_dataset
from compute.errors import ComputeError
from ledger.state import Job, State

log = logging.getLogger("dacn.dashboard")

HEARTBEAT_S = 5.0
PEER_CHECK_S = 1.0
MAX_STREAMS = 32
STREAM_BUFFER = 2048
MAX_PLOT_POINTS = 1500
STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
EVENT_KINDS = ("block", "tx", "job", "peer")
JOB_ID_PATH = Annotated[str, Path(min_length=1, max_length=128, description="the job id (64 hex characters)")]


def _static(name: str) -> bytes:
    return resources.files("bootstrap.dashboard").joinpath("static", name).read_bytes()


def sse_message(event: dict[str, Any]) -> bytes:
    """One server-sent event: ``event: <type>`` and the event as one JSON ``data`` line."""
    kind = str(event.get("type", "message"))
    return f"event: {kind}\ndata: {json.dumps(event, separators=(',', ':'), default=str)}\n\n".encode()


def why_waiting(state: State, job: Job) -> str | None:
    """What a job is waiting for, in words a person can act on ("no bids yet: no worker with a GPU")."""
    if job.status != "open":
        return None
    if job.bids:
        n = len(job.bids)
        return f"{n} bid{'s' if n != 1 else ''}; assignment at height {job.bid_deadline}"
    active = [w for w in state.workers.values() if w.stake >= state.params.min_stake]
    if not active:
        return "no bids yet: no worker with enough stake is registered"
    if job.device == "gpu" and not any(w.device_kind == "gpu" for w in active):
        return "no bids yet: no worker with a GPU"
    fits = [w for w in active if not job.min_memory_mb or not w.memory_mb or w.memory_mb >= job.min_memory_mb]
    if not fits:
        return f"no bids yet: no worker with {job.min_memory_mb} MB of memory"
    return f"no bids yet: waiting for workers until height {job.bid_deadline}"


def assigned_at_submission(job: Job) -> bool:
    """Whether the ledger assigned the job from standing offers inside its submit block (no bid phase)."""
    return bool(job.history) and job.history[0][0] == "assigned"


def timeline(job: Job) -> list[dict[str, Any]]:
    """The job's progress as the dashboard draws it: submitted → bids (or "offer" for a job assigned at
    submission) → assigned → committed → revealed → an outcome; each step ``done`` or not, with the height where
    the ledger recorded it when known."""
    at = {}
    for status, height in job.history:
        at.setdefault(status, height)
    final = job.status if job.status in ("verified", "failed", "refunded") else None
    if assigned_at_submission(job):
        found = {"step": "offer", "done": True, "height": job.submitted_at}
    else:
        found = {"step": "bids", "done": bool(job.bids) or job.worker is not None, "count": len(job.bids)}
    steps = [
        {"step": "submitted", "done": True, "height": job.submitted_at},
        found,
        {"step": "assigned", "done": job.worker is not None, "height": at.get("assigned")},
        {"step": "committed", "done": len(job.commits) >= 2 or "revealing" in at, "count": len(job.commits)},
        {"step": "revealed", "done": final == "verified" or "disputed" in at, "count": len(job.reveals),
         "height": at.get("revealing")},
    ]
    if "disputed" in at:
        steps.append({"step": "disputed", "done": True, "height": at["disputed"]})
    steps.append({"step": final or "verified", "done": final is not None, "height": at.get(final or "verified")})
    return steps


# ------------------------------------------------------------------------------------------------ plots


def _sample(n: int, limit: int = MAX_PLOT_POINTS) -> np.ndarray:
    """Evenly spaced row indexes, at most ``limit`` (deterministic, so two views of a job agree)."""
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def _project2(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D view of X for drawing only: the data itself when it has ≤ 2 columns, else its top two principal
    directions. Returns (mean, basis 2×d, projected points)."""
    d = X.shape[1]
    mean = X.mean(axis=0)
    if d == 1:
        basis = np.array([[1.0], [0.0]])
    elif d == 2:
        basis = np.eye(2)
    else:
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        basis = vt[:2]
    if d <= 2:
        mean = np.zeros(d)
    return mean, basis, (X - mean) @ basis.T


def _pts(*cols: np.ndarray) -> list[list[float]]:
    return np.round(np.column_stack(cols).astype(np.float64), 6).tolist()


def plot_data(model: str, X: np.ndarray, y: np.ndarray | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Chart-ready data for one finished job; ``charts`` is a list of ``scatter``/``line``/``bars`` dicts."""
    idx = _sample(X.shape[0])
    Xs = X[idx]
    charts: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    if model == "kmeans":
        centres = np.asarray(fields["centres"], dtype=np.float64)
        labels = np.asarray(fields["labels"]).reshape(-1)
        mean, basis, P = _project2(Xs)
        C = (centres - mean) @ basis.T
        charts.append({"kind": "scatter", "title": "k-means clusters", "x_label": "axis 1", "y_label": "axis 2",
                       "points": _pts(P[:, 0], P[:, 1], labels[idx] if labels.size == X.shape[0] else
                                      np.zeros(len(idx))), "centres": _pts(C[:, 0], C[:, 1])})
        metrics = {"k": int(centres.shape[0]), "inertia": float(fields["inertia"]), "n_iter": int(fields["n_iter"])}
    elif model == "pca":
        comps = np.asarray(fields["components"], dtype=np.float64)
        mean = np.asarray(fields["mean"], dtype=np.float64)
        P = (Xs - mean) @ comps[:2].T
        second = P[:, 1] if P.shape[1] > 1 else np.zeros(len(idx))
        groups = y[idx] if y is not None and np.unique(y).size <= 12 else np.zeros(len(idx))
        charts.append({"kind": "scatter", "title": "PCA projection", "x_label": "PC1",
                       "y_label": "PC2" if P.shape[1] > 1 else "", "points": _pts(P[:, 0], second, groups)})
        ratio = [float(r) for r in fields["explained_variance_ratio"]]
        charts.append({"kind": "bars", "title": "explained variance ratio",
                       "labels": [f"PC{i + 1}" for i in range(len(ratio))], "values": ratio})
        metrics = {"explained_variance_ratio": ratio}
    elif model == "linear_regression" and y is not None:
        coef = np.asarray(fields["coef"], dtype=np.float64).reshape(-1)
        b = float(fields["intercept"])
        pred = Xs @ coef + b
        if X.shape[1] == 1:
            lo, hi = float(Xs[:, 0].min()), float(Xs[:, 0].max())
            charts.append({"kind": "scatter", "title": "regression fit", "x_label": "x", "y_label": "y",
                           "points": _pts(Xs[:, 0], y[idx], np.zeros(len(idx))),
                           "line": [[lo, lo * coef[0] + b], [hi, hi * coef[0] + b]]})
        else:
            lo, hi = float(min(y[idx].min(), pred.min())), float(max(y[idx].max(), pred.max()))
            charts.append({"kind": "scatter", "title": "regression fit: predicted vs actual", "x_label": "actual y",
                           "y_label": "predicted y", "points": _pts(y[idx], pred, np.zeros(len(idx))),
                           "line": [[lo, lo], [hi, hi]]})
        metrics = {"r2": float(fields["r2"]), "mse": float(fields["mse"])}
    elif model == "logistic_regression":
        coef = np.atleast_2d(np.asarray(fields["coef"], dtype=np.float64))
        icpt = np.asarray(fields["intercept"], dtype=np.float64).reshape(-1)
        Z = Xs @ coef.T + icpt
        pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else Z.argmax(axis=1)
        _, _, P = _project2(Xs)
        charts.append({"kind": "scatter", "title": "predicted classes", "x_label": "axis 1", "y_label": "axis 2",
                       "points": _pts(P[:, 0], P[:, 1], pred)})
        metrics = {"accuracy": float(fields["accuracy"]), "log_loss": float(fields["log_loss"])}
    elif model == "mlp_train":
        curve = np.asarray(fields["loss_curve"], dtype=np.float64).reshape(-1)
        charts.append({"kind": "line", "title": "training loss", "x_label": "epoch", "y_label": "loss",
                       "points": _pts(np.arange(1, curve.size + 1), curve)})
        metrics = {k: float(fields[k]) for k in ("train_loss", "test_loss", "test_accuracy") if k in fields}
    return {"model": model, "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
            "shown": len(idx), "charts": charts, "metrics": metrics}


# ------------------------------------------------------------------------------------------------ routes


def install_dashboard(app: FastAPI, node: Any, api_error: type[Exception], jsonable: Any) -> None:
    """Add the dashboard's routes to ``app`` (see the module docstring). ``api_error`` is the API's error class
    (status, message, detail) so errors keep the one JSON shape."""
    streams = {"open": 0, "served": 0}
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
        channel = node.events.subscribe(STREAM_BUFFER)
        streams["open"] += 1
        streams["served"] += 1
        return StreamingResponse(_stream(node, channel, wanted, streams), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.get("/blocks", tags=["chain"])
    async def recent_blocks(limit: Annotated[int, Query(ge=1, le=200)] = 50,
                            before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> dict[str, Any]:
        """Block summaries, newest first: height, hash, time, tx count, proposer, and the gap to the previous."""
        top = node.height if before is None else min(node.height, before - 1)
        out = []
        prev_time: int | None = None
        heights = list(range(top, max(0, top - limit), -1))
        for h in heights + ([heights[-1] - 1] if heights and heights[-1] > 1 else []):
            b = node.get_block(h)
            if b is None:
                continue
            if out and prev_time is not None and out[-1]["height"] == h + 1:
                out[-1]["block_time_ms"] = prev_time - b["time_ms"]
            prev_time = b["time_ms"]
            if h in heights:
                out.append({"height": h, "hash": b["hash"], "time_ms": b["time_ms"], "txs": len(b["txs"]),
                            "round": b["round"], "proposer": b["proposer"], "block_time_ms": None,
                            "kinds": sorted({t.get("kind", "?") for t in b["txs"]})})
        return {"count": len(out), "head": node.height, "blocks": out}

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


async def _stream(node: Any, channel: Any, wanted: set[str], streams: dict[str, int]) -> AsyncIterator[bytes]:
    """The body of one ``/events`` response. Yields happen outside every cancel scope (trio's rule for
    generators); the bus subscription is closed however the stream ends."""
    try:
        known = {p["peer_id"] for p in node.peers()}
        yield b"retry: 2000\n\n"
        yield sse_message({"type": "hello", "height": node.height, "peers": len(known), "types": sorted(wanted)})
        quiet_s = 0.0
        async with channel:
            while True:
                batch: list[dict[str, Any]] = []
                ended = False
                with trio.move_on_after(PEER_CHECK_S):
                    try:
                        batch.append(await channel.receive())
                        while len(batch) < 256:
                            batch.append(channel.receive_nowait())
                    except trio.WouldBlock:
                        pass
                    except trio.EndOfChannel:
                        ended = True
                if "peer" in wanted:
                    now = {p["peer_id"] for p in node.peers()}
                    for pid in sorted(now - known):
                        batch.append({"type": "peer", "change": "connected", "peer_id": pid, "peers": len(now)})
                    for pid in sorted(known - now):
                        batch.append({"type": "peer", "change": "disconnected", "peer_id": pid, "peers": len(now)})
                    known = now
                out = b"".join(sse_message(e) for e in batch if e.get("type") in wanted)
                if ended:
                    # The bus dropped this subscriber (it fell behind); say so and end: the client reconnects.
                    yield out + sse_message({"type": "dropped", "reason": "fell behind the node's event bus"})
                    return
                if out:
                    quiet_s = 0.0
                    yield out
                else:
                    quiet_s += PEER_CHECK_S
                    if quiet_s >= HEARTBEAT_S:
                        quiet_s = 0.0
                        yield b": heartbeat\n\n"
    finally:
        streams["open"] -= 1
