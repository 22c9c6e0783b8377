"""A bounded time series of one signal of one target: keeps what the longest window needs, thins dense data.

Stored as two parallel `array('d')` columns (8 bytes a number) rather than one object per point: a target
keeps five to seven of these for its whole life, so per-point objects were most of its rule state.
"""

from __future__ import annotations

import array
import bisect
import dataclasses

# Points kept per window at most; with a 1s interval and a 30m window, neighbours are merged into ~3.5s buckets.
MAX_POINTS_PER_WINDOW = 512
# Extra history kept beyond the window (fraction of it), so a window that slides by one interval stays full.
RETENTION_MARGIN = 0.25


@dataclasses.dataclass(frozen=True)
class Point:
    time: float
    value: float


class Series:
    """Points of one signal, oldest first, at most ~MAX_POINTS_PER_WINDOW per `window_seconds`.

    Thinning keeps each bucket's LOWEST value (at that value's time): the trend tests judge floors, and a
    bucket's minimum is the conservative choice for leak detection (a burst inside a bucket is dropped, a
    drain is kept). `latest` always holds the newest raw point, so "current value" is never thinned.
    """

    __slots__ = ("_bucket_seconds", "_bucket_start", "_latest", "_times", "_values", "window_seconds")

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._bucket_seconds = window_seconds / MAX_POINTS_PER_WINDOW
        self._times = array.array("d")
        self._values = array.array("d")
        self._bucket_start = float("-inf")
        self._latest: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self._times)

    @property
    def latest(self) -> Point | None:
        """The newest raw point (never thinned), or None before the first."""
        return None if self._latest is None else Point(*self._latest)

    def clear(self) -> None:
        self._times = array.array("d")
        self._values = array.array("d")
        self._bucket_start = float("-inf")
        self._latest = None

    def append(self, time: float, value: float) -> None:
        time, value = float(time), float(value)
        self._latest = (time, value)
        times, values = self._times, self._values
        if times and time - self._bucket_start < self._bucket_seconds:
            if value < values[-1]:
                times[-1] = time
                values[-1] = value
        else:
            times.append(time)
            values.append(value)
            self._bucket_start = time
        horizon = time - self.window_seconds * (1 + RETENTION_MARGIN)
        if times and times[0] < horizon:
            keep = bisect.bisect_left(times, horizon)
            del times[:keep]
            del values[:keep]

    def window_columns(
        self, now: float, window_seconds: float | None = None
    ) -> tuple[array.array[float], array.array[float]]:
        """(times, values) of the points inside the last `window_seconds` (default: the series' window)
        ending at `now`: copies, oldest first."""
        start = now - (self.window_seconds if window_seconds is None else window_seconds)
        first = bisect.bisect_left(self._times, start)
        return self._times[first:], self._values[first:]

    def window(self, now: float, window_seconds: float | None = None) -> list[Point]:
        """Points inside the last `window_seconds` (default: the series' window) ending at `now`."""
        times, values = self.window_columns(now, window_seconds)
        return [Point(t, v) for t, v in zip(times, values, strict=True)]

    def first_time(self) -> float | None:
        return self._times[0] if self._times else None
