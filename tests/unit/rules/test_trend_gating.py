"""We check that gating the trend test (the costly statistics only when the cheap tests pass, shared between
the verdict and the relaxed one behind "suspicious") and keeping series as columns changed no verdict: on
randomized series of every shape a Go service shows (leaks, GC saw-tooths, cache saw-tooths, bursts, steps,
random walks, saturating pools, sparse GC points), the new code and the reference (the code as it was,
kept verbatim in trend_reference.py) give the same windows, the same Trend, and the same rule verdicts."""

from __future__ import annotations

import collections
import dataclasses
import math
import random
from collections.abc import Callable, Iterator

import pytest
from tests.unit.rules import trend_reference as ref

from memorywatch.rules.base import SUSPICION_COVERAGE, SUSPICION_GROWTH_SHARE
from memorywatch.rules.goroutine_growth import GoroutineGrowth
from memorywatch.rules.model import RuleKind, RuleSpec
from memorywatch.rules.series import Point, Series
from memorywatch.rules.trend import MIN_GC_POINTS, Trend, WindowStats, assess, judge
from memorywatch.samples import Sample

WINDOW = 900.0
MIN_GROWTH = 2000.0
Shape = Callable[[float, random.Random], float]


def _walk() -> Shape:
    state = {"v": 5000.0}

    def step(t: float, r: random.Random) -> float:
        del t
        state["v"] += r.gauss(0, MIN_GROWTH / 13)
        return state["v"]

    return step


def shapes(rnd: random.Random) -> dict[str, Shape]:
    rate = rnd.uniform(0.3, 3.0) * MIN_GROWTH / WINDOW  # from well below to well above the minimum
    noise = rnd.uniform(0, 0.5) * MIN_GROWTH
    period = rnd.uniform(60, 600)
    return {
        "leak": lambda t, r: 1000 + rate * t + r.uniform(-noise, noise),
        "leak on a GC saw-tooth": lambda t, r: 1000 + rate * t + 3 * MIN_GROWTH * ((t % period) / period),
        "cache saw-tooth": lambda t, r: 1000 + 2 * MIN_GROWTH * ((t % period) / period) + r.uniform(0, noise),
        "bursts": lambda t, r: 1000 + (4 * MIN_GROWTH if t % 300 < 30 else 0) + r.uniform(0, noise),
        "leak with bursts": lambda t, r: 1000 + rate * t + (4 * MIN_GROWTH if t % 300 < 30 else 0),
        "step": lambda t, r: 1000 + (3 * MIN_GROWTH if t > period else 0) + r.uniform(0, noise),
        "random walk": _walk(),
        "saturating": lambda t, r: 1000 + 3 * MIN_GROWTH * (1 - math.exp(-t / (3 * period))),
        "flat, integer ties": lambda t, r: float(r.randint(0, 3)),
        "drain": lambda t, r: 1000 + 3 * MIN_GROWTH * max(0.0, 1 - t / (2 * WINDOW)) + r.uniform(0, noise),
    }


def times(rnd: random.Random, kind: str, horizon: float) -> Iterator[float]:
    """Scrape times: regular, jittered, sparse like GC points, or dense (so the series thins)."""
    t = rnd.uniform(0, 100)
    while t < horizon:
        yield t
        if kind == "regular":
            t += 15.0
        elif kind == "jittered":
            t += rnd.uniform(5, 40)
        elif kind == "gc points":
            t += rnd.expovariate(1 / 120)
        else:  # dense: several points per thinning bucket
            t += rnd.uniform(0.2, 3.0)


def same_trend(new: Trend | None, old: Trend | None) -> None:
    if new is None or old is None:
        assert new is None and old is None
        return
    if new.recent_slope_per_second is None:  # not needed: a cheaper test failed first
        assert not old.sustained and new.reason == old.reason
        new = dataclasses.replace(new, recent_slope_per_second=old.recent_slope_per_second)
    assert new == old


CASES = [(seed, kind) for seed in range(2) for kind in ("regular", "jittered", "gc points", "dense")]


