"""A young process warms up: a sustained rise while the judged window reaches back into the process's first
window is held back for half a window from when it was first sustained, and fires only if it still passes
every test then (rules/base.py, YOUNG_HOLD_SHARE). A process known to be older, or of unknown age, is judged
at once as before."""

from __future__ import annotations

from tests.unit.rules.synth import T0, feed, spec, stream

from memorywatch.rules.base import YOUNG_HOLD_SHARE
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.memory_limit import MemoryLimit
from memorywatch.rules.model import RuleKind

WINDOW = 600.0
RULE = spec(RuleKind.GOROUTINE_GROWTH, "goroutines", window_seconds=WINDOW, min_growth=100)


def leak(started_at: float | None) -> list:  # type: ignore[type-arg]
    """1 goroutine per second from T0 on, one sample every 15 s for four windows."""
    return stream(
        4 * WINDOW, 15, lambda i, t: {"goroutines": 50 + round(t), "process_started_at": started_at}
    )


def test_a_leak_in_a_young_process_fires_half_a_window_after_it_first_could() -> None:
    at_once = feed(TargetJudge([RULE]), leak(None)).first_breach_after()
    old = feed(TargetJudge([RULE]), leak(T0 - 3 * WINDOW)).first_breach_after()
    assert at_once is not None and old == at_once, "unknown or old: judged at once, as before"

    judge = TargetJudge([RULE])
    samples = leak(T0 - 5)
    held = []
    for sample in samples:
        judgement = judge.observe(sample)
        detail = judge.rule_states()["goroutines"].detail
        if "held back: the process started" in detail:
            held.append(sample.time)
        if judgement.breaches:
            breach = judgement.breaches[0]
            break
    else:
        raise AssertionError("the leak never fired")
    assert held and held[0] - T0 == at_once, "held from the moment it could first have fired"
    assert breach.time - T0 >= at_once + YOUNG_HOLD_SHARE * WINDOW
    assert breach.time - T0 <= at_once + YOUNG_HOLD_SHARE * WINDOW + 15, "and fires as soon as the hold ends"
    assert "not a start-up warm-up" in breach.message


def test_a_warm_up_in_a_young_process_never_fires() -> None:
    # A pool that fills at a steady pace for the process's first window (to 1.5x the minimum growth), then
    # holds its size: the first judged window cannot tell it from a leak, the next half window can.
    def pool(started_at: float | None) -> list:  # type: ignore[type-arg]
        return stream(
            4 * WINDOW,
            15,
            lambda i, t: {
                "goroutines": 50 + round(150 * min(t, WINDOW) / WINDOW),
                "process_started_at": started_at,
            },
        )

    assert feed(TargetJudge([RULE]), pool(T0 - 3 * WINDOW)).breaches, "an old process: a leak's first window"
    judge = TargetJudge([RULE])
    held = 0
    for sample in pool(T0 - 2):
        assert not judge.observe(sample).breaches
        held += "held back: the process started" in judge.rule_states()["goroutines"].detail
    assert held >= 1, "the status said why"


def test_the_memory_limit_forecast_is_never_held_for_a_warm_up() -> None:
    assert MemoryLimit.holds_young_rises is False
