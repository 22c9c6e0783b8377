"""The MemoryCapture finalizer: deleting a MemoryCapture deletes its files from the store it names, through the
store layer (the operator's volume, or the S3 bucket rebuilt from the settings the capture recorded, with the same
policy and Secret-by-consent checks the watch had), then lets the object go.

Outcomes (decided in api/capture_object.py, pure): the files deleted (or already gone) -> done; the location not
trusted or the store no longer configured -> done, files kept, a Warning on the MemoryCapture says why; the store
unreachable -> `Retry` (kopf calls again after the delay, 5 s doubling to 5 min; other objects are not held up),
and after an hour -> done, files kept, a Warning naming the location."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from memorywatch.api.capture_object import (
    GROUP,
    KIND,
    VERSION,
    DeleteFiles,
    GiveUp,
    KeepFiles,
    Retry,
    after_failure,
    plan_deletion,
    store_spec,
)
from memorywatch.api.spec import SpecError, parse_spec
from memorywatch.control.capture_records import store_roots
from memorywatch.control.ports import EventSink
from memorywatch.control.stores import StoreFactory
from memorywatch.k8s import KubeError, ObjectRef
from memorywatch.store import CaptureRef, CaptureStore, FilesystemStore, StoreError

log = logging.getLogger(__name__)


async def _store_for(
    plan: DeleteFiles, namespace: str, volume: FilesystemStore, make: StoreFactory
) -> CaptureStore:
    if plan.scheme == "file":
        return volume
    return await make(parse_spec(store_spec(plan.s3)), namespace)


async def delete_capture_files(
    body: Mapping[str, Any],
    *,
    volume: FilesystemStore,
    make_store: StoreFactory,
    events: EventSink,
    retry: int,
    elapsed_seconds: float,
) -> Retry | None:
    """Delete the files of the MemoryCapture `body` is; None when the object may go, `Retry` when not yet."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    ref = ObjectRef(KIND, name, namespace, str(meta.get("uid") or "") or None, f"{GROUP}/{VERSION}")
    plan = plan_deletion(namespace, body.get("spec") or {}, str(volume.root))
    if isinstance(plan, KeepFiles):
        await _warn(events, ref, plan.reason)
        return None
    try:
        store = await _store_for(plan, namespace, volume, make_store)
        if plan.location not in {f"{r.rstrip('/')}/{plan.path}" for r in store_roots(store)}:
            await _warn(events, ref, f"{plan.location[:300]} is in no store the operator reaches now")
            return None
        delete = getattr(store, "delete", None)
        if delete is None:
            await _warn(events, ref, f"the store {store.location} cannot delete captures")
            return None
        deleted = await asyncio.to_thread(delete, CaptureRef(plan.path, plan.location))
    except SpecError as e:
        await _warn(events, ref, f"its recorded S3 settings are not valid any more: {'; '.join(e.messages)}")
        return None
    except (StoreError, KubeError) as e:
        outcome = after_failure(str(e), retry=retry, elapsed_seconds=elapsed_seconds, location=plan.location)
        if isinstance(outcome, GiveUp):
            await _warn(events, ref, outcome.message)
            return None
        log.warning("MemoryCapture %s/%s: %s", namespace, name, outcome.message)
        await events.event(ref, "Warning", "CaptureFilesNotDeleted", outcome.message)
        return outcome
    log.info(
        "MemoryCapture %s/%s deleted: %s %s",
        namespace,
        name,
        "deleted the files of" if deleted else "no files left at",
        plan.location,
    )
    return None


async def _warn(events: EventSink, ref: ObjectRef, reason: str) -> None:
    log.warning("MemoryCapture %s/%s: files kept: %s", ref.namespace, ref.name, reason)
    await events.event(ref, "Warning", "CaptureFilesKept", f"the capture's files are not deleted: {reason}")
