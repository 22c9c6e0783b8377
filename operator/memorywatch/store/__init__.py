"""Capture stores: where evidence is kept, behind one interface (a directory or PVC now; S3 later).

A capture is one folder `<namespace>/<memorywatch>/<pod>/<UTC time>-<rule>/` holding the raw profiles and
`manifest.json`, written last. A capture without a manifest is incomplete by definition, and readers skip it.

Errors: `StoreError` → `StoreUnavailable` (the store cannot be written at all: missing, read-only, full),
`CaptureNotFound` (a reader asked for a capture that does not exist or is ambiguous).
"""

from memorywatch.store.base import (
    CaptureKey,
    CaptureNotFound,
    CaptureRef,
    CaptureStore,
    FileRecord,
    PendingCapture,
    StoreError,
    StoreUnavailable,
)
from memorywatch.store.filesystem import FilesystemStore

__all__ = [
    "CaptureKey",
    "CaptureNotFound",
    "CaptureRef",
    "CaptureStore",
    "FileRecord",
    "FilesystemStore",
    "PendingCapture",
    "StoreError",
    "StoreUnavailable",
]
