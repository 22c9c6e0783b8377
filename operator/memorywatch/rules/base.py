"""What every rule kind shares: the verdict a rule returns per sample, and the trend-rule skeleton.

A rule owns its series and decides "firing or not" for one target; the engine (engine.py) owns cooldowns,
restarts and the Breach objects. Nothing here raises on missing data: a rule without its inputs returns an
inactive verdict whose `note` says what is missing.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from memorywatch.api import units
from memorywatch.rules import random_walk
from memorywatch.rules.lazy import Lazy
from memorywatch.rules.model import Probe, RuleSpec
from memorywatch.rules.series import Point, Series
from memorywatch.rules.trend import MIN_POINTS, Trend, WindowStats, cannot_pass
from memorywatch.rules.trend import judge as judge_window
from memorywatch.samples import Sample

INACTIVE = "inactive"
WARMING_UP = "warming up"
WATCHING = "watching"
SUSPICIOUS = "suspicious"
COOLING_DOWN = "cooling down"
FIRING = "firing"

# Before warm-up ends a rule may still call a target suspicious (to fetch stacks early) once it has seen
# this share of its window.
SUSPICION_COVERAGE = 0.5
# Suspicion uses the same tests at this share of the min growth.
SUSPICION_GROWTH_SHARE = 0.5
# A sustained rise that slows down across the window (Trend.saturating: a cache or pool filling) is held
# back; it fires only if it is no longer slowing in a later window, or keeps passing every test (so still
# rising at the minimum rate) for this share of a window after the hold began. A hold with no sustained
# trend for a whole window is forgotten: the rise flattened.
SATURATION_HOLD_SHARE = 0.5
# A rise no bigger than a driftless random walk with the same steps would make (random_walk.py) is held back
# for this share of a window, whatever the check says in between (its verdict flickers from scrape to scrape
# on such a series): a walk has no memory, so it is as likely to fall back as to keep rising, while a leak
# keeps rising. It fires if it still passes every test after that; a whole window without a sustained
# trend forgets the hold.
WALK_HOLD_SHARE = 0.5
# A young process warms up: caches fill, pools and buffers grow to their working size, over a time nobody
# states. A sustained rise while the judged window still reaches back into the process's first window (its
# age under two windows) is held back for this share of a window from the moment it was first sustained,
# whatever the other tests say in between, and fires only if it still passes every test after that: a leak
# keeps rising, a warm-up ends. Only a process whose start is known (Sample.process_started_at) is held; the
# latency is paid once per process, by leaks present from its start.
YOUNG_HOLD_SHARE = 0.5
YOUNG_AGE_WINDOWS = 2.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One rule's view of a target after one sample. `message` is set when the rule holds (fires).
    `growth` may be given as a function, computed when first read (lazy.py)."""

    state: str
    note: str | None = None
    growth: Lazy[float | None] = Lazy(None)
    unit: str = ""
    message: str | None = None
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # False while the window holds too few points to judge: the status line says why instead of a growth
    # fitted to a handful of points.
    judging: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuleStatus:
    """A rule's state for display: `state` is inactive / warming up / watching / suspicious / cooling down;
    `growth` is the fitted growth over the window in `unit` (goroutines, objects or bytes), when known
    (may be given as a function, computed when first read: lazy.py)."""

    name: str
    kind: str
    state: str
    growth: Lazy[float | None] = Lazy()
    unit: str
    detail: Lazy[str] = Lazy()
    window_seconds: float | None = None
    judging: bool = True

    def line(self) -> str:
        """`watching: +1.2 MiB over 30m`, `inactive: the target has no memory limit`, `watching: 2 GC cycles
        in the 40s window, 6 needed to judge; …`."""
        text = self.state
        if self.growth is not None and self.state != INACTIVE and self.judging:
            amount = format_amount(self.growth, self.unit)
            sign = "+" if self.growth >= 0 else ""
            unit = "" if self.unit == "bytes" else f" {self.unit}"
            over = f" over {units.format_duration(self.window_seconds)}" if self.window_seconds else ""
            text += f": {sign}{amount}{unit}{over}"
        elif self.detail:
            text += f": {self.detail.split(': ', 1)[-1]}"
        return text


