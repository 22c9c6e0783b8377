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

RULES = {"goroutine-leak": GOROUTINE_LEAK, "heap-growth": HEAP_GROWTH}
BY_NAME = {s.name: s for s in (*LEAKS, *LOOKALIKES)}


@pytest.mark.parametrize("rule", list(RULES))
def test_a_leak_at_one_and_a_half_times_min_growth_is_caught_in_95_percent_of_windows(rule: str) -> None:
    outcome = simulate(BY_NAME["leak at 1.5x minGrowth (±30% jitter)"], RULES[rule])
    assert outcome.share >= 0.95, f"{outcome.firing}/{outcome.evaluated}"
    assert len(outcome.first_fire_delays) == SEEDS, "every seed is caught"
    assert max(outcome.first_fire_delays) <= 0.25 * RULES[rule].build().window_seconds


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
