"""Goroutine profiles in the `goroutine?debug=1` text form: parse, diff, find the finalizer goroutine."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int


@dataclasses.dataclass(frozen=True)
class GoroutineGroup:
    """Goroutines with the identical stack (and labels). `frames` are innermost first, as Go prints them."""

    count: int
    pcs: tuple[int, ...]
    labels: str | None
    frames: tuple[Frame, ...]


@dataclasses.dataclass(frozen=True)
class GoroutineProfile:
    total: int
    groups: tuple[GoroutineGroup, ...]


@dataclasses.dataclass(frozen=True)
class GroupGrowth:
    """How one stack group's count changed between two snapshots (new groups have `before == 0`)."""

    frames: tuple[Frame, ...]
    labels: str | None
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before
