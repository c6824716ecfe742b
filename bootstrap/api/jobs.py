"""Jobs: submission (spec, dataset, reward, how the worker is found), one job's status and verified result, and
the lists of all and of unfinished jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import trio
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from bootstrap.api.bodies import (
    DEFAULT_MODEL_PARAMS,
    MAX_INLINE_ARRAY,
    JobIdParam,
    JobSubmission,
    WaitQuery,
    dataset_source,
    jsonable,
    normalise_model,
)
from bootstrap.api.env import Env
from bootstrap.api.errors import ApiError
from bootstrap.api.limits import UPLOAD_BYTES
from bootstrap.jobs import UPLOAD_FORMATS, ArtifactRefused, accepted_artifact, upload_format
from bootstrap.views import CursorError, verdict_words
from compute.canonical import dequantise
from compute.errors import ComputeError
from compute.spec import JobSpec
from ledger.state import JOB_STATUSES, VERIFIED, Job


def add_routes(app: FastAPI, env: Env) -> None:
    """``POST /data``, ``POST /job/submit``, ``GET /job/{job_id}/status``, ``GET /job/{job_id}/result``, ``GET /jobs``,
    ``GET /jobs/pending``."""
    node = env.node
    call, wait_s, tx_outcome = env.call, env.wait_s, env.tx_outcome

    @app.post("/data", openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
        "text/csv": {"schema": {"description": "CSV text, a first row of names optional"}}}}})
    async def upload_data(
        request: Request,
        fmt_query: Annotated[str | None, Query(
            alias="format", max_length=8,
            description="npy, npz or csv (default: from the bytes, then the Content-Type)")] = None,
        target_column: Annotated[str | None, Query(
            max_length=256, description="the column that becomes y: an index, or a CSV header name")] = None,
    ) -> dict[str, Any]:
        """Upload a dataset as binary ``.npy`` (one 2-D array; ``target_column`` picks y), ``.npz`` (arrays ``X``
        and ``y``) or CSV text, up to 64 MiB, parsed and checked off the node's loop; the answer's ``digest`` names
        it in ``POST /job/submit`` (``"dataset": {"digest": ...}``). Big datasets go this way, not as JSON rows."""
        body = await request.body()
        if not body:
            raise ApiError(400, "the request body is empty: send the dataset's bytes", {"field": "body"})
        fmt = (fmt_query or upload_format(body, request.headers.get("content-type", ""))).lower()
        if fmt not in UPLOAD_FORMATS:
            raise ApiError(400, f"format: expected one of {', '.join(UPLOAD_FORMATS)}, got {fmt!r}",
                           {"field": "format"})
        target: int | str | None = target_column
        if target_column is not None and target_column.lstrip("-").isdigit():
            target = int(target_column)
        return {"message": "dataset stored", "max_bytes": UPLOAD_BYTES,
                **await call(node.upload_dataset, body, fmt, target)}

    @app.post("/job/submit")
    async def submit_job(body: JobSubmission, wait: WaitQuery = None) -> JSONResponse:
        timeout = wait_s(wait)
        model = normalise_model(body.model_type)
        params = body.params if body.params is not None else dict(DEFAULT_MODEL_PARAMS.get(model, {}))
        source = dataset_source(body.dataset)
        kwargs: dict[str, Any] = {"reward": body.reward, "device": body.device, "assign": body.assign,
                                  "time_limit_ms": body.time_limit_ms, "commit_window": body.commit_window}
        if body.verification_fee is not None:
            kwargs["verification_fee"] = body.verification_fee
        if not node.keystore.exists(body.client_address):
            raise ApiError(404, f"client_address: no local key {body.client_address!r}; register the client first",
                           {"field": "client_address"})
        res = jsonable(await call(node.submit_job, body.client_address, model, params, source, **kwargs))
        outcome = await tx_outcome(res["tx_id"], timeout)
        if outcome.get("status") in ("rejected", "failed"):
            raise ApiError(400, f"submit_job {outcome['status']}: {outcome.get('reason')}", outcome)
        out = {"message": "job submitted", "model_type": model, **res, **outcome}
        out["tx_status"] = out.pop("status")
        view = node.job_view(bytes.fromhex(res["job_id"])) if outcome.get("status") == "committed" else None
        out["status"] = (view or {}).get("status", "pending")
        return JSONResponse(jsonable(out), status_code=200 if outcome["status"] == "committed" else 202)

    def retention_hint() -> str:
        keep = node.state.params.job_retention_blocks
        return f" (a finished job leaves the state {keep} blocks after it ended)" if keep else ""

    @app.get("/job/{job_id}/status")
    async def job_status(job_id: JobIdParam) -> dict[str, Any]:
        jid = env.job_id_of(job_id)
        view = node.views.job_detail(jid)
        if view is None:
            raise ApiError(404, f"unknown job {jid.hex()}{retention_hint()}", {"kind": "unknown_job"})
        return jsonable(view)

    async def job_spec(job: Job) -> JobSpec:
        """The job's spec: from this node's store, else fetched from a peer by its digest (the job names it)."""
        spec = node.spec_of(job.params_digest)
        if spec is None:
            data = await call(node.fetch_blob, job.params_digest, max_size=node.config.max_blob_bytes)
            try:
                spec = JobSpec.decode(data)
            except ComputeError as exc:
                raise ApiError(409, f"the job's spec does not decode: {exc}", {"kind": "bad_spec"}) from None
        if spec.digest != job.params_digest:
            raise ApiError(409, "the job's spec does not match its digest", {"kind": "bad_spec"})
        return spec

    def check_artifact(job: Job, spec: JobSpec, data: bytes) -> dict[str, Any]:
        """The artifact's fields as JSON, once it is known to be the verified one; else a 409."""
        try:
            artifact = accepted_artifact(job, spec, data)
        except ArtifactRefused as exc:
            # The stored blob is not the verified result: the worker's data is bad, not this request.
            if exc.kind != "artifact_mismatch":  # it does not decode
                raise ApiError(409, exc.reason, {"kind": exc.kind}) from None
            raise ApiError(409, f"the stored artifact is not the verified result: {exc.reason}",
                           {"kind": exc.kind, "differs": exc.differs, **jsonable(exc.detail)}) from None
        return {name: artifact_value(v) for name, v in sorted(artifact.fields.items())}

    @app.get("/job/{job_id}/result")
    async def job_result(job_id: JobIdParam) -> dict[str, Any]:
        """A verified job's summary and artifact. The artifact is served only once it is shown to be the one the
        verified summary describes (this job's model, spec and dataset, and a summary recomputed from it that
        agrees with the verified one under the job's tolerance): otherwise 409 ``artifact_mismatch``."""
        jid = env.job_id_of(job_id)
        job = node.state.jobs.get(jid)
        if job is None:
            raise ApiError(404, f"unknown job {job_id}{retention_hint()}", {"kind": "unknown_job"})
        if job.status != VERIFIED or not job.result_artifact:
            # A job that failed (a spec error's code is kept as its summary) has no artifact to serve.
            raise ApiError(404, f"job {job_id} has no accepted result (status {job.status}"
                                + (f", {verdict_words(job.verdict)})" if job.verdict else ")"),
                           {"kind": "no_result", "status": job.status, "verdict": job.verdict})
        out: dict[str, Any] = {"job_id": job_id, "status": job.status, "model": job.model,
                               "summary": list(job.result_summary or []),
                               "artifact_digest": job.result_artifact.hex()}
        spec = await job_spec(job)
        out["precision"] = spec.precision
        out["values"] = dequantise(out["summary"], spec.precision)
        data = await call(node.fetch_blob, job.result_artifact, max_size=node.config.max_blob_bytes)
        # Recomputing the summary sketches every array (a second or so for the largest networks): off the loop.
        out["artifact"] = await trio.to_thread.run_sync(check_artifact, job, spec, data)
        local = getattr(node.agent, "result_for", None) if getattr(node, "agent", None) is not None else None
        mine = local(jid) if local is not None else None
        if mine is not None:
            out["display"] = jsonable(mine.display)
            out["backend"] = mine.backend
            out["elapsed_s"] = mine.elapsed_s
        return out

    def page(status: str | None, unfinished: bool, cursor: str | None, limit: int, order: str) -> dict[str, Any]:
        if status is not None and status not in JOB_STATUSES:
            raise ApiError(400, f"unknown job status {status!r}: one of {', '.join(JOB_STATUSES)}",
                           {"kind": "bad_status"})
        try:
            return jsonable(node.views.jobs(status, unfinished=unfinished, cursor=cursor, limit=limit,
                                            newest_first=order == "newest"))
        except CursorError as exc:
            raise ApiError(400, str(exc), {"kind": "bad_cursor"}) from None

    @app.get("/jobs")
    async def jobs(status: Annotated[str | None, Query(max_length=32)] = None,
                   limit: PageLimit = DEFAULT_PAGE, cursor: CursorQuery = None,
                   order: OrderQuery = "newest") -> dict[str, Any]:
        """A page of jobs (``status`` filters), with the number that match, the count per status and
        ``next_cursor``, to pass as ``cursor`` for the next page (null at the end)."""
        return page(status, False, cursor, limit, order)

    @app.get("/jobs/pending")
    async def jobs_pending(limit: PageLimit = DEFAULT_PAGE, cursor: CursorQuery = None,
                           order: OrderQuery = "newest") -> dict[str, Any]:
        """A page of the jobs not yet finished (open, assigned, disputed, auditing, revealing, confirming), paged
        like ``GET /jobs``."""
        return page(None, True, cursor, limit, order)


DEFAULT_PAGE = 100
PageLimit = Annotated[int, Query(ge=1, le=500, description="jobs per page (at most 500)")]
CursorQuery = Annotated[str | None, Query(max_length=80, description="the previous page's next_cursor")]
OrderQuery = Annotated[Literal["newest", "oldest"], Query(description="newest (default) or oldest first")]


def artifact_value(value: Any) -> Any:
    """An artifact field as JSON; big arrays (per-sample labels, say) are described rather than inlined."""
    if hasattr(value, "shape") and getattr(value, "size", 0) > MAX_INLINE_ARRAY:
        return {"dtype": str(value.dtype), "shape": list(value.shape), "omitted": "too large to inline"}
    return jsonable(value)
