"""We test the shared "sustained growth" test on shapes a user would recognise: a leak passes, a burst that
drains, a one-off step, a saw-tooth, and growth below the minimum do not, whatever the noise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from memorywatch.rules.series import MAX_POINTS_PER_WINDOW, Point, Series
from memorywatch.rules.trend import assess, mann_kendall, segment_floors, theil_sen_slope

WINDOW = 900.0
MIN_GROWTH = 2000.0


def shape(
    fn: Callable[[float, random.Random], float], *, interval: float = 30.0, seed: int = 0
) -> list[Point]:
    rnd = random.Random(seed)
    return [Point(i * interval, fn(i * interval, rnd)) for i in range(int(WINDOW / interval) + 1)]


def burst_every_5m(t: float, rnd: random.Random) -> float:
    phase = t % 300
    height = 6000 * min(1.0, phase / 60) if phase < 120 else max(0.0, 6000 * (1 - (phase - 120) / 60))
    return 200 + height + rnd.uniform(-20, 20)


CASES = {
    "steady leak": (lambda t, r: 100 + 3000 * t / WINDOW, True),
    "leak with ±30% jitter": (lambda t, r: 100 + 3000 * t / WINDOW + r.uniform(-900, 900), True),
    "leak riding on bursts": (lambda t, r: burst_every_5m(t, r) * 0.3 + 4000 * t / WINDOW, True),
    "flat": (lambda t, r: 500 + r.uniform(-50, 50), False),
    "bursts that drain": (burst_every_5m, False),
    "start-up step": (lambda t, r: (50 if t < 60 else 5000) + r.uniform(-20, 20), False),
    "step mid-window": (lambda t, r: (50 if t < 450 else 5000) + r.uniform(-20, 20), False),
    "slow leak below the minimum": (lambda t, r: 100 + 1000 * t / WINDOW + r.uniform(-30, 30), False),
    "grew then drained at the end": (lambda t, r: 100 + (4000 * t / WINDOW if t < 840 else 0), False),
    "pool that grew for 10m and stopped": (lambda t, r: 100 + 3000 * min(t, 600) / 600, False),
    "saturating warm-up already flat": (lambda t, r: 5000 - 4900 * math.exp(-(t + 900) / 120), False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sustained_growth_shapes(name: str) -> None:
    fn, expected = CASES[name]
    verdicts = [
        assess(shape(fn, seed=seed), window_seconds=WINDOW, min_growth=MIN_GROWTH).sustained
        for seed in range(5)
    ]
    if expected:
        assert sum(verdicts) >= 4, f"{name}: a real leak must pass (almost) every time: {verdicts}"
    else:
        assert not any(verdicts), f"{name} must never pass: {verdicts}"


def test_theil_sen_ignores_outliers_that_least_squares_would_follow() -> None:
    points = [Point(t, 2.0 * t) for t in range(50)]
    points[10] = Point(10, 1e9)
    points[40] = Point(40, -1e9)
    assert theil_sen_slope(points) == pytest.approx(2.0)


def test_mann_kendall_is_one_for_strictly_rising_and_zero_for_flat() -> None:
    tau, z = mann_kendall([Point(t, t) for t in range(30)])
    assert tau == pytest.approx(1.0) and z > 5
    tau, z = mann_kendall([Point(t, 7) for t in range(30)])
    assert tau == 0 and z == 0


def test_floors_are_segment_minima_by_time() -> None:
    points = [Point(t, v) for t, v in enumerate([5, 1, 9, 9, 2, 8, 7, 3, 9, 9, 4, 9])]
    assert segment_floors(points, 4) == (1, 2, 3, 4)


def test_evidence_numbers_of_a_clean_leak() -> None:
    trend = assess(shape(lambda t, r: 100 + 3000 * t / WINDOW), window_seconds=WINDOW, min_growth=MIN_GROWTH)
    assert trend.sustained
    assert trend.slope_per_second == pytest.approx(3000 / WINDOW)
    assert trend.growth == pytest.approx(3000)
    assert trend.first_value == 100 and trend.last_value == pytest.approx(3100)
    assert trend.kendall_tau == pytest.approx(1.0)
    evidence = trend.evidence()
    assert evidence["segment_floors"] == sorted(evidence["segment_floors"])
    assert evidence["growth_over_window"] == pytest.approx(3000)


def test_a_dense_series_is_thinned_but_keeps_its_floors_and_latest_value() -> None:
    series = Series(WINDOW)
    for second in range(int(WINDOW * 3)):
        # 1s scrapes: a leak of 3000/window with a one-second dip every 100s
        value = 3000 * second / WINDOW + (0 if second % 100 else -500)
        series.append(float(second), value)
    assert len(series) <= MAX_POINTS_PER_WINDOW * 1.25 + 2
    now = WINDOW * 3 - 1
    points = series.window(now)
    assert min(p.value for p in points) <= 3000 * (now - WINDOW) / WINDOW - 400, "the dips (floors) survive"
    assert series.latest == Point(now, 3000 * now / WINDOW)
    assert assess(points, window_seconds=WINDOW, min_growth=MIN_GROWTH).sustained
