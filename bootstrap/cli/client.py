"""A small blocking HTTP client for a node's REST API (stdlib ``urllib``), used by the ``dacn`` CLI, the devnet
launcher, the demo and the end-to-end tests.

    client = NodeClient("http://127.0.0.1:5000")
    client.register_client("alice", 1000)
    job = client.submit_job("alice", "linear_regression", 50)
    final = client.wait_job(job["job_id"], timeout=120, on_update=print)

Errors: :class:`ApiRequestError` for an answer with a 4xx/5xx status (it carries the API's ``error`` and
``detail``), :class:`NodeUnreachable` when no answer came; both derive from :class:`ClientError`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TERMINAL_JOB_STATUSES = ("verified", "failed", "refunded")


class ClientError(Exception):
    """Root of the client's errors."""


class NodeUnreachable(ClientError):
    """The node did not answer (refused, reset, timed out)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class ApiRequestError(ClientError):
    """The node answered with an error status; ``error`` and ``detail`` are the API's error body."""

    def __init__(self, method: str, url: str, status: int, error: str, detail: Any = None) -> None:
        super().__init__(f"{method} {url} -> {status}: {error}")
        self.method = method
        self.url = url
        self.status = status
        self.error = error
        self.detail = detail


class JobWaitTimeout(ClientError):
    """A job did not reach a terminal status in time; ``last`` is the last status seen."""

    def __init__(self, job_id: str, timeout: float, last: dict[str, Any] | None) -> None:
        status = (last or {}).get("status")
        super().__init__(f"job {job_id[:16]}… still {status!r} after {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout
        self.last = last


class NodeClient:
    """Talks JSON to one node's API; every method returns the decoded JSON body."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NodeClient({self.base_url!r})"

    # ------------------------------------------------------------------------------------------ raw

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                timeout: float | None = None, raw: bytes | None = None, content_type: str = "") -> Any:
        """One request (a JSON ``body``, or ``raw`` bytes of ``content_type``); raises :class:`ApiRequestError` on
        an error status, :class:`NodeUnreachable` on none."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if raw is not None:
            data = raw
            headers["Content-Type"] = content_type or "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"error": raw.decode(errors="replace")[:500] or exc.reason}
            if not isinstance(doc, dict):
                doc = {"error": str(doc)}
            raise ApiRequestError(method, url, exc.code, str(doc.get("error")), doc.get("detail")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(url, str(reason)) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise NodeUnreachable(url, f"answer is not JSON: {raw[:200]!r}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, body, query=query or None)

    # ------------------------------------------------------------------------------------------ endpoints

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        return self.request("GET", "/health", timeout=timeout)

    def head(self) -> dict[str, Any]:
        return self.get("/chain/head")

    def stats(self) -> dict[str, Any]:
        return self.get("/network/stats")

    def peers(self) -> dict[str, Any]:
        return self.get("/peers")

    def register_worker(self, worker_id: str, stake: int, gpu_type: str = "", capacity: float = 0.0,
                        wait: float | None = None) -> dict[str, Any]:
        body = {"worker_id": worker_id, "gpu_type": gpu_type, "compute_capacity": capacity, "stake_amount": stake}
        return self.post("/worker/register", body, wait=wait)

    def register_client(self, address: str, initial_balance: int, wait: float | None = None) -> dict[str, Any]:
        return self.post("/client/register", {"client_address": address, "initial_balance": initial_balance},
                         wait=wait)

    def balance(self, address: str) -> dict[str, Any]:
        return self.get(f"/client/{urllib.parse.quote(address, safe='')}/balance")

    def worker(self, worker_id: str) -> dict[str, Any]:
        return self.get(f"/worker/{urllib.parse.quote(worker_id, safe='')}/status")

    def workers(self) -> list[dict[str, Any]]:
        return self.get("/workers")["workers"]

    def submit_job(self, client: str, model: str, reward: int, *, params: dict[str, Any] | None = None,
                   dataset: dict[str, Any] | None = None, verification_fee: int | None = None,
                   device: str | None = None, assign: str | None = None, wait: float | None = None,
                   time_limit_ms: int | None = None, commit_window: int | None = None) -> dict[str, Any]:
        """``POST /job/submit``; ``assign`` is ``"offers"`` or ``"bids"`` (None: the node's default, offers);
        ``time_limit_ms`` and ``commit_window`` default to the chain's."""
        body: dict[str, Any] = {"client_address": client, "model_type": model, "reward": reward}
        if time_limit_ms is not None:
            body["time_limit_ms"] = time_limit_ms
        if commit_window is not None:
            body["commit_window"] = commit_window
        if params is not None:
            body["params"] = params
        if dataset is not None:
            body["dataset"] = dataset
        if verification_fee is not None:
            body["verification_fee"] = verification_fee
        if device is not None:
            body["device"] = device
        if assign is not None:
            body["assign"] = assign
        return self.post("/job/submit", body, wait=wait)

    def upload_dataset(self, data: bytes, fmt: str | None = None, *, target_column: str | int | None = None,
                       timeout: float | None = None) -> dict[str, Any]:
        """``POST /data``: a ``.npy``, ``.npz`` or CSV dataset as binary; the answer names its ``digest``."""
        kind = {"npy": "application/x-npy", "npz": "application/zip", "csv": "text/csv"}.get(fmt or "",
                                                                                             "application/octet-stream")
        return self.request("POST", "/data", query={"format": fmt, "target_column": target_column},
                            raw=data, content_type=kind, timeout=timeout or max(self.timeout, 120.0))

    def tx_status(self, tx_id: str) -> dict[str, Any]:
        """``GET /tx/{tx_id}``: pending, queued, committed, failed, dropped (with why) or unknown."""
        return self.get(f"/tx/{tx_id}")

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/job/{job_id}/status")

    def job_result(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/job/{job_id}/result")

    def wait_job(
        self,
        job_id: str,
        *,
        timeout: float = 300.0,
        poll_s: float = 0.5,
        until: tuple[str, ...] = TERMINAL_JOB_STATUSES,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until its status is one of ``until``; ``on_update`` sees every change of status."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            try:
                view = self.job(job_id)
            except ApiRequestError as exc:
                if exc.status != 404:  # not yet committed on this node: keep polling
                    raise
                view = {"job_id": job_id, "status": "submitted"}
            changed = last is None or view.get("status") != last.get("status")
            if changed and on_update is not None:
                on_update(view)
            last = view
            if view.get("status") in until:
                return view
            if time.monotonic() >= deadline:
                raise JobWaitTimeout(job_id, timeout, last)
            time.sleep(poll_s)

    def wait_healthy(self, *, timeout: float = 60.0, min_height: int = 0, poll_s: float = 0.25) -> dict[str, Any]:
        """Poll ``/health`` until the node answers at ``min_height`` or above; raises ``NodeUnreachable``."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            try:
                h = self.health(timeout=min(5.0, self.timeout))
                if h.get("height", 0) >= min_height:
                    return h
                last_error = f"height {h.get('height')} < {min_height}"
            except ClientError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                raise NodeUnreachable(self.base_url, f"not healthy after {timeout:g}s: {last_error}")
            time.sleep(poll_s)
