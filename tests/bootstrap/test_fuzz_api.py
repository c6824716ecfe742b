"""Fuzzing the REST API's JSON bodies and path parameters against a real single-validator node
(``NodeConfig.test()``, sqlite on disk, hypercorn on a loopback port; the node runs in its own thread and trio
loop, requests go through urllib). Bodies are the seed's valid ones with keys dropped or added and values
swapped for odd JSON (huge integers, NaN, nested containers, long strings), whole random JSON values, or bytes
that are not JSON at all.

Every answer must be a 2xx or a 4xx in the API's one error shape, never a 5xx; a refused request must not have
submitted a transaction or left one in the mempool. Bounded by the Hypothesis profile."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.home import KeystoreError, NodeConfig, check_key_name, init_home
from bootstrap.node import Node
from ledger.crypto import signing_key_from_seed
from ledger.tx import Transfer, make_tx

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class ApiNode:
    """A running node and its API's base URL; the node lives in a thread with its own trio loop."""

    def __init__(self, node: Node, base: str, token: trio.lowlevel.TrioToken) -> None:
        self.node, self.base, self.token = node, base, token

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def submitted(self) -> tuple[int, int]:
        """Txs this node has signed or admitted so far, and its mempool's size."""
        return self.node.counters["txs_submitted"], len(self.node.mempool)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNode]:
    home = tmp_path_factory.mktemp("fuzz-api") / "home"
    init_home(home, config=NodeConfig.test(), chain_id="fuzz-api")
    node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0", run_agent=False))
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            ready.set()

    def runner() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # surfaced by the fixture below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=runner, name="fuzz-api-node", daemon=True)
    thread.start()
    assert ready.wait(120), "the node did not start"
    assert "error" not in box, box.get("error")
    assert node.api_address is not None
    host, port = node.api_address
    yield ApiNode(node, f"http://{host}:{port}", box["token"])
    trio.from_thread.run_sync(node.stop, trio_token=box["token"])
    thread.join(60)
    assert not thread.is_alive()


# --- inputs -----------------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
_odd = st.one_of(
    _json,
    st.sampled_from([0, -1, 2**63, 2**64, 10**40, 1e308, -0.0, "", " ", "a" * 5000, "../../etc", "faucet",
                     "validator", "12D3KooW", "0" * 64, [], {}, [[[]]]]),
)

_TX_KEY = signing_key_from_seed(b"fuzz-api/stranger".ljust(32, b"\0"))
SEEDS: dict[str, dict[str, Any]] = {
    "/client/register": {"client_address": "fuzz_client", "initial_balance": 100},
    "/worker/register": {"worker_id": "fuzz_worker", "gpu_type": "RTX 4090", "compute_capacity": 1.5,
                         "stake_amount": 150},
    "/job/submit": {"client_address": "fuzz_client", "model_type": "linear_regression", "reward": 5,
                    "params": {"alpha": 0.1}, "dataset": {"synthetic": {"n_samples": 64, "n_features": 3}}},
    # signed by an account with no balance: well-formed, then refused by the ledger
    "/tx": {"tx": make_tx(Transfer(bytes(32), 1), _TX_KEY, "fuzz-api", nonce=0, fee=1).encode().hex()},
}


@st.composite
def bodies(draw: st.DrawFn, seed: dict[str, Any]) -> bytes:
    """A mutant of ``seed`` as request bytes (usually JSON, sometimes not)."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    body: Any = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "add", "swap", "swap", "nest"]))
        keys = sorted(body)
        if op == "drop" and keys:
            del body[draw(st.sampled_from(keys))]
        elif op == "add":
            body[draw(st.text(max_size=12))] = draw(_odd)
        elif op == "swap" and keys:
            body[draw(st.sampled_from(keys))] = draw(_odd)
        elif op == "nest" and "dataset" in body:
            body["dataset"] = {draw(st.sampled_from(["synthetic", "csv", "X", "digest", "y"])): draw(_odd)}
    return json.dumps(body).encode()


_segments = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(["0", "-1", "99999999999999999999", "fuzz_client", "faucet", "0" * 64, "f" * 64, "%00",
                     "..", "12D3KooWAAAA", "NaN", "1e9"]),
)


def _check_answer(status: int, doc: Any) -> None:
    assert status < 500, (status, doc)
    if status >= 400:
        assert isinstance(doc, dict) and set(doc) == {"error", "detail"}, (status, doc)
        assert isinstance(doc["error"], str) and doc["error"]


# --- tests ------------------------------------------------------------------------------------------------------


def test_the_seed_bodies_are_accepted(api: ApiNode) -> None:
    # The fuzzing below starts from these: they must be valid, or every mutant would test only the refusal.
    for path in ("/client/register", "/worker/register", "/job/submit"):
        status, doc = api.request("POST", path + "?wait=5", json.dumps(SEEDS[path]).encode())
        assert status in (200, 202, 409), (path, status, doc)  # 409: already registered by an earlier run
    status, doc = api.request("POST", "/tx?wait=0", json.dumps(SEEDS["/tx"]).encode())
    assert status == 400, doc
    assert doc["detail"]["kind"] == "insufficient_funds", doc


@pytest.mark.parametrize("path", sorted(SEEDS))
def test_fuzzed_bodies_never_5xx_and_refusals_change_nothing(api: ApiNode, path: str) -> None:
    @FUZZ
    @given(bodies(SEEDS[path]))
    def run(body: bytes) -> None:
        before = api.submitted()
        status, doc = api.request("POST", path + "?wait=0", body)
        _check_answer(status, doc)
        if status >= 400 and status != 409:
            # 409 is "not committed yet, retry": its tx went out. Any other refusal must leave no trace.
            assert api.submitted()[0] == before[0], (path, status, doc)

    run()


@pytest.mark.parametrize(
    "template",
    ["/worker/{}/status", "/client/{}/balance", "/job/{}/status", "/job/{}/result", "/blocks/{}"],
)
def test_fuzzed_path_parameters_never_5xx(api: ApiNode, template: str) -> None:
    @FUZZ
    @given(_segments)
    def run(segment: str) -> None:
        status, doc = api.request("GET", template.format(urllib.parse.quote(segment, safe="")))
        _check_answer(status, doc)

    run()


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.text(max_size=30))
def test_fuzzed_wait_query_never_5xx(api: ApiNode, path: str, wait: str) -> None:
    status, doc = api.request("POST", f"{path}?wait={urllib.parse.quote(wait)}", b"{}")
    _check_answer(status, doc)


# Found by fuzzing: a worker_id of 64 hex digits named a new local key, but the node reads such a name as an
# account, so the faucet funded the all-zero account, the key that signed had nothing, and the refused request
# had already moved 151 tokens to an account nobody holds.
@pytest.mark.parametrize("name", ["0" * 64, "f" * 64, "12D3KooWAbC"])
def test_a_key_name_that_reads_as_an_account_is_refused(api: ApiNode, name: str) -> None:
    with pytest.raises(KeystoreError):
        check_key_name(name)
    body = dict(SEEDS["/worker/register"], worker_id=name)
    before = api.submitted()
    status, doc = api.request("POST", "/worker/register?wait=0", json.dumps(body).encode())
    assert 400 <= status < 500, doc
    assert "worker_id" in json.dumps(doc)
    assert api.submitted()[0] == before[0]
    assert check_key_name("a" * 63) == "a" * 63  # a name that only looks hex-ish stays allowed