class StatusLines(Mapping[str, str]):
    """Rule name → `RuleStatus.line()`, rendered on first read: the operator takes a status with every sample
    but shows it only now and then, and a line's growth is the window's Theil–Sen slope. All lines are
    rendered at once, then the states (and the windows they would be computed from) are let go."""

    __slots__ = ("_lines", "_names", "_states")

    def __init__(self, states: Mapping[str, RuleStatus]) -> None:
        self._states = states
        self._names = tuple(states)
        self._lines: dict[str, str] | None = None

    def _rendered(self) -> dict[str, str]:
        if self._lines is None:
            self._lines = {name: self._states[name].line() for name in self._names}
            self._states = {}
        return self._lines

    def __getitem__(self, name: str) -> str:
        return self._rendered()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(self._rendered())


class WhyNot(Mapping[str, str]):
    """`{"why_not": trend.reason}` for a trend that is not sustained, the reason read when shown (naming the
    first failed test may need the window's slope, which a failed floor test did not)."""

    __slots__ = ("_trend",)

    def __init__(self, trend: Trend) -> None:
        self._trend = trend

    def __getitem__(self, key: str) -> str:
        if key != "why_not":
            raise KeyError(key)
        return self._trend.reason

    def __iter__(self) -> Iterator[str]:
        return iter(("why_not",))

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return repr(dict(self))


class Rule(abc.ABC):
    """One configured rule judging one target."""

    unit = ""

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def observe(self, sample: Sample, *, started_at: float) -> Verdict:
        """Take one sample (times only increase) and judge; `started_at` is when this target's data began."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every series: the target restarted."""

    def wants(self, now: float) -> frozenset[Probe]:
        """Extra data the next scrape should fetch for this rule."""
        del now
        return frozenset()

    def judged_window_seconds(self) -> float | None:
        """The window the growth in `status` is measured over (None for rules without one)."""
        return None


def _growth_of(trend: Trend | None) -> Callable[[], float] | None:
    """The trend's growth, read when a status line needs it (computing it may cost a Theil–Sen slope)."""
    if trend is None:
        return None
    known: Trend = trend
    return lambda: known.growth


def format_amount(value: float, unit: str) -> str:
    """`256 MiB` for bytes, `2,400` for counts."""
    return units.format_bytes(value) if unit == "bytes" else units.format_count(value)


