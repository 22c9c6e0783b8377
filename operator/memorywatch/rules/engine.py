"""The per-target judge: feeds each sample to every configured rule, detects restarts, applies cooldowns and
turns firing rules into Breaches. Pure: the clock is the samples' own `time`.

Errors: none escape `observe`. A rule kind without an implementation is a programming error and raises
`ValueError` from the constructor; everything about the target's data becomes a note.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from memorywatch.api import units
from memorywatch.pprof.goroutines import GoroutineProfile
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules import stacks
from memorywatch.rules.base import (
    COOLING_DOWN,
    FIRING,
    SUSPICIOUS,
    WATCHING,
    Rule,
    RuleStatus,
    StatusLines,
    Verdict,
)
from memorywatch.rules.finalizer_backlog import FinalizerBacklog
from memorywatch.rules.goroutine_growth import GoroutineGrowth
from memorywatch.rules.guards import RUNTIME_FORCED_GC_SECONDS
from memorywatch.rules.heap_growth import HeapGrowth
from memorywatch.rules.memory_limit import MemoryLimit
from memorywatch.rules.model import Breach, Probe, RuleKind, RuleSpec
from memorywatch.rules.non_heap_growth import NonHeapGrowth
from memorywatch.rules.threshold import Threshold
from memorywatch.samples import Sample

DEFAULT_COOLDOWN_SECONDS = 1800.0
# A rule cooling down asks for no probes (scraping must not hurt the target), except in the last minutes of
# its cooldown, so that a leak still going on is reported again with fresh stacks.
PROBE_LEAD_SECONDS = 300.0

_RULES: Mapping[RuleKind, Callable[[RuleSpec], Rule]] = {
    RuleKind.GOROUTINE_GROWTH: GoroutineGrowth,
    RuleKind.HEAP_GROWTH: HeapGrowth,
    RuleKind.FINALIZER_BACKLOG: FinalizerBacklog,
    RuleKind.NON_HEAP_GROWTH: NonHeapGrowth,
    RuleKind.MEMORY_LIMIT: MemoryLimit,
    RuleKind.THRESHOLD: Threshold,
}

# Cumulative counters of one process: any of them going down means a new process.
_COUNTERS = ("num_gc", "num_forced_gc", "total_alloc", "mallocs", "frees", "max_rss")
# process_start_time_seconds is whole seconds as parsed; a change beyond this is a new process.
START_TIME_TOLERANCE_SECONDS = 1


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What one sample changed: new breaches, whether the target restarted, and notes (said once, when a
    rule's situation changes, e.g. "MemoryLimit inactive: the target has no memory limit")."""

    breaches: tuple[Breach, ...] = ()
    restarted: bool = False
    notes: tuple[str, ...] = ()


def restart_reason(previous: Sample, current: Sample) -> str | None:
    """Why `current` comes from a different process than `previous`, or None when it looks the same.

    The process start time (from /metrics) comes first: it catches a restart whose counters have already
    caught up with the old process's by the next scrape (a crash loop of short-lived processes, a long gap
    between scrapes), which the counters cannot see."""
    before_start, after_start = previous.process_start_seconds, current.process_start_seconds
    if (
        before_start is not None
        and after_start is not None
        and abs(after_start - before_start) > START_TIME_TOLERANCE_SECONDS
    ):
        return f"process_start_time_seconds changed from {before_start} to {after_start}"
    if previous.memstats is not None and current.memstats is not None:
        for field in _COUNTERS:
            before = getattr(previous.memstats, field)
            after = getattr(current.memstats, field)
            if before is not None and after is not None and after < before:
                return f"{field} went down from {before} to {after}"
    for field in ("finalizers_queued", "finalizers_executed"):
        before, after = getattr(previous, field), getattr(current, field)
        if before is not None and after is not None and after < before:
            return f"{field} went down from {before} to {after}"
    return None


def restart_fields(sample: Sample) -> Sample:
    """The fields of `sample` that `restart_reason` compares the next sample with, and its time: what a
    judge keeps of its last sample until the next one, instead of the whole sample (its MemStats and
    whatever of it no rule keeps anyway: 0.6 KiB a target measured on the Go 1.26 recording, where the
    rules already hold the last heap sites; more for a target whose heap profile no rule reads)."""
    memstats = sample.memstats
    return Sample(
        target=sample.target,
        time=sample.time,
        memstats=MemStats(**{f: getattr(memstats, f) for f in _COUNTERS}) if memstats is not None else None,
        finalizers_queued=sample.finalizers_queued,
        finalizers_executed=sample.finalizers_executed,
        process_start_seconds=sample.process_start_seconds,
    )


