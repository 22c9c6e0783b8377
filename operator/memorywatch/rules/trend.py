"""The "sustained growth" test every trend rule shares: a robust slope, rising floors and monotonic agreement.

A series passes only when all three hold (docs/rules.md explains why each one is there):
1. rate: the Theil–Sen slope (median of pairwise slopes, robust to ~29% outliers) × window ≥ min growth;
2. floors: split the covered span into 3–4 equal time segments and take each one's minimum; every floor must
   sit above the previous one by a real share of the rise, no single step may carry most of it, and the
   total floor rise must be at least half the min growth (scaled to the covered part of the window).
   A burst that drains leaves a low floor behind it, a start-up step leaves flat floors after it, and a
   GC saw-tooth judged at GC points has flat floors;
3. still growing: the Theil–Sen slope of the newest half of the span is at least half the minimum rate,
   so a pool or cache that grew once and has been flat since (a start-up ramp) stops counting;
4. agreement: the Mann–Kendall test says later values are higher, at a one-sided level of 1%, with an
   n-aware (exact for small n) critical value and the Hamed–Rao allowance for autocorrelation
   (mann_kendall.py): a random walk or a slowly draining queue does not pass for a trend.

Cost: a window's statistics that do not depend on the min growth (`WindowStats`: the floors, the slope once
computed) are shared by the verdict and the relaxed one behind "suspicious"; the costly ones (the window's
Theil–Sen slope, the newest half's, Mann–Kendall, the oldest half's slope) only when every cheaper test before
them passed, in the order above. The rate test first asks an O(n) upper bound on the slope
(theil_sen.py), and the floors are tested before the slope when the bound does not decide: a window that
either rejects costs the bound and one pass for the floors, and its slope (the growth every status line
shows) and the wording of its reason are computed only when someone reads them (lazy.py).
The verdicts are those of judging everything every time: tests/unit/rules/test_trend_gating.py compares both
on randomized series, and the lazily computed growth with the eager one.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from memorywatch.rules import mann_kendall as mk
from memorywatch.rules.floors import floors_columns
from memorywatch.rules.lazy import Lazy
from memorywatch.rules.series import Point
from memorywatch.rules.theil_sen import (
    MAX_PAIRWISE_POINTS,
    Columns,
    theil_sen_columns,
    theil_sen_rising,
    theil_sen_upper_bound,
)
from memorywatch.rules.theil_sen import evenly_columns as _evenly_columns

MIN_POINTS = 8
# Series measured at GC points get one point per completed GC; with the fresh-GC probe (gc_points.py) a
# window holds about ten of them, so they are judged from six.
MIN_GC_POINTS = 6
FLOOR_RISE_FRACTION = 0.5
# Each floor step must be at least this share of the average step, and no step more than MAX of the total:
# a linear leak rises evenly; a one-off step puts (almost) all of the rise into one segment boundary.
MIN_STEP_SHARE = -0.25
MAX_STEP_SHARE = 0.8
# The newest half of the span must still grow at this share of the minimum rate.
RECENT_RATE_SHARE = 0.5
# Saturation: a rise whose newest half grows at less than this share of its oldest half's rate is slowing
# down the way a cache or pool fills (concave); the rules hold it back for a later window (base.py).
SATURATION_RATIO = 0.4


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trend:
    """How one series behaved over one window, and whether that counts as sustained growth.

    `slope_per_second` and `growth` may be given as functions (lazy.py): a window rejected by the slope's
    upper bound computes them only when read."""

    points: int
    window_seconds: float
    span_seconds: float
    coverage: float
    first_value: float
    last_value: float
    slope_per_second: Lazy[float] = Lazy()
    # None when a cheaper test already failed (the newest half's slope was not needed).
    recent_slope_per_second: float | None
    growth: Lazy[float] = Lazy()
    min_growth: float
    floors: tuple[float, ...]
    floor_rise: float
    kendall_tau: float | None
    mann_kendall_z: float | None
    sustained: bool
    reason: Lazy[str] = Lazy()
    mann_kendall_p: float | None = None
    variance_inflation: float | None = None
    early_slope_per_second: float | None = None

    @property
    def saturating(self) -> bool:
        """The rise slows down across the window (concave): the newest half grows at under SATURATION_RATIO
        of the oldest half's rate, as a cache or a pool does while it fills."""
        early, recent = self.early_slope_per_second, self.recent_slope_per_second
        return early is not None and early > 0 and recent is not None and recent < SATURATION_RATIO * early

    def evidence(self) -> dict[str, Any]:
        """The numbers behind the verdict, JSON-serialisable."""
        return {
            "window_seconds": self.window_seconds,
            "points": self.points,
            "span_seconds": round(self.span_seconds, 3),
            "first_value": self.first_value,
            "last_value": self.last_value,
            "slope_per_second": self.slope_per_second,
            "recent_half_slope_per_second": self.recent_slope_per_second,
            "growth_over_window": self.growth,
            "min_growth": self.min_growth,
            "segment_floors": list(self.floors),
            "floor_rise": self.floor_rise,
            "kendall_tau": None if self.kendall_tau is None else round(self.kendall_tau, 4),
            "mann_kendall_z": None if self.mann_kendall_z is None else round(self.mann_kendall_z, 3),
            "mann_kendall_p": None if self.mann_kendall_p is None else float(f"{self.mann_kendall_p:.3g}"),
            "oldest_half_slope_per_second": self.early_slope_per_second,
            "autocorrelation_variance_factor": None
            if self.variance_inflation is None
            else round(self.variance_inflation, 3),
        }


