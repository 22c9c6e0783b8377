"""GoroutineGrowth: the goroutine count keeps rising and never drains; stacks name who is piling up.

The count comes from the cheap index page on every scrape. Once the count looks suspicious, the rule asks
for `goroutine?debug=1` snapshots (Probe.GOROUTINE_STACKS), spaced out over the window, and the breach names
the stack groups that grew in every snapshot. Stacks enrich the verdict, they never gate it: a target whose
stack fetch fails is still judged on its count.
"""

from __future__ import annotations

from typing import Any

from memorywatch.api import units
from memorywatch.pprof import goroutines
from memorywatch.rules import identity, stacks
from memorywatch.rules.base import TrendRule, Verdict
from memorywatch.rules.guards import MAX_IDENTITY_DUMP_GOROUTINES
from memorywatch.rules.model import Probe, RuleSpec
from memorywatch.rules.trend import Trend
from memorywatch.samples import Sample

# Spread the stack snapshots over the window: a diff over minutes separates a leak from a burst.
SNAPSHOT_SPACING_SHARE = 1 / 8
MIN_SNAPSHOT_SPACING_SECONDS = 30.0
# Identity dumps (debug=2) compare goroutine IDs, not group counts: goroutines serving load live for seconds,
# so dumps a few seconds apart already show them turning over; spaced at window/8, at least this far apart.
MIN_DUMP_SPACING_SECONDS = 5.0
# A group must add at least this many goroutines across the snapshots to be named.
MIN_GROUP_DELTA = 1
# Server-side connection handlers: one goroutine per open connection, so they grow with clients and load,
# not only with leaks. When such a stack leads the growth, the message says to compare with load.
CONNECTION_HANDLERS = (
    "net/http.(*conn).serve",
    "golang.org/x/net/http2.(*serverConn).serve",
    "google.golang.org/grpc/internal/transport.(*http2Server)",
)


class GoroutineGrowth(TrendRule):
    unit = "goroutines"
    default_window_seconds = 900.0
    default_min_growth = 2000.0

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.snapshots = stacks.Snapshots(max_age_seconds=self.window_seconds * 1.25)
        self.dumps = identity.Dumps(max_age_seconds=self.window_seconds * 1.25)
        self._last_time: float | None = None
        self._identity: identity.Identity | None = None

    def reset(self) -> None:
        super().reset()
        self.snapshots.clear()
        self.dumps.clear()
        self._identity = None

    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        if sample.goroutines is not None:
            return float(sample.goroutines), None, True
        if sample.goroutine_profile is not None:
            return float(sample.goroutine_profile.total), None, True
        return (
            None,
            "GoroutineGrowth inactive: the target reports no goroutine count (index page missing)",
            False,
        )

    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        self._last_time = sample.time
        if sample.goroutine_profile is not None:
            self.snapshots.add(sample.time, sample.goroutine_profile)
        if sample.goroutine_ids is not None:
            self.dumps.add(sample.time, sample.goroutine_ids)
        return self.judge(sample, started_at=started_at)

    def wants(self, now: float) -> frozenset[Probe]:
        if not self.suspicious:
            return frozenset()
        spacing = max(MIN_SNAPSHOT_SPACING_SECONDS, self.window_seconds * SNAPSHOT_SPACING_SHARE)
        wanted: set[Probe] = set()
        last = self.snapshots.last_time
        if last is None or now - last >= spacing:
            wanted.add(Probe.GOROUTINE_STACKS)
        latest = self.series.latest
        crowded = (
            latest is None or latest.value > MAX_IDENTITY_DUMP_GOROUTINES
        )  # do no harm: no STW dump past it
        last_dump = self.dumps.last_time
        dump_spacing = max(MIN_DUMP_SPACING_SECONDS, self.window_seconds * SNAPSHOT_SPACING_SHARE)
        if not crowded and (last_dump is None or now - last_dump >= dump_spacing):
            wanted.add(Probe.GOROUTINE_DUMP)
        return frozenset(wanted)

    def confirm(self, trend: Trend, now: float) -> tuple[list[str] | None, str]:
        signals, why = super().confirm(trend, now)
        self._identity = identity.judge(self.dumps.recent(now)) if signals is not None else None
        if signals is None or self._identity is None:
            return signals, why
        if self._identity.verdict == identity.TURNOVER:
            return None, f"held back: {self._identity.phrase}"
        return [*signals, self._identity.phrase], ""

    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        message = f"Goroutines {self.growth_phrase(trend)} and never drained"
        items = self.snapshots.recent(sample.time)
        extra: dict[str, Any] = {"stack_snapshots": len(items)}
        if self._identity is not None:
            extra["goroutine_identity"] = self._identity.evidence
        if len(items) >= 2:
            span = items[-1].time - items[0].time
            extra["stack_span_seconds"] = span
            growing = goroutines.growing_groups([s.profile for s in items], MIN_GROUP_DELTA)
            extra["growing_stacks"] = stacks.growth_evidence(growing)
            if growing:
                top = growing[0]
                message += (
                    f"; {units.format_count(top.delta)} of them are parked in {goroutines.group_name(top.frames)}"
                    f" (grew in every stack snapshot over {units.format_duration(span)})"
                )
                if any(f.function.startswith(CONNECTION_HANDLERS) for f in top.frames):
                    extra["load_note"] = (
                        "the leading stack serves one connection each: it also grows with clients"
                    )
                    message += (
                        "; that stack holds one goroutine per open connection, so compare with client load"
                    )
            elif len(items) >= 3:
                extra["stacks_note"] = (
                    f"{len(items)} stack snapshots over {units.format_duration(span)} show no stack group growing:"
                    " the extra goroutines are short-lived or spread over many different stacks"
                )
                message += f"; yet no single stack grew across {len(items)} snapshots (short-lived or scattered goroutines)"
        else:
            message += "; no stack snapshots yet, see the goroutine profiles in the capture"
        return message + ".", extra
