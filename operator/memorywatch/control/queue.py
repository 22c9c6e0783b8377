"""The bounded queue between the engine and the controller. The engine's callback is synchronous and must never
block or fail, so a full queue makes room instead: samples go first (the next one carries the same news), then
notes, scrape failures and faults (aggregated anyway); breaches and captures are never dropped, so the queue
may exceed its size only by those, which cooldowns keep rare."""

from __future__ import annotations

import asyncio
import collections

from memorywatch import metrics
from memorywatch.engine.events import (
    BreachEvent,
    CaptureEvent,
    CaptureFailedEvent,
    Event,
    SampleEvent,
)

DEFAULT_MAX_EVENTS = 1000
_KEEP = (BreachEvent, CaptureEvent, CaptureFailedEvent)


def _kind(event: Event) -> str:
    return type(event).__name__.removesuffix("Event").lower()


class EventQueue:
    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError("EventQueue: max_events must be at least 1")
        self.max_events = max_events
        self._items: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self.dropped: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, event: Event) -> None:
        """Add `event`; when full, drop the oldest sample, else the oldest droppable event, else the new event
        itself if it is droppable. Never raises."""
        if len(self._items) >= self.max_events and not self._make_room(event):
            self._drop(event)
            return
        self._items.append(event)
        self._ready.set()

    def _make_room(self, incoming: Event) -> bool:
        for droppable in ((SampleEvent,), None):
            for i, old in enumerate(self._items):
                if (droppable is not None and isinstance(old, droppable)) or (
                    droppable is None and not isinstance(old, _KEEP)
                ):
                    del self._items[i]
                    self._drop(old)
                    return True
        return isinstance(incoming, _KEEP)  # only events that are never dropped go over the size

    def _drop(self, event: Event) -> None:
        kind = _kind(event)
        self.dropped[kind] += 1
        metrics.EVENTS_DROPPED.labels(kind=kind).inc()

    def get_nowait(self) -> Event | None:
        if not self._items:
            self._ready.clear()
            return None
        return self._items.popleft()

    async def get(self) -> Event:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            await self._ready.wait()