def theil_sen_slope(points: Sequence[Point]) -> float:
    """Median of the slopes between every pair of points (per second); 0 with fewer than two times."""
    return theil_sen_columns([p.time for p in points], [p.value for p in points])


def mann_kendall(points: Sequence[Point]) -> tuple[float, float]:
    """Kendall's tau (−1..1) between time and value, and the Mann–Kendall Z score (tie- and
    autocorrelation-corrected, see mann_kendall.py)."""
    ts, vs = _evenly_columns([p.time for p in points], [p.value for p in points], MAX_PAIRWISE_POINTS)
    result = mk.mann_kendall_test(ts, vs, theil_sen_columns(ts, vs))
    return result.tau, result.z


def segment_floors(points: Sequence[Point], segments: int) -> tuple[float, ...]:
    """The minimum of each of `segments` equal time slices (by index when a slice would be empty)."""
    return floors_columns([p.time for p in points], [p.value for p in points], segments)


class WindowStats:
    """What one window of a series measures, whatever the min growth it is judged against: the cheap
    statistics at once, the costly ones (`recent_slope`, `mann_kendall`, `early_slope`) on first use and
    then kept, so a second verdict on the same window (the relaxed one behind "suspicious") costs nothing."""

    __slots__ = (
        "_early_done",
        "_early_slope",
        "_recent_slope",
        "_slope",
        "_slope_bound",
        "_test",
        "coverage",
        "floor_rise",
        "floors",
        "middle",
        "n",
        "span",
        "times",
        "values",
        "window_seconds",
    )

    def __init__(self, times: Columns, values: Columns, window_seconds: float) -> None:
        n = len(times)
        if n < 2:
            raise ValueError("a window needs two points to be measured")
        self.times, self.values, self.n, self.window_seconds = times, values, n, window_seconds
        span = times[-1] - times[0]
        spacing = span / (n - 1)
        self.span = span
        self.coverage = min(1.0, (span + spacing) / window_seconds) if window_seconds > 0 else 1.0
        self._slope: float | None = None
        self._slope_bound: float | None = None
        segments = 4 if n >= 16 else 3
        self.floors = floors_columns(times, values, segments) if n >= segments else ()
        self.floor_rise = self.floors[-1] - self.floors[0] if self.floors else 0.0
        self.middle = times[0] + span / 2
        self._recent_slope: float | None = None
        self._test: mk.MannKendall | None = None
        self._early_slope: float | None = None
        self._early_done = False

    @property
    def slope(self) -> float:
        """The Theil–Sen slope of the window (per second), computed on first use."""
        if self._slope is None:
            self._slope = theil_sen_columns(self.times, self.values)
        return self._slope

    def fitted_slope(self) -> float:
        """`slope`, as a function (for a lazy field)."""
        return self.slope

    def growth(self) -> float:
        """The fitted growth over the window: the slope × the window."""
        return self.slope * self.window_seconds

    def growth_bound(self) -> float:
        """An upper bound on `growth()` in O(n) (`theil_sen_upper_bound`), or the growth itself once known."""
        if self._slope is not None:
            return self._slope * self.window_seconds
        if self._slope_bound is None:
            self._slope_bound = theil_sen_upper_bound(self.times, self.values)
        return self._slope_bound * self.window_seconds

    def rising(self) -> bool:
        """`slope > 0`, decided without the slope when the slope's upper bound is already known to be ≤ 0 or
        the signs of the pairs decide it (`theil_sen_rising`)."""
        if self._slope is None:
            if self._slope_bound is not None and self._slope_bound <= 0:
                return False
            known = theil_sen_rising(self.times, self.values)
            if known is not None:
                return known
        return self.slope > 0

    def recent_slope(self) -> float:
        """The Theil–Sen slope of the newest half of the span (the whole slope with fewer than 3 points)."""
        if self._recent_slope is None:
            middle = self.middle
            pairs = [(t, v) for t, v in zip(self.times, self.values, strict=True) if t >= middle]
            self._recent_slope = (
                theil_sen_columns([t for t, _ in pairs], [v for _, v in pairs])
                if len(pairs) >= 3
                else self.slope
            )
        return self._recent_slope

    def mann_kendall(self) -> mk.MannKendall:
        if self._test is None:
            ts, vs = _evenly_columns(self.times, self.values, MAX_PAIRWISE_POINTS)
            self._test = mk.mann_kendall_test(ts, vs, self.slope)
        return self._test

    def early_slope(self) -> float | None:
        """The Theil–Sen slope of the oldest half of the span (None with fewer than 3 points there)."""
        if not self._early_done:
            middle = self.middle
            pairs = [(t, v) for t, v in zip(self.times, self.values, strict=True) if t <= middle]
            if len(pairs) >= 3:
                self._early_slope = theil_sen_columns([t for t, _ in pairs], [v for _, v in pairs])
            self._early_done = True
        return self._early_slope


