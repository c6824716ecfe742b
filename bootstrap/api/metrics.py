"""``GET /metrics``: the node in Prometheus' text exposition format (version 0.0.4), written by hand.

Chain (height, last block time, mempool), network (peers, gossip in/out/dropped per topic), jobs by state and
verification outcomes, the node's counters, the API guard's rejections, and the worker's device: a GPU's
utilisation and memory from ``nvidia-smi`` when there is one (as the seed's worker tracked its GPU), else the
machine's CPU utilisation (from ``/proc/stat`` between two scrapes) and memory.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ledger.state import JOB_STATUSES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GPU_QUERY_TTL_S = 5.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Builds one exposition: each metric family once (HELP, TYPE), then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def add(self, name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, str], float | int | bool]] | float | int | bool) -> None:
        if name in self._families:
            raise ValueError(f"metric family {name} written twice")
        self._families.add(name)
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        if isinstance(samples, int | float | bool):
            samples = [({}, samples)]
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
            self._lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


# ------------------------------------------------------------------------------------------------ the device


class DeviceSampler:
    """The worker machine's utilisation and memory. A GPU is read with ``nvidia-smi`` (at most every few seconds,
    its answer cached); a CPU-only machine reports its CPU utilisation since the previous scrape."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._cpu_prev: tuple[int, int] | None = None
        self._cpu_last: float | None = None
        self._gpu_cache: tuple[float, list[dict[str, Any]]] | None = None
        self.smi = shutil.which("nvidia-smi")
        self.cpu_utilisation()  # the first scrape then reports the time since the node started

    def cpu_utilisation(self) -> float | None:
        """Busy share of all CPUs since the last reading (the previous value when no tick has passed since; None
        before two readings or without /proc)."""
        try:
            fields = (self.proc / "stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        ticks = [int(x) for x in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        total = sum(ticks[:8])
        prev = self._cpu_prev
        if prev is not None and total <= prev[1]:
            return self._cpu_last
        self._cpu_prev = (idle, total)
        if prev is None:
            return None
        self._cpu_last = max(0.0, min(1.0, 1.0 - (idle - prev[0]) / (total - prev[1])))
        return self._cpu_last

    def memory(self) -> tuple[int, int] | None:
        """(used, total) bytes of the machine's memory."""
        try:
            info = {}
            for line in (self.proc / "meminfo").read_text().splitlines():
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
            return info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0)), info["MemTotal"]
        except (OSError, KeyError, ValueError, IndexError):
            return None

    def gpus(self) -> list[dict[str, Any]]:
        """One dict per GPU (index, name, utilisation 0..1, memory used and total in bytes), or []."""
        if self.smi is None:
            return []
        now = time.monotonic()
        if self._gpu_cache is not None and now - self._gpu_cache[0] < GPU_QUERY_TTL_S:
            return self._gpu_cache[1]
        out: list[dict[str, Any]] = []
        try:
            res = subprocess.run(
                [self.smi, "--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=2.0, check=False)
            for line in res.stdout.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) != 5:
                    continue
                out.append({"index": parts[0], "name": parts[1], "utilisation": float(parts[2]) / 100.0,
                            "memory_used": int(float(parts[3])) << 20, "memory_total": int(float(parts[4])) << 20})
        except (OSError, ValueError, subprocess.SubprocessError):
            out = []
        self._gpu_cache = (now, out)
        return out


# ------------------------------------------------------------------------------------------------ the node


def block_time_ms(node: Any) -> int | None:
    """Milliseconds between the last two committed blocks (None below height 2)."""
    h = node.height
    if h < 2:
        return None
    a, b = node.get_block(h - 1), node.get_block(h)
    if a is None or b is None:
        return None
    return int(b["time_ms"]) - int(a["time_ms"])


def render_metrics(node: Any, device: DeviceSampler, api: dict[str, Any] | None = None) -> str:
    """The exposition text for ``node`` (``api``: the API's own counters and stream gauges)."""
    e = Exposition()
    st = node.state
    e.add("dacn_up", "gauge", "1 while the node runs", 1)
    e.add("dacn_validator", "gauge", "1 if this node is a validator", node.identity.public_key in st.validators)
    e.add("dacn_height", "gauge", "height of the last committed block", node.height)
    bt = block_time_ms(node)
    e.add("dacn_block_time_seconds", "gauge", "time between the last two committed blocks",
          [] if bt is None else [({}, bt / 1000.0)])
    e.add("dacn_mempool_txs", "gauge", "transactions waiting in the mempool", len(node.mempool))
    e.add("dacn_mempool_bytes", "gauge", "bytes of transactions in the mempool", node.mempool.bytes)
    mp = node.mempool
    e.add("dacn_mempool_refused_total", "counter",
          "txs refused before their signature was checked: above the high-water mark, or by the state alone",
          [({"reason": "high_water"}, mp.refused_high_water), ({"reason": "state"}, mp.refused_cheap)])
    e.add("dacn_mempool_evicted_total", "counter", "pending txs evicted by txs that pay more", mp.evicted)
    e.add("dacn_peers", "gauge", "connected peers", len(node.peers()))
    metrics = node.host.metrics() if node.host is not None else {}
    topics = metrics.get("topics", {})
    gossip: list[tuple[dict[str, str], int]] = []
    for topic, c in sorted(topics.items()):
        for direction, key in (("in", "received"), ("out", "sent"), ("dropped", "dropped"),
                               ("invalid", "invalid"), ("duplicate", "duplicates"), ("published", "published"),
                               ("shed", "shed"), ("rate_limited", "rate_limited")):
            gossip.append(({"topic": topic, "direction": direction}, int(c.get(key, 0))))
    e.add("dacn_gossip_messages_total", "counter", "gossip messages by topic and direction", gossip)
    frames = {"in": 0, "out": 0, "dropped": 0}
    for c in metrics.get("connections", {}).values():
        for k in frames:
            frames[k] += int(c.get(k, 0))
    e.add("dacn_connection_frames", "gauge", "frames on the current connections by direction",
          [({"direction": k}, v) for k, v in frames.items()])
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    disputed_ever = 0
    for job in st.jobs.values():
        by_status[job.status] = by_status.get(job.status, 0) + 1
        if any(s == "disputed" for s, _ in job.history):
            disputed_ever += 1
    e.add("dacn_jobs", "gauge", "jobs by ledger state", [({"state": s}, n) for s, n in sorted(by_status.items())])
    e.add("dacn_verification_outcomes_total", "counter", "settled verifications by outcome (disputed: went "
          "to a referee)", [({"outcome": "agreed"}, by_status.get("verified", 0) - _verified_after_dispute(st)),
                            ({"outcome": "disputed"}, disputed_ever),
                            ({"outcome": "failed"}, by_status.get("failed", 0)),
                            ({"outcome": "refunded"}, by_status.get("refunded", 0))])
    e.add("dacn_workers", "gauge", "registered workers", len(st.workers))
    e.add("dacn_escrow_tokens", "gauge", "tokens held in escrow by open jobs",
          sum(j.escrow or 0 for j in st.jobs.values()))
    e.add("dacn_node_events_total", "counter", "node counters (txs, blocks, sync, blobs)",
          [({"event": k}, int(v)) for k, v in sorted(node.counters.items())])
    e.add("dacn_event_bus_dropped_subscribers_total", "counter", "event subscribers dropped for falling behind",
          node.events.dropped_subscribers)
    agent = getattr(node, "agent", None)
    running = len(getattr(getattr(agent, "memory", None), "running", ()) or ()) if agent is not None else 0
    e.add("dacn_worker_jobs_running", "gauge", "jobs this node's worker is running now", running)
    e.add("dacn_worker_auto_coordination", "gauge", "1 while the worker agent bids on new jobs",
          bool(getattr(agent, "auto", False)))
    gpus = device.gpus()
    if gpus:
        e.add("dacn_worker_device_utilisation_ratio", "gauge", "GPU utilisation (0..1)",
              [({"device": "gpu", "index": g["index"], "name": g["name"]}, g["utilisation"]) for g in gpus])
        e.add("dacn_worker_device_memory_used_bytes", "gauge", "GPU memory in use",
              [({"device": "gpu", "index": g["index"], "name": g["name"]}, g["memory_used"]) for g in gpus])
        e.add("dacn_worker_device_memory_total_bytes", "gauge", "GPU memory",
              [({"device": "gpu", "index": g["index"], "name": g["name"]}, g["memory_total"]) for g in gpus])
    else:
        cpu = device.cpu_utilisation()
        mem = device.memory()
        e.add("dacn_worker_device_utilisation_ratio", "gauge", "CPU utilisation since the previous scrape (0..1)",
              [] if cpu is None else [({"device": "cpu", "index": "0", "name": "cpu"}, cpu)])
        e.add("dacn_worker_device_memory_used_bytes", "gauge", "memory in use on the worker's machine",
              [] if mem is None else [({"device": "cpu", "index": "0", "name": "cpu"}, mem[0])])
        e.add("dacn_worker_device_memory_total_bytes", "gauge", "memory of the worker's machine",
              [] if mem is None else [({"device": "cpu", "index": "0", "name": "cpu"}, mem[1])])
    if api is not None:
        rejected = sorted((k.removeprefix("rejected_"), v) for k, v in api.get("counters", {}).items()
                          if k.startswith("rejected_"))
        e.add("dacn_api_rejected_total", "counter", "requests the API guard refused, by status",
              [({"status": s}, v) for s, v in rejected])
        e.add("dacn_api_event_streams", "gauge", "open /events streams", int(api.get("streams_open", 0)))
        gate = api.get("gate")
        if gate is not None:
            e.add("dacn_api_connections", "gauge", "open API TCP connections", gate.open)
            e.add("dacn_api_connections_refused_total", "counter", "API TCP connections refused, by the cap hit",
                  [({"limit": r}, n) for r, n in sorted(gate.refused.items())])
    return e.render()


def _verified_after_dispute(st: Any) -> int:
    return sum(1 for j in st.jobs.values() if j.status == "verified" and any(s == "disputed" for s, _ in j.history))
