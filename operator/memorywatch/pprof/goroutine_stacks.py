"""Full goroutine dumps (`goroutine?debug=2`, the panic format): each goroutine's state, wait time and stack."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from memorywatch.pprof.errors import MalformedText
from memorywatch.pprof.goroutines import FINALIZER_LOOPS, Frame, is_runtime_function

# runtime/traceback.go goroutineheader: `goroutine N [status, N minutes, locked to thread]:`; with
# GOTRACEBACK=system or higher it adds ` gp=0x… m=…` (and ` mp=…`) before the bracket.
_HEADER = re.compile(r"goroutine (\d+)(?: gp=\S+ m=\S+(?: mp=\S+)?)? \[(.*)\]:")
_MINUTES = re.compile(r"(\d+) minutes")
_LOCATION = re.compile(r"\t(.*):(\d+)(?: \+0x[0-9a-f]+)?(?: fp=\S+ sp=\S+ pc=\S+)?")
_CREATED_BY = re.compile(r"created by (.+?)(?: in goroutine (\d+))?")
_EXPECTED = "a Go goroutine dump (`goroutine N [state]:`)"


@dataclasses.dataclass(frozen=True)
class GoroutineStack:
    """One goroutine from a debug=2 dump. `frames` are innermost first, runtime frames elided by Go.

    `wait_minutes` is Go's approximate time blocked (set lazily by the GC, absent below one minute);
    `created_by` is the function that started the goroutine and `parent_id` the goroutine that ran it.
    """

    id: int
    state: str
    wait_minutes: int | None
    locked_to_thread: bool
    frames: tuple[Frame, ...]
    created_by: str | None
    parent_id: int | None


@dataclasses.dataclass
class _Builder:
    id: int
    header: str
    frames: list[Frame] = dataclasses.field(default_factory=list)
    pending: str | None = None  # a function line waiting for its `\tfile:line` line
    created_by: str | None = None
    parent_id: int | None = None

    def build(self) -> GoroutineStack:
        parts = [p.strip() for p in self.header.split(",")]
        minutes = next((int(m.group(1)) for p in parts[1:] if (m := _MINUTES.fullmatch(p))), None)
        return GoroutineStack(
            id=self.id,
            state=parts[0],
            wait_minutes=minutes,
            locked_to_thread="locked to thread" in parts[1:],
            frames=tuple(self.frames),
            created_by=self.created_by,
            parent_id=self.parent_id,
        )


def _function_name(line: str) -> str:
    # `net/http.(*conn).serve(0xc000…, {0x…})`: the arguments are the last parenthesised group.
    return line[: line.rindex("(")] if line.endswith(")") and "(" in line else line


def parse_goroutine_debug2(text: str) -> tuple[GoroutineStack, ...]:
    """Parse a full goroutine dump. Raises MalformedText for text that is not one.

    A dump cut short (Go truncates past 64 MB; a scraper may cap it lower) keeps every complete goroutine
    and the frames of the last one that arrived.
    """
    stacks: list[GoroutineStack] = []
    current: _Builder | None = None
    lines = text.splitlines()
    # A last line without its line ending was cut mid-transfer; it is dropped rather than judged.
    if lines and not text.endswith(("\n", "\r")) and len(lines) > 1:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if current is not None:
                stacks.append(current.build())
                current = None
            continue
        if current is None:
            header = _HEADER.fullmatch(line.strip())
            if header is None:
                raise MalformedText(_EXPECTED, line, f"line {number}")
            current = _Builder(id=int(header.group(1)), header=header.group(2))
        elif (location := _LOCATION.fullmatch(line)) is not None and current.pending is not None:
            current.frames.append(Frame(current.pending, location.group(1), int(location.group(2))))
            current.pending = None
        elif (created := _CREATED_BY.fullmatch(line)) is not None:
            current.created_by = created.group(1)
            current.parent_id = int(created.group(2)) if created.group(2) else None
            current.pending = None
        elif not line.startswith("\t"):
            # A function line, or `...additional frames elided...`; its location line follows.
            current.pending = _function_name(line)
        elif location is None:
            raise MalformedText(
                "a goroutine dump frame location (`\\tfile:line +0x…`)", line, f"line {number}"
            )
    if current is not None:
        stacks.append(current.build())
    if not stacks:
        raise MalformedText(_EXPECTED, text)
    return tuple(stacks)


def finalizer_goroutine(stacks: Iterable[GoroutineStack]) -> GoroutineStack | None:
    """The finalizer goroutine while it runs a finalizer (user code above the runtime's finalizer loop)."""
    for stack in stacks:
        for position, frame in enumerate(stack.frames):
            if frame.function in FINALIZER_LOOPS:
                if any(not is_runtime_function(f.function) for f in stack.frames[:position]):
                    return stack
                break
    return None
