"""When GC points go stale: ask for one forced GC so rules that judge the live heap are not left blind.

Rules that judge the heap at GC points (HeapGrowth, FinalizerBacklog on live objects) get one point per
completed GC. A program that allocates little garbage collects rarely: under GOGC=100 the next GC comes when
the heap has doubled, so a pure leak of 1 MiB/s with a 100 MiB live heap collects every ~100 s, and the
runtime's own forced GC comes only every 2 minutes. A window of a few minutes would then hold too few points
to see any trend. When no GC has completed for a tenth of the window while HeapAlloc grew by a real share
of the rule's minimum growth, the rule asks the next scrape for `heap?debug=1&gc=1` — one `runtime.GC()`,
the same a person runs with `go tool pprof http://…/heap?gc=1` — at most once per tenth of the window. A busy
program collects on its own long before that, and under production windows (15–30 minutes) the runtime's
own two-minute forced GC comes first, so in practice only short windows ever force one.
"""

from __future__ import annotations

from memorywatch.samples import Sample

STALE_SHARE_OF_WINDOW = 0.1
GROWTH_SHARE_OF_MIN_GROWTH = 0.125


class GcFreshness:
    """Tracks when the last GC point arrived (by NumGC changing) and decides when to ask for a fresh one."""

    def __init__(self, window_seconds: float, min_growth_bytes: float) -> None:
        self.stale_after_seconds = window_seconds * STALE_SHARE_OF_WINDOW
        self.min_alloc_growth_bytes = min_growth_bytes * GROWTH_SHARE_OF_MIN_GROWTH
        self.reset()

    def reset(self) -> None:
        self._num_gc: int | None = None
        self._point_time: float | None = None
        self._alloc_at_point: int | None = None
        self._alloc_now: int | None = None
        self._last_asked: float = float("-inf")

    def observe(self, sample: Sample) -> None:
        m = sample.memstats
        if m is None or m.num_gc is None or m.heap_alloc is None:
            return
        if m.num_gc != self._num_gc:
            self._num_gc = m.num_gc
            self._point_time = sample.time
            self._alloc_at_point = m.heap_alloc
        self._alloc_now = m.heap_alloc

    def wants_fresh_gc(self, now: float) -> bool:
        if self._point_time is None or self._alloc_at_point is None or self._alloc_now is None:
            return False
        if (
            now - self._point_time < self.stale_after_seconds
            or now - self._last_asked < self.stale_after_seconds
        ):
            return False
        if self._alloc_now - self._alloc_at_point < self.min_alloc_growth_bytes:
            return False  # an idle program: nothing new to judge, so nothing to force
        self._last_asked = now
        return True
