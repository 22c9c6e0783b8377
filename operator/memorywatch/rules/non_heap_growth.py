"""NonHeapGrowth: resident memory grows while the Go runtime's own memory does not explain it (cgo, C
libraries, mmap, thread stacks of cgo threads).

The gap judged is `rss − (Sys − HeapReleased)`: Sys is everything the runtime mapped, HeapReleased is the part
it gave back to the OS, so their difference bounds what Go itself keeps resident. A Go heap leak moves both
sides together and leaves the gap flat; memory the runtime does not know about widens it.
With only MaxRSS (a peak, `ru_maxrss`), the gap is `MaxRSS − (the highest Sys − HeapReleased seen)`: a
peak that keeps rising by more than Go's own peak did means non-Go memory grew by AT LEAST that much.

A gap below zero counts as zero. Sys − HeapReleased includes memory the runtime mapped but never touched (a
large allocation writes only the pages it uses; fresh spans are not zeroed), so a healthy Go process often has
RSS below it, and RSS then climbs toward it as spans are reused and zeroed, with Go's accounting flat. That
climb is Go's own memory becoming resident, not memory outside Go: only the part of RSS above Go's whole
accounting is evidence of non-Go memory. The judged value is therefore a lower bound; a real non-Go leak that
starts from a negative gap is named once it has filled it.
"""

from __future__ import annotations

import array
import bisect
from typing import Any

from memorywatch.api import units
from memorywatch.rules.base import TrendRule, Verdict
from memorywatch.rules.model import RuleSpec
from memorywatch.rules.series import Series
from memorywatch.rules.trend import Trend
from memorywatch.samples import Sample

CURRENT_RSS_SOURCES = frozenset({"prometheus", "proc", "metrics-api"})


def go_resident_bytes(sample: Sample) -> int | None:
    """Sys − HeapReleased: the most the Go runtime itself can hold resident, or None if unreported."""
    memstats = sample.memstats
    if memstats is None or memstats.sys is None or memstats.heap_released is None:
        return None
    return memstats.sys - memstats.heap_released


class NonHeapGrowth(TrendRule):
    unit = "bytes"
    default_window_seconds = 1800.0
    default_min_growth = 256 * 2**20

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.go_series = Series(self.window_seconds)
        self.rss_series = Series(self.window_seconds)
        self._go_peak: int | None = None
        self.source: str | None = None
        # OS thread counts over the window, as columns (time, count): evidence only.
        self._thread_times = array.array("d")
        self._thread_counts = array.array("d")

    def reset(self) -> None:
        super().reset()
        self.go_series.clear()
        self.rss_series.clear()
        self._go_peak = None
        self.source = None
        self._thread_times = array.array("d")
        self._thread_counts = array.array("d")

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        if sample.threads is not None:
            old = bisect.bisect_left(self._thread_times, sample.time - self.window_seconds)
            del self._thread_times[:old]
            del self._thread_counts[:old]
            self._thread_times.append(sample.time)
            self._thread_counts.append(sample.threads)
        return self.judge(sample, started_at=started_at)

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        go_bytes = go_resident_bytes(sample)
        max_rss = sample.memstats.max_rss if sample.memstats is not None else None
        rss: int
        if sample.rss_bytes is not None and sample.rss_source in CURRENT_RSS_SOURCES:
            rss, source = sample.rss_bytes, sample.rss_source
        elif sample.rss_bytes is not None and sample.rss_source == "maxrss":
            rss, source = sample.rss_bytes, "maxrss"
        elif max_rss is not None:
            rss, source = max_rss, "maxrss"
        else:
            return (
                None,
                "NonHeapGrowth inactive: the target reports no resident memory (no RSS source, no MaxRSS)",
                False,
            )
        if go_bytes is None:
            return (
                None,
                "NonHeapGrowth inactive: the target reports no Sys/HeapReleased to compare RSS with",
                False,
            )
        if self.source is not None and source != self.source:
            self.series.clear()  # a peak and a current value are different signals
            self.go_series.clear()
            self.rss_series.clear()
            self._go_peak = None
        self.source = source
        if source == "maxrss":
            self._go_peak = go_bytes if self._go_peak is None else max(self._go_peak, go_bytes)
            go_bytes = self._go_peak
        self.go_series.append(sample.time, go_bytes)
        self.rss_series.append(sample.time, rss)
        return float(max(0, rss - go_bytes)), None, True

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        start = sample.time - self.window_seconds
        # Both series hold byte counts (ints, kept as floats: exact up to 2**53 bytes).
        _, go_values = self.go_series.window_columns(sample.time)
        _, rss_values = self.rss_series.window_columns(sample.time)
        go = [int(v) for v in (go_values[:1] + go_values[-1:])]
        rss = [int(v) for v in (rss_values[:1] + rss_values[-1:])]
        go_change = go[-1] - go[0] if go else 0.0
        extra: dict[str, Any] = {
            "rss_source": self.source,
            "gap": "max(0, rss - (Sys - HeapReleased))",
            "rss_first": rss[0] if rss else None,
            "rss_last": rss[-1] if rss else None,
            "go_resident_first": go[0] if go else None,
            "go_resident_last": go[-1] if go else None,
            "go_resident_change": go_change,
        }
        first = bisect.bisect_left(self._thread_times, start)
        threads = [int(n) for n in self._thread_counts[first:]]
        if threads:
            extra["threads_first"], extra["threads_last"] = threads[0], threads[-1]
        subject = "Resident memory outside the Go runtime's accounting"
        if self.source == "metrics-api":
            extra["source_note"] = (
                "the metrics API reports the container working set, which includes active page cache:"
                " heavy file I/O can widen the gap without any C allocation"
            )
        if self.source == "maxrss":
            extra["lower_bound"] = True
            extra["source_note"] = (
                "MaxRSS is a peak (ru_maxrss): the growth is a lower bound of non-Go growth"
            )
            subject = "Peak resident memory (MaxRSS, a lower bound) outside the Go runtime's accounting"
        message = (
            f"{subject} {self.growth_phrase(trend)} while Go's own memory (Sys − HeapReleased) changed by"
            f" {units.format_bytes(go_change)}: memory allocated by cgo/C code, mmap or non-Go threads is growing"
        )
        if threads and threads[-1] - threads[0] >= 10:
            message += f" (OS threads also rose from {threads[0]} to {threads[-1]})"
        return message + ".", extra
