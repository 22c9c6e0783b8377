"""Goroutine profiles in the `goroutine?debug=1` text form: parse, diff, find the finalizer goroutine."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence

from memorywatch.pprof.errors import BudgetExceeded, MalformedText


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


# printCountProfile / printStackRecord formats. Go writes through a tabwriter, so fields are separated by
# one or more tabs. A frame without a function name (unknown PC) is printed as the bare PC.
_HEADER = re.compile(r"(goroutine|goroutineleak) profile: total (\d+)")
_GROUP = re.compile(r"(\d+) @((?: 0x[0-9a-f]+)*)")
_LABELS_PREFIX = "# labels: "
_FRAME = re.compile(r"#\t+0x[0-9a-f]+\t+(.+?)\+0x[0-9a-f]+\t+(.*):(\d+)")
_UNKNOWN_FRAME = re.compile(r"#\t+(0x[0-9a-f]+)")
_EXPECTED = "a Go goroutine profile (`goroutine profile: total N`)"

# Go 1.26 names the finalizer goroutine's loop runtime.runFinalizers; older releases call it runfinq.
FINALIZER_LOOPS = frozenset({"runtime.runfinq", "runtime.runFinalizers"})


def parse_goroutine_debug1(text: str, *, max_groups: int | None = None) -> GoroutineProfile:
    """Parse `goroutine?debug=1` (also the `goroutineleak` profile, same format). Raises MalformedText,
    and BudgetExceeded past `max_groups` distinct stacks (each is kept with all its frames).

    `total` is Go's header count; when the text was cut short, the groups hold fewer goroutines than that.
    """
    lines = text.splitlines()
    # Go ends every line with a newline; an unterminated last line was cut mid-transfer (a size cap), so it
    # is dropped and the groups that arrived whole are kept.
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines.pop()
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    header = _HEADER.fullmatch(lines[index].strip()) if index < len(lines) else None
    if header is None:
        raise MalformedText(_EXPECTED, text)
    total = int(header.group(2))
    groups: list[GoroutineGroup] = []
    current: _GroupBuilder | None = None
    for number, line in enumerate(lines[index + 1 :], start=index + 2):
        if not line.strip():
            if current is not None:
                groups.append(current.build())
                current = None
            continue
        if current is None:
            match = _GROUP.fullmatch(line.strip())
            if match is None:
                raise MalformedText("a goroutine group (`N @ 0x…`)", line, f"line {number}")
            if max_groups is not None and len(groups) >= max_groups:
                raise BudgetExceeded("goroutine groups (distinct stacks)", "max_goroutine_groups", max_groups)
            pcs = tuple(int(pc, 16) for pc in match.group(2).split())
            current = _GroupBuilder(count=int(match.group(1)), pcs=pcs)
        elif line.startswith(_LABELS_PREFIX) and not current.frames:
            current.labels = line[len(_LABELS_PREFIX) :].strip()
        elif (frame := _FRAME.fullmatch(line)) is not None:
            current.frames.append(Frame(frame.group(1), frame.group(2), int(frame.group(3))))
        elif (unknown := _UNKNOWN_FRAME.fullmatch(line.strip())) is not None:
            current.frames.append(Frame(unknown.group(1), "", 0))
        else:
            raise MalformedText(
                "a goroutine stack frame (`#\\t0x…\\tfunc+0x…\\tfile:line`)", line, f"line {number}"
            )
    if current is not None:
        groups.append(current.build())
    return GoroutineProfile(total=total, groups=tuple(groups))


@dataclasses.dataclass
class _GroupBuilder:
    count: int
    pcs: tuple[int, ...]
    labels: str | None = None
    frames: list[Frame] = dataclasses.field(default_factory=list)

    def build(self) -> GoroutineGroup:
        return GoroutineGroup(count=self.count, pcs=self.pcs, labels=self.labels, frames=tuple(self.frames))


_Key = tuple[tuple[Frame, ...], str | None]


def _counts(profile: GoroutineProfile) -> dict[_Key, int]:
    # Keyed on symbolized frames, not PCs, so snapshots from a restarted process (or another replica of the
    # same build) still line up. Groups whose PCs differ only in hidden runtime frames merge, which is
    # what a reader of the stacks would do too.
    counts: dict[_Key, int] = {}
    for group in profile.groups:
        key = (group.frames, group.labels)
        counts[key] = counts.get(key, 0) + group.count
    return counts


def diff_goroutines(old: GoroutineProfile, new: GoroutineProfile) -> list[GroupGrowth]:
    """Per-stack change from `old` to `new`, largest growth first; groups only in `new` have `before == 0`.

    Groups that disappeared are included with `after == 0` (negative delta) at the end.
    """
    before = _counts(old)
    after = _counts(new)
    growths = [
        GroupGrowth(frames=key[0], labels=key[1], before=before.get(key, 0), after=after.get(key, 0))
        for key in dict.fromkeys([*after, *before])
    ]
    return sorted(growths, key=lambda g: (-g.delta, -g.after))


def growing_groups(snapshots: Sequence[GoroutineProfile], min_delta: int) -> list[GroupGrowth]:
    """Stacks whose count never fell from one snapshot to the next and rose by at least `min_delta` overall.

    Needs at least two snapshots; three or more separate a steady leak from a burst that happens to be
    larger at the second look. `before`/`after` are the first and last counts; largest growth first.
    """
    if len(snapshots) < 2:
        raise ValueError(f"growing_groups needs at least 2 snapshots, got {len(snapshots)}")
    series = [_counts(s) for s in snapshots]
    keys = dict.fromkeys(k for counts in series for k in counts)
    found: list[GroupGrowth] = []
    for key in keys:
        counts = [c.get(key, 0) for c in series]
        monotonic = all(b >= a for a, b in itertools.pairwise(counts))
        if monotonic and counts[-1] - counts[0] >= min_delta and counts[-1] > counts[0]:
            found.append(GroupGrowth(frames=key[0], labels=key[1], before=counts[0], after=counts[-1]))
    return sorted(found, key=lambda g: (-g.delta, -g.after))


def is_runtime_function(function: str) -> bool:
    """True for the Go runtime's own frames (hidden by runtime/pprof at the top of a stack)."""
    return function.startswith(("runtime.", "internal/runtime/")) or function == "runtime"


