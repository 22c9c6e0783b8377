"""Turns the engine's events into what the controller records: target health, faults (Degraded), breaches
(write-ahead cooldown, LeakDetected), captures (status.captures, then the action), metrics, and notifications
(`spec.notify`, queued after the record is written and before the action: they never wait for a sink)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from memorywatch import metrics
from memorywatch.actions import ActionOutcome
from memorywatch.control.faults import Fault
from memorywatch.control.notifying import (
    action_notification,
    breach_notification,
    capture_notification,
    failure_notification,
    kind_of,
)
from memorywatch.control.status import iso
from memorywatch.engine.events import (
    BreachEvent,
    CaptureEvent,
    CaptureFailedEvent,
    Event,
    FaultEvent,
    NoteEvent,
    SampleEvent,
    ScrapeFailedEvent,
)

if TYPE_CHECKING:
    from memorywatch.control.watch import WatchController
    from memorywatch.notify import Notification

log = logging.getLogger(__name__)

MAX_STATUS_CAPTURES = 5  # the newest few; the full record of every capture is its MemoryCapture


class EventHandler:
    def __init__(self, controller: WatchController) -> None:
        self.c = controller

    async def handle(self, event: Event) -> None:
        c = self.c
        if isinstance(event, SampleEvent):
            metrics.SCRAPES.labels(result="ok").inc()
            metrics.SCRAPE_SECONDS.observe(event.duration_seconds)
            c.pods.sample_ok(event.target, event.sample.time)
            c.faults.sample_ok(event.target, event.sample.time)
        elif isinstance(event, ScrapeFailedEvent):
            metrics.SCRAPES.labels(result="error").inc()
            c.pods.scrape_failed(event.target, event.error, event.reason)
            await c.poster.on_watch("Warning", "ScrapeFailed", f"pod {event.target}: {event.error}")
        elif isinstance(event, FaultEvent):
            c.report_fault(
                Fault(
                    event.target, event.component, event.cause, event.message, event.time, event.retry_seconds
                )
            )
            await c.write_status()
        elif isinstance(event, BreachEvent):
            await self._breach(event)
        elif isinstance(event, CaptureEvent):
            await self._capture(event)
        elif isinstance(event, CaptureFailedEvent):
            metrics.CAPTURES.labels(result="error").inc()
            metrics.WATCH_CAPTURES.labels(c.namespace, c.name, "error").inc()
            c.store.capture_failed(event.error, event.kind)
            text = f"pod {event.target}, rule {event.rule}: {event.error}"
            await c.poster.on_watch("Warning", "CaptureFailed", text)
            kind = kind_of(c.spec.rules, event.rule) if c.spec else ""
            self._notify(failure_notification(c.namespace, c.name, kind, event))
        elif isinstance(event, NoteEvent):
            log.info("%s/%s pod %s: %s", c.namespace, c.name, event.target, event.message)

    async def _breach(self, event: BreachEvent) -> None:
        c, b = self.c, event.breach
        metrics.BREACHES.labels(kind=str(b.kind)).inc()
        metrics.WATCH_BREACHES.labels(c.namespace, c.name, str(b.kind)).inc()
        default = c.spec.capture.cooldown_seconds if c.spec else 1800.0
        cooldown = float(b.evidence.get("cooldown_seconds", default))
        # Write-ahead: the cooldown is in status before the capture is reported, so a restart cannot repeat it.
        c.cooldowns[(event.target, b.rule, "Capture")] = b.time + cooldown
        c.note_leak(f"pod {event.target}: {b.message}")
        await c.write_status(force=True)
        text = f"rule {b.rule} ({b.kind}) on pod {event.target}: {b.message}"
        await c.poster.on_watch("Warning", "LeakDetected", text)
        await c.poster.on_pod(event.target, "Warning", "LeakDetected", f"MemoryWatch {c.name}: {b.message}")
        self._notify(breach_notification(c.namespace, c.name, event))

    async def _capture(self, event: CaptureEvent) -> None:
        c = self.c
        metrics.CAPTURES.labels(result="ok" if not event.errors else "partial").inc()
        metrics.WATCH_CAPTURES.labels(c.namespace, c.name, "ok" if not event.errors else "partial").inc()
        c.store.capture_succeeded()
        c.faults.capture_ok(event.target, event.time)
        record, record_error = await self._record(event)
        entry = {
            "time": iso(event.time),
            "pod": event.target,
            "rule": event.rule,
            "location": event.location,
            "summary": event.summary[:1000],
            "memoryCapture": record,
        }
        if record_error is not None:
            entry["memoryCaptureError"] = record_error[:1000]
        c.captures.insert(0, entry)
        del c.captures[MAX_STATUS_CAPTURES:]
        await c.write_status(force=True)
        text = f"pod {event.target}, rule {event.rule}: {event.summary[:600]} -> {event.location}"
        await c.poster.on_watch("Normal", "ProfilesCaptured", text)
        await c.poster.on_pod(
            event.target, "Normal", "ProfilesCaptured", f"MemoryWatch {c.name}: {event.location}"
        )
        kind = kind_of(c.spec.rules, event.rule) if c.spec else ""
        self._notify(capture_notification(c.namespace, c.name, kind, event))
        if c.spec is not None and c.spec.action.type != "None":
            action = c.spec.action
            newest = c.executor.log.entries[0] if c.executor.log.entries else None
            await c.supervisor.attempt(
                "action",
                lambda: c.executor.after_capture(event.target, action),
                target=event.target,
                retry=False,
            )
            outcome = c.executor.log.entries[0] if c.executor.log.entries else None
            if outcome is not None and outcome is not newest and outcome.get("pod") == event.target:
                result, message = str(outcome.get("result", "")), str(outcome.get("message", ""))
            else:
                result, message = "NotTaken", "no action was attempted (see the MemoryWatch's events)"
            if record:
                await c.records.set_action(record, action.type, result, message)

    async def _record(self, event: CaptureEvent) -> tuple[str, str | None]:
        """The capture's MemoryCapture: (its name, None or why it is missing). Never raises: the capture is
        already stored, and status and events must still say so."""
        c = self.c
        location = c.store.store.location if c.store.store is not None else "?"
        try:
            return await c.records.record(event, c.spec, location, c.pod_uid(event.target))
        except Exception as e:  # a bug building the object must not lose the capture's record
            log.exception("%s/%s: MemoryCapture of %s not created", c.namespace, c.name, event.location)
            return "", f"{type(e).__name__}: {e}"[:300]

    def action_done(self, outcome: ActionOutcome) -> None:
        """Called by the executor with each action's outcome (synchronous: it only queues)."""
        c = self.c
        capture = next((x for x in c.captures if x.get("pod") == outcome.pod), None)
        n = action_notification(c.namespace, c.name, outcome, c.clock(), capture)
        if n is not None:
            self._notify(n)

    def _notify(self, n: Notification) -> None:
        spec = self.c.spec.notify if self.c.spec is not None else None
        self.c.notifications.send(spec, n)