def assess(
    points: Sequence[Point],
    *,
    window_seconds: float,
    min_growth: float,
    last_value: float | None = None,
    min_points: int = MIN_POINTS,
) -> Trend:
    """Judge `points` (oldest first, all inside one window) for sustained growth of at least `min_growth`
    per `window_seconds`. `last_value` overrides the newest point's value in the evidence (the raw latest)."""
    if len(points) < 2:
        return _too_few(points[0].value if points else 0.0, len(points), window_seconds, min_growth)
    stats = WindowStats([p.time for p in points], [p.value for p in points], window_seconds)
    return judge(stats, min_growth=min_growth, last_value=last_value, min_points=min_points)


def _too_few(value: float, n: int, window_seconds: float, min_growth: float) -> Trend:
    return Trend(
        points=n,
        window_seconds=window_seconds,
        span_seconds=0.0,
        coverage=0.0,
        first_value=value,
        last_value=value,
        slope_per_second=0.0,
        recent_slope_per_second=0.0,
        growth=0.0,
        min_growth=min_growth,
        floors=(),
        floor_rise=0.0,
        kendall_tau=None,
        mann_kendall_z=None,
        sustained=False,
        reason="too few points",
    )


def judge(
    stats: WindowStats, *, min_growth: float, last_value: float | None = None, min_points: int = MIN_POINTS
) -> Trend:
    """The verdict on one measured window against `min_growth`; each test runs only if those before passed.

    The rate test (growth ≥ min growth) and the floor tests are each necessary, so a window that fails a
    floor test (tested first: the floors are already measured) or the slope's upper bound is not sustained
    whatever its slope: its slope, its growth and the
    reason (the first failed test, in the order: points, rate, floors) are then computed when read."""
    n, window_seconds = stats.n, stats.window_seconds
    slope: float | Callable[[], float] = stats.fitted_slope
    growth: float | Callable[[], float] = stats.growth
    reason: str | Callable[[], str]
    if n < min_points:
        reason = f"too few points ({n} < {min_points})"
    elif floors_failed := _floors_why_not(min_growth, stats.floors, stats.floor_rise, stats.coverage):
        reason = functools.partial(_rate_or, stats, min_growth, floors_failed)
    elif stats.growth_bound() < min_growth:  # so is the growth itself: the rate test fails
        reason = RATE_FAILED
    else:
        slope, growth = stats.slope, stats.growth()
        reason = RATE_FAILED if growth < min_growth else ""
    passing = isinstance(reason, str) and not reason
    recent_slope: float | None = None
    if passing:
        recent_slope = stats.recent_slope()
        if recent_slope * window_seconds < RECENT_RATE_SHARE * min_growth:
            reason, passing = "growth stopped: the newest half of the window is (almost) flat", False
    test: mk.MannKendall | None = None
    if passing:  # the O(n²) agreement test only runs when the cheap tests already pass
        test = stats.mann_kendall()
        if test.p_value >= mk.ALPHA:
            reason, passing = (
                (
                    f"values do not rise consistently (Mann–Kendall p = {test.p_value:.2g} ≥ {mk.ALPHA},"
                    f" tau {test.tau:.2f}, n = {test.n})"
                ),
                False,
            )
    early_slope = stats.early_slope() if passing else None
    return Trend(
        points=n,
        window_seconds=window_seconds,
        span_seconds=stats.span,
        coverage=stats.coverage,
        first_value=stats.values[0],
        last_value=stats.values[-1] if last_value is None else last_value,
        slope_per_second=slope,
        recent_slope_per_second=recent_slope,
        growth=growth,
        min_growth=min_growth,
        floors=stats.floors,
        floor_rise=stats.floor_rise,
        kendall_tau=None if test is None else test.tau,
        mann_kendall_z=None if test is None else test.z,
        sustained=passing,
        reason=reason,
        mann_kendall_p=None if test is None else test.p_value,
        variance_inflation=None if test is None else test.variance_inflation,
        early_slope_per_second=early_slope,
    )