@pytest.mark.parametrize(("seed", "kind"), CASES)
def test_columns_and_gated_verdicts_equal_the_reference(seed: int, kind: str) -> None:
    rnd = random.Random(seed * 31 + len(kind))
    reasons: collections.Counter[str] = collections.Counter()
    for name, shape in shapes(rnd).items():
        series, reference = Series(WINDOW), ref.ReferenceSeries(WINDOW)
        min_points = MIN_GC_POINTS if kind == "gc points" else ref.MIN_POINTS
        for i, t in enumerate(times(rnd, kind, (1.6 if kind == "dense" else 3) * WINDOW)):
            value = shape(t, rnd)
            series.append(t, value)
            reference.append(t, value)
            assert series.latest == reference.latest
            if i % (40 if kind == "dense" else 4):
                continue
            old_points = reference.window(t)
            ts, vs = series.window_columns(t)
            assert list(zip(ts, vs, strict=True)) == [(p.time, p.value) for p in old_points], name
            if len(ts) < 2:
                continue
            stats = WindowStats(ts, vs, WINDOW)
            for share in (1.0, SUSPICION_GROWTH_SHARE):  # the verdict and the relaxed one, on shared stats
                kw = {"window_seconds": WINDOW, "min_growth": MIN_GROWTH * share, "min_points": min_points}
                old = ref.assess(old_points, **kw)
                same_trend(judge(stats, min_growth=kw["min_growth"], min_points=min_points), old)
                same_trend(assess(series.window(t), **kw), old)
                reasons[old.reason.split(" (")[0].split(":")[0] if old.reason else "sustained"] += 1
    # The comparison reached both ends of the chain: sustained trends, and windows that passed the growth
    # test and failed a later one (so the gated statistics were compared, not only the early exits).
    assert reasons["sustained"], dict(reasons)
    later = set(reasons) - {"sustained", "too few points", "growth below the minimum"}
    assert later, dict(reasons)


@pytest.mark.parametrize("seed", range(4))
def test_a_trend_rule_decides_as_the_reference_on_every_sample(seed: int) -> None:
    """The rule skeleton (series, verdict, the relaxed verdict behind "suspicious") against the reference
    fed the same values, sample by sample, through leaks, bursts and saw-tooths in turn."""
    rnd = random.Random(seed)
    rule = GoroutineGrowth(
        RuleSpec("g", RuleKind.GOROUTINE_GROWTH, window_seconds=WINDOW, min_growth=MIN_GROWTH)
    )
    reference = ref.ReferenceSeries(WINDOW)
    shape_list = list(shapes(rnd).values())
    states: collections.Counter[bool] = collections.Counter()
    t0 = 1_760_000_000.0
    for i in range(400):
        t = t0 + 15.0 * i + rnd.uniform(0, 3)
        value = float(max(0, round(shape_list[(i // 100) % len(shape_list)](t - t0, rnd))))
        rule.observe(Sample(target="t", time=t, goroutines=int(value)), started_at=t0)
        reference.append(t, value)
        points = reference.window(t)
        old = None
        if len(points) >= 2:
            latest = reference.latest
            old = ref.assess(
                points,
                window_seconds=WINDOW,
                min_growth=MIN_GROWTH,
                last_value=latest.value if latest else None,
            )
        same_trend(rule.last_trend, old)
        suspicious = (
            old is not None
            and old.coverage >= SUSPICION_COVERAGE
            and (
                old.sustained
                or (
                    old.growth >= MIN_GROWTH * SUSPICION_GROWTH_SHARE
                    and ref.assess(
                        points, window_seconds=WINDOW, min_growth=MIN_GROWTH * SUSPICION_GROWTH_SHARE
                    ).sustained
                )
            )
        )
        assert rule.suspicious == suspicious, i
        states[suspicious] += 1
    assert states[True] and states[False], "both verdicts were compared"


def test_a_window_measured_once_serves_both_verdicts_without_recomputing() -> None:
    rnd = random.Random(1)
    points = [Point(15.0 * i, 100 + 60 * i + rnd.uniform(-200, 200)) for i in range(61)]
    stats = WindowStats([p.time for p in points], [p.value for p in points], WINDOW)
    first = judge(stats, min_growth=MIN_GROWTH)
    assert first.sustained and first.recent_slope_per_second is not None
    cached = stats.mann_kendall()
    assert judge(stats, min_growth=MIN_GROWTH / 2).sustained
    assert stats.mann_kendall() is cached, "the agreement test ran once for both verdicts"


def test_a_flat_series_stops_at_the_growth_test_and_skips_the_costly_statistics() -> None:
    stats = WindowStats([15.0 * i for i in range(61)], [500.0] * 61, WINDOW)
    trend = judge(stats, min_growth=MIN_GROWTH)
    assert trend.reason == "growth below the minimum"
    assert trend.recent_slope_per_second is None and trend.mann_kendall_p is None
    assert stats._recent_slope is None and stats._test is None