def is_stdlib_function(function: str) -> bool:
    """True for standard-library frames: their import path's first element has no dot (and is not main)."""
    package = function_package(function)
    first = package.split("/", 1)[0]
    return "." not in first and package != "main"


def function_package(function: str) -> str:
    """The import path of a Go symbol: `net/http.(*conn).serve` -> `net/http`, `main.f.func1` -> `main`."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function if dot < 0 else function[:dot]


def group_name(frames: Sequence[Frame]) -> str:
    """A short name for a stack in summaries: the innermost frame of the program's own code.

    Stacks made only of standard-library frames (an idle `net/http` connection) are named after their
    outermost non-runtime frame, the function the goroutine was started with.
    """
    for frame in frames:
        if not is_stdlib_function(frame.function) and not frame.function.startswith("0x"):
            return frame.function
    for frame in reversed(frames):
        if not is_runtime_function(frame.function):
            return frame.function
    return frames[0].function if frames else "<no frames>"


def blocked_finalizer(profile: GoroutineProfile) -> GoroutineGroup | None:
    """The finalizer goroutine while it runs user code (a finalizer that blocks stalls every later one).

    An idle finalizer goroutine shows only runtime frames; one with a non-runtime frame inside the
    finalizer loop is executing a finalizer right now. Seeing it in consecutive snapshots means it is stuck.
    """
    for group in profile.groups:
        for position, frame in enumerate(group.frames):
            if frame.function in FINALIZER_LOOPS:
                if any(not is_runtime_function(f.function) for f in group.frames[:position]):
                    return group
                break
    return None
