"""We check that the statistics rewritten to run their loops in C give the numbers of the loops they replaced,
to the last bit: Mann–Kendall's S by sorted counts (against every pair's sign, NaN, ±inf, ties and −0.0
included), the Hamed–Rao allowance and the random-walk check (Dickey–Fuller τ, KPSS η) against the
per-row loops kept here verbatim from before the change."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from memorywatch.rules import mann_kendall as mk
from memorywatch.rules import random_walk as rw


def _s_pairwise(values: Sequence[float]) -> int:
    s = 0
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            s += (b > a) - (b < a)
    return s


def _variance_inflation_loops(times: Sequence[float], values: Sequence[float], slope: float) -> float:
    n = len(values)
    if n < 4:
        return 1.0
    ranks = mk._ranks([v - slope * t for t, v in zip(times, values, strict=True)])
    mean = sum(ranks) / n
    centred = [r - mean for r in ranks]
    denominator = sum(c * c for c in centred)
    if denominator <= 0:
        return 1.0
    band = mk.ACF_Z / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 2):
        rho = sum(centred[i] * centred[i + lag] for i in range(n - lag)) / denominator
        if abs(rho) > band:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1 + 2 * total / (n * (n - 1) * (n - 2)))


def _dickey_fuller_loops(times: Sequence[float], values: Sequence[float]) -> float | None:
    n = len(values)
    k = 3
    if n - 1 <= k + 2:
        return None
    t0, span = times[0], (times[-1] - times[0]) or 1.0
    mean = sum(values) / n
    scale = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if scale <= 0:
        return None
    values = [(v - mean) / scale for v in values]
    steps = [values[i] - values[i - 1] for i in range(1, n)]
    rows: list[list[float]] = []
    ys: list[float] = []
    for j in range(n - 1):
        rows.append([1.0, (times[j + 1] - t0) / span, values[j]])
        ys.append(steps[j])
    xtx = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    xty = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(k)]
    beta = rw._solve(xtx, xty)
    column = rw._solve(xtx, [1.0 if i == 2 else 0.0 for i in range(k)])
    if beta is None or column is None:
        return None
    residuals = [y - sum(b * x for b, x in zip(beta, r, strict=True)) for r, y in zip(rows, ys, strict=True)]
    s2 = sum(e * e for e in residuals) / (len(ys) - k)
    se = math.sqrt(s2 * column[2]) if s2 > 0 and column[2] > 0 else 0.0
    return beta[2] / se if se > 0 else None


def _kpss_loops(times: Sequence[float], values: Sequence[float]) -> float | None:
    n = len(values)
    mt, mv = sum(times) / n, sum(values) / n
    sxx = sum((t - mt) ** 2 for t in times)
    if sxx <= 0:
        return None
    slope = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / sxx
    e = [v - mv - slope * (t - mt) for t, v in zip(times, values, strict=True)]
    lags = min(n - 1, int(4 * (n / 100) ** 0.25))
    variance = sum(x * x for x in e) / n
    for lag in range(1, lags + 1):
        variance += 2 * (1 - lag / (lags + 1)) * sum(e[i] * e[i - lag] for i in range(lag, n)) / n
    if variance <= 0:
        return None
    total, partial = 0.0, 0.0
    for x in e:
        partial += x
        total += partial * partial
    return total / (n * n * variance)


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def test_s_by_sorted_counts_is_every_pairs_sign() -> None:
    rnd = random.Random(5)
    specials = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf]
    with_nan = 0
    for trial in range(3000):
        pool = [*specials, rnd.random(), float(rnd.randint(0, 3))] + ([math.nan] if trial % 4 == 0 else [])
        values = [rnd.choice(pool) for _ in range(rnd.randint(0, 70))]
        with_nan += any(math.isnan(v) for v in values)
        assert mk.mann_kendall_s(values) == _s_pairwise(values), values
    assert with_nan


@pytest.mark.parametrize("seed", range(4))
def test_the_c_loops_give_the_python_loops_numbers_bit_for_bit(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(150):
        n = rnd.randint(2, 130)
        ts = [1.76e9 + 15.0 * i + rnd.uniform(0, 0.5) for i in range(n)]
        scale = 10 ** rnd.uniform(0, 10)
        drift = rnd.choice((0.0, scale / 100, -scale / 300))
        walk, vs = 0.0, []
        for _ in range(n):
            walk += rnd.gauss(0, scale / 50)
            vs.append(scale + drift * len(vs) + rnd.choice((walk, rnd.gauss(0, scale / 20), 0.0)))
        slope = rnd.uniform(-1, 1) * scale / 1000
        assert mk.variance_inflation(ts, vs, slope) == _variance_inflation_loops(ts, vs, slope)
        assert _same(rw.dickey_fuller_tau(ts, vs), _dickey_fuller_loops(ts, vs))
        assert _same(rw.kpss_eta(ts, vs), _kpss_loops(ts, vs))
