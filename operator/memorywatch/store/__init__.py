"""Capture stores: where evidence is kept, behind one interface: a directory (or PVC), an S3 bucket, or both.

A capture is one folder `<namespace>/<memorywatch>/<pod>/<UTC time>-<rule>/` holding the raw profiles and
`manifest.json`, written last. A capture without a manifest is incomplete by definition, and readers skip it.

Errors: `StoreError` → `StoreUnavailable` (the store cannot be written at all: missing, read-only, full, S3
unreachable or refusing the credentials),
`CaptureNotFound` (a reader asked for a capture that does not exist or is ambiguous).

`S3Store` is imported on first use (`from memorywatch.store import S3Store` works), so that commands which
never touch S3 do not pay for importing boto3. `docs/storage.md` describes both stores and the fallback.
"""

from typing import TYPE_CHECKING, Any

from memorywatch.store.base import (
    CaptureKey,
    CaptureNotFound,
    CaptureRef,
    CaptureStore,
    DeletableStore,
    FileRecord,
    PendingCapture,
    StoreError,
    StoreUnavailable,
)
from memorywatch.store.fallback import FallbackPendingCapture, FallbackStore
from memorywatch.store.filesystem import FilesystemStore

if TYPE_CHECKING:
    from memorywatch.store.s3 import S3PendingCapture, S3Store

__all__ = [
    "CaptureKey",
    "CaptureNotFound",
    "CaptureRef",
    "CaptureStore",
    "DeletableStore",
    "FallbackPendingCapture",
    "FallbackStore",
    "FileRecord",
    "FilesystemStore",
    "PendingCapture",
    "S3PendingCapture",
    "S3Store",
    "StoreError",
    "StoreUnavailable",
]


def __getattr__(name: str) -> Any:
    if name in ("S3Store", "S3PendingCapture"):
        from memorywatch.store import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
