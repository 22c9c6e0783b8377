"""We test NonHeapGrowth: resident memory growing while Go's own memory (Sys − HeapReleased) stays flat is a
leak outside Go (cgo); a Go heap leak, the scavenger returning memory, or no RSS at all are not."""

from __future__ import annotations

import pytest
from tests.unit.rules.synth import MIB, T0, feed, spec, stream

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind

WINDOW = 1800.0
RULE = spec(RuleKind.NON_HEAP_GROWTH, "non-heap-growth", window_seconds=WINDOW, min_growth=256 * MIB)


def process(rss, sys, released=lambda t: 10 * MIB, source="prometheus", threads=None):  # type: ignore[no-untyped-def]
    def make(i: int, t: float) -> dict[str, object]:
        fields: dict[str, object] = {
            "memstats": MemStats(sys=round(sys(t)), heap_released=round(released(t)), num_gc=i),
            "rss_bytes": round(rss(t)),
            "rss_source": source,
        }
        if threads is not None:
            fields["threads"] = threads(t)
        return fields

    return make


def test_cgo_leak_fires_and_says_go_memory_did_not_move() -> None:
    make = process(rss=lambda t: 100 * MIB + 15 * MIB * t / 60, sys=lambda t: 80 * MIB, threads=lambda t: 12)
    run = feed(TargetJudge([RULE]), stream(7200, 30, make))
    breach = run.breaches[0]
    assert WINDOW <= breach.time - T0 <= WINDOW + 60
    assert breach.evidence["growth_over_window"] == pytest.approx(450 * MIB, rel=0.02)
    assert breach.evidence["go_resident_change"] == 0
    assert breach.evidence["rss_source"] == "prometheus"
    assert "Sys − HeapReleased) changed by 0 B" in breach.message
    assert "cgo" in breach.message


def test_go_heap_leak_moves_rss_and_sys_together_and_does_not_fire() -> None:
    grow = lambda t: 20 * MIB * t / 60  # noqa: E731
    make = process(rss=lambda t: 150 * MIB + grow(t), sys=lambda t: 120 * MIB + grow(t))
    assert feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches == []


def test_scavenger_returning_memory_does_not_fire() -> None:
    # RSS falls as HeapReleased rises: the gap stays put
    make = process(
        rss=lambda t: 900 * MIB - 5 * MIB * min(t, 3600) / 60,
        sys=lambda t: 1000 * MIB,
        released=lambda t: 200 * MIB + 5 * MIB * min(t, 3600) / 60,
    )
    assert feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches == []


def test_maxrss_only_gives_a_lower_bound_and_says_so() -> None:
    make = process(rss=lambda t: 100 * MIB + 15 * MIB * t / 60, sys=lambda t: 80 * MIB, source="maxrss")
    breach = feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches[0]
    assert breach.evidence["lower_bound"] is True
    assert "lower bound" in breach.message


def test_maxrss_from_memstats_is_used_when_no_rss_source_exists() -> None:
    def make(i: int, t: float) -> dict[str, object]:
        return {
            "memstats": MemStats(sys=80 * MIB, heap_released=0, max_rss=round(100 * MIB + 15 * MIB * t / 60))
        }

    breach = feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches[0]
    assert breach.evidence["rss_source"] == "maxrss" and breach.evidence["lower_bound"] is True


def test_no_rss_at_all_is_inactive_with_a_note() -> None:
    run = feed(
        TargetJudge([RULE]), stream(600, 30, lambda i, t: {"memstats": MemStats(sys=1, heap_released=0)})
    )
    assert run.breaches == []
    assert run.notes == [
        "non-heap-growth: NonHeapGrowth inactive: the target reports no resident memory (no RSS source, no MaxRSS)"
    ]


def test_rss_climbing_toward_go_accounting_is_go_memory_becoming_resident_and_does_not_fire() -> None:
    # A healthy service: Go mapped 300 MiB (Sys − HeapReleased flat) but touched only 100 MiB of it; as spans
    # are reused and zeroed RSS climbs toward 300 MiB by 190 MiB, with nothing allocated outside Go.
    for source in ("prometheus", "maxrss"):
        make = process(
            rss=lambda t: 100 * MIB + 190 * MIB * min(t, 3600) / 3600,
            sys=lambda t: 310 * MIB,
            source=source,
        )
        run = feed(TargetJudge([spec(RuleKind.NON_HEAP_GROWTH, "n", window_seconds=WINDOW, min_growth=16 * MIB)]),
                   stream(7200, 30, make))  # fmt: skip
        assert run.breaches == [], source


def test_a_leak_starting_below_go_accounting_is_named_once_it_passes_it() -> None:
    # RSS starts 40 MiB below Go's accounting and a C leak adds 10 MiB/min: the first 40 MiB are invisible,
    # the rest is growth outside Go, counted from zero.
    make = process(rss=lambda t: 260 * MIB + 10 * MIB * t / 60, sys=lambda t: 310 * MIB)
    breach = feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches[0]
    assert breach.evidence["growth_over_window"] == pytest.approx(300 * MIB, rel=0.05)
    assert breach.evidence["gap"].startswith("max(0,")


def test_the_breach_names_the_os_threads_of_its_window_and_exact_byte_figures() -> None:
    make = process(
        rss=lambda t: 100 * MIB + 15 * MIB * t / 60,
        sys=lambda t: 80 * MIB,
        threads=lambda t: 12 + int(t // 60),
    )
    run = feed(TargetJudge([RULE]), stream(7200, 30, make))
    breach = run.breaches[0]
    elapsed = breach.time - T0
    first = 12 + int((elapsed - WINDOW) // 60)  # the oldest thread count inside the window
    assert (breach.evidence["threads_first"], breach.evidence["threads_last"]) == (
        first,
        12 + int(elapsed // 60),
    )
    assert f"OS threads also rose from {first} to {12 + int(elapsed // 60)}" in breach.message
    assert breach.evidence["go_resident_first"] == 70 * MIB and isinstance(breach.evidence["rss_last"], int)
