"""``/metrics``: the exposition format itself, the device sampler (CPU from a fake /proc, GPU from a fake
``nvidia-smi``), and a real node's scrape holding every family the issue names."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import pytest
import trio

from bootstrap.api import CONTENT_TYPE, DeviceSampler, Exposition
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node
from ledger.state import JOB_STATUSES

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (\S+)$')


def parse(text: str) -> dict[str, list[tuple[str, float]]]:
    """Samples by family; fails on any line that is not valid text exposition."""
    out: dict[str, list[tuple[str, float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("gauge", "counter") and name not in typed, line
            typed.add(name)
            out.setdefault(name, [])
        elif line.startswith("# HELP ") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group(1) in typed, f"sample before its TYPE: {line}"
            out[m.group(1)].append((m.group(2) or "", float(m.group(5))))
    return out


def test_exposition_format() -> None:
    e = Exposition()
    e.add("x_total", "counter", "things", [({"kind": 'a"b\\c\nd'}, 3), ({}, 1.5)])
    e.add("y", "gauge", "a flag", True)
    e.add("z", "gauge", "nothing yet", [])
    text = e.render()
    assert 'x_total{kind="a\\"b\\\\c\\nd"} 3' in text and "x_total 1.5" in text and "\ny 1\n" in text
    assert parse(text)["z"] == []
    with pytest.raises(ValueError, match="twice"):
        e.add("y", "gauge", "again", 0)


def test_cpu_utilisation_and_memory_from_proc(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  400 kB\n")
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 1 1 1\n")
    s = DeviceSampler(tmp_path)  # takes its first reading
    s.smi = None
    assert s.cpu_utilisation() is None  # no tick since, and no earlier value
    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")  # 100 busy + 100 idle ticks since
    assert s.cpu_utilisation() == pytest.approx(0.5)
    assert s.cpu_utilisation() == pytest.approx(0.5)  # no tick since: the last value stands
    stat.write_text("cpu  150 0 150 1000 0 0 0 0 0 0\n")
    assert s.cpu_utilisation() == pytest.approx(0.0)
    assert s.memory() == (600 * 1024, 1000 * 1024)
    assert DeviceSampler(tmp_path / "missing").memory() is None


def test_gpu_from_nvidia_smi(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 37, 1024, 81559'\necho 'garbage'\n")
    smi.chmod(0o755)
    s = DeviceSampler()
    s.smi = str(smi)
    gpus = s.gpus()
    assert gpus == [{"index": "0", "name": "NVIDIA H100 80GB HBM3", "utilisation": 0.37,
                     "memory_used": 1024 << 20, "memory_total": 81559 << 20}]
    smi.write_text("#!/bin/sh\nexit 1\n")
    assert s.gpus() == gpus  # cached for a few seconds: a scrape never waits on the tool twice


async def test_a_nodes_scrape(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, config=NodeConfig.test(), chain_id="metrics-test")
    node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            while node.height < 3:
                await trio.sleep(0.05)
            url = f"http://127.0.0.1:{node.api_address[1]}/metrics"

            def scrape() -> tuple[str, str]:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    return resp.headers["content-type"], resp.read().decode()

            kind, text = await trio.to_thread.run_sync(scrape)
            _, text = await trio.to_thread.run_sync(scrape)  # the second scrape has a CPU reading
            height = node.height
        finally:
            node.stop()
    assert kind == CONTENT_TYPE
    m = parse(text)
    for family in ("dacn_height", "dacn_block_time_seconds", "dacn_mempool_txs", "dacn_peers",
                   "dacn_gossip_messages_total", "dacn_jobs", "dacn_verification_outcomes_total",
                   "dacn_worker_device_utilisation_ratio", "dacn_worker_device_memory_used_bytes",
                   "dacn_worker_device_memory_total_bytes", "dacn_node_events_total", "dacn_api_rejected_total",
                   "dacn_mempool_refused_total", "dacn_mempool_evicted_total"):
        assert family in m, family
    assert {labels for labels, _ in m["dacn_mempool_refused_total"]} == {'{reason="high_water"}', '{reason="state"}'}
    assert 3 <= m["dacn_height"][0][1] <= height
    assert 0 < m["dacn_block_time_seconds"][0][1] < 5
    assert {labels for labels, _ in m["dacn_jobs"]} == {f'{{state="{s}"}}' for s in JOB_STATUSES}
    for direction in ("dropped", "shed", "rate_limited"):  # overload sheds and rate caps are visible too
        assert any(f'direction="{direction}"' in labels for labels, _ in m["dacn_gossip_messages_total"])
    if os.path.exists("/proc/stat"):
        (labels, util), = m["dacn_worker_device_utilisation_ratio"]
        assert 'device="cpu"' in labels or 'device="gpu"' in labels
        assert 0.0 <= util <= 1.0
        assert m["dacn_worker_device_memory_used_bytes"][0][1] > 0
