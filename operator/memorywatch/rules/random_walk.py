"""Is a rise more than a random walk would make? A confirmation signal for every trend rule.

A series that moves by independent steps (a queue that mixes slowly, a pool whose size wanders with
arrivals and departures) is a random walk, and a random walk really does trend for a while: over 60 points
with steps of σ it wanders by about σ·√60 ≈ 7.7 σ, and the rate, floor and Mann–Kendall tests cannot tell
that from a leak, because for a while it *is* a consistent rise. What tells them apart is whether the series
pulls back to a trend line, and the size of the rise against the size of the steps. Three classic tests on
the points of the window, none of them fitted to particular shapes:

1. **Stationary around a trend? (KPSS, Kwiatkowski et al. 1992).** The partial sums of the residuals from
   a least-squares line, against their Newey–West long-run variance: a leak plus noise from whatever is in
   flight at the scrape keeps them small. Not rejected at 5%: not a random walk.
2. **No unit root? (Dickey–Fuller with constant and trend).** Regress the step Δx_t on a constant, t and
   x_{t−1}: a trend-stationary series pulls back towards its trend line (a clearly negative coefficient of
   x_{t−1}); a random walk, with or without a drift, does not. Its τ below MacKinnon's (2010) 5% critical
   value for n points: not a random walk.
3. **A drift beyond a driftless walk.** Otherwise (both tests say "walk-like") the rise must be unlike one
   a driftless random walk with the observed steps makes: under that null the fitted rise over m steps has
   a standard deviation of √(6/5)·σ·√m (the least-squares slope of a Brownian motion over [0, 1] has
   variance 6/5). σ is a robust scale of the steps (1.4826 × their median absolute deviation; their plain
   standard deviation when more than half of them are equal), so bursts that come and go within the window
   do not inflate it. The Theil–Sen rise over the span must exceed that
   spread DRIFT_Z times: a one-sided level of 0.1%, stricter than the 1% of the Mann–Kendall gate because
   the test is repeated at every scrape on overlapping windows. A leak whose goroutines or bytes arrive at
   random is a random walk *with* a drift and passes by far: its rise grows like m, the walk's spread like
   √m.

A rise that fails all three is held back by the trend rules (base.py) for half a window, whatever the
check says in between: a random walk has no memory and is as likely to fall back as to go on, while a leak
keeps rising and fires after the hold.
Below MIN_POINTS points the tests have no power and the signal stays silent (the other tests stand alone).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import statistics
from collections.abc import Sequence
from typing import Any

from memorywatch.rules.series import Point

# Fewer points than this: no verdict (a Dickey–Fuller test with three coefficients needs a few dozen).
MIN_POINTS = 20
# One-sided 0.1% normal quantile: the rise must exceed 3.09 standard deviations of a driftless walk's rise.
DRIFT_Z = 3.09
# 1.4826 × median absolute deviation estimates σ of normally distributed steps.
MAD_TO_SD = 1.4826
# √(6/5): the least-squares rise of a Brownian motion over its span, in units of σ·√m.
WALK_RISE_SD = math.sqrt(6 / 5)
# MacKinnon (2010), Table 1, constant and trend, 5%: τ(T) = β∞ + β1/T + β2/T² + β3/T³.
DF_CRITICAL_5PCT = (-3.41049, -4.3904, -9.036, -45.374)

# Kwiatkowski et al. (1992), Table 1, stationarity around a trend, 5%.
KPSS_CRITICAL_5PCT = 0.146
WALK = "random walk"
NOT_WALK = "not a random walk"


@dataclasses.dataclass(frozen=True)
class WalkCheck:
    verdict: str  # WALK (hold back) or NOT_WALK
    phrase: str
    evidence: dict[str, Any]


def df_critical(n: int) -> float:
    """The 5% critical value of the Dickey–Fuller τ with constant and trend for n observations."""
    b0, b1, b2, b3 = DF_CRITICAL_5PCT
    return b0 + b1 / n + b2 / n**2 + b3 / n**3


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Solve a small linear system by Gaussian elimination with partial pivoting; None when singular."""
    k = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12 * max(1.0, abs(m[col][col])):
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, k):
            f = m[r][col] / m[col][col]
            for c in range(col, k + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * k
    for r in range(k - 1, -1, -1):
        x[r] = (m[r][k] - sum(m[r][c] * x[c] for c in range(r + 1, k))) / m[r][r]
    return x


def dickey_fuller_tau(times: Sequence[float], values: Sequence[float]) -> float | None:
    """τ of γ in Δx_t = a + b·t + γ·x_{t−1} + e (no augmentation: lagged steps cost too much power at the
    20–60 points of a window, and the steps of the null, a random walk, are independent; times
    rescaled to [0, 1]); None when the regression is degenerate (a straight line has no residuals)."""
    n = len(values)
    k = 3
    if n - 1 <= k + 2:
        return None
    t0, span = times[0], (times[-1] - times[0]) or 1.0
    # τ does not change under x → (x − mean)/sd, and the regression stays well conditioned for byte counts.
    mean = sum(values) / n
    scale = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if scale <= 0:
        return None
    values = [(v - mean) / scale for v in values]
    ys = [values[i] - values[i - 1] for i in range(1, n)]  # ys[j] = x_{j+1} − x_j
    # The regressors as columns (a row j is [1, its time in [0, 1], x_j]); each sum below adds the same
    # products in the same order as a loop over the rows would, in C.
    columns = ([1.0] * (n - 1), [(times[j + 1] - t0) / span for j in range(n - 1)], values[: n - 1])
    xtx = [[sum(map(operator.mul, columns[i], columns[j])) for j in range(k)] for i in range(k)]
    xty = [sum(map(operator.mul, columns[i], ys)) for i in range(k)]
    beta = _solve(xtx, xty)
    column = _solve(xtx, [1.0 if i == 2 else 0.0 for i in range(k)])
    if beta is None or column is None:
        return None
    residuals = [
        y - sum(map(operator.mul, beta, r)) for r, y in zip(zip(*columns, strict=True), ys, strict=True)
    ]
    s2 = sum(map(operator.mul, residuals, residuals)) / (len(ys) - k)
    se = math.sqrt(s2 * column[2]) if s2 > 0 and column[2] > 0 else 0.0
    return beta[2] / se if se > 0 else None


def kpss_eta(times: Sequence[float], values: Sequence[float]) -> float | None:
    """The KPSS statistic for stationarity around a linear trend: η = Σ S_t² / (n²·σ̂²), S_t the partial sums
    of the least-squares residuals and σ̂² their Newey–West long-run variance (bandwidth ⌊4·(n/100)^(1/4)⌋)."""
    n = len(values)
    mt, mv = sum(times) / n, sum(values) / n
    sxx = sum((t - mt) ** 2 for t in times)
    if sxx <= 0:
        return None
    slope = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / sxx
    e = [v - mv - slope * (t - mt) for t, v in zip(times, values, strict=True)]
    lags = min(n - 1, int(4 * (n / 100) ** 0.25))
    variance: float = sum(map(operator.mul, e, e)) / n
    for lag in range(1, lags + 1):  # Σ e[i]·e[i − lag] over i ≥ lag, in order
        variance += 2 * (1 - lag / (lags + 1)) * sum(map(operator.mul, e[lag:], e)) / n
    if variance <= 0:
        return None
    total, partial = 0.0, 0.0
    for x in e:
        partial += x
        total += partial * partial
    return total / (n * n * variance)


def check(points: Sequence[Point], slope_per_second: float) -> WalkCheck | None:
    """Whether the rise in `points` (oldest first) is more than a driftless random walk with the observed
    steps would make; None below MIN_POINTS points or when the series is degenerate."""
    return check_columns([p.time for p in points], [p.value for p in points], slope_per_second)


def check_columns(
    times: Sequence[float], values: Sequence[float], slope_per_second: float
) -> WalkCheck | None:
    """`check` on a window kept as columns (rules/series.py): times and values, oldest first."""
    n = len(values)
    if n < MIN_POINTS:
        return None
    eta = kpss_eta(times, values)
    tau = dickey_fuller_tau(times, values)
    if eta is None or tau is None:
        return None
    critical = df_critical(n)
    evidence: dict[str, Any] = {
        "kpss_eta": round(eta, 4),
        "kpss_critical_5pct": KPSS_CRITICAL_5PCT,
        "dickey_fuller_tau": round(tau, 3),
        "dickey_fuller_critical_5pct": round(critical, 3),
    }
    if eta < KPSS_CRITICAL_5PCT:
        phrase = (
            f"not a random walk (stationary around its trend line: KPSS η = {eta:.3f} < {KPSS_CRITICAL_5PCT})"
        )
        return WalkCheck(NOT_WALK, phrase, evidence)
    if tau < critical:
        phrase = f"not a random walk (it pulls back to its trend line: Dickey–Fuller τ = {tau:.1f} < {critical:.2f})"
        return WalkCheck(NOT_WALK, phrase, evidence)
    steps = [b - a for a, b in itertools.pairwise(values)]
    m = len(steps)
    middle = statistics.median(steps)
    # More than half the steps equal (a count that moves rarely, by jumps): the MAD is 0, use the plain SD.
    sigma = MAD_TO_SD * statistics.median(abs(step - middle) for step in steps) or statistics.stdev(steps)
    rise = slope_per_second * (times[-1] - times[0])
    spread = WALK_RISE_SD * sigma * math.sqrt(m)
    z = rise / spread if spread > 0 else math.inf
    evidence |= {
        "step_sd_robust": sigma,
        "rise_over_span": rise,
        "driftless_walk_rise_sd": spread,
        "rise_in_walk_sd": round(z, 3) if math.isfinite(z) else None,
    }
    if z >= DRIFT_Z:
        phrase = (
            f"a drift beyond a random walk (the rise is {z:.1f}× the spread of a driftless walk with the same"
            f" steps, over {n} points)"
            if math.isfinite(z)
            else f"a drift beyond a random walk (steady steps over {n} points)"
        )
        return WalkCheck(NOT_WALK, phrase, evidence)
    phrase = (
        f"moves like a random walk: the rise is only {z:.1f}× the spread a driftless walk with the same steps"
        f" makes over {n} points (needs {DRIFT_Z})"
    )
    return WalkCheck(WALK, phrase, evidence)
