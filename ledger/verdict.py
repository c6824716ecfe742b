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


# ---- outcomes: what a party may claim besides a result ----------------------------------------------------------
RESULT = 0
"""A result: ``summary`` is the quantised result, compared within the job's tolerance."""
UNAVAILABLE = 1
"""The spec or the dataset could not be obtained from any peer before the commit deadline; ``summary`` empty."""
ERROR = 2
"""The spec fails deterministically on its data (a typed compute error); ``summary`` is the error code (1 to
``MAX_ERROR_CODE_LEN`` integers), compared exactly: every honest run hits the same error."""
OVER_LIMIT = 3
"""The spec's own limits stopped the run (its wall time or memory); ``summary`` empty."""
OUTCOMES = {RESULT: "result", UNAVAILABLE: "unavailable", ERROR: "error", OVER_LIMIT: "over_limit"}
MAX_ERROR_CODE_LEN = 4

NOT_ATTRIBUTABLE = frozenset({UNAVAILABLE, OVER_LIMIT})
"""Outcomes that depend on the network or the machine, not on the party: nobody can prove them false, so they are
never punished, and never paid unless the other party says the same (``ledger.jobs``)."""


def outcome_problem(outcome: int, summary: Sequence[int]) -> str | None:
    """Why ``(outcome, summary)`` is not a well-formed claim, or ``None``."""
    if outcome not in OUTCOMES:
        return f"unknown outcome {outcome}; known: {sorted(OUTCOMES)}"
    if outcome == ERROR and not 1 <= len(summary) <= MAX_ERROR_CODE_LEN:
        return f"an error claim carries 1 to {MAX_ERROR_CODE_LEN} code values, got {len(summary)}"
    if outcome in NOT_ATTRIBUTABLE and len(summary) != 0:
        return f"a {OUTCOMES[outcome]} claim carries no summary"
    return None


def claims_agree(outcome_a: int, a: Sequence[int], outcome_b: int, b: Sequence[int],
                 tolerance_abs: int, tolerance_ppm: int = 0) -> bool:
    """Whether two claims say the same: results within tolerance, errors with equal codes, or the same
    non-attributable outcome."""
    if outcome_a != outcome_b:
        return False
    if outcome_a == RESULT:
        return summaries_agree(a, b, tolerance_abs, tolerance_ppm)
    return list(a) == list(b)
