"""How many txs a proposer puts in a block: as many as this node executes within a time budget.

A block must be built by its proposer, then validated (executed, and its unknown signatures checked) by every
validator, within the round's timeouts; a block too slow to execute costs a round, and under overload every
round. So the count cap follows measured execution time rather than only ``MAX_BLOCK_TXS``: each build and each
validation of a block of ``n`` txs taking ``t`` seconds is an observation of the per-tx cost ``t / n``, kept as a
moving average, and the next block holds at most ``budget / cost`` txs (within a floor and the ledger's cap).
The rule is local and needs no agreement: a block's size is the proposer's choice, and every size up to the
ledger's cap is valid.
"""

from __future__ import annotations

from ledger.block import MAX_BLOCK_TXS

MIN_OBSERVED_TXS = 64  # a smaller block's time is mostly fixed costs, not per-tx ones
FLOOR_TXS = 256  # never propose fewer than this while the pool has them: a slow sample must not starve the chain
SMOOTHING = 0.3  # weight of the newest observation in the moving average


class ExecBudget:
    """The per-tx execution cost this node measured and the block size it allows in ``budget_s`` seconds."""

    def __init__(self, budget_s: float, *, floor: int = FLOOR_TXS, ceiling: int = MAX_BLOCK_TXS) -> None:
        if budget_s <= 0:
            raise ValueError(f"block execution budget must be positive, got {budget_s}")
        self.budget_s = budget_s
        self.floor = min(floor, ceiling)
        self.ceiling = ceiling
        self.cost_s: float | None = None  # moving average of seconds per tx; None until a block was measured
        self.observed = 0

    def observe(self, n_txs: int, elapsed_s: float) -> None:
        """A block of ``n_txs`` txs took ``elapsed_s`` seconds to build or validate here."""
        if n_txs < MIN_OBSERVED_TXS or elapsed_s < 0:
            return
        cost = elapsed_s / n_txs
        self.cost_s = cost if self.cost_s is None else (1 - SMOOTHING) * self.cost_s + SMOOTHING * cost
        self.observed += 1

    @property
    def max_txs(self) -> int:
        """The most txs the next proposal may hold."""
        if self.cost_s is None or self.cost_s <= 0:
            return self.ceiling
        return max(self.floor, min(self.ceiling, int(self.budget_s / self.cost_s)))
