"""We check the cheap gates of the trend test once more after they were reordered and sped up: the floors
found by bisection over sorted times are the reference's (trend_reference.py, kept verbatim) on random and
hostile windows, and `cannot_pass` (too few points, the floors, then the slope's bound) never rejects a window
the reference judges sustained, at the min growth and at the relaxed one behind "suspicious"."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest
from tests.unit.rules import trend_reference as ref
from tests.unit.rules.test_trend_gating import CASES, MIN_GROWTH, WINDOW, shapes, times

from memorywatch.rules.base import SUSPICION_GROWTH_SHARE
from memorywatch.rules.series import Point, Series
from memorywatch.rules.trend import MIN_GC_POINTS, WindowStats, cannot_pass, floors_columns


def _outcome(floors: Callable[[], tuple[float, ...]]) -> tuple[object, ...]:
    """The floors with NaN made comparable, or the error they raise (unsorted times can index out of range, fewer points than slices leave one empty)."""
    try:
        return tuple("nan" if math.isnan(x) else x for x in floors())
    except (IndexError, ValueError) as error:
        return ("raised", type(error))


@pytest.mark.parametrize("seed", range(6))
def test_floors_equal_the_reference_on_random_and_hostile_windows(seed: int) -> None:
    rnd = random.Random(seed)
    paths = {"sorted": 0, "unsorted": 0}
    for _ in range(400):
        n = rnd.randint(3, 150)
        kind = rnd.choice(("even", "clustered", "repeated", "unsorted", "huge"))
        if kind == "even":
            ts = [1.76e9 + 15.0 * i + rnd.uniform(0, 0.01) for i in range(n)]
        elif kind == "clustered":  # empty slices: the floors fall back to runs by index
            ts = sorted([rnd.uniform(0, 10) for _ in range(n - 1)] + [1000.0])
        elif kind == "repeated":
            ts = sorted(float(rnd.randint(0, 5)) for _ in range(n))
        elif kind == "unsorted":
            ts = [rnd.uniform(0, 1000) for _ in range(n)]
        else:
            ts = sorted(rnd.uniform(-1e12, 1e12) for _ in range(n))
        scale = 10 ** rnd.uniform(-3, 12)
        vs = [rnd.choice((0.0, scale, -scale, rnd.uniform(-scale, scale), math.nan)) for _ in range(n)]
        for segments in (3, 4):
            points = [Point(t, v) for t, v in zip(ts, vs, strict=True)]
            expected = _outcome(lambda: ref.segment_floors(points, segments))  # noqa: B023 (called at once)
            assert _outcome(lambda: floors_columns(ts, vs, segments)) == expected, (kind, segments)  # noqa: B023
        paths["unsorted" if any(b < a for a, b in itertools.pairwise(ts)) else "sorted"] += 1
    assert all(paths.values()), paths


@pytest.mark.parametrize(("seed", "kind"), CASES)
def test_a_window_that_cannot_pass_is_not_sustained(seed: int, kind: str) -> None:
    rnd = random.Random(seed * 31 + len(kind))
    rejected = judged = 0
    for name, shape in shapes(rnd).items():
        series = Series(WINDOW)
        min_points = MIN_GC_POINTS if kind == "gc points" else ref.MIN_POINTS
        for i, t in enumerate(times(rnd, kind, 3 * WINDOW)):
            series.append(t, shape(t, rnd))
            ts, vs = series.window_columns(t)
            if i % 8 or len(ts) < 2:
                continue
            stats = WindowStats(ts, vs, WINDOW)
            for share in (1.0, SUSPICION_GROWTH_SHARE):
                min_growth = MIN_GROWTH * share
                old = ref.assess(
                    series.window(t), window_seconds=WINDOW, min_growth=min_growth, min_points=min_points
                )
                if cannot_pass(stats, min_growth=min_growth, min_points=min_points):
                    assert not old.sustained, name
                    rejected += 1
                judged += 1
    assert 0 < rejected < judged
