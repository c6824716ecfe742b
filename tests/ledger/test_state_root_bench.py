"""``bench.state_root`` at a tiny size: it runs, its roots agree with the from-scratch ones, and its copy of the old
flat root (``flat_root``) tracks every write as the old ``state_root`` did."""

import random

from bench.state_root import FlatCache, build_state, finished_job, flat_root, flat_root_uncached, measure, touch


def test_measure_runs_at_a_tiny_size() -> None:
    row = measure(200, 0.1, 2, seed=1)  # measure itself asserts cached == uncached for both roots
    assert row["records"] == 200 + 1 + 1 + 20  # accounts, the validator's account and worker, jobs
    assert row[1][0] > 0 and row[1][1] > 0
    assert 5_000 not in row  # 5,000 distinct accounts do not fit in 200


def test_flat_root_follows_each_block() -> None:
    rng = random.Random(3)
    state, accounts, _ = build_state(50, 5, finished_job(), rng)
    cache = FlatCache()
    everything = {("account", a) for a in state.accounts} | {("job", j) for j in state.jobs}
    everything |= {("worker", w) for w in state.workers}
    roots = [flat_root(state, cache, everything)]
    for _ in range(3):
        touch(state, accounts, 2, rng)
        dirty = set(state._dirty)
        state._dirty.clear()
        roots.append(flat_root(state, cache, dirty))
        assert roots[-1] == flat_root_uncached(state)
    assert len(set(roots)) == len(roots)
