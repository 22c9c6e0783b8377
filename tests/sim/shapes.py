"""The shapes the simulation suite feeds to the rules, at production scale: each is a function of time, a
seeded random generator, the rule's window W and its minimum growth G, so the same shape scales to any rule.

Leaks grow for as long as the run lasts; look-alikes are healthy shapes that rise for a while (warm-ups, load
ramps, pools, saw-tooth heaps) and must not fire. Noise is part of every shape: a leak carries a uniform jitter
of ±30% of one window's growth, the way a scrape lands anywhere in a burst or a GC cycle.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

ValueFn = Callable[[float], float]
# A factory returns value(t), or (value(t), persistent(t)) where persistent(t) is how many of the goroutines
# are long-lived (they keep their IDs from one stack dump to the next); without it, all of them are.
Factory = Callable[[random.Random, float, float], ValueFn | tuple[ValueFn, ValueFn]]


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    leak: bool  # True: a real leak the rule must name; False: a look-alike that must not fire
    factory: Factory  # (rng, W, G) -> value(t); all randomness drawn from rng
    note: str = ""


def _jitter(rng: random.Random, amount: float) -> float:
    return rng.uniform(-amount, amount)


# Where a leak starts, in units of G. Goroutine identity (rules/identity.py) is asked only up to 10,000
# goroutines (2,000 × 5 for the built-in rule): leaks start within it, and the "above the identity ceiling"
# shapes start above it, where the count is all the rule has.
WITHIN_CEILING = (0.5, 3.0)
ABOVE_CEILING = (5.0, 20.0)


def linear_leak(multiple: float, start: tuple[float, float] = WITHIN_CEILING) -> Factory:
    def make(rng: random.Random, w: float, g: float) -> tuple[ValueFn, ValueFn]:
        base = rng.uniform(*start) * g
        trend = lambda t: base + multiple * g * t / w  # noqa: E731
        # The jitter is short-lived goroutines (or garbage) in flight at the scrape: the long-lived part is
        # the trend less the jitter's lowest reach.
        jitter = 0.3 * multiple * g
        return (lambda t: trend(t) + _jitter(rng, jitter)), lambda t: trend(t) - jitter

    return make


def step_leak(rng: random.Random, w: float, g: float) -> ValueFn:
    """One step per resync: 1.5 G per window in steps every W/6, plus small noise."""
    base, period = rng.uniform(*WITHIN_CEILING) * g, w / 6
    phase = rng.uniform(0, period)
    return lambda t: base + 1.5 * g / 6 * math.floor((t + phase) / period) + _jitter(rng, 0.05 * g)


def leak_on_bursts(rng: random.Random, w: float, g: float) -> tuple[ValueFn, ValueFn]:
    base, period = rng.uniform(2, 5) * g, rng.uniform(120, 600)

    def value(t: float) -> float:
        phase = (t % period) / period
        burst = 2 * g * max(0.0, 1 - abs(phase - 0.3) / 0.2)  # a burst that drains within the period
        return base + 1.5 * g * t / w + burst + _jitter(rng, 0.05 * g)

    return value, lambda t: base + 1.5 * g * t / w - 0.05 * g


def random_walk(rng: random.Random, w: float, g: float) -> ValueFn:
    """Steps of σ = G/13 per call (one call per 30 s scrape): wanders like a slowly mixing queue."""
    state = {"x": rng.uniform(5, 20) * g}

    def value(t: float) -> float:
        del t
        state["x"] += rng.gauss(0, g / 13)
        return state["x"]

    return value


def bursts_that_drain(rng: random.Random, w: float, g: float) -> tuple[ValueFn, ValueFn]:
    period, height = rng.uniform(180, 600), rng.uniform(2, 4) * g

    def value(t: float) -> float:
        phase = (t % period) / period
        return g + height * max(0.0, 1 - abs(phase - 0.4) / 0.3) + _jitter(rng, 0.02 * g)

    return value, lambda t: g


def startup_step(rng: random.Random, w: float, g: float) -> ValueFn:
    at, size = rng.uniform(0, 120), rng.uniform(1, 4) * g
    return lambda t: g + (size if t >= at else 0.0) + _jitter(rng, 0.02 * g)


def one_off_allocation(rng: random.Random, w: float, g: float) -> ValueFn:
    """A large buffer allocated once, mid-run, and kept (a one-off large allocation)."""
    at, size = rng.uniform(1.2, 2.0) * w, rng.uniform(1, 4) * g
    return lambda t: 5 * g + (size if t >= at else 0.0) + _jitter(rng, 0.05 * g)


def cache_warmup_concave(rng: random.Random, w: float, g: float) -> ValueFn:
    """A cache warming over about a window, filling more slowly as its hit ratio rises (concave), then holding:
    size = A (1 − e^(−t/τ)), τ between W/4 and W/2, A between 2 G and 4 G."""
    tau, size, base = rng.uniform(0.25, 0.5) * w, rng.uniform(2, 4) * g, rng.uniform(2, 10) * g
    return lambda t: base + size * (1 - math.exp(-t / tau)) + _jitter(rng, 0.03 * g)


def cache_filled_in_10m(rng: random.Random, w: float, g: float) -> ValueFn:
    size = rng.uniform(2, 4) * g
    return lambda t: g + size * min(t, 600.0) / 600.0 + _jitter(rng, 0.02 * g)


def map_high_water(rng: random.Random, w: float, g: float) -> ValueFn:
    """A map that grew to its high-water mark during a spike early on and keeps its buckets (Go maps never
    shrink): a ramp over a few minutes, then flat forever."""
    ramp, size = rng.uniform(120, 300), rng.uniform(2, 6) * g
    return lambda t: 2 * g + size * min(1.0, t / ramp) + _jitter(rng, 0.02 * g)


def load_ramp(base_range: tuple[float, float]) -> Factory:
    """Goroutines (or buffers) proportional to load: a morning ramp of 2–3 G over about a window (short-lived
    items, so the count is noisy), a plateau of half a window, then back down over half a window, on top of
    `base_range` G of long-lived ones."""

    def make(rng: random.Random, w: float, g: float) -> tuple[ValueFn, ValueFn]:
        return _load_ramp(rng, w, g, base_range)

    return make


def _load_ramp(
    rng: random.Random, w: float, g: float, base_range: tuple[float, float]
) -> tuple[ValueFn, ValueFn]:
    rise, size, base = rng.uniform(0.8, 1.2) * w, rng.uniform(2, 3) * g, rng.uniform(*base_range) * g

    def value(t: float) -> float:
        if t < rise:
            level = t / rise
        elif t < rise + w / 2:
            level = 1.0
        else:
            level = max(0.0, 1 - (t - rise - w / 2) / (w / 2))
        return base + size * level + _jitter(rng, 0.1 * g)

    return value, lambda t: base  # requests last a second or two: only the base goroutines persist


def keepalive_pool(rng: random.Random, w: float, g: float) -> ValueFn:
    """An HTTP keep-alive pool: connections open as clients arrive over a few minutes, then idle ones close
    and new ones open at the same pace (two goroutines each)."""
    fill, size = rng.uniform(120, 480), rng.uniform(1.5, 3) * g
    return lambda t: g + size * (1 - math.exp(-t / fill)) + _jitter(rng, 0.08 * g)


def memlimit_sawtooth(rng: random.Random, w: float, g: float) -> ValueFn:
    """Live heap under GOMEMLIMIT with a periodic batch: it rises over minutes to about 3 G above its floor,
    then a compaction or snapshot drops it back; the floor itself stays put."""
    period, height = rng.uniform(0.2, 0.5) * w, rng.uniform(1.5, 3) * g
    offset = rng.uniform(0, period)
    return lambda t: 2 * g + height * (((t + offset) % period) / period) + _jitter(rng, 0.05 * g)


LEAKS = (
    Shape("leak at 1.5x minGrowth (±30% jitter)", True, linear_leak(1.5)),
    Shape("leak at 1.1x minGrowth (±30% jitter)", True, linear_leak(1.1), "near the threshold"),
    Shape("step leak (one step per W/6 resync)", True, step_leak),
    Shape("leak at 1.5x riding on bursts", True, leak_on_bursts),
    Shape(
        "leak at 1.5x above the identity ceiling (10k–40k goroutines)",
        True,
        linear_leak(1.5, ABOVE_CEILING),
        "count only: held for half a window",
    ),
)
LOOKALIKES = (
    Shape("bursts that drain", False, bursts_that_drain),
    Shape("start-up step", False, startup_step),
    Shape("one-off large allocation", False, one_off_allocation),
    Shape("cache filled in 10 minutes", False, cache_filled_in_10m),
    Shape("cache warm-up over a window (concave)", False, cache_warmup_concave),
    Shape("map at its high-water mark", False, map_high_water),
    Shape("HTTP keep-alive pool", False, keepalive_pool),
    Shape("GOMEMLIMIT saw-tooth", False, memlimit_sawtooth),
    # 0.1–1 G of long-lived goroutines: the peak (at most 4 G, 8,000) is within the identity ceiling.
    Shape("load ramp over a window, then hold and fall", False, load_ramp((0.1, 1.0))),
    # 2–5 G (4,000–10,000) long-lived, peaking at up to 16,000: above the ceiling, the count is all there is.
    Shape("load ramp above the identity ceiling (4k–10k long-lived)", False, load_ramp((2.0, 5.0))),
    Shape("random walk (σ = minGrowth/13 per scrape)", False, random_walk),
)
