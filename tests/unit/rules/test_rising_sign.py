"""We check that the sign of a window's Theil–Sen slope, decided from the signs of its pairs when they can decide
it, is the slope's sign: on random integral and fractional windows (ties, steps, flat, hostile sizes), and
in FinalizerBacklog's probe spacing, whose requests over whole streams are those of reading the slope."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from tests.unit.rules.synth import fixture_profile
from tests.unit.rules.test_trend_lazy import _samples

from memorywatch.api.rules_config import default_rules
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.model import Probe
from memorywatch.rules.theil_sen import theil_sen_columns, theil_sen_rising
from memorywatch.rules.trend import WindowStats


@pytest.mark.parametrize("seed", range(4))
def test_the_sign_of_the_pairs_is_the_sign_of_the_slope(seed: int) -> None:
    rnd = random.Random(seed)
    outcomes = {True: 0, False: 0, None: 0}
    for _ in range(1500):
        n = rnd.randint(0, 140)
        ts = [1.76e9 + 15.0 * i + rnd.uniform(0, 0.5) for i in range(n)]
        kind = rnd.choice(("counts", "ties", "huge", "fractional", "flat"))
        if kind == "counts":
            vs = [float(1000 + rnd.randint(-50, 50) + rnd.choice((0, 1, -1)) * i) for i in range(n)]
        elif kind == "ties":
            vs = [float(rnd.randint(0, 2)) for _ in range(n)]
        elif kind == "huge":
            vs = [float(rnd.choice((2**53 - 1, -(2**53) + 1, 2**60, 0))) for _ in range(n)]
        elif kind == "fractional":
            vs = [rnd.uniform(-1, 1) for _ in range(n)]
        else:
            vs = [7.0] * n
        known = theil_sen_rising(ts, vs)
        outcomes[known] += 1
        if known is not None:
            assert known == (theil_sen_columns(ts, vs) > 0), (kind, ts, vs)
        if n >= 2:
            assert WindowStats(ts, vs, 900.0).rising() == (theil_sen_columns(ts, vs) > 0)
    assert all(outcomes.values()), outcomes


def test_the_sign_gives_up_on_what_it_cannot_judge() -> None:
    assert theil_sen_rising([0.0, 1.0, 2.0], [1.0, math.nan, 2.0]) is None
    assert theil_sen_rising([0.0, 1.0, 2.0], [1.5, 1.0, 2.0]) is None, "not integral"
    assert theil_sen_rising([0.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None, "repeated times"
    assert theil_sen_rising([0.0], [1.0]) is False
    assert theil_sen_rising([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 0.0, 2.0]) is None, "3 of 6 pairs rising"
    assert theil_sen_rising([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, -5.0]) is False, "1 of 6 rising"


@pytest.mark.parametrize("kind", ["leak", "saw-tooth", "flat"])
def test_finalizer_probes_are_those_of_reading_the_slope(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples(kind, 400)
    asked: list[bool] = []
    rising = WindowStats.rising

    def counted(self: WindowStats) -> bool:
        asked.append(self._slope is None)
        return rising(self)

    monkeypatch.setattr(WindowStats, "rising", counted)
    profile = fixture_profile("goroutine_debug1_t0.txt")

    def run() -> list[frozenset[Probe]]:
        """The probes asked for after each sample; the stacks come with the next one, as the scraper does."""
        judge, asks = TargetJudge(default_rules()), [frozenset[Probe]()]
        for sample in samples:
            stacks = Probe.GOROUTINE_STACKS in asks[-1]
            judge.observe(dataclasses.replace(sample, goroutine_profile=profile) if stacks else sample)
            asks.append(judge.wants())
        return asks

    got = run()
    # A leak is suspicious and probed every minute, before the sign would matter.
    assert any(asked) or kind == "leak", "the sign was asked before the slope was known"
    monkeypatch.setattr(WindowStats, "rising", lambda self: self.slope > 0)
    assert run() == got
    assert sum(Probe.GOROUTINE_STACKS in asked for asked in got) > 2, "stacks were probed again and again"
