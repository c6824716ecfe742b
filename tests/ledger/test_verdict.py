"""The agreement rule: symmetric, reflexive, monotone in the tolerance, strict about length."""

from hypothesis import given
from hypothesis import strategies as st

from ledger.verdict import is_within_tolerance, summaries_agree

ints = st.integers(min_value=-(10**18), max_value=10**18)
tols = st.integers(min_value=0, max_value=10**9)
vectors = st.lists(ints, max_size=20)


def test_examples():
    assert summaries_agree([100, -5], [101, -5], tolerance_abs=1)
    assert not summaries_agree([100, -5], [102, -5], tolerance_abs=1)
    # 1% of 1000 is 10: a relative tolerance admits 1010 but not 1011.
    assert summaries_agree([1000], [1010], tolerance_abs=0, tolerance_ppm=10_000)
    assert not summaries_agree([1000], [1011], tolerance_abs=0, tolerance_ppm=9_999)
    assert not summaries_agree([1, 2], [1, 2, 3], tolerance_abs=10**9)
    assert summaries_agree([], [], tolerance_abs=0)


@given(vectors, tols, tols)
def test_reflexive(a, tol, ppm):
    assert summaries_agree(a, a, tol, ppm)


@given(ints, ints, tols, tols)
def test_symmetric(a, b, tol, ppm):
    assert is_within_tolerance(a, b, tol, ppm) == is_within_tolerance(b, a, tol, ppm)


@given(ints, ints, tols, tols, tols)
def test_monotone_in_tolerance(a, b, tol, ppm, extra):
    if is_within_tolerance(a, b, tol, ppm):
        assert is_within_tolerance(a, b, tol + extra, ppm)
        assert is_within_tolerance(a, b, tol, ppm + extra)


@given(ints, st.integers(min_value=1, max_value=10**6))
def test_zero_tolerance_is_exact(a, delta):
    assert not is_within_tolerance(a, a + delta, 0, 0)