class TargetJudge:
    """Judges one target's samples with a fixed set of rules; keep one per target for its whole life."""

    def __init__(
        self, rules: Sequence[RuleSpec], *, default_cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    ) -> None:
        self.specs = tuple(rules)
        self.default_cooldown_seconds = default_cooldown_seconds
        self._rules: list[Rule] = []
        for spec in self.specs:
            factory = _RULES.get(spec.kind)
            if factory is None:
                raise ValueError(f"no implementation for rule kind {spec.kind!r}")
            self._rules.append(factory(spec))
        self._cooldown_until: dict[str, float] = {}
        self._verdicts: dict[str, Verdict] = {}
        self._notes: dict[str, str | None] = {}
        self._previous: Sample | None = None
        self._last_profile: GoroutineProfile | None = None
        self._started_at: float | None = None
        self._interval_seconds = 0.0
        self._forced_gc_at = float("-inf")

    def observe(self, sample: Sample) -> Judgement:
        """Judge one new sample of this target. Samples must come in time order; older ones are ignored."""
        notes: list[str] = []
        previous = self._previous
        if previous is not None and sample.time <= previous.time:
            return Judgement(notes=(f"sample at {sample.time} ignored: not newer than the previous one",))
        restarted = False
        reason = restart_reason(previous, sample) if previous is not None else None
        if (
            reason is None
            and sample.goroutine_profile is not None
            and self._last_profile is not None
            and stacks.process_changed(self._last_profile, sample.goroutine_profile)
        ):
            reason = "the goroutine stacks moved to other addresses (a new process or build)"
        if reason is not None:
            restarted = True
            notes.append(f"target restarted ({reason}): series and warm-up start again")
            for rule in self._rules:
                rule.reset()
            self._notes.clear()
            self._started_at = None
        if self._started_at is None:
            self._started_at = sample.time
        if previous is not None:
            self._interval_seconds = sample.time - previous.time
        self._previous = restart_fields(sample)
        if sample.goroutine_profile is not None:
            self._last_profile = sample.goroutine_profile
        breaches: list[Breach] = []
        for rule in self._rules:
            verdict = rule.observe(sample, started_at=self._started_at)
            self._verdicts[rule.spec.name] = verdict
            if verdict.note != self._notes.get(rule.spec.name):
                self._notes[rule.spec.name] = verdict.note
                if verdict.note:
                    notes.append(f"{rule.spec.name}: {verdict.note}")
            if verdict.state != FIRING or verdict.message is None:
                continue
            if sample.time < self._cooldown_until.get(rule.spec.name, float("-inf")):
                continue
            cooldown_seconds = self._cooldown_seconds(rule.spec)
            self._cooldown_until[rule.spec.name] = sample.time + cooldown_seconds
            evidence = {**verdict.evidence, "cooldown_seconds": cooldown_seconds}
            breaches.append(
                Breach(
                    rule=rule.spec.name,
                    kind=rule.spec.kind,
                    target=sample.target,
                    time=sample.time,
                    message=verdict.message,
                    evidence=evidence,
                )
            )
        return Judgement(breaches=tuple(breaches), restarted=restarted, notes=tuple(notes))

    def update_rules(self, specs: Sequence[RuleSpec]) -> None:
        """Take a new rule set without losing what is unchanged: a rule whose spec is equal to one already
        judged keeps its Rule object (its series and warm-up); a changed or new rule starts its series afresh
        (a changed rule keeps its cooldown: an edit must not repeat a capture); a removed rule is forgotten,
        cooldown included. Order follows `specs`."""
        kept = {rule.spec.name: rule for rule in self._rules}
        rules: list[Rule] = []
        for spec in specs:
            old = kept.get(spec.name)
            if old is not None and old.spec == spec:
                rules.append(old)
                continue
            factory = _RULES.get(spec.kind)
            if factory is None:
                raise ValueError(f"no implementation for rule kind {spec.kind!r}")
            rules.append(factory(spec))
            self._verdicts.pop(spec.name, None)
            self._notes.pop(spec.name, None)
        names = {spec.name for spec in specs}
        self._cooldown_until = {n: t for n, t in self._cooldown_until.items() if n in names}
        self._verdicts = {n: v for n, v in self._verdicts.items() if n in names}
        self._notes = {n: note for n, note in self._notes.items() if n in names}
        self.specs = tuple(specs)
        self._rules = rules

    def _cooldown_seconds(self, spec: RuleSpec) -> float:
        return self.default_cooldown_seconds if spec.cooldown_seconds is None else spec.cooldown_seconds

    def wants(self) -> frozenset[Probe]:
        """What the next scrape should fetch besides the cheap index and heap?debug=1."""
        if self._previous is None:
            return frozenset()
        # Rules space their probes by the time of the scrape that will carry them: about one interval on.
        now = self._previous.time + self._interval_seconds
        wanted: set[Probe] = set()
        for rule in self._rules:
            until = self._cooldown_until.get(rule.spec.name)
            if until is not None and now < until - PROBE_LEAD_SECONDS:
                continue
            wanted |= rule.wants(now)
        if Probe.FRESH_GC in wanted:
            # Do no harm: one forced GC per target at most every 2 minutes, whichever rules ask for it.
            if now - self._forced_gc_at < RUNTIME_FORCED_GC_SECONDS:
                wanted.discard(Probe.FRESH_GC)
            else:
                self._forced_gc_at = now
        return frozenset(wanted)

    def cooldowns(self) -> dict[str, float]:
        """Rule name → unix time until which that rule stays quiet for this target (persist it in status)."""
        return dict(self._cooldown_until)

    def restore_cooldowns(self, mapping: Mapping[str, float]) -> None:
        """Take back cooldowns saved by `cooldowns()` (e.g. after an operator restart); unknown rules are
        ignored, and a later time never shortens a cooldown already running."""
        names = {spec.name for spec in self.specs}
        for name, until in mapping.items():
            if name in names:
                self._cooldown_until[name] = max(float(until), self._cooldown_until.get(name, float("-inf")))

    def status(self) -> Mapping[str, str]:
        """Rule name → one line for display: `watching: +1.2 MiB over 30m`, `inactive: ...`, in config order.
        The states are taken now, the lines rendered when read (the growth in them may cost a slope)."""
        return StatusLines(self.rule_states())

    def rule_states(self) -> dict[str, RuleStatus]:
        """Each rule's state as a value (state, fitted growth over the window and its unit, detail)."""
        now = self._previous.time if self._previous is not None else None
        out: dict[str, RuleStatus] = {}
        for rule in self._rules:
            name = rule.spec.name
            verdict = self._verdicts.get(name)
            state = verdict.state if verdict is not None else "warming up"
            detail: str | Callable[[], str] = _detail_of(verdict) if verdict is not None else ""
            until = self._cooldown_until.get(name)
            if (
                now is not None
                and until is not None
                and now < until
                and state in (FIRING, WATCHING, SUSPICIOUS)
            ):
                state = COOLING_DOWN
                detail = f"quiet until {units.format_duration(until - now)} from now"
            elif state == FIRING:
                state = SUSPICIOUS  # fired and cooldown 0, or suppressed: report what it sees
            out[name] = RuleStatus(
                name=name,
                kind=rule.spec.kind.value,
                state=state,
                growth=_growth_of(verdict),
                unit=verdict.unit if verdict is not None else "",
                detail=detail,
                window_seconds=rule.judged_window_seconds(),
                judging=verdict.judging if verdict is not None else True,
            )
        return out


def _growth_of(verdict: Verdict | None) -> Callable[[], float | None] | None:
    """The verdict's growth, read when a status line needs it (it may be computed lazily: lazy.py)."""
    if verdict is None:
        return None
    known: Verdict = verdict
    return lambda: known.growth


def _detail_of(verdict: Verdict) -> str | Callable[[], str]:
    """The verdict's note, or why it does not fire, read when shown (a trend's reason may be lazy)."""
    if verdict.note:
        return verdict.note
    return lambda: str(verdict.evidence.get("why_not", ""))
