"""GoroutineGrowth: the goroutine count keeps rising and never drains; stacks name who is piling up.

The count comes from the cheap index page on every scrape. Once the count looks suspicious, the rule asks
for `goroutine?debug=1` snapshots (Probe.GOROUTINE_STACKS), spaced out over the window, and the breach names
the stack groups that grew in every snapshot. Stacks enrich the verdict, they never gate it: a target whose
stack fetch fails is still judged on its count.

Goroutine identity (identity.py, debug=2 dumps) confirms or holds back a breach. Above the identity ceiling
(guards.MAX_IDENTITY_DUMP_GOROUTINES) no dump is taken, and for one window the count of goroutines that serve
a load ramp rises exactly like a leak's: there a sustained rise fires only once it has kept passing every test
for COUNT_ONLY_HOLD_SHARE of a window (docs/rules.md, "goroutine identity").
"""

from __future__ import annotations

from typing import Any

from memorywatch.api import units
from memorywatch.pprof import goroutines
from memorywatch.rules import identity, stacks
from memorywatch.rules.base import SATURATION_HOLD_SHARE, TrendRule, Verdict
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
# Above the identity ceiling no dump tells a leak from a load ramp: the count alone must keep passing every test
# for this share of a window after it first did (the same hold as a rise that slows down, base.py), because
# goroutines that follow load rise for as long as the load does and then hold and fall, while a leak goes on.
COUNT_ONLY_HOLD_SHARE = SATURATION_HOLD_SHARE
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
        # The current run of sustained verdicts: when it began (a whole window without one ends it), and
        # whether goroutine identity confirmed it at some point (it stays confirmed for the run).
        self._run_since: float | None = None
        self._run_kept = False

    def reset(self) -> None:
        super().reset()
        self.snapshots.clear()
        self.dumps.clear()
        self._identity = None
        self._run_since = None
        self._run_kept = False

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

    def _crowded(self) -> bool:
        """Do no harm: no identity dump (a stop-the-world debug=2) of a target above the ceiling."""
        latest = self.series.latest
        return latest is None or latest.value > MAX_IDENTITY_DUMP_GOROUTINES

    def wants(self, now: float) -> frozenset[Probe]:
        if not self.suspicious:
            return frozenset()
        spacing = max(MIN_SNAPSHOT_SPACING_SECONDS, self.window_seconds * SNAPSHOT_SPACING_SHARE)
        wanted: set[Probe] = set()
        last = self.snapshots.last_time
        if last is None or now - last >= spacing:
            wanted.add(Probe.GOROUTINE_STACKS)
        last_dump = self.dumps.last_time
        dump_spacing = max(MIN_DUMP_SPACING_SECONDS, self.window_seconds * SNAPSHOT_SPACING_SHARE)
        if not self._crowded() and (last_dump is None or now - last_dump >= dump_spacing):
            wanted.add(Probe.GOROUTINE_DUMP)
        return frozenset(wanted)

    def confirm(self, trend: Trend, now: float) -> tuple[list[str] | None, str]:
        signals, why = super().confirm(trend, now)
        self._track_run(trend, now)
        self._identity = identity.judge(self.dumps.recent(now)) if signals is not None else None
        if signals is None:
            return signals, why
        if self._identity is not None:
            if self._identity.verdict == identity.TURNOVER:
                return None, f"held back: {self._identity.phrase}"
            self._run_kept = self._run_kept or self._identity.verdict == identity.KEPT
            return [*signals, self._identity.phrase], ""
        if self._run_kept or not self._crowded() or self._run_since is None:
            return signals, ""
        return self._count_only(signals, now - self._run_since)

    def _track_run(self, trend: Trend, now: float) -> None:
        if trend.sustained:
            if self._run_since is None:
                self._run_since = now
        elif self._last_sustained is None or now - self._last_sustained > self.window_seconds:
            self._run_since = None
            self._run_kept = False

    def _count_only(self, signals: list[str], rising: float) -> tuple[list[str] | None, str]:
        """Above the identity ceiling the count is all there is, and for one window a load ramp of goroutines
        that serve requests rises exactly like a leak: the rise must outlast it by COUNT_ONLY_HOLD_SHARE."""
        hold = COUNT_ONLY_HOLD_SHARE * self.window_seconds
        ceiling = units.format_count(MAX_IDENTITY_DUMP_GOROUTINES)
        if rising < hold:
            return None, (
                f"held back: above {ceiling} goroutines no debug=2 dump is taken to tell leaked goroutines from"
                " ones that serve a load ramp; it fires if the count keeps rising at the minimum rate for"
                f" {units.format_duration(hold)} (rising for {units.format_duration(rising)} so far)"
            )
        return [
            *signals,
            f"still rising at the minimum rate {units.format_duration(rising)} after it first did (no goroutine"
            f" identity above {ceiling} goroutines: the count alone had to outlast one window of rise)",
        ], ""

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
