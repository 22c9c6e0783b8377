"""We test the random-walk check on the shapes it must tell apart: a leak plus noise pulls back to its trend
line, a leak whose items arrive at random drifts far beyond a walk's spread, and a driftless random walk
that happened to rise is held back; the textbook statistics match their known values."""

from __future__ import annotations

import random

import pytest

from memorywatch.rules import random_walk
from memorywatch.rules.base import FIRING, WALK_HOLD_SHARE
from memorywatch.rules.goroutine_growth import GoroutineGrowth
from memorywatch.rules.model import RuleKind, RuleSpec
from memorywatch.rules.series import Point
from memorywatch.samples import Sample

INTERVAL = 30.0
T0 = 1_760_000_000.0


def points(values: list[float]) -> list[Point]:
    return [Point(T0 + i * INTERVAL, v) for i, v in enumerate(values)]


def slope(pts: list[Point]) -> float:
    """Least-squares slope per second (the rules pass Theil–Sen; either is fine for these tests)."""
    n = len(pts)
    mt = sum(p.time for p in pts) / n
    mv = sum(p.value for p in pts) / n
    return sum((p.time - mt) * (p.value - mv) for p in pts) / sum((p.time - mt) ** 2 for p in pts)


def rising_walk(seed: int, n: int, sigma: float) -> list[float]:
    """The first driftless Gaussian walk (from `seed` on) that rose by at least 2σ√n: one that looks like a
    trend, as the walks the trend rules let through do."""
    rng = random.Random(seed)
    while True:
        x, out = 0.0, []
        for _ in range(n):
            x += rng.gauss(0, sigma)
            out.append(x)
        if out[-1] - out[0] >= 2 * sigma * n**0.5:
            return out


def test_mackinnon_critical_values_match_the_published_table() -> None:
    # Fuller's table for constant and trend, 5%: −3.60 at n = 25, −3.50 at n = 50, −3.45 at n = 100.
    assert random_walk.df_critical(25) == pytest.approx(-3.60, abs=0.02)
    assert random_walk.df_critical(50) == pytest.approx(-3.50, abs=0.01)
    assert random_walk.df_critical(100) == pytest.approx(-3.45, abs=0.01)


def test_dickey_fuller_tells_white_noise_from_a_walk() -> None:
    rng = random.Random(1)
    noise = [rng.gauss(0, 1) for _ in range(60)]
    walk = rising_walk(2, 60, 1.0)
    times = [float(i) for i in range(60)]
    noise_tau = random_walk.dickey_fuller_tau(times, noise)
    walk_tau = random_walk.dickey_fuller_tau(times, walk)
    assert noise_tau is not None and noise_tau < random_walk.df_critical(60)
    assert walk_tau is not None and walk_tau > random_walk.df_critical(60)
    # τ does not depend on the unit: the same walk in bytes far from zero gives the same τ.
    in_bytes = random_walk.dickey_fuller_tau(times, [2**30 + 2**20 * v for v in walk])
    assert in_bytes == pytest.approx(walk_tau, rel=1e-6)


def test_a_leak_plus_noise_is_not_a_random_walk() -> None:
    rng = random.Random(3)
    pts = points([1000 + 50 * i + rng.uniform(-450, 450) for i in range(31)])
    result = random_walk.check(pts, slope(pts))
    assert result is not None and result.verdict == random_walk.NOT_WALK
    assert "not a random walk" in result.phrase
    assert set(result.evidence) >= {"kpss_eta", "dickey_fuller_tau"}


def test_a_leak_whose_items_arrive_at_random_drifts_beyond_a_walk() -> None:
    """Goroutines leaked at random (Poisson-like steps around 60 per scrape) form a walk with a drift: the
    unit-root tests call it walk-like, the drift test lets it through by far."""
    rng = random.Random(4)
    x, values = 500.0, []
    for _ in range(31):
        x += max(0.0, rng.gauss(60, 25))
        values.append(x)
    pts = points(values)
    result = random_walk.check(pts, slope(pts))
    assert result is not None and result.verdict == random_walk.NOT_WALK
    assert result.evidence.get("rise_in_walk_sd") is None or result.evidence["rise_in_walk_sd"] > 3.09


def test_most_rising_walks_are_held() -> None:
    """Walks picked for rising by 2σ√n over a window, as the ones the trend tests let through: most are held
    (no test has full power at 61 points; the rest are left to the hold in the trend rules)."""
    verdicts = []
    for seed in range(40):
        pts = points([10_000 + v for v in rising_walk(100 + seed, 61, 150.0)])
        result = random_walk.check(pts, slope(pts))
        held = result is not None and result.verdict == random_walk.WALK
        if held and result is not None:
            assert "moves like a random walk" in result.phrase
            assert result.evidence["rise_in_walk_sd"] < random_walk.DRIFT_Z
        verdicts.append(held)
    assert sum(verdicts) >= 0.6 * len(verdicts), f"{sum(verdicts)}/40 held"


