"""What the watch loop reports as it goes; rendered as a live table, plain lines or JSON lines."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from memorywatch.rules.model import Breach
from memorywatch.samples import Sample


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class SampleEvent:
    target: str
    sample: Sample
    rules: Mapping[str, str]  # rule name -> one-line state ("watching: +1.2Mi over 40s")
    duration_seconds: float = 0.0  # how long the scrape took

    def as_json(self) -> dict[str, Any]:
        s = self.sample
        m = s.memstats
        return {
            "event": "sample",
            "time": iso(s.time),
            "target": self.target,
            "goroutines": s.goroutines,
            "heapLiveBytes": s.heap_live_bytes,
            "heapLiveObjects": s.heap_live_objects,
            "heapAllocBytes": m.heap_alloc if m else None,
            "sysBytes": m.sys if m else None,
            "heapReleasedBytes": m.heap_released if m else None,
            "numGC": m.num_gc if m else None,
            "rssBytes": s.rss_bytes,
            "rssSource": s.rss_source,
            "finalizersQueued": s.finalizers_queued,
            "finalizersExecuted": s.finalizers_executed,
            "rules": dict(self.rules),
        }


@dataclasses.dataclass(frozen=True)
class BreachEvent:
    target: str
    breach: Breach

    def as_json(self) -> dict[str, Any]:
        b = self.breach
        return {
            "event": "breach",
            "time": iso(b.time),
            "target": self.target,
            "rule": b.rule,
            "kind": str(b.kind),
            "message": b.message,
            "evidence": dict(b.evidence),
        }


@dataclasses.dataclass(frozen=True)
class CaptureEvent:
    target: str
    time: float
    rule: str
    location: str
    files: tuple[str, ...]
    summary: str
    errors: tuple[str, ...] = ()
    #: The manifest the capture wrote (the operator builds its MemoryCapture from it); not in `as_json`.
    manifest: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "capture",
            "time": iso(self.time),
            "target": self.target,
            "rule": self.rule,
            "location": self.location,
            "files": list(self.files),
            "summary": self.summary,
            "errors": list(self.errors),
        }


@dataclasses.dataclass(frozen=True)
class CaptureFailedEvent:
    target: str
    time: float
    rule: str
    error: str
    #: The store error's class name (e.g. QuotaExceeded), "" when the capture failed otherwise.
    kind: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "capture-failed",
            "time": iso(self.time),
            "target": self.target,
            "rule": self.rule,
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True)
class ScrapeFailedEvent:
    target: str
    time: float
    error: str
    reason: str  # the error's class name, e.g. TargetUnreachable
    consecutive: int
    duration_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "scrape-failed",
            "time": iso(self.time),
            "target": self.target,
            "reason": self.reason,
            "error": self.error,
            "consecutive": self.consecutive,
        }


@dataclasses.dataclass(frozen=True)
class NoteEvent:
    target: str
    time: float
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"event": "note", "time": iso(self.time), "target": self.target, "message": self.message}


@dataclasses.dataclass(frozen=True)
class FaultEvent:
    """A task of the engine (a target's loop, a capture, a baseline, a rule) failed unexpectedly. The engine
    restarts it with backoff; the operator turns this into a `Degraded` condition and a Warning event.

    `component` names the task (`loop`, `capture`, `baseline`, `rule:<name>`, ...); `cause` is the exception's
    class name; `message` a one-line explanation that is safe to show (no secrets, bounded length);
    `retry_seconds` when the task will be retried, or None when it will not."""

    target: str
    time: float
    component: str
    cause: str
    message: str
    retry_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "fault",
            "time": iso(self.time),
            "target": self.target,
            "component": self.component,
            "cause": self.cause,
            "message": self.message,
            "retrySeconds": self.retry_seconds,
        }


Event = (
    SampleEvent | BreachEvent | CaptureEvent | CaptureFailedEvent | ScrapeFailedEvent | NoteEvent | FaultEvent
)
