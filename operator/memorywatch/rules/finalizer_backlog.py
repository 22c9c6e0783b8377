"""FinalizerBacklog: finalizers run slower than their objects die, so those objects (and all they reference)
stay alive. Go runs every finalizer on ONE goroutine: one finalizer that blocks stalls all later ones.

Two ways to see it, best first:
(a) Go ≥ 1.26 exports cumulative `/gc/finalizers/queued` and `/gc/finalizers/executed`; their difference is
    the queue length. It rising sustainably by ≥ min growth is the breach.
(b) Otherwise: live heap objects (counted at GC points) rising sustainably AND the finalizer goroutine seen in
    the same user frame in consecutive `goroutine?debug=1` snapshots. The object trend alone is HeapGrowth's
    business; the stuck finalizer alone may be a slow but keeping-up one. Together they are this leak.
"Mallocs rising while Frees stall" is NOT used: both counters are cumulative and Frees only advances when
spans are swept, so it stalls between GCs in every healthy program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memorywatch.pprof import goroutines
from memorywatch.rules import gc_points, stacks
from memorywatch.rules.base import TrendRule, Verdict
from memorywatch.rules.gc_points import GcFreshness, heap_objects
from memorywatch.rules.model import Probe, RuleSpec
from memorywatch.rules.trend import MIN_GC_POINTS, Trend
from memorywatch.samples import Sample

# Without the queue metrics, look at the finalizer goroutine routinely even when nothing looks wrong: every
# 2 minutes while live objects trend up at all, every 10 otherwise. A debug=1 goroutine snapshot costs two
# short stop-the-world pauses and work proportional to the number of goroutines, so it is rationed.
ROUTINE_PROBE_SECONDS = 120.0
IDLE_PROBE_SECONDS = 600.0
SUSPICIOUS_PROBE_SECONDS = 60.0
# Two snapshots of a stuck finalizer must be at least this far apart to call it stuck, not just busy.
MIN_STUCK_SPAN_SECONDS = 30.0

QUEUE = "finalizer-queue"
OBJECTS = "live-objects"


class FinalizerBacklog(TrendRule):
    min_points = MIN_GC_POINTS  # one point per completed GC

    unit = "objects"
    default_window_seconds = 900.0
    default_min_growth = 1000.0

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.snapshots = stacks.Snapshots(max_age_seconds=self.window_seconds * 1.25)
        self.mode: str | None = None
        self._last_num_gc: int | None = None
        # Probe spacing scales down with short windows, so a short window still sees the finalizer in time.
        self.routine_probe_seconds = min(ROUTINE_PROBE_SECONDS, self.window_seconds / 2)
        self.idle_probe_seconds = min(IDLE_PROBE_SECONDS, self.window_seconds * 2)
        self.suspicious_probe_seconds = min(SUSPICIOUS_PROBE_SECONDS, self.window_seconds / 4)
        self.min_stuck_span_seconds = min(MIN_STUCK_SPAN_SECONDS, self.window_seconds / 4)
        # Live objects are counted in objects: a fresh GC point is worth forcing only once HeapObjects grew by
        # an eighth of the minimum growth since the last GC, and only while the finalizer is seen in user code
        # (without that this rule cannot fire, so it has nothing to judge).
        self.freshness = GcFreshness(self.window_seconds, self.min_growth, heap_objects)

    def reset(self) -> None:
        super().reset()
        self.snapshots.clear()
        self.mode = None
        self._last_num_gc = None
        self.freshness.reset()

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        self.freshness.observe(sample)
        if sample.goroutine_profile is not None:
            self.snapshots.add(sample.time, sample.goroutine_profile)
        return self.judge(sample, started_at=started_at)

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        if sample.finalizers_queued is not None and sample.finalizers_executed is not None:
            self._switch(QUEUE)
            return float(sample.finalizers_queued - sample.finalizers_executed), None, True
        if sample.heap_live_objects is not None:
            self._switch(OBJECTS)
            num_gc = sample.memstats.num_gc if sample.memstats is not None else None
            if num_gc is not None and num_gc == self._last_num_gc:
                return float(sample.heap_live_objects), None, False
            self._last_num_gc = num_gc
            return float(sample.heap_live_objects), None, True
        return (
            None,
            "FinalizerBacklog inactive: the target reports neither finalizer queue metrics (Go 1.26)"
            " nor a live object count",
            False,
        )

    def too_few_reason(self, times: Sequence[float], now: float) -> str:
        if self.mode != OBJECTS:  # the queue metrics come with every scrape, not per GC
            return super().too_few_reason(times, now)
        latest = self.series.latest
        last = latest.time if latest is not None else None
        return gc_points.too_few_reason(times, now, self.window_seconds, self.min_points, last)

    def _switch(self, mode: str) -> None:
        if self.mode is not None and self.mode != mode:
            self.series.clear()  # queue length and object count are different scales
            self._last_num_gc = None
        self.mode = mode

    def wants(self, now: float) -> frozenset[Probe]:
        if self.mode is None:
            return frozenset()
        last = self.snapshots.last_time
        since = float("inf") if last is None else now - last
        wanted: set[Probe] = set()
        if self.mode == OBJECTS and self.freshness.wants_fresh_gc(now, needed=self._finalizer_busy()):
            wanted.add(Probe.FRESH_GC)
        suspicious_due = self.suspicious and since >= self.suspicious_probe_seconds
        if suspicious_due or (self.mode == OBJECTS and self._probe_due(since)):
            wanted.add(Probe.GOROUTINE_STACKS)
        return frozenset(wanted)

    def _probe_due(self, since: float) -> bool:
        """A routine stack probe is due: every `routine_probe_seconds` while the objects rise (the window's
        Theil–Sen slope is positive), else every `idle_probe_seconds`. The slope's sign is asked only when `since`
        lies between the two spacings and the answer depends on it, and mostly answered without the slope
        (`WindowStats.rising`)."""
        routine, idle = self.routine_probe_seconds, self.idle_probe_seconds
        if since < min(routine, idle):
            return False
        if since >= max(routine, idle):
            return True
        trend, judged = self.last_trend, self.last_stats
        if trend is None:
            rising = False
        elif judged is not None and judged[0] is trend:
            rising = judged[1].rising()  # the same answer, mostly without the slope (trend.py)
        else:
            rising = trend.slope_per_second > 0
        return since >= (routine if rising else idle)

    def _finalizer_busy(self) -> bool:
        """The newest snapshot shows the finalizer goroutine running user code (it may be stuck)."""
        items = self.snapshots.items
        return bool(items) and goroutines.blocked_finalizer(items[-1].profile) is not None

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        recent = self.snapshots.recent(sample.time)
        stuck = stacks.stuck_finalizer(recent, self.min_stuck_span_seconds)
        extra: dict[str, Any] = {"mode": self.mode, "stack_snapshots": len(recent)}
        if stuck is not None:
            extra["stuck_finalizer"] = stuck.evidence()
        if self.mode == QUEUE:
            message = (
                f"The finalizer queue (queued − executed) {self.growth_phrase(trend)}: finalizers run slower than"
                " their objects become unreachable, so those objects and everything they reference stay alive"
            )
            if stuck is not None:
                message += f"; {stuck.phrase()}"
            return message + ".", extra
        if stuck is None:
            return None  # objects grow but the finalizer is not seen stuck: HeapGrowth's business, not ours
        message = (
            f"Live heap objects {self.growth_phrase(trend)} while {stuck.phrase()}: a blocked finalizer keeps"
            " every object queued behind it, and everything those objects reference, alive."
        )
        return message, extra
