"""We test Threshold: a CEL expression over the latest sample that must hold for `for` before it fires;
interruptions restart the clock; missing values and bad expressions become notes, never exceptions."""

from __future__ import annotations

import pytest
from tests.unit.rules.synth import T0, feed, spec, stream

from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import RuleKind

GIB = 2**30


def rule(expression: str, for_seconds: float | None = None):  # type: ignore[no-untyped-def]
    return spec(RuleKind.THRESHOLD, "big-sys", expression=expression, for_seconds=for_seconds)


def sys_of(value):  # type: ignore[no-untyped-def]
    return lambda i, t: {"memstats": MemStats(sys=value(i, t), heap_alloc=1), "goroutines": 10}


def test_fires_only_after_holding_for_the_whole_for() -> None:
    judge = TargetJudge([rule("memstats.Sys > 4 * 1024 * 1024 * 1024", for_seconds=300)])
    run = feed(judge, stream(900, 30, sys_of(lambda i, t: 5 * GIB)))
    breach = run.breaches[0]
    assert breach.time - T0 == 300
    assert breach.evidence["held_seconds"] == 300
    assert breach.evidence["values"]["memstats"]["Sys"] == 5 * GIB
    assert "has held for 5m" in breach.message


def test_an_interruption_restarts_the_for_clock() -> None:
    # true, except one dip at t = 240s: the 5m must start again after it
    value = lambda i, t: 1 * GIB if t == 240 else 5 * GIB  # noqa: E731
    run = feed(
        TargetJudge([rule("memstats.Sys > 4 * 1024 * 1024 * 1024", for_seconds=300)]),
        stream(900, 30, sys_of(value)),
    )
    assert run.breaches[0].time - T0 == 270 + 300


def test_without_for_it_fires_on_the_first_true_sample() -> None:
    run = feed(TargetJudge([rule("goroutines >= 10")]), stream(60, 30, sys_of(lambda i, t: 1)))
    assert run.breaches[0].time == T0


@pytest.mark.parametrize(
    ("expression", "note_part"),
    [
        ("rss > 100", "not reported by this target"),
        ("memstats.HeapObjects > 100", "not reported by this target"),
        ("memstats.Sys > 0.9 * goroutines", "write double(x)"),
        ("goroutines / 0 > 1", "divide by zero"),
        ("goroutines + 1", "not a bool"),
    ],
)
def test_evaluation_problems_are_notes_not_exceptions(expression: str, note_part: str) -> None:
    run = feed(TargetJudge([rule(expression)]), stream(120, 30, sys_of(lambda i, t: 1)))
    assert run.breaches == []
    assert len(run.notes) == 1, "a repeated problem is noted once"
    assert note_part in run.notes[0]


def test_has_guards_a_missing_value() -> None:
    run = feed(
        TargetJudge([rule("has(memstats.HeapObjects) && memstats.HeapObjects > 1")]),
        stream(120, 30, sys_of(lambda i, t: 1)),
    )
    assert run.breaches == [] and run.notes == []


def test_an_expression_that_does_not_compile_is_inactive_with_a_note() -> None:
    run = feed(TargetJudge([rule("memstats.Sys >")]), stream(60, 30, sys_of(lambda i, t: 1)))
    assert run.breaches == []
    assert run.notes == ["big-sys: Threshold inactive: 'memstats.Sys >' does not compile (column 14)"]
