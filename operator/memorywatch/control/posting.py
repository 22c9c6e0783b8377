"""Kubernetes Events for one MemoryWatch, on the watch and on the pod. `Kube.event` already folds an identical
message into one Event with a count; faults are also rate-limited here per (pod, component, cause), because
their messages differ from one failure to the next: the first is posted, then at most one per
`fault_every_seconds` saying how many happened meanwhile."""

from __future__ import annotations

import asyncio
import logging

from memorywatch import metrics
from memorywatch.control.faults import Fault, FaultBook
from memorywatch.control.ports import Clock, EventSink
from memorywatch.k8s import ObjectRef

log = logging.getLogger(__name__)

KIND = "MemoryWatch"
API_VERSION = "memorywatch.io/v1alpha1"
FAULT_EVERY_SECONDS = 600.0
MAX_FAULT_KEYS = 256


class EventPoster:
    def __init__(
        self,
        sink: EventSink,
        namespace: str,
        name: str,
        uid: str,
        clock: Clock,
        *,
        fault_every_seconds: float = FAULT_EVERY_SECONDS,
    ) -> None:
        self._sink = sink
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self._clock = clock
        self.fault_every_seconds = fault_every_seconds
        self._fault_posts: dict[tuple[str, str, str], tuple[float, int]] = {}  # -> (last posted, suppressed)

    def watch_ref(self) -> ObjectRef:
        return ObjectRef(KIND, self.name, self.namespace, self.uid, API_VERSION)

    def pod_ref(self, pod: str) -> ObjectRef:
        return ObjectRef("Pod", pod, self.namespace)

    async def on_watch(self, type_: str, reason: str, message: str) -> None:
        await self._sink.event(self.watch_ref(), type_, reason, message)

    async def on_pod(self, pod: str, type_: str, reason: str, message: str) -> None:
        await self._sink.event(self.pod_ref(pod), type_, reason, message)

    async def fault(self, fault: Fault) -> bool:
        """A Warning `Degraded` event on the watch naming the pod and the cause; False when rate-limited."""
        key = (fault.target, fault.component, fault.cause)
        now = self._clock()
        last = self._fault_posts.get(key)
        if last is not None and now - last[0] < self.fault_every_seconds:
            self._fault_posts[key] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        self._fault_posts.pop(key, None)
        self._fault_posts[key] = (now, 0)
        while len(self._fault_posts) > MAX_FAULT_KEYS:
            del self._fault_posts[next(iter(self._fault_posts))]
        again = f" ({suppressed} more since the last report)" if suppressed else ""
        await self.on_watch("Warning", "Degraded", fault.describe() + again)
        return True


class FaultReporter:
    """Records a fault in the book (the Degraded condition), counts it, and posts its Warning in the background
    (reporting is synchronous: it is called from supervision callbacks and must never fail)."""

    def __init__(self, book: FaultBook, poster: EventPoster) -> None:
        self._book = book
        self._poster = poster
        self._posts: set[asyncio.Task[None]] = set()

    def report(self, fault: Fault) -> None:
        self._book.record(fault)
        metrics.TASK_FAULTS.labels(task=fault.component.split(":")[0]).inc()
        task = asyncio.ensure_future(self._post(fault))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, fault: Fault) -> None:
        try:
            await self._poster.fault(fault)
        except Exception as e:  # noqa: BLE001 - the event is a courtesy: status carries the fault
            log.warning(
                "could not post the Degraded event of %s/%s: %s", self._poster.namespace, self._poster.name, e
            )

    async def close(self, *, cancel: bool = False) -> None:
        """Wait for the posts in flight, or with `cancel` (the watch is being deleted) stop them."""
        if cancel:
            for task in self._posts:
                task.cancel()
        if self._posts:
            await asyncio.gather(*self._posts, return_exceptions=True)
