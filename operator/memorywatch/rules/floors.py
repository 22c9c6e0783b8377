"""The floors of a window: the minimum of each of a few equal time slices (trend.py's floor tests)."""

from __future__ import annotations

import bisect
import itertools
import operator

from memorywatch.rules.theil_sen import Columns


def floors_columns(times: Columns, values: Columns, segments: int) -> tuple[float, ...]:
    """The minimum of each of `segments` equal time slices (by index when a slice would be empty)."""
    start, end = times[0], times[-1]
    width = (end - start) / segments
    if width > 0:
        if all(map(operator.le, times, itertools.islice(times, 1, None))):
            return _sorted_floors(times, values, segments, start, width)
        buckets: list[list[float]] = [[] for _ in range(segments)]
        last = segments - 1
        for time, value in zip(times, values, strict=True):
            buckets[min(int((time - start) / width), last)].append(value)
        if all(buckets):
            return tuple(min(bucket) for bucket in buckets)
    return _index_floors(len(times), values, segments)


def _sorted_floors(
    times: Columns, values: Columns, segments: int, start: float, width: float
) -> tuple[float, ...]:
    """`floors_columns` for non-decreasing times: a time's slice, min(int((time − start) / width), last), only
    grows with the time (each step is monotone), so each slice is one run of indices; its first index is
    found by bisection and its minimum taken over the run (the same values in the same order)."""

    def segment(time: float) -> int:
        return int((time - start) / width)

    bounds = [0]
    for k in range(1, segments):
        bounds.append(bisect.bisect_left(times, k, lo=bounds[-1], key=segment))
    bounds.append(len(times))
    if all(map(operator.lt, bounds, itertools.islice(bounds, 1, None))):  # no empty slice
        return tuple(min(values[a:b]) for a, b in itertools.pairwise(bounds))
    return _index_floors(len(times), values, segments)


def _index_floors(n: int, values: Columns, segments: int) -> tuple[float, ...]:
    """The minimum of each of `segments` equal runs of the `n` points, by index."""
    size = n / segments
    return tuple(min(values[round(i * size) : round((i + 1) * size)]) for i in range(segments))
