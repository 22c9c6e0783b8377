"""The trend test and the series as they were before gating and compaction (main at 6a9ebe3), kept verbatim
as the reference the gated, column-based code in memorywatch.rules must agree with exactly
(test_trend_gating.py). Test code only: nothing in the operator imports it."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

from memorywatch.rules import mann_kendall as mk
from memorywatch.rules.series import MAX_POINTS_PER_WINDOW, RETENTION_MARGIN, Point
from memorywatch.rules.trend import (
    FLOOR_RISE_FRACTION,
    MAX_PAIRWISE_POINTS,
    MAX_STEP_SHARE,
    MIN_POINTS,
    MIN_STEP_SHARE,
    RECENT_RATE_SHARE,
    Trend,
)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _evenly(points: Sequence[Point], limit: int) -> Sequence[Point]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def theil_sen_slope(points: Sequence[Point]) -> float:
    """Median of the slopes between every pair of points (per second); 0 with fewer than two times."""
    sample = _evenly(points, MAX_PAIRWISE_POINTS)
    slopes = [
        (b.value - a.value) / (b.time - a.time)
        for i, a in enumerate(sample)
        for b in sample[i + 1 :]
        if b.time > a.time
    ]
    return _median(slopes) if slopes else 0.0


def segment_floors(points: Sequence[Point], segments: int) -> tuple[float, ...]:
    """The minimum of each of `segments` equal time slices (by index when a slice would be empty)."""
    start, end = points[0].time, points[-1].time
    width = (end - start) / segments
    floors: list[float] = []
    if width > 0:
        buckets: list[list[float]] = [[] for _ in range(segments)]
        for point in points:
            buckets[min(int((point.time - start) / width), segments - 1)].append(point.value)
        if all(buckets):
            return tuple(min(bucket) for bucket in buckets)
    size = len(points) / segments
    for i in range(segments):
        chunk = points[round(i * size) : round((i + 1) * size)]
        floors.append(min(p.value for p in chunk))
    return tuple(floors)


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
    n = len(points)
    if n < 2:
        value = points[0].value if points else 0.0
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
    span = points[-1].time - points[0].time
    spacing = span / (n - 1)
    coverage = min(1.0, (span + spacing) / window_seconds) if window_seconds > 0 else 1.0
    slope = theil_sen_slope(points)
    growth = slope * window_seconds
    segments = 4 if n >= 16 else 3
    floors = segment_floors(points, segments) if n >= segments else ()
    floor_rise = floors[-1] - floors[0] if floors else 0.0
    middle = points[0].time + span / 2
    recent = [point for point in points if point.time >= middle]
    recent_slope = theil_sen_slope(recent) if len(recent) >= 3 else slope
    reason = _why_not(n, growth, min_growth, floors, floor_rise, coverage, min_points)
    if not reason and recent_slope * window_seconds < RECENT_RATE_SHARE * min_growth:
        reason = "growth stopped: the newest half of the window is (almost) flat"
    test: mk.MannKendall | None = None
    if not reason:  # the O(n²) agreement test only runs when the cheap tests already pass
        sample = _evenly(points, MAX_PAIRWISE_POINTS)
        test = mk.mann_kendall_test([p.time for p in sample], [p.value for p in sample], slope)
        if test.p_value >= mk.ALPHA:
            reason = (
                f"values do not rise consistently (Mann–Kendall p = {test.p_value:.2g} ≥ {mk.ALPHA},"
                f" tau {test.tau:.2f}, n = {test.n})"
            )
    early_slope: float | None = None
    if not reason:
        early = [point for point in points if point.time <= middle]
        early_slope = theil_sen_slope(early) if len(early) >= 3 else None
    return Trend(
        points=n,
        window_seconds=window_seconds,
        span_seconds=span,
        coverage=coverage,
        first_value=points[0].value,
        last_value=points[-1].value if last_value is None else last_value,
        slope_per_second=slope,
        recent_slope_per_second=recent_slope,
        growth=growth,
        min_growth=min_growth,
        floors=floors,
        floor_rise=floor_rise,
        kendall_tau=None if test is None else test.tau,
        mann_kendall_z=None if test is None else test.z,
        sustained=not reason,
        reason=reason,
        mann_kendall_p=None if test is None else test.p_value,
        variance_inflation=None if test is None else test.variance_inflation,
        early_slope_per_second=early_slope,
    )


def _why_not(
    n: int,
    growth: float,
    min_growth: float,
    floors: tuple[float, ...],
    floor_rise: float,
    coverage: float,
    min_points: int = MIN_POINTS,
) -> str:
    """Empty when rate and floors pass, else the first test that failed, in plain words."""
    if n < min_points:
        return f"too few points ({n} < {min_points})"
    if growth < min_growth:
        return "growth below the minimum"
    if floor_rise < FLOOR_RISE_FRACTION * min_growth * coverage:
        return "floors did not rise enough (the series drains back or stepped once)"
    steps = [later - earlier for earlier, later in itertools.pairwise(floors)]
    if min(steps) < MIN_STEP_SHARE * floor_rise / len(steps):
        return "floors did not rise in every segment (a step or a drain, not a trend)"
    if max(steps) > MAX_STEP_SHARE * floor_rise:
        return "most of the rise happened at once (a step, not a trend)"
    return ""


class ReferenceSeries:
    """Points of one signal, oldest first, at most ~MAX_POINTS_PER_WINDOW per `window_seconds`.

    Thinning keeps each bucket's LOWEST value (at that value's time): the trend tests judge floors, and a
    bucket's minimum is the conservative choice for leak detection (a burst inside a bucket is dropped, a
    drain is kept). `latest` always holds the newest raw point, so "current value" is never thinned.
    """

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._bucket_seconds = window_seconds / MAX_POINTS_PER_WINDOW
        self._points: collections.deque[Point] = collections.deque()
        self._bucket_start = float("-inf")
        self.latest: Point | None = None

    def __len__(self) -> int:
        return len(self._points)

    def clear(self) -> None:
        self._points.clear()
        self._bucket_start = float("-inf")
        self.latest = None

    def append(self, time: float, value: float) -> None:
        point = Point(time, value)
        self.latest = point
        if self._points and time - self._bucket_start < self._bucket_seconds:
            if value < self._points[-1].value:
                self._points[-1] = point
        else:
            self._points.append(point)
            self._bucket_start = time
        horizon = time - self.window_seconds * (1 + RETENTION_MARGIN)
        while self._points and self._points[0].time < horizon:
            self._points.popleft()

    def window(self, now: float, window_seconds: float | None = None) -> list[Point]:
        """Points inside the last `window_seconds` (default: the series' window) ending at `now`."""
        start = now - (self.window_seconds if window_seconds is None else window_seconds)
        return [point for point in self._points if point.time >= start]

    def first_time(self) -> float | None:
        return self._points[0].time if self._points else None
