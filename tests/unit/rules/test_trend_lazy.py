"""We check that the slope's O(n) upper bound, the gates built on it and on the floors, and the lazily computed
growth and reason changed no verdict and no status text: the bound is never below the Theil–Sen slope, a
window a gate rejects gets the reference's verdict without computing the slope, and the growth and the
reason read later (when a status line is rendered, after more samples) are the reference's, to the last bit. Same randomized series as
test_trend_gating.py, compared with the reference kept verbatim in trend_reference.py."""

from __future__ import annotations

import collections
import dataclasses
import math
import random
from collections.abc import Mapping

import pytest
from tests.unit.rules import trend_reference as ref
from tests.unit.rules.synth import T0, spec
from tests.unit.rules.test_trend_gating import CASES, MIN_GROWTH, WINDOW, shapes, times

from memorywatch.api.rules_config import default_rules
from memorywatch.pprof.memstats import MemStats
from memorywatch.rules.base import SUSPICION_GROWTH_SHARE
from memorywatch.rules.engine import TargetJudge
from memorywatch.rules.finalizer_backlog import FinalizerBacklog
from memorywatch.rules.lazy import Lazy
from memorywatch.rules.model import RuleKind
from memorywatch.rules.series import Series
from memorywatch.rules.trend import (
    MIN_GC_POINTS,
    WindowStats,
    judge,
    theil_sen_columns,
    theil_sen_upper_bound,
)
from memorywatch.samples import Sample


@pytest.mark.parametrize(("seed", "kind"), CASES)
def test_gated_verdicts_and_the_lazy_growth_equal_the_reference(seed: int, kind: str) -> None:
    rnd = random.Random(seed * 17 + len(kind))
    outcomes: collections.Counter[str] = collections.Counter()
    for name, shape in shapes(rnd).items():
        series = Series(WINDOW)
        min_points = MIN_GC_POINTS if kind == "gc points" else ref.MIN_POINTS
        for i, t in enumerate(times(rnd, kind, (1.6 if kind == "dense" else 3) * WINDOW)):
            series.append(t, shape(t, rnd))
            if i % (40 if kind == "dense" else 4):
                continue
            ts, vs = series.window_columns(t)
            if len(ts) < 2:
                continue
            bound = theil_sen_upper_bound(ts, vs)
            assert bound >= theil_sen_columns(ts, vs), name
            points = series.window(t)
            stats = WindowStats(ts, vs, WINDOW)
            for share in (1.0, SUSPICION_GROWTH_SHARE):
                min_growth = MIN_GROWTH * share
                old = ref.assess(points, window_seconds=WINDOW, min_growth=min_growth, min_points=min_points)
                slope_known = stats._slope is not None
                new = judge(stats, min_growth=min_growth, min_points=min_points)
                # The decision is taken before anyone reads the growth or the reason.
                assert new.sustained == old.sustained, name
                if not slope_known and stats._slope is None:
                    assert not new.sustained, name
                    why = (
                        "few"
                        if len(ts) < min_points
                        else "bound"
                        if bound * WINDOW < min_growth
                        else "floors"
                    )
                    outcomes[f"decided without the slope ({why})"] += 1
                else:
                    outcomes["slope computed"] += 1
                assert new.reason == old.reason, name
                # Read now or later, the growth is the eager one, bit for bit.
                assert new.growth == old.growth and new.slope_per_second == old.slope_per_second, name
                assert math.copysign(1, new.growth) == math.copysign(1, old.growth), name
    if kind != "gc points":  # sparse: few windows there have enough points to reach the bound
        assert outcomes["decided without the slope (bound)"], dict(outcomes)
    assert outcomes["decided without the slope (floors)"] and outcomes["slope computed"], dict(outcomes)


def test_the_bound_holds_on_hostile_windows() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        n = rnd.randint(2, 150)  # beyond MAX_PAIRWISE_POINTS too: the bound pairs the same subset
        ts = sorted(rnd.sample(range(10_000), n))
        scale = 10 ** rnd.uniform(-3, 12)
        vs = [rnd.choice((0.0, scale, -scale, rnd.uniform(-scale, scale))) for _ in range(n)]
        if rnd.random() < 0.3:
            vs = [v + rnd.uniform(-1, 3) * scale * t / 10_000 for v, t in zip(vs, ts, strict=True)]
        times_ = [float(t) for t in ts]
        assert theil_sen_upper_bound(times_, vs) >= theil_sen_columns(times_, vs)


def test_the_bound_gives_up_on_what_it_cannot_judge() -> None:
    assert theil_sen_upper_bound([0.0, 1.0, 2.0], [1.0, math.nan, 2.0]) == math.inf
    assert theil_sen_upper_bound([0.0, 1.0, 2.0], [1.0, math.inf, 2.0]) == math.inf
    assert theil_sen_upper_bound([0.0, 1.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]) == math.inf, "equal times"
    assert theil_sen_upper_bound([0.0], [1.0]) == math.inf
    flat = theil_sen_upper_bound([15.0 * i for i in range(61)], [500.0] * 61)
    assert flat == 0.0


