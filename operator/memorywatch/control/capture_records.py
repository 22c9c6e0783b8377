"""The MemoryCaptures of one MemoryWatch: one is created right after a capture's manifest is written, its
status.action follows the action, and a periodic sweep keeps the objects and the store consistent.

A failure to create the object never loses the capture: the files are already stored, status.captures names the
location and says why the object is missing (`memoryCaptureError`), a Warning event says so, and the body is kept
(bounded) and created again on the next sweeps. The sweep also deletes the MemoryCaptures whose files the store's
retention pruned (or someone removed), so `kubectl get memorycaptures` lists only evidence that still exists.
Deleting a MemoryCapture deletes its files: that is the finalizer's work (control/capture_files.py)."""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from memorywatch.api.capture_object import (
    LABEL_WATCH_UID,
    Owner,
    action_status,
    build_body,
    orphaned,
    s3_json,
)
from memorywatch.api.spec import WatchSpec
from memorywatch.control.ports import CaptureApi, Clock
from memorywatch.control.posting import EventPoster
from memorywatch.control.status import iso
from memorywatch.engine.events import CaptureEvent
from memorywatch.k8s import ConflictError, KubeError, NotFoundError
from memorywatch.store import CaptureStore, FallbackStore, StoreError
from memorywatch.store.base import safe_segment

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0
#: A MemoryCapture younger than this is never judged orphaned (the store listing may predate it).
GRACE_SECONDS = 120.0
MAX_PENDING = 10


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme


def store_roots(store: CaptureStore) -> list[str]:
    """The locations under which `store` keeps captures (both stores of a fallback pair)."""
    roots = [store.location]
    if isinstance(store, FallbackStore):
        roots.append(store.fallback.location)
    return roots


class CaptureRecords:
    def __init__(
        self,
        kube: CaptureApi,
        poster: EventPoster,
        owner: Owner,
        clock: Clock,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.kube = kube
        self.poster = poster
        self.owner = owner
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self.grace_seconds = grace_seconds
        #: MemoryCaptures whose creation failed, by name, oldest first: created again by `sweep`.
        self.pending: dict[str, dict[str, Any]] = {}
        self._next_sweep = 0.0

    def body(
        self, event: CaptureEvent, spec: WatchSpec | None, store_location: str, pod_uid: str | None
    ) -> dict[str, Any]:
        manifest: Mapping[str, Any] = event.manifest or {
            "pod": event.target,
            "rule": event.rule,
            "time": iso(event.time),
            "summary": event.summary,
            "files": [{"name": f} for f in event.files if f != "manifest.json"],
            "errors": list(event.errors),
        }
        fallback = _scheme(event.location) != _scheme(store_location) and store_location != "?"
        s3 = spec.capture.s3 if spec is not None else None
        return build_body(
            manifest,
            location=event.location,
            owner=self.owner,
            pod_uid=pod_uid,
            stored_in="fallback" if fallback else "primary",
            s3=s3_json(s3) if s3 is not None else None,
            action_type=spec.action.type if spec is not None else "None",
        )

    async def create(self, body: dict[str, Any]) -> str | None:
        """Create the MemoryCapture; None when created (or already there), else why not (it is kept pending)."""
        name = str(body["metadata"]["name"])
        try:
            await self.kube.create_capture(self.owner.namespace, body)
        except ConflictError:
            pass  # created before (a retry whose answer was lost): the same capture, the same name
        except KubeError as e:
            self.pending.pop(name, None)
            if e.status in (400, 422):  # the API server refuses the body itself: trying again cannot help
                return f"{e} (not retried)"
            self.pending[name] = body
            while len(self.pending) > MAX_PENDING:
                dropped = next(iter(self.pending))
                del self.pending[dropped]
                log.warning("%s: gave up creating MemoryCapture %s (too many pending)", self._who(), dropped)
            return str(e)
        self.pending.pop(name, None)
        status = body.get("status")
        if isinstance(status, Mapping):  # the API server ignores status on create (a status subresource)
            try:
                await self.kube.patch_capture_status(self.owner.namespace, name, status)
            except KubeError as e:
                log.info("%s: MemoryCapture %s created without its status: %s", self._who(), name, e)
        return None

    async def record(
        self, event: CaptureEvent, spec: WatchSpec | None, store_location: str, pod_uid: str | None
    ) -> tuple[str, str | None]:
        """Create the MemoryCapture of a capture just written: (its name, None or why it is not there yet)."""
        body = self.body(event, spec, store_location, pod_uid)
        name = str(body["metadata"]["name"])
        error = await self.create(body)
        if error is not None:
            log.warning("%s: MemoryCapture %s not created: %s", self._who(), name, error)
            await self.poster.on_watch(
                "Warning",
                "CaptureRecordFailed",
                f"the capture of pod {event.target} is stored at {event.location}, but its MemoryCapture {name} "
                f"could not be created ({error})"
                + (f"; retrying every {self.sweep_seconds:.0f}s" if name in self.pending else ""),
            )
        return name, error

    async def set_action(self, name: str, type_: str, result: str, message: str) -> None:
        try:
            await self.kube.patch_capture_status(
                self.owner.namespace, name, {"action": action_status(type_, result, message)}
            )
        except KubeError as e:
            if name in self.pending:  # not created yet: it will be, with the outcome
                self.pending[name]["status"] = {"action": action_status(type_, result, message)}
            else:
                log.warning("%s: cannot record the action on MemoryCapture %s: %s", self._who(), name, e)

    async def sweep(self, store: CaptureStore | None) -> tuple[list[str], list[str]]:
        """At most every `sweep_seconds`: create the pending MemoryCaptures, and delete those whose files are gone
        from `store` (None: the store is unavailable, judge nothing). Returns (created, deleted) names."""
        now = self.clock()
        if now < self._next_sweep:
            return [], []
        self._next_sweep = now + self.sweep_seconds
        created = [name for name, body in list(self.pending.items()) if await self.create(body) is None]
        if store is None:
            return created, []
        ns, watch = self.owner.namespace, self.owner.name
        try:
            # The objects first, then the store: an object created after its files were written is in both.
            objects = await self.kube.list_captures(ns, f"{LABEL_WATCH_UID}={self.owner.uid}")
            refs = await asyncio.to_thread(store.list, f"{safe_segment(ns)}/{safe_segment(watch)}/")
        except (KubeError, StoreError) as e:
            log.info("%s: MemoryCapture sweep skipped: %s", self._who(), e)
            return created, []
        gone = orphaned(
            objects, {r.location for r in refs}, store_roots(store), now=now, grace=self.grace_seconds
        )
        deleted = []
        for name in gone:
            try:
                await self.kube.delete_capture(ns, name)
            except NotFoundError:
                continue
            except KubeError as e:
                log.warning("%s: cannot delete MemoryCapture %s: %s", self._who(), name, e)
                continue
            deleted.append(name)
            log.info("%s: deleted MemoryCapture %s: its files are gone from the store", self._who(), name)
        if deleted:
            await self.poster.on_watch(
                "Normal",
                "CapturesExpired",
                f"deleted {len(deleted)} MemoryCapture(s) whose files the store no longer has (retention): "
                + ", ".join(deleted[:5]),
            )
        return created, deleted

    def _who(self) -> str:
        return f"MemoryWatch {self.owner.namespace}/{self.owner.name}"
