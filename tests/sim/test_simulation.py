"""The simulation suite behind the figures in docs/rules.md: every shape of tests/sim/shapes.py through the
built-in GoroutineGrowth (15m, 2000) and HeapGrowth (30m, 256Mi) rules at a 30 s interval, 20 seeds each,
watched for four windows (the first is the warm-up). Counted per evaluated window: a scrape after the warm-up
at which the rule's verdict is "firing".

Done when (issue 10): every look-alike fires in under 1% of evaluated windows, and a leak at 1.5x the minimum
growth is caught in at least 95% of them. `python -m tests.sim.report` prints the whole table.
"""

from __future__ import annotations

import pytest
from tests.sim.harness import GOROUTINE_LEAK, HEAP_GROWTH, SEEDS, simulate
from tests.sim.shapes import LEAKS, LOOKALIKES

from memorywatch.rules.goroutine_growth import COUNT_ONLY_HOLD_SHARE

RULES = {"goroutine-leak": GOROUTINE_LEAK, "heap-growth": HEAP_GROWTH}
BY_NAME = {s.name: s for s in (*LEAKS, *LOOKALIKES)}


@pytest.mark.parametrize("rule", list(RULES))
def test_a_leak_at_one_and_a_half_times_min_growth_is_caught_in_95_percent_of_windows(rule: str) -> None:
    outcome = simulate(BY_NAME["leak at 1.5x minGrowth (±30% jitter)"], RULES[rule])
    assert outcome.share >= 0.95, f"{outcome.firing}/{outcome.evaluated}"
    assert len(outcome.first_fire_delays) == SEEDS, "every seed is caught"
    assert max(outcome.first_fire_delays) <= 0.25 * RULES[rule].build().window_seconds


def test_a_goroutine_leak_above_the_identity_ceiling_is_named_in_every_seed_after_the_count_only_hold() -> (
    None
):
    """Above 10,000 goroutines no identity dump is taken, and the count alone must outlast one window of rise
    by half a window (a load ramp rises exactly like a leak for that long): every seed is named within the
    hold plus a quarter of a window, and every window after that fires."""
    outcome = simulate(
        BY_NAME["leak at 1.5x above the identity ceiling (10k–40k goroutines)"], GOROUTINE_LEAK
    )
    window = GOROUTINE_LEAK.build().window_seconds
    assert len(outcome.first_fire_delays) == SEEDS, "every seed is caught"
    assert max(outcome.first_fire_delays) <= (COUNT_ONLY_HOLD_SHARE + 0.25) * window
    assert outcome.share >= 0.95 * (1 - (COUNT_ONLY_HOLD_SHARE + 0.25) / 3), (
        f"{outcome.firing}/{outcome.evaluated}"
    )


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", [s.name for s in LEAKS if "1.5x minGrowth" not in s.name])
def test_other_leak_shapes_are_named_in_every_seed(name: str, rule: str) -> None:
    outcome = simulate(BY_NAME[name], RULES[rule])
    assert len(outcome.first_fire_delays) == SEEDS, f"{name}: {len(outcome.first_fire_delays)}/{SEEDS} seeds"
    assert outcome.share >= 0.6, f"{name}: {outcome.share:.1%}"


@pytest.mark.parametrize(("name", "rule"), [(s.name, r) for s in LOOKALIKES for r in RULES])
def test_look_alikes_fire_in_under_one_percent_of_windows(name: str, rule: str) -> None:
    outcome = simulate(BY_NAME[name], RULES[rule])
    assert outcome.share < 0.01, f"{name} / {rule}: {outcome.firing}/{outcome.evaluated} windows"
