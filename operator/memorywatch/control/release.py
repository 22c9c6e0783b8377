"""How a deleted MemoryWatch lets go. Its finalizer keeps the object until the controller has stopped, so that
stop must be quick and do no work on the watch's behalf. No action, no status write, no Event, and no waiting
for a capture. The stop of an operator that exits is different: it finishes captures and records pending
events (`WatchController.run`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from memorywatch.control.queue import EventQueue
from memorywatch.engine.events import CaptureEvent

log = logging.getLogger(__name__)


def being_deleted(body: Mapping[str, Any]) -> bool:
    """The MemoryWatch has a deletionTimestamp: it goes as soon as its finalizer is removed."""
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def forget_events(queue: EventQueue, namespace: str, name: str) -> int:
    """Empty the queue without acting on it (a deleted watch, or an exiting operator out of time). A finished
    capture is only logged: it stays in the store. Returns how many events were dropped."""
    dropped = 0
    while (event := queue.get_nowait()) is not None:
        dropped += 1
        if isinstance(event, CaptureEvent):
            log.info(
                "%s/%s is stopping: capture for pod %s kept at %s (not recorded in status)",
                namespace,
                name,
                event.target,
                event.location,
            )
    return dropped
