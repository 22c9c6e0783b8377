"""Goroutine identity as a confirmation signal: leaked goroutines keep their IDs, load-driven ones turn over.

GoroutineGrowth asks for a few `goroutine?debug=2` dumps (Probe.GOROUTINE_DUMP) once the count looks
suspicious, within the goroutine-count guard (guards.MAX_DUMP_GOROUTINES) and a byte budget. Each dump is
kept as a consistent hash-sample of the IDs alive (pprof/goroutine_ids.py). With three dumps — the first
since suspicion began, the second newest and the newest — the goroutines that appeared between the first and
the second are looked up in the newest:
- most of the growth is still there with the same IDs: the goroutines persist (a leak keeps them);
- almost none of it is: the growth is goroutines that come and go (load, short-lived workers), and the
  breach is held back while that holds.
Anything in between, too few dumps, or a dump that was cut short leaves the count-based verdict alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memorywatch.api import units
from memorywatch.pprof.goroutine_ids import GoroutineIds, persistence

MAX_DUMPS = 3
# Share of the growth between the first and the middle dump still alive (same IDs) in the newest one.
KEPT_SHARE = 0.5
TURNOVER_SHARE = 0.2
# Below this growth between the first and middle dumps the comparison says nothing.
MIN_GROWTH_GOROUTINES = 20

KEPT = "kept"
TURNOVER = "turnover"


@dataclasses.dataclass(frozen=True)
class Dump:
    time: float
    ids: GoroutineIds


class Dumps:
    """The first dump since suspicion began (the anchor) and the two newest, none older than max_age."""

    def __init__(self, max_age_seconds: float) -> None:
        self.max_age_seconds = max_age_seconds
        self._items: list[Dump] = []

    @property
    def last_time(self) -> float | None:
        return self._items[-1].time if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def add(self, time: float, ids: GoroutineIds) -> None:
        if not ids.complete:
            return  # a dump cut at the byte budget sees only some goroutines: useless for identity
        self._items = [d for d in self._items if d.time >= time - self.max_age_seconds]
        self._items.append(Dump(time, ids))
        if len(self._items) > MAX_DUMPS:
            self._items = [self._items[0], *self._items[-(MAX_DUMPS - 1) :]]

    def recent(self, now: float) -> list[Dump]:
        return [d for d in self._items if d.time >= now - self.max_age_seconds]


@dataclasses.dataclass(frozen=True)
class Identity:
    verdict: str  # KEPT or TURNOVER
    phrase: str
    evidence: dict[str, Any]


def judge(dumps: list[Dump]) -> Identity | None:
    """What the dumps say about the growth, or None when they say nothing definite."""
    if len(dumps) < MAX_DUMPS:
        return None
    older, middle, newest = dumps[0], dumps[-2], dumps[-1]
    result = persistence(older.ids, middle.ids, newest.ids)
    if result.grown < MIN_GROWTH_GOROUTINES:
        return None
    share = result.share_of_growth
    evidence = {
        "dump_times": [older.time, middle.time, newest.time],
        "grown_between_first_dumps": result.grown,
        "appeared_estimate": round(result.appeared),
        "still_alive_estimate": round(result.persisted),
        "share_of_growth_kept": round(share, 3),
        "sampled_ids": len(newest.ids.ids),
    }
    first_gap = units.format_duration(middle.time - older.time)
    later = units.format_duration(newest.time - middle.time)
    if share >= KEPT_SHARE:
        phrase = (
            f"goroutine identity ({units.format_count(result.persisted)} of the {units.format_count(result.grown)}"
            f" goroutines added over {first_gap} still had the same IDs {later} later)"
        )
        return Identity(KEPT, phrase, evidence)
    if share < TURNOVER_SHARE:
        phrase = (
            f"the goroutines turn over: of the {units.format_count(result.grown)} added over {first_gap}, only"
            f" {share:.0%} were still alive {later} later (load-driven or short-lived, not leaked)"
        )
        return Identity(TURNOVER, phrase, evidence)
    return None
