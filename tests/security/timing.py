"""A noise-tolerant comparison of response times: paired, interleaved samples and medians.

Samples of the kinds under comparison are taken in rounds, one of each kind per round in
shuffled order over the same connection, so drift (a busy neighbour, a GC pause, a warming
cache) lands on every kind alike. The statistic is the median of the per-round differences,
which cancels drift between rounds and ignores the outliers that remain. Two kinds differ
*usably* when that median is further from zero than ``bound``: a generous margin above loopback
jitter, yet below what a shortcut worth exploiting costs (skipping a database lookup or a hash
shows up as a consistent gap in every round).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The smallest typical gap (seconds) treated as usable, and the share of the median allowed.
ABSOLUTE_BOUND = 0.001
RELATIVE_BOUND = 0.2


@dataclass(frozen=True)
class Comparison:
    """The median durations of two kinds, their median paired gap and the gap allowed."""

    median_a: float
    median_b: float
    gap: float
    bound: float

    @property
    def distinguishable(self) -> bool:
        return abs(self.gap) > self.bound

    def describe(self) -> str:
        return (
            f"medians {self.median_a * 1e3:.3f} ms vs {self.median_b * 1e3:.3f} ms, "
            f"median paired gap {self.gap * 1e3:.3f} ms, bound {self.bound * 1e3:.3f} ms"
        )


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Compare durations (seconds) of two kinds; a[i] and b[i] come from the same round."""
    if len(a) != len(b) or not a:
        raise ValueError("paired samples of equal, non-zero length are needed")
    median_a, median_b = statistics.median(a), statistics.median(b)
    gap = statistics.median(x - y for x, y in zip(a, b, strict=True))
    bound = max(ABSOLUTE_BOUND, RELATIVE_BOUND * min(median_a, median_b))
    return Comparison(median_a, median_b, gap, bound)
