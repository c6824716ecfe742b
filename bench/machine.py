"""The machine line every result file starts with (what ran it, and when)."""

from __future__ import annotations

import os
import platform
import time

from compute.device import cpu_model


def machine_line() -> str:
    """``Machine: nproc=N, <cpu>, shared with other engineers' runs; Python X.Y.Z; <UTC time>``."""
    return (f"Machine: nproc={os.cpu_count()}, {cpu_model()}, shared with other engineers' runs; Python "
            f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
