"""We test GoroutineGrowth as a user meets it: a steady leak fires about one window in with the right numbers
and names the guilty stack; bursts that drain, a start-up step, slow growth and restarts do not fire;
stacks are asked for only once the count looks suspicious, and a failed stack fetch never blocks a verdict."""

from __future__ import annotations

import itertools
import random

import pytest
from tests.unit.rules.synth import T0, feed, feed_with_stacks, fixture_profile, spec, stream

from memorywatch.pprof.goroutines import Frame, GoroutineGroup, GoroutineProfile
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe, RuleKind

WINDOW = 900.0
RULE = spec(RuleKind.GOROUTINE_GROWTH, "goroutine-leak", window_seconds=WINDOW, min_growth=2000)


def leak(rate_per_window: float, jitter: float = 0.0, seed: int = 0):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    return lambda i, t: {
        "goroutines": round(120 + rate_per_window * t / WINDOW + rnd.uniform(-jitter, jitter))
    }


def test_steady_leak_fires_one_window_in_with_the_numbers() -> None:
    run = feed(TargetJudge([RULE]), stream(3600, 30, leak(3000)))
    assert len(run.breaches) >= 1
    breach = run.breaches[0]
    assert WINDOW <= breach.time - T0 <= WINDOW + 60
    evidence = breach.evidence
    assert evidence["window_seconds"] == WINDOW
    assert evidence["growth_over_window"] == pytest.approx(3000, rel=0.02)
    assert evidence["slope_per_second"] == pytest.approx(3000 / WINDOW, rel=0.02)
    assert evidence["first_value"] == 120 and evidence["last_value"] == pytest.approx(3120, abs=2)
    assert evidence["kendall_tau"] > 0.9
    assert evidence["unit"] == "goroutines"
    assert breach.message.startswith("Goroutines grew by 3,000 in 15m (200/min) and never drained")


@pytest.mark.parametrize(
    ("name", "make"),
    [
        (
            "bursts of 6000 every 5m that drain",
            lambda i, t: {"goroutines": 200 + (6000 if (t % 300) < 120 else 0)},
        ),
        ("a start-up step from 50 to 5000", lambda i, t: {"goroutines": 50 if t < 60 else 5000 + (i % 7)}),
        ("a slow leak of 1000 per window (min 2000)", leak(1000, jitter=30)),
        ("a worker pool that grew once and stays", lambda i, t: {"goroutines": 100 + min(i, 20) * 150}),
    ],
)
def test_healthy_shapes_never_fire(name: str, make) -> None:  # type: ignore[no-untyped-def]
    run = feed(TargetJudge([RULE]), stream(7200, 30, make))
    assert run.breaches == [], name


@pytest.mark.parametrize("seed", range(4))
def test_noisy_leak_still_fires(seed: int) -> None:
    run = feed(TargetJudge([RULE]), stream(3600, 30, leak(3000, jitter=900, seed=seed)))
    assert run.breaches, "jitter of ±30% of the window's growth must not hide a leak"
    assert run.first_breach_after() is not None and run.first_breach_after() <= WINDOW * 1.5


def test_stacks_are_asked_for_once_suspicious_and_name_the_leaking_function() -> None:
    judge = TargetJudge([RULE])
    snapshots = [fixture_profile(f"goroutine_debug1_t{n}.txt") for n in range(3)]
    asked_at: list[float] = []
    samples = stream(1200, 30, leak(3000))
    for sample in samples[:5]:
        judge.observe(sample)
        assert judge.wants() == frozenset(), "a young, healthy-looking target is not probed"
    run, fetched = feed_with_stacks(judge, samples[5:], lambda n: snapshots[min(n, 2)])
    asked_at = [s.time - T0 for s, _ in run.judgements if s.goroutine_profile is not None]
    assert fetched >= 3
    assert WINDOW / 2 <= asked_at[0] < WINDOW, "stacks come before the verdict, once half the window grew"
    assert all(b - a >= WINDOW / 8 for a, b in itertools.pairwise(asked_at)), "spaced out"
    breach = run.breaches[0]
    assert "parked in main.blockForever" in breach.message
    top = breach.evidence["growing_stacks"][0]
    assert top["function"] == "main.blockForever" and top["delta"] > 0
    assert top["frames"][0].startswith("main.blockForever ")


def test_no_growing_stack_across_three_snapshots_is_said_plainly() -> None:
    same = fixture_profile("goroutine_debug1_t0.txt")
    run, fetched = feed_with_stacks(TargetJudge([RULE]), stream(1200, 30, leak(3000)), lambda n: same)
    assert fetched >= 3
    breach = run.breaches[0]
    assert "no stack group growing" in breach.evidence["stacks_note"]
    assert breach.evidence["growing_stacks"] == []


def test_a_failed_stack_fetch_does_not_prevent_the_verdict() -> None:
    judge = TargetJudge([RULE])
    run, fetched = feed_with_stacks(judge, stream(1200, 30, leak(3000)), lambda n: None)
    assert fetched == 0
    assert run.breaches and "no stack snapshots yet" in run.breaches[0].message
    assert Probe.GOROUTINE_STACKS in judge.wants() or judge.cooldowns()


def test_missing_count_is_inactive_with_a_note() -> None:
    run = feed(TargetJudge([RULE]), stream(1800, 30, lambda i, t: {}))
    assert run.breaches == []
    assert run.notes == [
        "goroutine-leak: GoroutineGrowth inactive: the target reports no goroutine count (index page missing)"
    ]


def test_connection_handler_growth_is_flagged_as_load_dependent() -> None:
    serve = (Frame("net/http.(*conn).serve", "/usr/local/go/src/net/http/server.go", 2067),)

    def snapshot(count: int) -> GoroutineProfile:
        return GoroutineProfile(
            total=count, groups=(GoroutineGroup(count=count, pcs=(0x1, 0x2), labels=None, frames=serve),)
        )

    run, _ = feed_with_stacks(
        TargetJudge([RULE]), stream(1200, 30, leak(3000)), lambda n: snapshot(100 + 500 * n)
    )
    breach = run.breaches[0]
    assert "parked in net/http.(*conn).serve" in breach.message
    assert "compare with client load" in breach.message
