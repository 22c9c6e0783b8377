"""The fresh-GC probe does no harm: asked only when GC points went stale while the heap grew by a real share of
the rule's minimum growth, never on an idle target, and never more often than the runtime's own 2-minute GC."""

from __future__ import annotations

import dataclasses

from tests.unit.rules.synth import fixture_profile

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample

MIB = 2**20
RULE = RuleSpec(name="heap", kind=RuleKind.HEAP_GROWTH, window_seconds=100, min_growth=16 * MIB)
BUILT_IN = [
    RuleSpec(name="goroutine-leak", kind=RuleKind.GOROUTINE_GROWTH),
    RuleSpec(name="heap-growth", kind=RuleKind.HEAP_GROWTH),
    RuleSpec(name="finalizer-backlog", kind=RuleKind.FINALIZER_BACKLOG),
    RuleSpec(name="non-heap-growth", kind=RuleKind.NON_HEAP_GROWTH),
    RuleSpec(name="near-limit", kind=RuleKind.MEMORY_LIMIT),
]


def sample(t: float, num_gc: int, heap_alloc: int, heap_objects: int = 10_000) -> Sample:
    return Sample(
        target="t",
        time=t,
        memstats=MemStats(num_gc=num_gc, heap_alloc=heap_alloc, heap_objects=heap_objects),
        heap_live_bytes=4 * MIB,
        heap_live_objects=10_000,
        goroutines=12,
    )


def asks(judge: TargetJudge) -> bool:
    return Probe.FRESH_GC in judge.wants()


def test_a_stale_gc_point_with_a_growing_heap_asks_for_one_gc_then_waits_two_minutes() -> None:
    judge = TargetJudge([RULE])
    judge.observe(sample(0, 5, 4 * MIB))
    judge.observe(sample(5, 5, 5 * MIB))
    assert not asks(judge), "fresh enough: a tenth of the window has not passed"
    judge.observe(sample(11, 5, 7 * MIB))
    assert asks(judge), "11 s without a GC (window/10 = 10 s) while HeapAlloc grew by 3 MiB (> 16 MiB / 8)"
    asked = 1
    for t in range(13, 600, 2):  # the heap keeps growing and the runtime never collects on its own
        judge.observe(sample(t, 5, (7 + t) * MIB))
        asked += asks(judge)
    assert asked == 1 + (600 - 13) // 120, "at most one forced GC every 2 minutes, like the runtime's own"


def test_a_busy_program_is_never_forced() -> None:
    judge = TargetJudge([RULE])
    for i in range(30):
        judge.observe(sample(i * 2.0, i, (4 + i % 3) * MIB))  # a GC between every two scrapes
        assert not asks(judge)


def test_an_idle_program_is_never_forced() -> None:
    judge = TargetJudge([RULE])
    for i in range(30):
        judge.observe(sample(i * 2.0, 7, 4 * MIB))  # no GC, but no allocation either
        assert not asks(judge)


def test_built_in_rules_never_force_a_gc_on_an_idle_target_whose_only_allocations_are_our_scrapes() -> None:
    """Each scrape allocates a little in the target (the pprof handler), so HeapAlloc and HeapObjects creep up
    between the runtime's own 2-minute GCs. FinalizerBacklog used to accept zero growth and forced a GC about
    every 90 s; with the built-in rules nothing may be forced."""
    judge = TargetJudge(BUILT_IN)
    num_gc = 3
    for i in range(6 * 60 * 2):  # six hours at a 30 s interval
        t = i * 30.0
        if i % 4 == 0:
            num_gc += 1  # the runtime's own forced GC, every 2 minutes
        creep = (i % 4) * 64 * 1024
        judge.observe(sample(t, num_gc, 4 * MIB + creep, 10_000 + (i % 4) * 300))
        assert not asks(judge), f"forced a GC at {t}s"


def test_finalizer_backlog_forces_a_gc_only_while_the_finalizer_runs_user_code() -> None:
    rule = RuleSpec(name="fin", kind=RuleKind.FINALIZER_BACKLOG, window_seconds=100, min_growth=800)
    idle, stuck = (
        fixture_profile("goroutine_debug1_t0.txt"),
        fixture_profile("goroutine_finalizer_debug1.txt"),
    )
    for profile, expected in ((idle, False), (stuck, True)):
        judge = TargetJudge([rule])
        judge.observe(dataclasses.replace(sample(0, 5, 4 * MIB, 10_000), goroutine_profile=profile))
        judge.observe(sample(20, 5, 4 * MIB, 10_500))  # stale, and 500 objects > 800 / 8 more
        assert asks(judge) is expected


def test_finalizer_backlog_needs_real_object_growth_not_any_growth() -> None:
    rule = RuleSpec(name="fin", kind=RuleKind.FINALIZER_BACKLOG, window_seconds=100, min_growth=8000)
    stuck = fixture_profile("goroutine_finalizer_debug1.txt")
    judge = TargetJudge([rule])
    judge.observe(dataclasses.replace(sample(0, 5, 4 * MIB, 10_000), goroutine_profile=stuck))
    judge.observe(sample(20, 5, 4 * MIB, 10_500))  # 500 objects < 8000 / 8
    assert not asks(judge)


def test_two_rules_asking_together_still_force_at_most_one_gc_per_two_minutes() -> None:
    other = dataclasses.replace(RULE, name="heap-2", window_seconds=200)
    judge = TargetJudge([RULE, other])
    asked = 0
    for t in range(0, 480, 2):
        judge.observe(sample(t, 5, (4 + t) * MIB))
        asked += asks(judge)
    assert asked == 4  # at about 10 s, 130 s, 250 s, 370 s
