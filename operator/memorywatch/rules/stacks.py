"""A few goroutine snapshots per rule and what they say: which stacks grow, whether the finalizer is stuck,
whether the process behind them changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from memorywatch.api import units
from memorywatch.pprof import goroutines
from memorywatch.pprof.goroutines import GoroutineProfile, GroupGrowth

MAX_SNAPSHOTS = 3


@dataclasses.dataclass(frozen=True)
class Snapshot:
    time: float
    profile: GoroutineProfile


class Snapshots:
    """At most three snapshots: the first one taken since suspicion began (the anchor, so diffs span as much
    time as possible) and the two newest. Older than `max_age_seconds` ones are dropped."""

    def __init__(self, max_age_seconds: float) -> None:
        self.max_age_seconds = max_age_seconds
        self._items: list[Snapshot] = []

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[Snapshot, ...]:
        return tuple(self._items)

    def recent(self, now: float) -> tuple[Snapshot, ...]:
        """The snapshots not older than `max_age_seconds` at `now` (old ones must not vouch for today)."""
        return tuple(s for s in self._items if s.time >= now - self.max_age_seconds)

    @property
    def last_time(self) -> float | None:
        return self._items[-1].time if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def add(self, time: float, profile: GoroutineProfile) -> None:
        self._items = [s for s in self._items if s.time >= time - self.max_age_seconds]
        self._items.append(Snapshot(time, profile))
        if len(self._items) > MAX_SNAPSHOTS:
            self._items = [self._items[0], *self._items[-(MAX_SNAPSHOTS - 1) :]]


def process_changed(old: GoroutineProfile, new: GoroutineProfile) -> bool:
    """True when the two snapshots come from different processes (a restart or a new build).

    Within one process the same stack always has the same PCs. If stacks with identical symbolized frames
    appear in both snapshots but none of them kept its PCs, the code was loaded elsewhere: a new process.
    """
    old_pcs: dict[tuple[goroutines.Frame, ...], set[tuple[int, ...]]] = {}
    for group in old.groups:
        if group.frames:
            old_pcs.setdefault(group.frames, set()).add(group.pcs)
    common = 0
    for group in new.groups:
        previous = old_pcs.get(group.frames)
        if previous is None:
            continue
        common += 1
        if group.pcs in previous:
            return False
    return common > 0


def growth_evidence(growths: Sequence[GroupGrowth], limit: int = 5) -> list[dict[str, Any]]:
    """The growing groups as JSON: name, counts, and the top frames of each stack."""
    return [
        {
            "function": goroutines.group_name(growth.frames),
            "before": growth.before,
            "after": growth.after,
            "delta": growth.delta,
            "frames": [f"{frame.function} {frame.file}:{frame.line}" for frame in growth.frames[:8]],
        }
        for growth in growths[:limit]
    ]


@dataclasses.dataclass(frozen=True)
class StuckFinalizer:
    """The finalizer goroutine seen in the same user frame in consecutive snapshots."""

    function: str
    file: str
    line: int
    snapshots: int
    span_seconds: float

    def evidence(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def phrase(self) -> str:
        return (
            f"the finalizer goroutine stayed in {self.function} ({self.file.rsplit('/', 1)[-1]}:{self.line})"
            f" across {self.snapshots} snapshots {units.format_duration(self.span_seconds)} apart"
        )


def stuck_finalizer(snapshots: Sequence[Snapshot], min_span_seconds: float) -> StuckFinalizer | None:
    """The finalizer stuck in user code: the newest snapshots (at least two, spanning `min_span_seconds`)
    all show it running a finalizer with the same innermost non-runtime frame."""
    run: list[tuple[float, goroutines.Frame]] = []
    for snapshot in reversed(snapshots):
        group = goroutines.blocked_finalizer(snapshot.profile)
        top = _top_user_frame(group) if group is not None else None
        if top is None or (run and (top.function, top.line) != (run[0][1].function, run[0][1].line)):
            break
        run.append((snapshot.time, top))
    if len(run) < 2:
        return None
    span = run[0][0] - run[-1][0]
    if span < min_span_seconds:
        return None
    frame = run[0][1]
    return StuckFinalizer(frame.function, frame.file, frame.line, len(run), span)


def _top_user_frame(group: goroutines.GoroutineGroup) -> goroutines.Frame | None:
    for frame in group.frames:
        if not goroutines.is_runtime_function(frame.function):
            return frame
    return None
