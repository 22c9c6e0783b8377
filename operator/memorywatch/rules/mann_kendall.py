"""The Mann–Kendall trend test as the agreement gate: an n-aware critical value and an allowance for
autocorrelation, so it holds at the small n a window gives (6 GC points, 30 scrapes).

- **Statistic:** S = Σ sign(x_j − x_i) over every pair i < j; Kendall's tau = S / (n(n−1)/2).
- **n-aware p-value:** for n ≤ EXACT_MAX_N without ties, the exact null distribution of S (every ordering
  equally likely: S = n(n−1)/2 − 2·inversions, and permutations by number of inversions are the Mahonian
  numbers). Otherwise the normal approximation with the tie-corrected variance
  Var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18 and a continuity correction.
- **Autocorrelation (Hamed & Rao 1998):** a healthy Go metric is not independent noise: a queue that drains
  slowly, a random walk, a cache filling all leave neighbouring points alike, and positively autocorrelated
  data passes the plain test far too often. The series is detrended with the Theil–Sen slope, ranked, and
  the rank autocorrelations ρ(k) that are significant (|ρ(k)| > 1.96/√n) inflate the variance:
  n/n* = 1 + 2/(n(n−1)(n−2)) · Σ (n−k)(n−k−1)(n−k−2) ρ(k), never below 1.
- **Gate:** the one-sided p-value is the larger of the plain (exact or normal) one and the corrected normal
  one, and must be below ALPHA.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import operator
from collections.abc import Sequence

# One-sided significance level for "later values are higher".
ALPHA = 0.01
# Exact null distribution up to this many points (n(n−1)/2 = 190 inversion counts); normal beyond.
EXACT_MAX_N = 20
# Two-sided 95% band for a sample autocorrelation under independence: ±1.96/√n.
ACF_Z = 1.96


@dataclasses.dataclass(frozen=True)
class MannKendall:
    n: int
    s: int
    tau: float
    z: float  # with the autocorrelation-corrected variance
    p_value: float  # one-sided, for a rising trend
    variance_inflation: float  # Hamed–Rao n/n*, ≥ 1
    exact: bool  # the plain p-value came from the exact distribution


@functools.lru_cache(maxsize=EXACT_MAX_N + 1)
def _mahonian(n: int) -> tuple[int, ...]:
    """How many permutations of n items have k inversions, for k = 0 … n(n−1)/2."""
    counts = [1]
    for m in range(2, n + 1):
        grown = [0] * (len(counts) + m - 1)
        for k, c in enumerate(counts):
            for extra in range(m):
                grown[k + extra] += c
        counts = grown
    return tuple(counts)


def exact_upper_p(n: int, s: int) -> float:
    """P(S ≥ s) under no trend and no ties, from the exact distribution."""
    counts = _mahonian(n)
    max_inversions = n * (n - 1) // 2
    # S = max − 2·inv ≥ s  ⇔  inv ≤ (max − s) / 2
    limit = (max_inversions - s) // 2
    if limit < 0:
        return 0.0
    return sum(counts[: limit + 1]) / math.factorial(n)


def _normal_upper_p(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def variance_inflation(times: Sequence[float], values: Sequence[float], slope: float) -> float:
    """Hamed–Rao n/n* from the significant autocorrelations of the detrended ranks (≥ 1)."""
    n = len(values)
    if n < 4:
        return 1.0
    ranks = _ranks([v - slope * t for t, v in zip(times, values, strict=True)])
    mean = sum(ranks) / n
    centred = [r - mean for r in ranks]
    denominator = sum(map(operator.mul, centred, centred))
    if denominator <= 0:
        return 1.0
    band = ACF_Z / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 2):
        rho = sum(map(operator.mul, centred, centred[lag:])) / denominator  # centred[i]·centred[i + lag]
        if abs(rho) > band:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1 + 2 * total / (n * (n - 1) * (n - 2)))


def pair_signs(values: Sequence[float]) -> tuple[int, int]:
    """(pairs i < j with x_j > x_i, pairs with x_j < x_i). Without NaN, in O(n log n): walking from the newest
    value back, the later values kept sorted say at once how many are above and below the current one (equal
    ones count in neither). A NaN compares false both ways, which bisection cannot order: then pair by pair."""
    if not all(map(operator.eq, values, values)):
        above = sum(b > a for i, a in enumerate(values) for b in values[i + 1 :])
        return above, sum(b < a for i, a in enumerate(values) for b in values[i + 1 :])
    above = below = 0
    later: list[float] = []
    for value in reversed(values):
        above += len(later) - bisect.bisect_right(later, value)
        below += bisect.bisect_left(later, value)
        bisect.insort(later, value)
    return above, below


def mann_kendall_s(values: Sequence[float]) -> int:
    """S = Σ sign(x_j − x_i) over every pair i < j (an exact integer, from `pair_signs`)."""
    above, below = pair_signs(values)
    return above - below


def mann_kendall_test(times: Sequence[float], values: Sequence[float], slope: float) -> MannKendall:
    """The test on (time, value) pairs, oldest first; `slope` (per time unit) detrends for the correction."""
    n = len(values)
    if n < 3:
        return MannKendall(n, 0, 0.0, 0.0, 1.0, 1.0, False)
    s = mann_kendall_s(values)
    tau = s / (n * (n - 1) / 2)
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in counts.values() if t > 1)
    variance = (n * (n - 1) * (2 * n + 5) - ties) / 18
    if variance <= 0 or s <= 0:
        return MannKendall(n, s, tau, 0.0, 1.0 if s <= 0 else 0.5, 1.0, False)
    exact = n <= EXACT_MAX_N and not ties
    plain_p = exact_upper_p(n, s) if exact else _normal_upper_p((s - 1) / math.sqrt(variance))
    inflation = variance_inflation(times, values, slope)
    z = (s - 1) / math.sqrt(variance * inflation)
    return MannKendall(n, s, tau, z, max(plain_p, _normal_upper_p(z)), inflation, exact)
