"""How often the random-walk check (rules/random_walk.py) calls a rise "not a random walk", measured on series
that already passed the trend test (so the check is asked at all): driftless walks, which it should hold
back, and leaks, which it should let through. Quoted in docs/rules.md: `python -m tests.sim.walk_check`
from the repository root (pure Python, about a minute).

The walks are not only the simulation suite's: a walk observed with scrape noise (a slowly mixing queue
seen together with whatever is in flight at the scrape) and a walk whose steps carry momentum are the
general case, and they are where the check's individual tests are weakest (docs/rules.md, Known limits).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from memorywatch.rules import random_walk
from memorywatch.rules.trend import WindowStats, judge

G = 1000.0  # the minimum growth per window
STEP_SECONDS = 30.0

Series = Callable[[random.Random, int], list[float]]


def _walk(noise: float = 0.0, momentum: float = 0.0) -> Series:
    def make(rng: random.Random, n: int) -> list[float]:
        level, step, out = 0.0, 0.0, []
        for _ in range(n):
            step = momentum * step + rng.gauss(0, G / 13 * math.sqrt(1 - momentum**2))
            level += step
            out.append(level + (rng.gauss(0, noise) if noise else 0.0))
        return out

    return make


def _leak(kind: str) -> Series:
    def make(rng: random.Random, n: int) -> list[float]:
        out, deviation, level = [], 0.0, 0.0
        for i in range(n):
            trend = 1.5 * G * i / (n - 1)
            if kind == "iid":
                out.append(trend + rng.uniform(-0.45 * G, 0.45 * G))
            elif kind == "ar":
                deviation = 0.8 * deviation + rng.gauss(0, 0.2 * G)
                out.append(trend + deviation)
            else:  # leaked items arriving at random: a walk with a drift
                level += 1.5 * G / (n - 1) + rng.gauss(0, G / 13)
                out.append(level)
        return out

    return make


CASES: tuple[tuple[str, bool, Series], ...] = (
    ("driftless walk, σ = G/13 per step", False, _walk()),
    ("the same walk seen with scrape noise (σ = G/8)", False, _walk(noise=G / 8)),
    ("a walk whose steps have momentum (AR(1), φ = 0.5)", False, _walk(momentum=0.5)),
    ("leak at 1.5 G with uniform ±0.45 G jitter", True, _leak("iid")),
    ("leak at 1.5 G with AR(1) deviations (φ = 0.8)", True, _leak("ar")),
    ("leak at 1.5 G arriving at random (walk with drift)", True, _leak("drift")),
)


def measure(series: Series, n: int, trials: int, seed: int = 1) -> tuple[int, dict[str, int]]:
    """(how many of `trials` series passed the trend test, and of those how many the check called each way
    and by which test)."""
    rng = random.Random(seed)
    times = [i * STEP_SECONDS for i in range(n)]
    window = STEP_SECONDS * (n - 1)
    passed = 0
    counts = {"not_walk": 0, "kpss": 0, "dickey_fuller": 0, "drift": 0}
    for _ in range(trials):
        values = series(rng, n)
        trend = judge(WindowStats(times, values, window), min_growth=G)
        if not trend.sustained:
            continue
        passed += 1
        check = random_walk.check_columns(times, values, trend.slope_per_second)
        if check is None or check.verdict != random_walk.NOT_WALK:
            continue
        counts["not_walk"] += 1
        if "KPSS" in check.phrase:
            counts["kpss"] += 1
        elif "Dickey" in check.phrase:
            counts["dickey_fuller"] += 1
        else:
            counts["drift"] += 1
    return passed, counts


def main() -> None:
    print("| series | points | passed the trend test | called not a random walk | by KPSS / DF / drift |")
    print("|---|---|---|---|---|")
    for n, trials in ((31, 6000), (61, 6000)):
        for name, leak, series in CASES:
            passed, c = measure(series, n, trials if not leak else 300)
            share = c["not_walk"] / passed if passed else 0.0
            by = " / ".join(
                f"{c[k] / passed:.0%}" if passed else "-" for k in ("kpss", "dickey_fuller", "drift")
            )
            print(f"| {name} | {n} | {passed} | {share:.1%} | {by} |", flush=True)


if __name__ == "__main__":
    main()
