"""The Theil–Sen slope (the median of the pairwise slopes) of a window, and an O(n) upper bound on it.

The slope is O(n²) (2,016 pairs at 64 points, most of a rule's cost per sample); the bound lets the rate
test reject a window that cannot reach its min growth without it (trend.py).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence

from memorywatch.rules.mann_kendall import pair_signs

# Pairwise statistics are O(n²): judge at most this many evenly spaced points (the floors use all of them).
MAX_PAIRWISE_POINTS = 64
# The upper bound on the slope first tries pairs at least this share of the span apart (a little under the
# spacing that half the pairs of evenly spaced points stay within, 1 − 1/√2 ≈ 0.293 of the span).
BOUND_SPACING_SHARE = 0.28

Columns = Sequence[float]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def evenly_columns(times: Columns, values: Columns, limit: int) -> tuple[list[float], list[float]]:
    """At most `limit` evenly spaced points (by index), the first and the last included."""
    if len(times) <= limit:
        return list(times), list(values)
    step = (len(times) - 1) / (limit - 1)
    picks = [round(i * step) for i in range(limit)]
    return [times[i] for i in picks], [values[i] for i in picks]


def theil_sen_columns(times: Columns, values: Columns) -> float:
    """Median of the slopes between every pair of points (per second); 0 with fewer than two times.
    At most MAX_PAIRWISE_POINTS evenly spaced points are paired."""
    ts, vs = evenly_columns(times, values, MAX_PAIRWISE_POINTS)
    slopes = [
        (vb - va) / (tb - ta)
        for i, (ta, va) in enumerate(zip(ts, vs, strict=True))
        for tb, vb in zip(ts[i + 1 :], vs[i + 1 :], strict=True)
        if tb > ta
    ]
    return _median(slopes) if slopes else 0.0


def theil_sen_upper_bound(times: Columns, values: Columns) -> float:
    """An upper bound on `theil_sen_columns(times, values)` in O(n) (inf when it finds none).

    Of the N pairs with tb > ta, at least ⌈N/2⌉ have a slope ≥ the median m (odd N: the middle one and those
    above it; even N: the upper middle one, ≥ m, and those above it). If fewer than ⌈N/2⌉ pairs are less
    than `gap` apart, one of those pairs is at least `gap` apart; so when m > 0 it rises by
    vb − va ≥ m·(tb − ta) ≥ m·gap, and m ≤ R / gap with R the largest rise of any pair at least `gap` apart
    (one pass with a running minimum). When m ≤ 0, m ≤ 0 ≤ max(R, 0) / gap. The same bound holds for the
    computed floats: each step (a difference of the same two numbers, a division by a larger divisor,
    (a + b)/2 ≤ b) is monotone under rounding. Needs increasing times; NaN or infinite values give inf."""
    ts, vs = evenly_columns(times, values, MAX_PAIRWISE_POINTS)
    n = len(ts)
    if n < 2 or not math.isfinite(sum(vs)) or not all(a < b for a, b in itertools.pairwise(ts)):
        return math.inf  # a series' times only increase; anything else gets no shortcut
    needed = (n * (n - 1) // 2 + 1) // 2
    gap = BOUND_SPACING_SHARE * (ts[-1] - ts[0])
    for _ in range(4):  # halve the gap until fewer than half the pairs are closer than it
        if not gap > 0:
            return math.inf
        if _pairs_closer_than(ts, gap) < needed:
            return max(_largest_rise(ts, vs, gap), 0.0) / gap
        gap /= 2
    return math.inf


def _pairs_closer_than(ts: Sequence[float], gap: float) -> int:
    """Pairs i < j with ts[j] − ts[i] < gap (increasing times)."""
    count, lo = 0, 0
    for j, tj in enumerate(ts):
        while tj - ts[lo] >= gap:
            lo += 1
        count += j - lo
    return count


def _largest_rise(ts: Sequence[float], vs: Sequence[float], gap: float) -> float:
    """The largest vs[j] − vs[i] over pairs with ts[j] − ts[i] ≥ gap (−inf when there is none)."""
    best, lowest, lo = -math.inf, math.inf, 0
    for tj, vj in zip(ts, vs, strict=True):
        while tj - ts[lo] >= gap:
            lowest = min(lowest, vs[lo])
            lo += 1
        best = max(best, vj - lowest)
    return best


def theil_sen_rising(times: Columns, values: Columns) -> bool | None:
    """Whether `theil_sen_columns(times, values) > 0`, without the slopes when the signs of the pairs decide
    it; None when they do not (the caller computes the slope).

    With increasing finite times (span under 1e300) and integral values under 2⁵³ (counts, bytes), a pair's
    slope (vb − va)/(tb − ta) has the sign of vb − va, exactly, and a nonzero one is at least 1/span in size
    (no underflow to 0). With `up` of the N pairs rising, the sorted slopes end with `up` positive ones: the
    median (the middle one, or the mean of the two middle ones) is positive when up ≥ ⌊N/2⌋ + 1, and not
    positive when up < ⌈N/2⌉; an even N with up = N/2 pairs a positive and a non-positive middle slope,
    whose mean's sign needs their sizes (None)."""
    ts, vs = evenly_columns(times, values, MAX_PAIRWISE_POINTS)
    n = len(ts)
    if n < 2:
        return False  # no pair: the slope is 0
    if not (
        all(map(operator.lt, ts, itertools.islice(ts, 1, None)))
        and math.isfinite(ts[0])
        and math.isfinite(ts[-1])
        and ts[-1] - ts[0] < 1e300
        and all(abs(v) < 2**53 and v == int(v) for v in vs)
    ):
        return None
    pairs = n * (n - 1) // 2
    up, _ = pair_signs(vs)
    if up >= pairs // 2 + 1:
        return True
    if up < (pairs + 1) // 2:
        return False
    return None
