"""The capture store of one watch: built from its spec (its S3 bucket, the default bucket, or the operator's
volume), proven writable (which sweeps partial captures a crash left behind), and what status says about it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from memorywatch.api.spec import WatchSpec
from memorywatch.k8s import KubeError
from memorywatch.store import CaptureStore, StoreError

#: Builds the store a MemoryWatch asked for (its S3 bucket, the default bucket, or the operator's volume).
StoreFactory = Callable[[WatchSpec, str], Awaitable[CaptureStore]]


#: StoreAvailable=False reasons: a quota of the operator's volume refused the capture, or any other store failure.
QUOTA_REASON = "CaptureQuotaExceeded"
UNAVAILABLE_REASON = "StoreUnavailable"


@dataclasses.dataclass
class StoreState:
    store: CaptureStore | None = None
    #: Why there is no store (StoreAvailable False), or why the last capture failed.
    error: str | None = None
    #: A store that works in a lesser way (S3 down, the volume in use).
    note: str | None = None
    #: The StoreAvailable=False reason that goes with `error`.
    reason: str = UNAVAILABLE_REASON

    def capture_failed(self, error: str, kind: str) -> None:
        """The last capture failed with a store error of class `kind` (QuotaExceeded: a retention quota)."""
        self.error = error
        self.reason = QUOTA_REASON if kind == "QuotaExceeded" else UNAVAILABLE_REASON

    def capture_succeeded(self) -> None:
        self.error, self.reason = None, UNAVAILABLE_REASON

    def for_engine(self) -> CaptureStore:
        return self.store if self.store is not None else UnavailableStore(self.error or "no store")


async def open_store(make: StoreFactory, spec: WatchSpec, namespace: str) -> StoreState:
    try:
        store = await make(spec, namespace)
        await asyncio.to_thread(store.check_writable)
    except (StoreError, KubeError) as e:
        return StoreState(error=str(e))
    primary_error = getattr(store, "primary_error", None)
    note = None
    if primary_error is not None:
        note = f"the S3 store is unavailable, captures fall back to the operator's volume: {primary_error}"
    return StoreState(store, note=note)


class UnavailableStore:
    """Stands in when the configured store could not be set up: every capture fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def location(self) -> str:
        return "unavailable"

    def check_writable(self) -> None:
        raise StoreError(self.reason)

    def begin(self, key: Any) -> Any:
        raise StoreError(self.reason)

    def list(self, prefix: str = "") -> list[Any]:
        return []

    def read(self, ref: Any, name: str) -> bytes:
        raise StoreError(self.reason)

    def resolve(self, ident: str) -> Any:
        raise StoreError(self.reason)