RATE_FAILED = "growth below the minimum"


def _rate_or(stats: WindowStats, min_growth: float, floors_failed: str) -> str:
    """The first failed test of a window whose floors failed: the rate test comes first (the slope's bound
    decides it without the slope when it can)."""
    if stats.growth_bound() < min_growth or stats.growth() < min_growth:
        return RATE_FAILED
    return floors_failed


def cannot_pass(stats: WindowStats, *, min_growth: float, min_points: int = MIN_POINTS) -> bool:
    """True when `judge(stats, min_growth=…)` is certainly not sustained by its cheap tests alone (too few
    points, floors, the slope's upper bound), without building the Trend; False says nothing."""
    return (
        stats.n < min_points
        or bool(_floors_why_not(min_growth, stats.floors, stats.floor_rise, stats.coverage))
        or stats.growth_bound() < min_growth
    )


def _floors_why_not(min_growth: float, floors: tuple[float, ...], floor_rise: float, coverage: float) -> str:
    """Empty when the floors pass (rising enough, in every segment, not at once), else the first failure."""
    if floor_rise < FLOOR_RISE_FRACTION * min_growth * coverage:
        return "floors did not rise enough (the series drains back or stepped once)"
    steps = [later - earlier for earlier, later in itertools.pairwise(floors)]
    if min(steps) < MIN_STEP_SHARE * floor_rise / len(steps):
        return "floors did not rise in every segment (a step or a drain, not a trend)"
    if max(steps) > MAX_STEP_SHARE * floor_rise:
        return "most of the rise happened at once (a step, not a trend)"
    return ""
