"""The agreement rule for job results: the one place that decides whether two result summaries match.

Compute turns a float result into a vector of integers at a declared precision; the ledger compares two such
vectors here, in integers only, so every validator reaches the same verdict bit for bit.
"""

from collections.abc import Sequence

PPM = 1_000_000


def is_within_tolerance(a: int, b: int, tolerance_abs: int, tolerance_ppm: int) -> bool:
    """Whether two quantised values agree: ``|a - b| <= abs + ppm * max(|a|, |b|) / 1e6``, in integers."""
    return abs(a - b) * PPM <= tolerance_abs * PPM + tolerance_ppm * max(abs(a), abs(b))


def summaries_agree(a: Sequence[int], b: Sequence[int], tolerance_abs: int, tolerance_ppm: int = 0) -> bool:
    """Whether two integer result summaries agree: same length, and every pair within the tolerance."""
    if len(a) != len(b):
        return False
    return all(is_within_tolerance(x, y, tolerance_abs, tolerance_ppm) for x, y in zip(a, b, strict=True))
