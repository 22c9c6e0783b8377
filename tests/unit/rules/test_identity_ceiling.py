"""Above the identity ceiling (10,000 goroutines) no debug=2 dump is taken, so the count is all GoroutineGrowth
has, and for one window a load ramp of goroutines serving requests rises exactly like a leak. There the rule
fires only if the count keeps passing every test for half a window after it first did; goroutine identity
seen before the count crossed the ceiling still confirms the run. Fake clock, real rule objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tests.unit.rules.synth import T0, spec

from memorywatch.pprof.goroutine_ids import sample_ids
from memorywatch.rules.base import FIRING, SUSPICIOUS, Verdict
from memorywatch.rules.goroutine_growth import COUNT_ONLY_HOLD_SHARE, GoroutineGrowth
from memorywatch.rules.guards import MAX_IDENTITY_DUMP_GOROUTINES
from memorywatch.rules.model import Probe, RuleKind
from memorywatch.samples import Sample

WINDOW = 900.0
STEP = 30.0
HOLD = COUNT_ONLY_HOLD_SHARE * WINDOW


def watch(
    count: Callable[[float], float], seconds: float, *, ids: bool = False
) -> list[tuple[float, Verdict]]:
    """(elapsed, verdict) per scrape; with `ids`, dump probes are answered with goroutines 1..count (all kept)."""
    rule = GoroutineGrowth(spec(RuleKind.GOROUTINE_GROWTH, "goroutine-leak", window_seconds=WINDOW))
    out = []
    for i in range(int(seconds / STEP) + 1):
        t = i * STEP
        n = round(count(t))
        sample = Sample(target="pod", time=T0 + t, goroutines=n)
        if ids and Probe.GOROUTINE_DUMP in rule.wants(T0 + t):
            sample = dataclasses.replace(sample, goroutine_ids=sample_ids(range(1, n + 1)))
        out.append((t, rule.observe(sample, started_at=T0)))
    return out


def first_firing(verdicts: list[tuple[float, Verdict]]) -> float | None:
    return next((t for t, v in verdicts if v.state == FIRING), None)


def test_a_leak_above_the_ceiling_is_held_for_half_a_window_then_fires_saying_why() -> None:
    verdicts = watch(lambda t: 20_000 + 3000 * t / WINDOW, 3 * WINDOW)
    held = [v for t, v in verdicts if WINDOW <= t < WINDOW + HOLD]
    assert held and all(v.state == SUSPICIOUS for v in held)
    why = held[0].evidence["why_not"]
    assert "above 10,000 goroutines no debug=2 dump is taken" in why and "7m30s" in why, why
    first = first_firing(verdicts)
    assert first is not None and WINDOW + HOLD <= first <= WINDOW + HOLD + STEP
    fired = next(v for t, v in verdicts if t == first)
    assert fired.message is not None and "no goroutine identity above 10,000 goroutines" in fired.message
    assert all(v.state == FIRING for t, v in verdicts if t >= first), "the run stays confirmed"


def test_a_load_ramp_above_the_ceiling_that_rises_for_a_window_then_holds_and_falls_never_fires() -> None:
    def ramp(t: float) -> float:
        level = min(t / WINDOW, 1.0, max(0.0, 1 - (t - 1.5 * WINDOW) / (WINDOW / 2)))
        return 8000 + 5000 * level + (37 * (int(t / STEP) % 7) - 111)  # requests in flight at the scrape

    verdicts = watch(ramp, 4 * WINDOW)
    assert first_firing(verdicts) is None
    # The premise: at the end of its rise the count alone passed every test, and only the hold kept it back.
    assert any("no debug=2 dump is taken" in str(v.evidence.get("why_not")) for _, v in verdicts)


def test_a_ramp_that_keeps_rising_for_longer_than_the_hold_does_fire() -> None:
    """The hold is a delay, not a blind spot: a rise at the minimum rate that outlasts it is named."""
    verdicts = watch(lambda t: 12_000 + 2500 * min(t, 2 * WINDOW) / WINDOW, 3 * WINDOW)
    first = first_firing(verdicts)
    assert first is not None and first <= WINDOW + HOLD + STEP


def test_identity_seen_below_the_ceiling_confirms_the_run_after_the_count_crosses_it() -> None:
    start = 2000.0
    verdicts = watch(lambda t: start + 9000 * t / WINDOW, 3 * WINDOW, ids=True)
    crossing = (MAX_IDENTITY_DUMP_GOROUTINES - start) / 9000 * WINDOW
    assert crossing < WINDOW, "the count is above the ceiling when the warm-up ends"
    first = first_firing(verdicts)
    assert first == WINDOW, "confirmed by identity: no hold"
    fired = next(v for t, v in verdicts if t == first)
    assert fired.message is not None and "goroutine identity (" in fired.message
    assert all(v.state == FIRING for t, v in verdicts if t >= first), "still confirmed once the dumps age out"


def test_a_whole_window_without_a_sustained_rise_ends_the_run() -> None:
    """A ramp held back, then flat for over a window, then a new rise: the new rise waits its own hold."""

    def shape(t: float) -> float:
        if t < WINDOW:
            return 12_000 + 3000 * t / WINDOW
        if t < 3 * WINDOW:
            return 15_000.0
        return 15_000 + 3000 * (t - 3 * WINDOW) / WINDOW

    verdicts = watch(shape, 5 * WINDOW)
    assert all(v.state != FIRING for t, v in verdicts if t < 3 * WINDOW)
    held_again = next(
        t for t, v in verdicts if t >= 3 * WINDOW and "no debug=2 dump" in str(v.evidence.get("why_not"))
    )
    first = first_firing(verdicts)
    assert first is not None and first >= held_again + HOLD
