"""We test FinalizerBacklog both ways a user can see it: the Go 1.26 queue metrics growing, and (older Go)
live objects growing while the finalizer goroutine sits in the same user function in consecutive real
snapshots. A queue that keeps up, or objects that grow with an idle finalizer, do not fire."""

from __future__ import annotations

import random

import pytest
from tests.unit.rules.synth import T0, feed, feed_with_stacks, fixture_profile, gc_memstats, spec, stream

from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind

WINDOW = 900.0
RULE = spec(RuleKind.FINALIZER_BACKLOG, "finalizer-backlog", window_seconds=WINDOW)  # default min 1000


def test_growing_queue_fires_with_the_backlog_numbers() -> None:
    make = lambda i, t: {"finalizers_queued": 1000 + 200 * i, "finalizers_executed": 900 + 10 * i}  # noqa: E731
    run = feed(TargetJudge([RULE]), stream(3600, 30, make))
    breach = run.breaches[0]
    assert WINDOW <= breach.time - T0 <= WINDOW + 60
    assert breach.evidence["mode"] == "finalizer-queue"
    assert breach.evidence["growth_over_window"] == pytest.approx(190 * 30, rel=0.02)
    assert breach.evidence["first_value"] == 100
    assert breach.message.startswith("The finalizer queue (queued − executed) grew by 5,700 in 15m")


def test_a_queue_that_keeps_up_never_fires() -> None:
    rnd = random.Random(3)

    def make(i: int, t: float) -> dict[str, int]:
        queued = 5000 * i
        return {"finalizers_queued": queued, "finalizers_executed": queued - rnd.randint(0, 400)}

    assert feed(TargetJudge([RULE]), stream(7200, 30, make)).breaches == []


def live_objects(i: int, t: float) -> dict[str, object]:
    return {"heap_live_objects": 50_000 + 100 * i, "memstats": gc_memstats(i)}


def test_rising_objects_and_a_stuck_finalizer_fire_and_name_the_function() -> None:
    stuck = fixture_profile("goroutine_finalizer_debug1.txt")
    judge = TargetJudge([RULE])
    assert Probe.GOROUTINE_STACKS not in judge.wants()
    run, fetched = feed_with_stacks(judge, stream(3600, 30, live_objects), lambda n: stuck)
    assert fetched >= 2
    breach = run.breaches[0]
    assert WINDOW <= breach.time - T0 <= WINDOW + 120
    assert breach.evidence["mode"] == "live-objects"
    assert breach.evidence["stuck_finalizer"]["function"] == "main.stuckFinalizer"
    assert breach.evidence["stuck_finalizer"]["span_seconds"] >= 30
    assert "the finalizer goroutine stayed in main.stuckFinalizer (behaviours.go:153)" in breach.message


def test_rising_objects_with_an_idle_finalizer_do_not_fire() -> None:
    idle = fixture_profile("goroutine_debug1_t0.txt")  # no finalizer goroutine running user code
    run, fetched = feed_with_stacks(TargetJudge([RULE]), stream(3600, 30, live_objects), lambda n: idle)
    assert fetched >= 2
    assert run.breaches == []


@pytest.mark.parametrize(
    ("objects", "every_seconds"),
    [
        (lambda i: 50_000 + 3 * i, 120),  # rising a little (below min growth): every 2 minutes
        (lambda i: 50_000 - (i % 3), 600),  # flat: every 10 minutes
    ],
)
def test_without_queue_metrics_the_finalizer_is_checked_routinely_not_every_scrape(
    objects, every_seconds
) -> None:  # type: ignore[no-untyped-def]
    stuck = fixture_profile("goroutine_finalizer_debug1.txt")
    make = lambda i, t: {"heap_live_objects": objects(i), "memstats": gc_memstats(i)}  # noqa: E731
    run, fetched = feed_with_stacks(TargetJudge([RULE]), stream(3600, 30, make), lambda n: stuck)
    assert run.breaches == [], "a stuck finalizer without enough growth is not a backlog yet"
    assert 3600 / every_seconds - 1 <= fetched <= 3600 / every_seconds + 2


def test_no_inputs_is_inactive_with_a_note() -> None:
    run = feed(TargetJudge([RULE]), stream(600, 30, lambda i, t: {"goroutines": 5}))
    assert run.breaches == []
    assert len(run.notes) == 1 and "FinalizerBacklog inactive" in run.notes[0]
