"""We test HeapGrowth on what the Go runtime really shows: live heap at GC points. A steady leak fires with
the right numbers; the GC saw-tooth of raw HeapAlloc, a start-up step and growth below the minimum do not;
a GC seen by several scrapes counts once; a target without a live-heap figure (MemProfileRate=0) is a blind spot the rule names."""

from __future__ import annotations

import random

import pytest
from tests.unit.rules.synth import MIB, T0, feed, gc_memstats, spec, stream

from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind

WINDOW = 1800.0
RULE = spec(RuleKind.HEAP_GROWTH, "heap-growth", window_seconds=WINDOW, min_growth=256 * MIB)


def heap(live, *, gc_every: int = 1, heap_alloc=None):  # type: ignore[no-untyped-def]
    """Samples whose live heap is `live(t)` as of the last GC, with a GC completing every `gc_every` scrapes."""

    def make(i: int, t: float) -> dict[str, object]:
        num_gc = i // gc_every
        gc_time = num_gc * gc_every * 30.0
        alloc = heap_alloc(i, t) if heap_alloc is not None else live(gc_time)
        return {
            "heap_live_bytes": round(live(gc_time)),
            "memstats": gc_memstats(num_gc, heap_alloc=alloc, next_gc=round(2 * live(gc_time))),
        }

    return make


def test_steady_leak_fires_after_one_window_with_the_numbers() -> None:
    run = feed(TargetJudge([RULE]), stream(7200, 30, heap(lambda t: 40 * MIB + 20 * MIB * t / 60)))
    breach = run.breaches[0]
    assert WINDOW <= breach.time - T0 <= WINDOW + 60
    assert breach.evidence["growth_over_window"] == pytest.approx(600 * MIB, rel=0.02)
    assert breach.evidence["slope_per_second"] == pytest.approx(20 * MIB / 60, rel=0.02)
    assert breach.evidence["source"] == "heap_live_bytes"
    assert breach.evidence["unit"] == "bytes"
    assert breach.message.startswith("The live heap after GC grew by 600 MiB in 30m (20 MiB/min)")


def test_a_gc_seen_by_several_scrapes_counts_once() -> None:
    run = feed(
        TargetJudge([RULE]), stream(7200, 30, heap(lambda t: 40 * MIB + 20 * MIB * t / 60, gc_every=4))
    )
    breach = run.breaches[0]
    # a 30m window with one GC every 2m holds ~15 GC points, not 60 scrapes
    assert 14 <= breach.evidence["gc_points"] <= 17
    assert breach.evidence["growth_over_window"] == pytest.approx(600 * MIB, rel=0.1)


def test_gc_saw_tooth_with_a_flat_live_heap_never_fires() -> None:
    rnd = random.Random(7)

    def saw(i: int, t: float) -> int:  # raw HeapAlloc climbs 10 MB → 200 MB, then a GC drops it
        return round(10e6 + (i % 5) * 47.5e6)

    make = heap(lambda t: 10e6 + rnd.uniform(-0.5e6, 0.5e6), gc_every=5, heap_alloc=saw)
    run = feed(TargetJudge([RULE]), stream(4 * 3600, 30, make))
    assert run.breaches == []


@pytest.mark.parametrize(
    ("name", "live"),
    [
        ("a start-up step 5 MiB → 400 MiB", lambda t: (5 if t < 60 else 400) * MIB),
        ("a slow leak of 100 MiB per 30m (min 256 MiB)", lambda t: 50 * MIB + 100 * MIB * t / WINDOW),
        ("a cache filling to its bound in 10 minutes", lambda t: 20 * MIB + 500 * MIB * min(t, 600) / 600),
    ],
)
def test_healthy_heaps_never_fire(name: str, live) -> None:  # type: ignore[no-untyped-def]
    run = feed(TargetJudge([RULE]), stream(4 * 3600, 30, heap(live)))
    assert run.breaches == [], name


@pytest.mark.parametrize("seed", range(3))
def test_noisy_leak_still_fires(seed: int) -> None:
    rnd = random.Random(seed)
    growth = 400 * MIB
    run = feed(
        TargetJudge([RULE]),
        stream(7200, 30, heap(lambda t: 100 * MIB + growth * t / WINDOW + rnd.uniform(-0.3, 0.3) * growth)),
    )
    assert run.breaches and run.first_breach_after() is not None
    assert run.first_breach_after() <= WINDOW * 1.5


def test_a_heap_profile_without_sampling_is_a_blind_spot_not_a_flat_heap() -> None:
    """MemProfileRate=0 empties the heap profile: the live heap is unknown, not 0, and NextGC is no stand-in
    (since Go 1.18 the goal also counts GC roots and GOMEMLIMIT caps it). The rule says it is blind."""

    def make(i: int, t: float) -> dict[str, object]:
        growing_goal = round(2 * (40 * MIB + 20 * MIB * t / 60))
        return {"memstats": gc_memstats(i, next_gc=growing_goal), "heap_profile_rate": 0}

    judge = TargetJudge([RULE])
    run = feed(judge, stream(3600, 30, make))
    assert run.breaches == []
    assert run.notes == [
        "heap-growth: HeapGrowth inactive: the target's heap profile is empty (runtime.MemProfileRate is 0),"
        " so its live heap is unknown; leave MemProfileRate at its default or export go_gc_heap_live_bytes on"
        " /metrics"
    ]
    assert judge.rule_states()["heap-growth"].state == "inactive"


def test_no_heap_figures_is_inactive_with_a_note() -> None:
    run = feed(TargetJudge([RULE]), stream(600, 30, lambda i, t: {"goroutines": 10}))
    assert run.notes == [
        "heap-growth: HeapGrowth inactive: the target reports no live-heap figure (no heap profile)"
    ]
