"""A trend rule whose window holds too few points says why in its status instead of "watching" with a growth
fitted to two points: HeapGrowth counts GC cycles and says how long a window the target's GC pace needs.
Fake clock, real rule objects."""

from __future__ import annotations

from tests.unit.rules.synth import MIB, T0, gc_memstats, spec

from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind
from memorywatch.samples import Sample

SHORT = spec(RuleKind.HEAP_GROWTH, "heap-growth", window_seconds=40.0, min_growth=16 * MIB)


def heap_sample(t: float, num_gc: int, live: int = 40 * MIB) -> Sample:
    return Sample(target="pod", time=T0 + t, heap_live_bytes=live, memstats=gc_memstats(num_gc))


def test_a_heap_window_shorter_than_the_gc_pace_says_how_many_cycles_it_has_and_what_window_would_do() -> (
    None
):
    judge = TargetJudge([SHORT])
    # One scrape every 5 s, one GC completing every 25 s (a service that makes little garbage).
    for i in range(0, 22):  # GCs at 0, 25, 50, 75 and 100 s; the window at 105 s holds the last two
        t = 5.0 * i
        judge.observe(heap_sample(t, num_gc=int(t // 25), live=40 * MIB + i * MIB))
    line = judge.status()["heap-growth"]
    assert line == (
        "watching: 2 GC cycles in the 40s window, 6 needed to judge; the target completes one about every"
        " 25s, so a window of at least 2m30s would hold enough"
    ), line
    state = judge.rule_states()["heap-growth"]
    assert not state.judging and state.growth is not None, "the growth is still there for the metrics"


def test_no_gc_in_the_window_says_when_the_last_one_completed() -> None:
    judge = TargetJudge([SHORT])
    for i in range(0, 30):  # GCs seen at 0 and 100 s, the last scrape at 145 s
        t = 5.0 * i
        judge.observe(heap_sample(t, num_gc=0 if t < 100 else 1))
    line = judge.status()["heap-growth"]
    assert line.startswith(
        "watching: 0 GC cycles in the 40s window, 6 needed to judge; the last one completed 45s ago"
    ), line
    assert "needs a longer window" in line


def test_during_warm_up_the_reason_shows_too() -> None:
    judge = TargetJudge([SHORT])
    judge.observe(heap_sample(0, 1))
    judge.observe(heap_sample(5, 1))
    assert judge.status()["heap-growth"].startswith("warming up: 1 GC cycle in the 40s window, 6 needed")


def test_a_goroutine_rule_with_few_scrapes_in_its_window_counts_points() -> None:
    rule = spec(RuleKind.GOROUTINE_GROWTH, "goroutine-leak", window_seconds=40.0, min_growth=300)
    judge = TargetJudge([rule])
    for i in range(4):
        judge.observe(Sample(target="pod", time=T0 + 15.0 * i, goroutines=100 + 10 * i))
    assert judge.status()["goroutine-leak"] == "watching: 3 points in the 40s window, 8 needed to judge"


def test_with_enough_points_the_status_shows_the_growth_again() -> None:
    judge = TargetJudge([SHORT])
    for i in range(0, 30):
        t = 5.0 * i
        judge.observe(heap_sample(t, num_gc=i, live=40 * MIB + i * MIB))
    line = judge.status()["heap-growth"]
    assert line.startswith("watching: +") or line.startswith("suspicious: +"), line
    assert judge.rule_states()["heap-growth"].judging


def test_finalizer_backlog_on_live_objects_counts_gc_cycles_and_on_queue_metrics_counts_points() -> None:
    rule = spec(RuleKind.FINALIZER_BACKLOG, "finalizer-backlog", window_seconds=40.0)
    objects = TargetJudge([rule])
    for i in range(22):  # one GC every 25 s, scrapes every 5 s
        t = 5.0 * i
        objects.observe(
            Sample(
                target="pod", time=T0 + t, heap_live_objects=50_000 + i, memstats=gc_memstats(int(t // 25))
            )
        )
    assert objects.status()["finalizer-backlog"].startswith(
        "watching: 2 GC cycles in the 40s window, 6 needed to judge; the target completes one about every 25s"
    )
    queue = TargetJudge([rule])
    for i in range(4):
        queue.observe(
            Sample(target="pod", time=T0 + 15.0 * i, finalizers_queued=10 + i, finalizers_executed=10)
        )
    assert queue.status()["finalizer-backlog"] == "watching: 3 points in the 40s window, 6 needed to judge"