def test_too_few_points_or_a_straight_line_say_nothing() -> None:
    short = points([float(i) for i in range(random_walk.MIN_POINTS - 1)])
    assert random_walk.check(short, 1 / INTERVAL) is None
    line = points([100.0 + 10 * i for i in range(40)])
    assert random_walk.check(line, 10 / INTERVAL) is None


def test_a_count_that_moves_rarely_uses_the_plain_spread() -> None:
    """Most steps are 0 (the MAD is 0): the spread falls back to the steps' SD rather than calling any rise
    infinitely unlike a walk."""
    rng = random.Random(1)
    values, x = [], 0.0
    for _ in range(40):
        if rng.random() < 0.3:
            x += rng.choice((-1, 1)) * 400 + 100
        values.append(x)
    pts = points(values)
    result = random_walk.check(pts, slope(pts))
    assert result is not None and result.verdict == random_walk.WALK
    assert result.evidence["step_sd_robust"] > 0


def _goroutine_rule() -> GoroutineGrowth:
    return GoroutineGrowth(RuleSpec(name="goroutine-leak", kind=RuleKind.GOROUTINE_GROWTH))


def test_the_trend_rule_holds_a_walk_for_half_a_window_whatever_the_check_says_meanwhile() -> None:
    """Driftless walks of σ = minGrowth/13 per 30 s scrape through the built-in GoroutineGrowth (15m, 2000):
    whenever one is held as a walk, it does not fire within half a window of the hold's start."""
    holds = 0
    for seed in range(60):
        rng = random.Random(seed)
        rule, x = _goroutine_rule(), 20_000.0
        held_at: float | None = None
        for i in range(121):
            x += rng.gauss(0, 2000 / 13)
            now = T0 + INTERVAL * i
            verdict = rule.observe(Sample(target="pod", time=now, goroutines=round(x)), started_at=T0)
            why = str(verdict.evidence.get("why_not", ""))
            if held_at is None and "moves like a random walk" in why:
                held_at, holds = now, holds + 1
            if verdict.state == FIRING:
                assert held_at is None or now - held_at >= WALK_HOLD_SHARE * rule.window_seconds
                assert held_at is None or "after the rise first looked like a random walk's" in (
                    verdict.message or ""
                )
                break
    assert holds >= 3, "the walks were held back at least a few times"


def test_a_leak_arriving_at_random_fires_and_says_it_is_no_random_walk() -> None:
    rng = random.Random(5)
    rule, x = _goroutine_rule(), 500.0
    fired = None
    for i in range(61):
        x += max(0.0, rng.gauss(100, 40))  # 3,000 goroutines per 15 minutes, in random bunches
        verdict = rule.observe(
            Sample(target="pod", time=T0 + INTERVAL * i, goroutines=round(x)), started_at=T0
        )
        if verdict.state == FIRING:
            fired = verdict
            break
    assert fired is not None and fired.message is not None
    assert "random walk" in fired.message
    assert "kpss_eta" in fired.evidence["random_walk_check"]


def test_with_a_fake_check_a_hold_that_outlives_the_walk_verdict_says_it_is_still_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check (a fake here) calls the rise a walk once and not a walk afterwards: the hold runs its
    course, and while it does the status says why instead of "held back: not a random walk"."""
    calls = {"n": 0}

    def fake_check(times: object, values: object, slope_per_second: float) -> random_walk.WalkCheck:
        calls["n"] += 1
        if calls["n"] == 1:
            return random_walk.WalkCheck(random_walk.WALK, "moves like a random walk: fake", {})
        return random_walk.WalkCheck(random_walk.NOT_WALK, "not a random walk: fake", {})

    monkeypatch.setattr(random_walk, "check_columns", fake_check)
    rule = _goroutine_rule()
    whys, fired_at = [], None
    for i in range(61):
        now = T0 + INTERVAL * i
        verdict = rule.observe(Sample(target="pod", time=now, goroutines=500 + 100 * i), started_at=T0)
        whys.append(str(verdict.evidence.get("why_not", "")))
        if verdict.state == FIRING and fired_at is None:
            fired_at = now
    assert "held back: moves like a random walk: fake" in whys
    later = [w for w in whys if w.startswith("held back: the rise looked like a random walk's")]
    assert later and "it fires if it still passes every test 7m30s after that" in later[0]
    assert not any(w.startswith("held back: not a random walk") for w in whys)
    assert fired_at is not None
