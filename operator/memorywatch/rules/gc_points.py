"""When GC points go stale: ask for one forced GC, but only when a rule needs it to judge, and rarely.

Rules that judge the heap at GC points (HeapGrowth, FinalizerBacklog on live objects) get one point per
completed GC. A program that allocates little collects rarely: under GOGC=100 the next GC comes when the heap
has doubled, and the runtime's own forced GC comes every 2 minutes. A short window may then hold too few
points to judge. A forced GC (`heap?debug=1&gc=1`, one `runtime.GC()`) stops the world of a service that may
have done nothing wrong, so it is asked only when all of these hold:
- no GC completed for a tenth of the window (a busy program collects long before that);
- since the last GC point, the heap grew by at least an eighth of the rule's minimum growth, measured in the
  rule's own unit (HeapAlloc bytes for HeapGrowth, HeapObjects for FinalizerBacklog): an idle program, or one
  whose only allocations are our own scrapes, has nothing new to judge;
- the rule says it needs the point now (FinalizerBacklog: only once the finalizer goroutine was seen running
  user code);
- the last forced GC this rule asked for is at least 2 minutes old (the runtime's own period,
  guards.RUNTIME_FORCED_GC_SECONDS); the judge applies the same cap across all rules of a target.
With production windows (15–30 minutes) the runtime's own two-minute GC keeps every window supplied, so
those never force one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from memorywatch.api import units
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.guards import RUNTIME_FORCED_GC_SECONDS
from memorywatch.samples import Sample

STALE_SHARE_OF_WINDOW = 0.1
GROWTH_SHARE_OF_MIN_GROWTH = 0.125


def heap_alloc(m: MemStats) -> int | None:
    return m.heap_alloc


def heap_objects(m: MemStats) -> int | None:
    return m.heap_objects


class GcFreshness:
    """Tracks when the last GC point arrived (by NumGC changing) and decides when to ask for a fresh one.

    `measure` reads the growing quantity from MemStats in the rule's unit; `min_growth` is the rule's
    minimum growth per window in that unit (it must be positive: zero growth never justifies a forced GC).
    """

    def __init__(
        self, window_seconds: float, min_growth: float, measure: Callable[[MemStats], int | None] = heap_alloc
    ) -> None:
        self.stale_after_seconds = window_seconds * STALE_SHARE_OF_WINDOW
        self.min_growth_since_gc = max(1.0, min_growth * GROWTH_SHARE_OF_MIN_GROWTH)
        self.measure = measure
        self.reset()

    def reset(self) -> None:
        self._num_gc: int | None = None
        self._point_time: float | None = None
        self._at_point: int | None = None
        self._now_value: int | None = None
        self._last_asked: float = float("-inf")

    def observe(self, sample: Sample) -> None:
        m = sample.memstats
        if m is None or m.num_gc is None:
            return
        value = self.measure(m)
        if value is None:
            return
        if m.num_gc != self._num_gc:
            self._num_gc = m.num_gc
            self._point_time = sample.time
            self._at_point = value
        self._now_value = value

    def wants_fresh_gc(self, now: float, *, needed: bool = True) -> bool:
        """Whether the next scrape should force one GC; records the ask (so it is not repeated too soon)."""
        if not needed or self._point_time is None or self._at_point is None or self._now_value is None:
            return False
        if now - self._point_time < self.stale_after_seconds:
            return False
        if now - self._last_asked < max(self.stale_after_seconds, RUNTIME_FORCED_GC_SECONDS):
            return False
        if self._now_value - self._at_point < self.min_growth_since_gc:
            return False  # an idle program: nothing new to judge, so nothing to force
        self._last_asked = now
        return True


def too_few_reason(
    times: Sequence[float], now: float, window_seconds: float, needed: int, last: float | None
) -> str:
    """Why a window of GC points is not judged yet: `2 GC cycles in the 40s window, 6 needed to judge; the
    target completes one about every 25s, so a window of at least 2m30s would hold enough`. `times` are the
    GC points in the window, `last` the time of the newest GC point seen at all."""
    n = len(times)
    text = f"{n} GC cycle{'' if n == 1 else 's'} in the {units.format_duration(window_seconds)} window, {needed} needed to judge"
    if n >= 2:
        every = (times[-1] - times[0]) / (n - 1)
        return (
            f"{text}; the target completes one about every {units.format_duration(every)}, so a window of at"
            f" least {units.format_duration(every * needed)} would hold enough"
        )
    if last is None:
        return text
    return (
        f"{text}; the last one completed {units.format_duration(now - last)} ago (a program that makes little"
        " garbage collects rarely), so it needs a longer window"
    )
