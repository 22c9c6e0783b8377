"""MemoryLimit: a forecast — at the sustained rate of the last window, the target reaches its memory limit
within `horizon`; or it already uses ~95% of it. Fires before the OOM kill, while there is still a process
to profile.

Memory is resident memory when a current source exists (Prometheus, /proc, the metrics API); otherwise
Sys − HeapReleased (what the Go runtime holds), which misses cgo memory, so the evidence says which was used.
MaxRSS is a peak, never a current value, so it is not used here.
"""

from __future__ import annotations

from typing import Any

from memorywatch.api import units
from memorywatch.rules.base import FIRING, TrendRule, Verdict
from memorywatch.rules.model import RuleSpec
from memorywatch.rules.non_heap_growth import CURRENT_RSS_SOURCES, go_resident_bytes
from memorywatch.rules.trend import Trend
from memorywatch.samples import Sample

DEFAULT_HORIZON_SECONDS = 1800.0
# Usage at or above this share of the limit fires at once: an OOM kill may be one allocation away.
NEAR_LIMIT_SHARE = 0.95
# Without a configured min growth, a trend must add at least this share of the limit per window to count.
DEFAULT_MIN_GROWTH_SHARE = 0.01


class MemoryLimit(TrendRule):
    unit = "bytes"
    holds_young_rises = False  # a forecast of the kernel's OOM kill cannot wait for a warm-up to end
    default_window_seconds = 900.0

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.horizon_seconds = spec.horizon_seconds or DEFAULT_HORIZON_SECONDS
        self.limit_bytes: int | None = None
        self.source: str | None = None

    @property
    def min_growth(self) -> float:
        if self.spec.min_growth is not None:
            return self.spec.min_growth
        return (self.limit_bytes or 0) * DEFAULT_MIN_GROWTH_SHARE

    def reset(self) -> None:
        super().reset()
        self.source = None

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        if sample.limit_bytes is None or sample.limit_bytes <= 0:
            return None, "MemoryLimit inactive: the target has no memory limit", False
        self.limit_bytes = sample.limit_bytes
        if sample.rss_bytes is not None and sample.rss_source in CURRENT_RSS_SOURCES:
            value, source, note = float(sample.rss_bytes), "rss", None
        else:
            go_bytes = go_resident_bytes(sample)
            if go_bytes is None:
                return (
                    None,
                    "MemoryLimit inactive: the target reports no current memory use (RSS or Sys)",
                    False,
                )
            value, source = float(go_bytes), "sys-heap-released"
            note = "MemoryLimit judges Sys − HeapReleased: no current RSS source (memory outside Go is not counted)"
        if self.source is not None and source != self.source:
            self.series.clear()
        self.source = source
        return value, note, True

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        verdict = self.judge(sample, started_at=started_at)
        latest = self.series.latest
        if (
            verdict.state == FIRING
            or latest is None
            or self.limit_bytes is None
            or latest.time != sample.time
        ):
            return verdict
        if latest.value >= NEAR_LIMIT_SHARE * self.limit_bytes:
            share = latest.value / self.limit_bytes
            message = (
                f"Memory ({self._what()}) is {units.format_bytes(latest.value)}, {share:.0%} of its"
                f" {units.format_bytes(self.limit_bytes)} limit: the next burst may end in an OOM kill."
            )
            evidence: dict[str, Any] = {
                "current_bytes": latest.value,
                "limit_bytes": self.limit_bytes,
                "share_of_limit": round(share, 4),
                "source": self.source,
                "trigger": "near-limit",
            }
            if self.last_trend is not None:
                evidence["slope_per_second"] = self.last_trend.slope_per_second
            return Verdict(FIRING, growth=verdict.growth, unit=self.unit, message=message, evidence=evidence)
        return verdict

    def _what(self) -> str:
        return "RSS" if self.source == "rss" else "Sys − HeapReleased"

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        if self.limit_bytes is None or trend.slope_per_second <= 0:
            return None
        current = trend.last_value
        eta_seconds = max(0.0, (self.limit_bytes - current) / trend.slope_per_second)
        if eta_seconds > self.horizon_seconds:
            return None
        message = (
            f"Memory ({self._what()}) is {units.format_bytes(current)} of a {units.format_bytes(self.limit_bytes)}"
            f" limit and has risen steadily at {units.format_rate(trend.slope_per_second, unit='bytes')}:"
            f" at that rate the limit is reached in about {units.format_duration(eta_seconds)}."
        )
        extra = {
            "current_bytes": current,
            "limit_bytes": self.limit_bytes,
            "eta_seconds": round(eta_seconds, 1),
            "horizon_seconds": self.horizon_seconds,
            "source": self.source,
            "trigger": "forecast",
        }
        del sample
        return message, extra
