"""Rendering watch events for people (a live table, or plain lines when not on a terminal) and machines (JSON)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from memorywatch.api.units import format_bytes
from memorywatch.engine.events import (
    BreachEvent,
    CaptureEvent,
    CaptureFailedEvent,
    Event,
    FaultEvent,
    NoteEvent,
    SampleEvent,
    ScrapeFailedEvent,
    iso,
)


class JsonLines:
    """One JSON object per line, flushed at once, so `jq` and scripts can follow along."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.flush()

    def __call__(self, event: Event) -> None:
        self._stream.write(json.dumps(event.as_json(), default=str) + "\n")
        self._stream.flush()


def _bytes(value: int | None) -> str:
    return "-" if value is None else format_bytes(value)


def _event_line(event: Event) -> Text | None:
    t = time.strftime("%H:%M:%S", time.localtime())
    if isinstance(event, BreachEvent):
        b = event.breach
        return Text.assemble((f"{t} BREACH ", "bold red"), f"{event.target} {b.rule} ({b.kind}): {b.message}")
    if isinstance(event, CaptureEvent):
        line = Text.assemble(
            (f"{t} CAPTURE ", "bold green"), f"{event.target} {event.rule} -> {event.location}\n"
        )
        line.append(f"         {event.summary}")
        if event.errors:
            line.append("\n         incomplete: " + "; ".join(event.errors), style="yellow")
        return line
    if isinstance(event, CaptureFailedEvent):
        return Text.assemble(
            (f"{t} CAPTURE FAILED ", "bold red"), f"{event.target} {event.rule}: {event.error}"
        )
    if isinstance(event, ScrapeFailedEvent):
        times = "" if event.consecutive == 1 else f" ({event.consecutive} in a row)"
        return Text.assemble((f"{t} SCRAPE FAILED ", "yellow"), f"{event.target}: {event.error}{times}")
    if isinstance(event, NoteEvent):
        return Text.assemble((f"{t} NOTE ", "cyan"), f"{event.target}: {event.message}")
    if isinstance(event, FaultEvent):
        retry = "not retried" if event.retry_seconds is None else f"retrying in {event.retry_seconds:g}s"
        return Text.assemble(
            (f"{t} FAULT ", "bold magenta"),
            f"{event.target} {event.component} ({event.cause}): {event.message}; {retry}",
        )
    return None


class LiveTable:
    """A table per target that refreshes in place, with breaches and captures printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._rows: dict[str, SampleEvent] = {}
        self._last: dict[str, str] = {}
        self._live = Live(self._render(), console=self._console, refresh_per_second=2, transient=False)

    def __enter__(self) -> LiveTable:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        if isinstance(event, SampleEvent):
            self._rows[event.target] = event
        elif isinstance(event, CaptureEvent):
            self._last[event.target] = f"{iso(event.time)} {event.rule}"
        line = _event_line(event)
        if line is not None:
            self._console.print(line)
        self._live.update(self._render())

    def _render(self) -> Group:
        table = Table(title="memorywatch", expand=False)
        for col in ("target", "goroutines", "live heap", "heap alloc", "Sys", "RSS", "rules", "last capture"):
            table.add_column(col, overflow="fold")
        for name, ev in sorted(self._rows.items()):
            s = ev.sample
            m = s.memstats
            rss = "-" if s.rss_bytes is None else f"{format_bytes(s.rss_bytes)} ({s.rss_source})"
            table.add_row(
                name,
                "-" if s.goroutines is None else str(s.goroutines),
                _bytes(s.heap_live_bytes),
                _bytes(m.heap_alloc if m else None),
                _bytes(m.sys if m else None),
                rss,
                _rules_cell(ev.rules),
                self._last.get(name, "-"),
            )
        if not self._rows:
            return Group(Text("waiting for the first samples…", style="dim"))
        return Group(table)


def _rules_cell(rules: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in rules.items())


class PlainLines:
    """For pipes and log files: events as lines, and a sample line per target at most once a minute."""

    def __init__(self, console: Console | None = None, sample_every_seconds: float = 60.0) -> None:
        self._console = console or Console(highlight=False, soft_wrap=True)
        self._every = sample_every_seconds
        self._last_sample: dict[str, float] = {}

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, event: Event) -> None:
        if isinstance(event, SampleEvent):
            s = event.sample
            if s.time - self._last_sample.get(event.target, 0.0) < self._every:
                return
            self._last_sample[event.target] = s.time
            m = s.memstats
            self._console.print(
                f"{iso(s.time)} {event.target} goroutines={s.goroutines} live_heap={_bytes(s.heap_live_bytes)} "
                f"sys={_bytes(m.sys if m else None)} rss={_bytes(s.rss_bytes)}"
            )
            return
        line = _event_line(event)
        if line is not None:
            self._console.print(line)
