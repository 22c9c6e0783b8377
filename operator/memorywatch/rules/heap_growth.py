"""HeapGrowth: the live heap measured at GC points keeps rising, i.e. something keeps references.

Raw HeapAlloc swings with every GC cycle (a saw-tooth between the live heap and the heap goal), so it is
never judged. The rule takes one point per completed GC: the live heap as of that GC (`heap_live_bytes`),
de-duplicated by `NumGC` so a GC seen by several scrapes counts once. Without a live-heap figure it falls back
to NextGC, the heap goal, which the runtime sets from the live heap at each GC (goal ≈ live × (1 + GOGC/100));
its growth is halved to estimate live growth under the default GOGC=100, and the evidence says so.
Changes of GOGC or GOMEMLIMIT while watching move the goal without any leak; they are out of scope.
"""

from __future__ import annotations

from typing import Any

from memorywatch.rules.base import TrendRule, Verdict
from memorywatch.rules.gc_points import GcFreshness
from memorywatch.rules.model import Probe, RuleSpec
from memorywatch.rules.trend import MIN_GC_POINTS, Trend
from memorywatch.samples import Sample

# Live heap ≈ NextGC / (1 + GOGC/100); GOGC is not visible from outside, 100 is the default.
NEXT_GC_PER_LIVE_BYTE = 2.0


class HeapGrowth(TrendRule):
    min_points = MIN_GC_POINTS  # one point per completed GC
    unit = "bytes"
    default_window_seconds = 1800.0
    default_min_growth = 256 * 2**20

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self._last_num_gc: int | None = None
        self.source: str | None = None
        self.freshness = GcFreshness(self.window_seconds, self.min_growth)

    def reset(self) -> None:
        super().reset()
        self._last_num_gc = None
        self.source = None
        self.freshness.reset()

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        self.freshness.observe(sample)
        return self.judge(sample, started_at=started_at)

    def wants(self, now: float) -> frozenset[Probe]:
        return frozenset({Probe.FRESH_GC}) if self.freshness.wants_fresh_gc(now) else frozenset()

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        memstats = sample.memstats
        num_gc = memstats.num_gc if memstats is not None else None
        if sample.heap_live_bytes is not None:
            value, source, note = float(sample.heap_live_bytes), "heap_live_bytes", None
        elif memstats is not None and memstats.next_gc is not None:
            value, source = memstats.next_gc / NEXT_GC_PER_LIVE_BYTE, "next_gc"
            note = "HeapGrowth judges NextGC (the heap goal) halved: the target reports no live-heap figure"
        else:
            return None, "HeapGrowth inactive: the target reports neither the live heap nor NextGC", False
        if self.source is not None and source != self.source:
            # Mixing the two scales would invent a step; start the series again with the new source.
            self.series.clear()
            self._last_num_gc = None
        self.source = source
        if num_gc is not None and num_gc == self._last_num_gc:
            return value, note, False  # no GC completed since the last point: same measurement again
        self._last_num_gc = num_gc
        return value, note, True

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        del sample
        extra: dict[str, Any] = {"source": self.source, "gc_points": trend.points}
        if self.source == "next_gc":
            extra["source_note"] = (
                "no live-heap figure: judged NextGC (the heap goal) halved, assuming GOGC=100;"
                " with another GOGC the true live growth differs by the same factor"
            )
            subject = "The live heap (estimated from the GC's heap goal)"
        else:
            subject = "The live heap after GC"
        message = (
            f"{subject} {self.growth_phrase(trend)} and its floor rose at every stage of the window:"
            " the program keeps references to memory it no longer frees;"
            " the inuse_space diff of the captured heap profiles names the allocation sites."
        )
        return message, extra