class TrendRule(Rule):
    """A rule that fires when one signal grows sustainably by at least `min_growth` per `window`.

    Subclasses say how to read the signal from a sample (`read`) and how to word the breach (`describe`).
    """

    default_window_seconds = 900.0
    default_min_growth = 0.0
    min_points = MIN_POINTS
    #: Whether a rise in a young process is held back as a possible warm-up (YOUNG_HOLD_SHARE); False for a
    #: rule whose breach cannot wait (MemoryLimit: the kernel's OOM kill does not).
    holds_young_rises = True

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.window_seconds = spec.window_seconds or self.default_window_seconds
        self.warmup_seconds = self.window_seconds if spec.warmup_seconds is None else spec.warmup_seconds
        self.series = Series(self.window_seconds)
        self.last_trend: Trend | None = None
        #: `last_trend` and the window statistics it was judged from (questions about its slope, answered
        #: without the slope when they can be).
        self.last_stats: tuple[Trend, WindowStats] | None = None
        self.suspicious = False
        self.held_since: float | None = None
        self._last_sustained: float | None = None
        self._columns: tuple[Sequence[float], Sequence[float]] = ((), ())
        self._walk: random_walk.WalkCheck | None = None
        self._walk_since: float | None = None
        self._process_started_at: float | None = None
        #: When a rise in a young process was first sustained (the young hold runs from then), else None.
        self.young_since: float | None = None

    def judged_window_seconds(self) -> float | None:
        return self.window_seconds

    @property
    def min_growth(self) -> float:
        return self.spec.min_growth if self.spec.min_growth is not None else self.default_min_growth

    def reset(self) -> None:
        self.series.clear()
        self.last_trend = None
        self.last_stats = None
        self.suspicious = False
        self.held_since = None
        self._last_sustained = None
        self._columns = ((), ())
        self._walk = None
        self._walk_since = None
        self._process_started_at = None
        self.young_since = None

    @abc.abstractmethod
    def read(self, sample: Sample) -> tuple[float | None, str | None, bool]:
        """(value, note, new_point): the signal in this sample, why it is missing, and whether it is a new
        point (False for a repeated GC-point value, which must not be counted twice)."""

    @abc.abstractmethod
    def describe(self, trend: Trend, sample: Sample) -> tuple[str, dict[str, Any]] | None:
        """The one-sentence message and extra evidence for a sustained trend, or None to hold back."""

    def judge(self, sample: Sample, *, started_at: float) -> Verdict:
        """The shared path: read, append, assess, then fire / suspect / watch."""
        if sample.process_started_at is not None:
            self._process_started_at = sample.process_started_at
        value, note, new_point = self.read(sample)
        if value is None:
            if len(self.series) == 0:
                return Verdict(INACTIVE, note=note, unit=self.unit)
        elif new_point:
            self.series.append(sample.time, value)
        times, values = self.series.window_columns(sample.time)
        self._columns = (times, values)
        latest = self.series.latest
        stats = WindowStats(times, values, self.window_seconds) if len(times) >= 2 else None
        trend = self._judge_window(stats, latest)
        self.last_trend = trend
        self.last_stats = (trend, stats) if trend is not None and stats is not None else None
        self.suspicious = self._suspicious(stats, trend)
        growth = _growth_of(trend)
        warmed = sample.time - started_at >= self.warmup_seconds - 1e-6
        if len(times) < self.min_points:
            state = WATCHING if warmed else WARMING_UP
            why = {"why_not": self.too_few_reason(times, sample.time)}
            return Verdict(state, note=note, growth=growth, unit=self.unit, evidence=why, judging=False)
        if not warmed:
            state = SUSPICIOUS if self.suspicious else WARMING_UP
            return Verdict(state, note=note, growth=growth, unit=self.unit, evidence=self._detail(trend))
        confirmed, held_because = self.confirm(trend, sample.time) if trend is not None else (None, "")
        if trend is not None and trend.sustained and confirmed is None:
            held = {"why_not": held_because, "held_since": self.held_since}
            return Verdict(SUSPICIOUS, note=note, growth=growth, unit=self.unit, evidence=held)
        if trend is not None and confirmed is not None:
            described = self.describe(trend, sample)
            if described is not None:
                message, extra = described
                evidence = {**trend.evidence(), "unit": self.unit, **extra, "confirmed_by": confirmed}
                if self._walk is not None:
                    evidence["random_walk_check"] = self._walk.evidence
                message = f"{message} Confirmed by: {'; '.join(confirmed)}."
                return Verdict(FIRING, growth=growth, unit=self.unit, message=message, evidence=evidence)
        state = SUSPICIOUS if self.suspicious else WATCHING
        return Verdict(state, note=note, growth=growth, unit=self.unit, evidence=self._detail(trend))

    def too_few_reason(self, times: Sequence[float], now: float) -> str:
        """Why a window with fewer than `min_points` points is not judged yet, in plain words (no ': ',
        which the status line reads as a prefix)."""
        del now
        n = len(times)
        return (
            f"{n} point{'' if n == 1 else 's'} in the {units.format_duration(self.window_seconds)} window,"
            f" {self.min_points} needed to judge"
        )

    def confirm(self, trend: Trend, now: float) -> tuple[list[str] | None, str]:
        """The confirmation stage of a trend: (the signals that held, "") to fire, or (None, why it is held
        back). A trend that is not sustained gives (None, ""). Subclasses add their own signals."""
        if not trend.sustained:
            last = self._last_sustained if self._last_sustained is not None else self.held_since
            if last is not None and now - last > self.window_seconds:
                self.held_since = None  # it flattened: forget the holds
                self._walk_since = None
                self.young_since = None
            return None, ""
        self._last_sustained = now
        young = self._young_hold(now)
        signals, why = self._confirm_sustained(trend, now)
        if signals is None or young is None:
            return signals, why
        held, hold = young
        if held < hold:
            assert self._process_started_at is not None
            return None, (
                f"held back: the process started {units.format_duration(now - self._process_started_at)} ago,"
                " and a rise in its first window may be its warm-up (a cache or pool filling); it fires if it"
                f" still passes every test {units.format_duration(hold - held)} from now"
            )
        return [
            *signals,
            f"still rising at the minimum rate {units.format_duration(held)} after it first did in the"
            " process's first window (not a start-up warm-up)",
        ], ""

    def _young_hold(self, now: float) -> tuple[float, float] | None:
        """(held so far, the hold) while a sustained rise of a young process is held back, else None. The hold
        latches when the rise is first sustained in the process's first windows and runs its course."""
        if not self.holds_young_rises:
            return None
        if self.young_since is None:
            started = self._process_started_at
            if started is None or now - started >= YOUNG_AGE_WINDOWS * self.window_seconds:
                return None
            self.young_since = now
        return now - self.young_since, YOUNG_HOLD_SHARE * self.window_seconds

    def _confirm_sustained(self, trend: Trend, now: float) -> tuple[list[str] | None, str]:
        """The shared confirmation stages of a sustained trend (see `confirm`)."""
        p = trend.mann_kendall_p
        signals = [
            f"a consistent rise (Mann–Kendall p = {p:.2g} over {trend.points} points)"
            if p is not None
            else "a consistent rise"
        ]
        self._walk = random_walk.check_columns(*self._columns, trend.slope_per_second)
        if self._walk is not None and self._walk.verdict == random_walk.WALK and self._walk_since is None:
            self._walk_since = now
        if self._walk_since is not None:
            # Once a rise looked like a random walk's, the hold runs its course: the tests' verdicts flicker
            # from one scrape to the next on such a series.
            walked = now - self._walk_since
            hold = WALK_HOLD_SHARE * self.window_seconds
            if walked < hold:
                if self._walk is not None and self._walk.verdict == random_walk.WALK:
                    return None, f"held back: {self._walk.phrase}"
                # The check says otherwise now, but the hold runs its course: say why it still holds.
                return None, (
                    f"held back: the rise looked like a random walk's {units.format_duration(walked)} ago; it fires"
                    f" if it still passes every test {units.format_duration(hold)} after that"
                )
            signals.append(
                f"still rising at the minimum rate {units.format_duration(walked)} after the rise first looked"
                " like a random walk's"
            )
        elif self._walk is not None:
            signals.append(self._walk.phrase)
        if not trend.saturating:
            signals.append("no slowdown across the window (not a cache or pool filling up)")
            return signals, ""
        if self.held_since is None:
            self.held_since = now
        held = now - self.held_since
        if held >= SATURATION_HOLD_SHARE * self.window_seconds:
            signals.append(
                f"still rising at the minimum rate {units.format_duration(held)} after it began to slow down"
            )
            return signals, ""
        return None, (
            "rising ever more slowly (a cache or pool filling?): held back until it flattens or keeps rising"
            " at the minimum rate"
        )

    def trend(self, points: list[Point], latest: Point | None) -> Trend | None:
        """The verdict on `points` (one window of this rule's series), None with fewer than two."""
        if len(points) < 2:
            return None
        stats = WindowStats([p.time for p in points], [p.value for p in points], self.window_seconds)
        return self._judge_window(stats, latest)

    def _judge_window(self, stats: WindowStats | None, latest: Point | None) -> Trend | None:
        if stats is None:
            return None
        return judge_window(
            stats,
            min_growth=self.min_growth,
            last_value=latest.value if latest is not None else None,
            min_points=self.min_points,
        )

    def _suspicious(self, stats: WindowStats | None, trend: Trend | None) -> bool:
        if stats is None or trend is None or trend.coverage < SUSPICION_COVERAGE:
            return False
        if trend.sustained:
            return True
        relaxed_growth = self.min_growth * SUSPICION_GROWTH_SHARE
        if cannot_pass(stats, min_growth=relaxed_growth, min_points=self.min_points):
            return False  # too few points, the relaxed floor tests, or the slope's bound reject it
        # The same window judged at the relaxed min growth: its statistics are shared, not recomputed.
        relaxed = judge_window(stats, min_growth=relaxed_growth, min_points=self.min_points)
        return relaxed.sustained

    @staticmethod
    def _detail(trend: Trend | None) -> Mapping[str, Any]:
        return WhyNot(trend) if trend is not None and not trend.sustained else {}

    def growth_phrase(self, trend: Trend) -> str:
        """`grew by 2,400 in 15m (160/min)`."""
        return (
            f"grew by {format_amount(trend.growth, self.unit)} in {units.format_duration(trend.window_seconds)}"
            f" ({units.format_rate(trend.slope_per_second, unit=self.unit)})"
        )