def _samples(kind: str, count: int) -> list[Sample]:
    rnd = random.Random(kind)
    out, num_gc = [], 0
    for i in range(count):
        elapsed = 15.0 * i
        live = 50e6 + (256 * 1024 * elapsed if kind == "leak" else 80e6 * ((elapsed % 600) / 600))
        num_gc += rnd.random() < 0.5
        memstats = MemStats(num_gc=num_gc, sys=int(live * 2), heap_released=10**6, heap_alloc=int(live))
        out.append(
            Sample(
                target="ns/pod",
                time=T0 + elapsed,
                goroutines=100 + (4 * i if kind == "leak" else rnd.randint(0, 10)),
                memstats=memstats,
                heap_live_bytes=int(live),
                heap_live_objects=int(live / 64),
                rss_bytes=int(live * 2),
                rss_source="proc",
                limit_bytes=2**31,
            )
        )
    return out


@pytest.mark.parametrize("kind", ["leak", "saw-tooth"])
def test_a_status_taken_now_and_rendered_later_says_what_it_said_then(kind: str) -> None:
    """The watch CLI renders a SampleEvent's status after the judge has moved on: the lines (and the growth
    in them) are those of the sample they were taken at, as an eager rendering gives them."""
    judge = TargetJudge(default_rules())
    taken: list[tuple[Mapping[str, str], dict[str, str]]] = []
    growths = 0
    for sample in _samples(kind, 160):
        judge.observe(sample)
        status, states = judge.status(), judge.rule_states()
        growths += sum(s.growth is not None for s in states.values())
        taken.append((status, {name: s.line() for name, s in states.items()}))
    for status, eager in taken:
        assert dict(status) == eager
    assert growths, "the lines had growths to render"


def test_a_verdict_read_after_later_samples_keeps_its_growth() -> None:
    rule = spec(RuleKind.GOROUTINE_GROWTH, "g", window_seconds=WINDOW, min_growth=MIN_GROWTH)
    judge = TargetJudge([rule])
    rnd, verdicts, expected = random.Random(3), [], []
    for i in range(120):
        goroutines = 100 + rnd.randint(0, 40) + (30 * i if i > 60 else 0)
        judge.observe(Sample(target="pod", time=T0 + 15.0 * i, goroutines=goroutines))
        rule_ = judge._rules[0]
        verdicts.append(judge._verdicts["g"])
        trend = getattr(rule_, "last_trend", None)
        points = rule_.series.window(T0 + 15.0 * i)  # type: ignore[attr-defined]
        expected.append(
            None if trend is None else ref.assess(points, window_seconds=WINDOW, min_growth=MIN_GROWTH).growth
        )
    assert [v.growth for v in verdicts] == expected
    assert any(g is not None and g > MIN_GROWTH for g in expected)


@pytest.mark.parametrize("rising", [True, False, None])
def test_finalizer_probe_spacing_reads_the_slope_only_between_its_two_spacings(rising: bool | None) -> None:
    rule = FinalizerBacklog(spec(RuleKind.FINALIZER_BACKLOG, "f", window_seconds=900.0))
    routine, idle = rule.routine_probe_seconds, rule.idle_probe_seconds
    assert routine < idle
    reads = collections.Counter[str]()

    class CountingTrend:
        @property
        def slope_per_second(self) -> float:
            reads["slope"] += 1
            return 1.0 if rising else -1.0

    rule.last_trend = None if rising is None else CountingTrend()  # type: ignore[assignment]
    for since in (0.0, routine - 1, routine, (routine + idle) / 2, idle - 1, idle, idle + 1, math.inf):
        before = reads["slope"]
        want_rising = rising is True
        assert rule._probe_due(since) == (since >= (routine if want_rising else idle)), since
        if since < routine or since >= idle:
            assert reads["slope"] == before, f"the slope was read at {since}"


def test_a_lazy_field_runs_its_function_once_and_compares_by_value() -> None:
    @dataclasses.dataclass(frozen=True)
    class Box:
        label: str
        amount: Lazy[float | None] = Lazy(None)

    calls: list[int] = []

    def compute() -> float:
        calls.append(1)
        return 2.5

    box = Box("a", compute)
    assert calls == []
    assert box.amount == 2.5 and box.amount == 2.5 and calls == [1]
    assert box == Box("a", 2.5) and repr(box).endswith("Box(label='a', amount=2.5)")
    assert dataclasses.replace(box, label="b") == Box("b", 2.5)
    assert Box("c").amount is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.amount = 1.0  # type: ignore[misc]
