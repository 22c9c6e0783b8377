"""The fresh-GC probe: asked only when GC points went stale while the heap grew, and rate-limited."""

from __future__ import annotations

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind, RuleSpec
from memorywatch.samples import Sample

MIB = 2**20
RULE = RuleSpec(name="heap", kind=RuleKind.HEAP_GROWTH, window_seconds=100, min_growth=16 * MIB)


def sample(t: float, num_gc: int, heap_alloc: int) -> Sample:
    return Sample(
        target="t", time=t, memstats=MemStats(num_gc=num_gc, heap_alloc=heap_alloc), heap_live_bytes=4 * MIB
    )


def asks(judge: TargetJudge) -> bool:
    return Probe.FRESH_GC in judge.wants()


def test_a_stale_gc_point_with_a_growing_heap_asks_for_one_gc_then_waits() -> None:
    judge = TargetJudge([RULE])
    judge.observe(sample(0, 5, 4 * MIB))
    judge.observe(sample(5, 5, 5 * MIB))
    assert not asks(judge), "fresh enough: a tenth of the window has not passed"
    judge.observe(sample(11, 5, 7 * MIB))
    assert asks(judge), "11 s without a GC (window/10 = 10 s) while HeapAlloc grew by 3 MiB (> 16 MiB / 8)"
    judge.observe(sample(13, 5, 7 * MIB))
    assert not asks(judge), "asked once; not again within a tenth of the window"


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
