"""Runs one shape through one built-in rule with a fake clock and counts, per evaluated window (every scrape
after the warm-up), whether the rule's verdict is "firing". Pure Python on the pure rule engine: no I/O.

Goroutine identity is modelled too: when the rule asks for a `goroutine?debug=2` dump, the harness hands it
the IDs alive at that moment — the long-lived goroutines (which keep their IDs; new ones get new IDs, the
newest die first when the count falls) and the short-lived rest (fresh IDs at every dump).

`python -m tests.sim.report` prints the table docs/rules.md quotes.
"""

from __future__ import annotations

import dataclasses
import random

from tests.sim.shapes import Shape

from memorywatch.pprof.goroutine_ids import sample_ids
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.base import FIRING, TrendRule
from memorywatch.rules.goroutine_growth import GoroutineGrowth
from memorywatch.rules.heap_growth import HeapGrowth
from memorywatch.rules.model import Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample

INTERVAL_SECONDS = 30.0
SEEDS = 20
# Watched for this many windows: the first is the warm-up, every scrape after it is an evaluated window.
WINDOWS_WATCHED = 4
T0 = 1_760_000_000.0


@dataclasses.dataclass(frozen=True)
class RuleUnderTest:
    """A built-in rule (its default window and minimum growth) and how a value becomes a sample."""

    name: str
    kind: RuleKind

    def build(self) -> TrendRule:
        spec = RuleSpec(name=self.name, kind=self.kind)
        return GoroutineGrowth(spec) if self.kind is RuleKind.GOROUTINE_GROWTH else HeapGrowth(spec)

    def sample(
        self, t: float, value: float, index: int, ids: list[int] | None = None, sites: Heap | None = None
    ) -> Sample:
        if self.kind is RuleKind.GOROUTINE_GROWTH:
            dump = sample_ids(ids) if ids is not None else None
            return Sample(target="sim", time=T0 + t, goroutines=max(0, round(value)), goroutine_ids=dump)
        # A busy program: one GC between scrapes, so every scrape is a GC point of the live heap.
        return Sample(
            target="sim",
            time=T0 + t,
            heap_live_bytes=max(0, round(value)),
            memstats=MemStats(num_gc=index + 1),
            heap_sites=sites.sites() if sites is not None else None,
        )


GOROUTINE_LEAK = RuleUnderTest("goroutine-leak", RuleKind.GOROUTINE_GROWTH)
HEAP_GROWTH = RuleUnderTest("heap-growth", RuleKind.HEAP_GROWTH)


@dataclasses.dataclass(frozen=True)
class Outcome:
    shape: str
    rule: str
    evaluated: int
    firing: int
    first_fire_delays: tuple[float, ...]  # per seed that fired: seconds after the warm-up ended

    @property
    def share(self) -> float:
        return self.firing / self.evaluated if self.evaluated else 0.0


class Heap:
    """Two allocation sites: one that keeps what it allocates (the long-lived part of the shape) and one of
    buffers in flight (the rest), each buffer living about a second, so it allocates its in-use size every
    second and frees as much."""

    def __init__(self) -> None:
        self.kept = self.kept_alloc = 0.0
        self.busy = self.busy_alloc = 0.0

    def update(self, value: float, persistent: float, seconds: float) -> None:
        self.kept_alloc += max(0.0, persistent - self.kept)
        self.kept = persistent
        self.busy = max(0.0, value - persistent)
        self.busy_alloc += self.busy * seconds

    def sites(self) -> tuple[tuple[int, int, int], ...]:
        return ((1, round(self.kept), round(self.kept_alloc)), (2, round(self.busy), round(self.busy_alloc)))


class Population:
    """The goroutine IDs alive: long-lived ones keep theirs, short-lived ones are new at every look."""

    def __init__(self) -> None:
        self.next_id = 1
        self.alive: list[int] = []

    def update(self, persistent: int) -> None:
        while len(self.alive) < persistent:
            self.alive.append(self.next_id)
            self.next_id += 1
        del self.alive[max(0, persistent) :]

    def dump(self, total: int) -> list[int]:
        transient = list(range(self.next_id, self.next_id + max(0, total - len(self.alive))))
        self.next_id += len(transient)
        return self.alive + transient


def simulate(shape: Shape, rule: RuleUnderTest, *, seeds: int = SEEDS) -> Outcome:
    evaluated = firing = 0
    delays: list[float] = []
    for seed in range(seeds):
        judge = rule.build()
        window = judge.window_seconds
        made = shape.factory(random.Random(seed), window, judge.min_growth)
        value, persistent = made if isinstance(made, tuple) else (made, None)
        population = Population()
        heap = Heap()
        steps = int(WINDOWS_WATCHED * window / INTERVAL_SECONDS)
        first: float | None = None
        for i in range(steps + 1):
            t = i * INTERVAL_SECONDS
            v = value(t)
            lasting = min(v, persistent(t)) if persistent is not None else v
            ids: list[int] | None = None
            if rule.kind is RuleKind.GOROUTINE_GROWTH:
                population.update(round(lasting))
                if Probe.GOROUTINE_DUMP in judge.wants(T0 + t):
                    ids = population.dump(round(v))
            else:
                heap.update(v, lasting, INTERVAL_SECONDS)
            verdict = judge.observe(rule.sample(t, v, i, ids, heap), started_at=T0)
            if t < window:
                continue
            evaluated += 1
            if verdict.state == FIRING:
                firing += 1
                if first is None:
                    first = t - window
        if first is not None:
            delays.append(first)
    return Outcome(shape.name, rule.name, evaluated, firing, tuple(delays))
