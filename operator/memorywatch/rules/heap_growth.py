"""HeapGrowth: the live heap measured at GC points keeps rising, i.e. something keeps references.

Raw HeapAlloc swings with every GC cycle (a saw-tooth between the live heap and the heap goal), so it is
never judged. The rule takes one point per completed GC: the live heap as of that GC (`heap_live_bytes`),
de-duplicated by `NumGC` so a GC seen by several scrapes counts once.

There is no fallback on NextGC: since Go 1.18 the heap goal is `live × (1 + GOGC/100)` plus GC roots
(stacks, globals) scaled the same way, and GOMEMLIMIT caps it, so no fixed factor turns it into a live heap,
and under a memory limit it stays flat while the live heap grows. A target without a live-heap figure
(runtime.MemProfileRate = 0 empties the heap profile) makes this rule inactive, with a note saying why.
"""

from __future__ import annotations

import array
import collections
from collections.abc import Sequence
from typing import Any, TypeAlias

from memorywatch.api import units
from memorywatch.rules import gc_points, retention
from memorywatch.rules.base import TrendRule, Verdict
from memorywatch.rules.gc_points import GcFreshness
from memorywatch.rules.model import Probe, RuleSpec
from memorywatch.rules.trend import MIN_GC_POINTS, Trend
from memorywatch.samples import Sample

NO_PROFILE_NOTE = (
    "HeapGrowth inactive: the target's heap profile is empty (runtime.MemProfileRate is 0), so its live heap"
    " is unknown; leave MemProfileRate at its default or export go_gc_heap_live_bytes on /metrics"
)
NO_LIVE_HEAP_NOTE = "HeapGrowth inactive: the target reports no live-heap figure (no heap profile)"
# Retention is judged between the oldest snapshot of the sites inside the window (one is kept every eighth of
# a window, so at most nine) and now, at least this share of a window apart. A rise whose sites free what they
# allocate, or whose sites cannot say (retention.UNCLEAR), is held back for at most FREED_HOLD_SHARE of a window: a
# leak through a busy, shared allocation site still fires after that.
MIN_RETENTION_SPAN_SHARE = 0.25
SITES_SPACING_SHARE = 0.125
FREED_HOLD_SHARE = 0.5

Sites = tuple[tuple[int, int, int], ...]
# A snapshot of sites kept for a window: one array('q') of (key, in-use, allocated) triples (24 bytes a site
# instead of ~150 as tuples of ints); a snapshot with a value outside int64 (hostile) stays as it came.
PackedSites: TypeAlias = "array.array[int] | Sites"
_INT64 = range(-(2**63), 2**63)


def pack_sites(sites: Sites) -> PackedSites:
    flat = [value for site in sites for value in site]
    return array.array("q", flat) if all(v in _INT64 for v in flat) else sites


def unpack_sites(packed: PackedSites) -> Sites:
    if not isinstance(packed, array.array):
        return packed
    return tuple((packed[i], packed[i + 1], packed[i + 2]) for i in range(0, len(packed), 3))


class HeapGrowth(TrendRule):
    min_points = MIN_GC_POINTS  # one point per completed GC
    unit = "bytes"
    default_window_seconds = 1800.0
    default_min_growth = 256 * 2**20

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self._last_num_gc: int | None = None
        self._site_history: collections.deque[tuple[float, PackedSites]] = collections.deque()
        self._sites_now: tuple[float, tuple[tuple[int, int, int], ...]] | None = None
        self._retention: retention.Retention | None = None
        self._freed_since: float | None = None
        self.freshness = GcFreshness(self.window_seconds, self.min_growth)

    def reset(self) -> None:
        super().reset()
        self._last_num_gc = None
        self._site_history.clear()
        self._sites_now = None
        self._retention = None
        self._freed_since = None
        self.freshness.reset()

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        self.freshness.observe(sample)
        if sample.heap_sites is not None:
            self._sites_now = (sample.time, tuple(sample.heap_sites))
            history = self._site_history
            while history and history[0][0] < sample.time - self.window_seconds:
                history.popleft()
            if not history or sample.time - history[-1][0] >= SITES_SPACING_SHARE * self.window_seconds:
                history.append((sample.time, pack_sites(self._sites_now[1])))
        return self.judge(sample, started_at=started_at)

    def confirm(self, trend: Trend, now: float) -> tuple[list[str] | None, str]:
        signals, why = super().confirm(trend, now)
        self._retention = None
        if signals is None:
            if self._freed_since is not None and now - self._freed_since > self.window_seconds:
                self._freed_since = None  # an old hold must not let a later rise fire at once
            return signals, why
        anchor = (
            (self._site_history[0][0], unpack_sites(self._site_history[0][1])) if self._site_history else None
        )
        current = self._sites_now
        span = current[0] - anchor[0] if anchor is not None and current is not None else 0.0
        if (
            anchor is not None
            and current is not None
            and span >= MIN_RETENTION_SPAN_SHARE * self.window_seconds
        ):
            self._retention = retention.judge(anchor[1], current[1], trend.slope_per_second * span)
        if self._retention is None or self._retention.verdict == retention.KEPT:
            self._freed_since = None
            return (signals if self._retention is None else [*signals, self._retention.phrase]), ""
        if self._freed_since is None:
            # A young process's hold already held this rise back since `young_since`: the holds run together.
            self._freed_since = self.young_since if self.young_since is not None else now
        held = now - self._freed_since
        if held >= FREED_HOLD_SHARE * self.window_seconds:
            after = (
                self._retention.phrase
                if self._retention.verdict == retention.FREED
                else f"the allocation sites could not say why it rose ({self._retention.phrase})"
            )
            return [*signals, f"still rising {units.format_duration(held)} after {after}"], ""
        return None, f"held back: {self._retention.phrase}"

    def wants(self, now: float) -> frozenset[Probe]:
        return frozenset({Probe.FRESH_GC}) if self.freshness.wants_fresh_gc(now) else frozenset()

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        if sample.heap_live_bytes is None:
            return None, NO_PROFILE_NOTE if sample.heap_profile_rate == 0 else NO_LIVE_HEAP_NOTE, False
        memstats = sample.memstats
        num_gc = memstats.num_gc if memstats is not None else None
        value = float(sample.heap_live_bytes)
        if num_gc is not None and num_gc == self._last_num_gc:
            return value, None, False  # no GC completed since the last point: same measurement again
        self._last_num_gc = num_gc
        return value, None, True

    def too_few_reason(self, times: Sequence[float], now: float) -> str:
        latest = self.series.latest
        last = latest.time if latest is not None else None
        return gc_points.too_few_reason(times, now, self.window_seconds, self.min_points, last)

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        del sample
        extra: dict[str, Any] = {"source": "heap_live_bytes", "gc_points": trend.points}
        if self._retention is not None:
            extra["retention"] = self._retention.evidence
        message = (
            f"The live heap after GC {self.growth_phrase(trend)} and its floor rose at every stage of the window:"
            " the program keeps references to memory it no longer frees;"
            " the inuse_space diff of the captured heap profiles names the allocation sites."
        )
        return message, extra
