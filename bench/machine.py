"""The machine line every result file starts with (what ran it, and when)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from compute.device import cpu_model


def machine_line() -> str:
    """``Machine: nproc=N, <cpu>, shared with other engineers' runs; Python X.Y.Z; <UTC time>``."""
    return (f"Machine: nproc={os.cpu_count()}, {cpu_model()}, shared with other engineers' runs; Python "
            f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def interleaved_medians(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median time of each function, running them in turn each round so that load on the shared machine falls on
    all of them alike (the side-by-side ratios the benchmarks report)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]
