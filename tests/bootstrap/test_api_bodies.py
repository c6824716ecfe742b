"""What a request body may hold (issue 17, case 10): per-endpoint byte caps, structural limits checked before any
route parses the body (on a worker thread when it is big), validation errors capped; binary dataset uploads
(``POST /data``: .npy, .npz, CSV) that a job then names by digest; and ``GET /tx/{id}``, where a tx is.

The guard cases are ASGI calls into ``create_app`` over a node no route may reach (a route that ran would fail on
it); the upload and tx-status cases run against a real node over HTTP."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from bootstrap.api import ApiSettings, create_app
from bootstrap.api import guard as guard_module
from bootstrap.api.errors import MAX_PROBLEMS
from bootstrap.api.limits import ENDPOINT_LIMITS, THREAD_ABOVE, BodyLimit, BodyShapeError, check_json_body
from bootstrap.cli import ApiRequestError
from bootstrap.home import NodeConfig, init_home
from ledger.tx import Transfer, TransferFrom, make_tx
from tests.bootstrap.test_api import SEED_CLIENT, call, running_node
from tests.bootstrap.test_api_hardening import FakeNode, asgi_call

LOCAL = ("127.0.0.1", 40000)


def app() -> Any:
    return create_app(FakeNode(), ApiSettings())


def dict_bomb(n: int) -> bytes:
    return json.dumps({f"k{i}": 0 for i in range(n)}).encode()


# ------------------------------------------------------------------------------------------------ the guard


async def test_each_endpoint_has_its_own_byte_cap() -> None:
    a = app()
    # 100,000 small keys (1.3 MB) to an endpoint that needs a few hundred bytes: refused on its length
    status, _, body = await asgi_call(a, "POST", "/client/register", body=dict_bomb(100_000), client=LOCAL)
    doc = json.loads(body)
    assert status == 413 and doc["detail"] == {"kind": "too_large", "limit": 64 * 1024}, doc
    # the same without a Content-Length (chunked): counted as it arrives
    status, _, body = await asgi_call(a, "POST", "/client/register", chunks=[b"[" * 40_000] * 3, client=LOCAL)
    assert status == 413, body
    # a 3 MiB job submission is over its own 1 MiB cap; a 100 MB body anywhere is refused before it is read
    status, _, _ = await asgi_call(a, "POST", "/job/submit", body=b" " * (3 << 20), client=LOCAL)
    assert status == 413
    status, _, _ = await asgi_call(a, "POST", "/data", headers={"content-length": str(100 << 20)},
                                   content_length=False, client=LOCAL)
    assert status == 413


@pytest.mark.parametrize(("path", "body", "limit_on"), [
    ("/job/submit", dict_bomb(20_000), "keys_in_all"),  # 300 KB of keys, under the byte cap: counted, not parsed
    ("/job/submit", dict_bomb(100), "keys"),
    ("/job/submit", b"[" * 5000 + b"]" * 5000, "depth"),
    ("/job/submit", json.dumps({"dataset": {"X": [[0]] * 150_000}}).encode(), "containers"),
    ("/job/submit", json.dumps({"dataset": {"X": [0] * 150_000}}).encode(), "items"),
    ("/txs", json.dumps({"txs": ["00"] * 5000}).encode(), "items"),
    ("/tx", json.dumps({"tx": "ab" * 20_000}).encode(), "string_length"),
    ("/job/submit", json.dumps({"params": {"x": [1] * 60_000, "y": [1] * 60_000, "z": [1] * 60_000,
                                           "w": [1] * 60_000}}).encode(), "values"),
    ("/client/register", json.dumps({"n": int("9" * 100)}).encode(), "number_digits"),
])
async def test_bodies_over_a_structural_limit_are_refused_before_any_route(path: str, body: bytes,
                                                                           limit_on: str) -> None:
    status, _, raw = await asgi_call(app(), "POST", path, body=body, client=LOCAL)
    doc = json.loads(raw)
    assert status == 400 and doc["detail"]["kind"] == "body_shape" and doc["detail"]["limit_on"] == limit_on, doc
    assert "this endpoint allows" in doc["error"]


async def test_a_big_body_is_walked_on_a_worker_thread_and_a_small_one_inline(monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    real = guard_module.check_json_body

    def spy(body: bytes, limit: BodyLimit) -> None:
        seen.append((len(body), threading.get_ident()))
        real(body, limit)

    monkeypatch.setattr(guard_module, "check_json_body", spy)
    loop_thread = threading.get_ident()
    big = json.dumps({"client_address": "x" * (THREAD_ABOVE + 10)}).encode()
    await asgi_call(app(), "POST", "/client/register", body=big, client=LOCAL)
    await asgi_call(app(), "POST", "/client/register", body=b'{"client_address": 5}', client=LOCAL)
    assert [n for n, _ in seen] == [len(big), 21]
    assert seen[0][1] != loop_thread and seen[1][1] == loop_thread


async def test_validation_errors_are_capped() -> None:
    body = json.dumps({f"unknown_{i}": 1 for i in range(60)} | {"client_address": "ok"}).encode()
    status, _, raw = await asgi_call(app(), "POST", "/client/register", body=body, client=LOCAL)
    doc = json.loads(raw)
    assert status == 400 and len(doc["detail"]) == MAX_PROBLEMS, doc
    assert f"and {60 - MAX_PROBLEMS} more problems" in doc["error"]
    assert len(raw) < 8000


def test_the_walk_accepts_what_each_endpoint_needs() -> None:
    """What honest clients send passes: a 4,096-tx batch, a 4,096-row inline dataset, a seed body."""
    batch = json.dumps({"txs": ["ab" * 150] * 4096}).encode()
    check_json_body(batch, ENDPOINT_LIMITS["/txs"])
    rows = json.dumps({"client_address": "c", "model_type": "pca", "reward": 5, "params": {"n_components": 2},
                       "dataset": {"X": [[1.5] * 16] * 4096, "y": [0.0] * 4096}}).encode()
    check_json_body(rows, ENDPOINT_LIMITS["/job/submit"])
    check_json_body(b"", ENDPOINT_LIMITS["/job/submit"])
    check_json_body(b"not json", ENDPOINT_LIMITS["/job/submit"])  # left to the route's own 400
    with pytest.raises(BodyShapeError):
        check_json_body(b"[" * 100_000, ENDPOINT_LIMITS["/job/submit"])  # beyond the parser's own stack


# ------------------------------------------------------------------------------------------------ a real node


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "home", config=NodeConfig.test(), chain_id="bodies-test")
    return tmp_path / "home"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


async def upload(client: Any, data: bytes, fmt: str | None = None, target: Any = None) -> tuple[int, Any]:
    def go() -> tuple[int, Any]:
        try:
            return 200, client.upload_dataset(data, fmt, target_column=target)
        except ApiRequestError as exc:
            return exc.status, {"error": exc.error, "detail": exc.detail}

    return await trio.to_thread.run_sync(go)


async def test_datasets_upload_as_binary_and_a_job_names_them_by_digest(home: Path) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.25
    async with running_node(home) as (node, client):
        status, doc = await call(client, "POST", "/client/register", SEED_CLIENT)
        assert status == 200, doc
        # .npy with the target as its last column, .npz with X and y, CSV with a header: one dataset, one digest
        st, npy = await upload(client, npy_bytes(np.column_stack([X, y])), target=-1)
        assert st == 200 and (npy["n_samples"], npy["n_features"], npy["has_target"]) == (300, 3, True), npy
        buf = io.BytesIO()
        np.savez(buf, X=X, y=y)
        st, npz = await upload(client, buf.getvalue())
        assert st == 200 and npz["format"] == "npz" and npz["digest"] == npy["digest"], npz
        lines = ["a,b,c,target"] + [",".join(repr(float(v)) for v in (*row, t)) for row, t in zip(X, y, strict=True)]
        st, csv = await upload(client, "\n".join(lines).encode(), "csv", "target")
        assert st == 200 and csv["digest"] == npy["digest"], csv
        assert node.blobs.get(bytes.fromhex(npy["digest"])) is not None
        status, job = await call(client, "POST", "/job/submit", {
            "client_address": "test_client", "model_type": "linear_regression", "reward": 50,
            "dataset": {"digest": npy["digest"]}}, wait=20)
        assert status == 200 and job["tx_status"] == "committed", job
        assert node.state.jobs[bytes.fromhex(job["job_id"])].dataset_digest.hex() == npy["digest"]
        # bad uploads are 400s naming what is wrong, and store nothing
        before = sum(1 for _ in (home / "blobs").rglob("*") if _.is_file()) if (home / "blobs").exists() else 0
        pickled = io.BytesIO()
        np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        for data, fmt, target, word in [
            (pickled.getvalue(), None, None, "not a plain .npy"),
            (b"\x93NUMPY garbage", None, None, ".npy"),
            (b"PK\x03\x04 not a zip", None, None, ".npz"),
            (b"a,b\n1,x\n", "csv", None, "not a number"),
            (npy_bytes(X), None, 7, "out of range"),
            (b"", None, None, "empty"),
            (b"1,2\n", "parquet", None, "format"),
        ]:
            st, err = await upload(client, data, fmt, target)
            assert st == 400 and word in err["error"], (word, st, err)
        after = sum(1 for _ in (home / "blobs").rglob("*") if _.is_file()) if (home / "blobs").exists() else 0
        assert after == before


async def test_a_client_can_always_learn_where_its_tx_is(home: Path) -> None:
    """Committed, failed in its block, queued behind a missing nonce, unknown; and a malformed id is a 400. (Why
    a tx was dropped comes from the mempool's record, tested in tests/ledger/test_mempool.py.)"""
    async with running_node(home) as (node, client):
        await trio.to_thread.run_sync(lambda: client.wait_healthy(timeout=20, min_height=1))
        faucet = node.keystore.load("faucet")
        me = bytes(faucet.verify_key)
        to = bytes(node.keystore.get_or_create("payee").verify_key)
        fee, chain_id = node.state.params.min_fee, node.state.chain_id
        nonce = node.state.nonce(me)
        done = make_tx(Transfer(to=to, amount=7), faucet, chain_id, nonce=nonce, fee=fee)
        status, doc = await call(client, "POST", "/tx", {"tx": done.encode().hex()}, wait=20)
        assert status == 200 and doc["status"] == "committed", doc
        status, st = await call(client, "GET", f"/tx/{done.tx_id.hex()}")
        assert status == 200 and st == {"tx_id": done.tx_id.hex(), "status": "committed", "height": doc["height"]}
        junk = make_tx(TransferFrom(owner=to, to=me, amount=5), faucet, chain_id, nonce=nonce + 1, fee=fee)
        status, doc = await call(client, "POST", "/tx", {"tx": junk.encode().hex()}, wait=20)
        assert status == 400, doc
        status, st = await call(client, "GET", f"/tx/{junk.tx_id.hex()}")
        assert st["status"] == "failed" and "InsufficientAllowance" in st["reason"], st
        ahead = make_tx(Transfer(to=to, amount=1), faucet, chain_id, nonce=nonce + 5, fee=fee)
        status, doc = await call(client, "POST", "/tx", {"tx": ahead.encode().hex()}, wait=0)
        assert status == 200 and doc["status"] == "pending", doc
        status, st = await call(client, "GET", f"/tx/{ahead.tx_id.hex()}")
        assert st["status"] == "queued" and st["nonce"] == nonce + 5 and st["waiting_for_nonce"] == nonce + 2, st
        status, st = await call(client, "GET", "/tx/" + "ab" * 32)
        assert status == 200 and st["status"] == "unknown" and "not seen" in st["reason"], st
        for bad in ("zz" * 32, "ab" * 31):
            status, st = await call(client, "GET", f"/tx/{bad}")
            assert status == 400 and set(st) == {"error", "detail"}, st


def test_a_shape_error_names_the_field() -> None:
    with pytest.raises(BodyShapeError) as exc:
        check_json_body(json.dumps({"dataset": {"X": [0] * 150_000}}).encode(), ENDPOINT_LIMITS["/job/submit"])
    assert exc.value.detail["field"] == "dataset.X" and exc.value.message.startswith("dataset.X has too many")
