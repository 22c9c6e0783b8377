"""A bounded time series of one signal of one target: keeps what the longest window needs, thins dense data."""

from __future__ import annotations

import collections
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
