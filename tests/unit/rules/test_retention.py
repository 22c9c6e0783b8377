"""Retention per allocation site confirms or holds back a live-heap breach: a leaking site keeps what it
allocates, buffers that grow with load free at the rate they allocate. The sites come from a real
heap?debug=1 (largest last, as Go sorts them)."""

from __future__ import annotations

from tests.unit.rules.synth import FIXTURES, MIB, T0, gc_memstats, spec

from memorywatch.pprof.heap_text import parse_heap_text
from memorywatch.rules import retention
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind
from memorywatch.samples import Sample

WINDOW = 1800.0
RULE = spec(RuleKind.HEAP_GROWTH, "heap-growth", window_seconds=WINDOW)  # min growth 256 MiB


def test_the_largest_sites_of_a_real_heap_profile_come_first() -> None:
    heap = parse_heap_text((FIXTURES / "heap_debug1.txt").read_text())
    sizes = [inuse for _, inuse, _ in heap.top_sites]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    assert len(heap.top_sites) == heap.records  # a small profile: every site


def test_a_site_that_keeps_what_it_allocates_is_kept_and_one_that_frees_is_freed() -> None:
    older = [(1, 10 * MIB, 10 * MIB), (2, 5 * MIB, 900 * MIB)]
    leak = retention.judge(older, [(1, 110 * MIB, 110 * MIB), (2, 6 * MIB, 1900 * MIB)], 100 * MIB)
    assert leak is not None and leak.verdict == retention.KEPT
    assert leak.evidence["kept_share"] > 0.9, "the busy site's wobble does not drown the leak"
    ramp = retention.judge(older, [(1, 10 * MIB, 10 * MIB), (2, 105 * MIB, 9000 * MIB)], 100 * MIB)
    assert ramp is not None and ramp.verdict == retention.FREED
    flat = retention.judge(older, [(1, 9 * MIB, 10 * MIB)], 100 * MIB)
    assert flat is not None and flat.verdict == retention.UNCLEAR, "no site grew: the sites cannot explain it"
    assert retention.judge(older, [(1, 110 * MIB, 110 * MIB)], 0) is None, "the live heap did not grow"


def test_a_site_missing_from_the_older_snapshot_counts_from_zero() -> None:
    older = [(1, 10 * MIB, 10 * MIB)]
    new_leak = retention.judge(older, [(1, 10 * MIB, 10 * MIB), (3, 100 * MIB, 101 * MIB)], 100 * MIB)
    assert new_leak is not None and new_leak.verdict == retention.KEPT
    # Request buffers first sampled after the older snapshot: everything they allocated since the process
    # started is at least what they allocated between the snapshots, so they still read as freeing.
    new_buffers = retention.judge(older, [(1, 10 * MIB, 10 * MIB), (3, 100 * MIB, 2000 * MIB)], 100 * MIB)
    assert new_buffers is not None and new_buffers.verdict == retention.FREED


def test_sites_that_cannot_speak_for_the_rise_are_unclear() -> None:
    older = [(1, 10 * MIB, 10 * MIB), (2, 5 * MIB, 900 * MIB)]
    small = retention.judge(older, [(1, 30 * MIB, 30 * MIB), (2, 5 * MIB, 950 * MIB)], 100 * MIB)
    assert small is not None and small.verdict == retention.UNCLEAR
    assert "account for 20 MiB of a 100 MiB rise" in small.phrase, small.phrase
    mixed = retention.judge(older, [(2, 105 * MIB, 1200 * MIB)], 100 * MIB)
    assert mixed is not None and mixed.verdict == retention.UNCLEAR, "kept a third: neither a leak nor a load"


def samples(sites_at: object) -> list[Sample]:
    out = []
    for i in range(int(WINDOW * 2 / 30) + 1):
        t = i * 30.0
        live = 100 * MIB + 512 * MIB * t / WINDOW
        out.append(
            Sample(
                target="pod",
                time=T0 + t,
                heap_live_bytes=round(live),
                memstats=gc_memstats(i + 1),
                heap_sites=sites_at(t, live),  # type: ignore[operator]
            )
        )
    return out


def test_a_leaking_site_confirms_the_breach_and_says_so() -> None:
    def sites(t: float, live: float) -> tuple[tuple[int, int, int], ...]:
        return ((7, round(live), round(live)), (8, MIB, round(t * MIB)))

    judge = TargetJudge([RULE])
    breaches = [b for s in samples(sites) for b in judge.observe(s).breaches]
    assert breaches
    assert "retention per allocation site (" in breaches[0].message
    assert breaches[0].evidence["retention"]["kept_share"] > 0.9


def test_live_heap_of_buffers_in_flight_is_held_back_for_half_a_window() -> None:
    def sites(t: float, live: float) -> tuple[tuple[int, int, int], ...]:
        return ((7, 50 * MIB, 50 * MIB), (8, round(live - 50 * MIB), round(t * live)))

    judge = TargetJudge([RULE])
    breaches, held = [], 0
    for sample in samples(sites):
        breaches.extend(judge.observe(sample).breaches)
        held += (
            "held back: the sites that grew free most of what they allocate"
            in judge.rule_states()["heap-growth"].detail
        )
    assert held >= 10, "the rule said why it held the breach back"
    assert breaches, "a rise that goes on for half a window after the hold still fires (a shared-site leak)"
    first = breaches[0]
    assert first.time - T0 >= WINDOW * 1.25, "held back at first"
    assert (
        "still rising" in first.message
        and "after the sites that grew free most of what they allocate" in first.message
    )


def test_a_rise_the_sites_do_not_explain_is_held_back_for_half_a_window() -> None:
    def sites(t: float, live: float) -> tuple[tuple[int, int, int], ...]:
        del live
        return ((7, 50 * MIB + round(t * 1024), 50 * MIB + round(t * 1024)),)  # a sliver of the rise

    judge = TargetJudge([RULE])
    breaches, held = [], 0
    for sample in samples(sites):
        breaches.extend(judge.observe(sample).breaches)
        held += "too little to say whether they keep or free it" in judge.rule_states()["heap-growth"].detail
    assert held >= 10, "the rule said why it held the breach back"
    assert breaches, "a rise that goes on for half a window after the hold still fires"
    assert breaches[0].time - T0 >= WINDOW * 1.25, "held back at first"
    assert "after the allocation sites could not say why it rose (" in breaches[0].message
