"""Schemathesis against ``/openapi.json`` of a live single-validator node (sqlite on disk, hypercorn on a loopback
port, the worker agent running): for every documented operation, bounded examples of valid data and of invalid
data. No 5xx, every status and content type documented, every JSON body matching its schema, invalid data
rejected with a 4xx, and a rejected request submits no transaction.

``/events`` is left out: it is an endless stream (its own tests are in ``test_dashboard_events.py``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (a dev dependency)")
requests = pytest.importorskip("requests")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Bounded for CI (the whole test stays well under a minute); DACN_SCHEMATHESIS_SCALE=10 runs a deeper search.
SCALE = max(1, int(os.environ.get("DACN_SCHEMATHESIS_SCALE", "1")))
EXAMPLES = {"positive": 8 * SCALE, "negative": 6 * SCALE}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


class NodeInThread:
    """A real Node on its own trio loop in a background thread, so the synchronous schemathesis client can call
    it while it keeps committing blocks."""

    def __init__(self, home: Path) -> None:
        self.node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0"))
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.thread = threading.Thread(target=self._run, name="schemathesis-node", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(self.node.run)
                self.ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # surfaced by start() / stop()
            self.error = exc
        finally:
            self.ready.set()

    def start(self) -> str:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None or self.node.api_address is None:
            raise RuntimeError(f"node did not start: {self.error!r}")
        host, port = self.node.api_address
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.token is not None and self.thread.is_alive():
            trio.from_thread.run_sync(self.node.stop, trio_token=self.token)
        self.thread.join(30)


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    home = tmp_path_factory.mktemp("schemathesis") / "home"
    init_home(home, config=NodeConfig.test(), chain_id="schemathesis")
    runner = NodeInThread(home)
    url = runner.start()
    try:
        yield runner.node, url
    finally:
        runner.stop()


def test_no_5xx_and_no_schema_violation(live_node: tuple[Node, str]) -> None:
    node, url = live_node
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(path="/events")
    operations = [r.ok() for r in schema.get_all_operations()]
    # pre: the document describes the seed's endpoints and the dashboard's, each with the one error shape
    paths = {op.path for op in operations}
    for seed_path in ("/worker/register", "/worker/{worker_id}/status", "/workers", "/client/register",
                      "/client/{address}/balance", "/clients", "/job/submit", "/job/{job_id}/status", "/jobs",
                      "/jobs/pending", "/network/stats", "/network/coordination/start",
                      "/network/coordination/stop", "/network/coordination/trigger", "/health", "/",
                      "/dashboard", "/metrics", "/blocks", "/job/{job_id}/plot"):
        assert seed_path in paths, seed_path
    session = requests.Session()
    failures: list[str] = []
    calls = {"n": 0, "rejected": 0}

    def exercise(op: Any, mode: Any, n: int) -> None:
        @settings(max_examples=n, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            before = node.counters["txs_submitted"]
            response = case.call(base_url=url, session=session, timeout=60)
            calls["n"] += 1
            # 413 (a body over its endpoint's cap) is a rejection too; schemathesis' list leaves it out
            negative = mode.name == "NEGATIVE" and response.status_code != 413
            checks = CHECKS + ([negative_data_rejection] if negative else [])
            try:
                case.validate_response(response, checks=checks)
                if response.status_code >= 400:
                    calls["rejected"] += 1
                    # a rejected request changes nothing: it signed and submitted no transaction
                    assert node.counters["txs_submitted"] == before, "a rejected request submitted a tx"
                    assert set(response.json()) == {"error", "detail"}, response.text[:200]
            except AssertionError as exc:
                failures.append(f"{op.method.upper()} {op.path} [{mode.name}] -> {response.status_code}: "
                                f"{str(exc)[:600]}\n  {response.text[:300]}")

        try:
            run()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid input to generate.
            assert mode is schemathesis.GenerationMode.NEGATIVE, f"{op.method} {op.path}: no valid input"

    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            exercise(op, mode, EXAMPLES[mode.value])
    # post: every operation was called, some inputs were rejected, none broke the server or its contract
    assert calls["n"] >= len(operations), calls
    assert calls["rejected"] > 0, calls
    print(f"schemathesis: {len(operations)} operations, {calls['n']} calls, {calls['rejected']} rejected")
    assert not failures, "\n".join(failures[:20])
    assert node.height >= 1
