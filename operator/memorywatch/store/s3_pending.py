"""One capture folder being uploaded to S3: files first, the manifest last, so it stays invisible until
`commit` (see `memorywatch.store.s3` for the layout and the claim that makes the folder this writer's)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memorywatch.store.base import MANIFEST_NAME, FileRecord, StoreError, safe_segment

if TYPE_CHECKING:
    from memorywatch.store.s3 import S3Store

log = logging.getLogger(__name__)

CLAIM_NAME = ".capture-in-progress"


class S3PendingCapture:
    """A capture folder being uploaded; see the module docstring for why it stays invisible until commit."""

    def __init__(self, store: S3Store, path: str) -> None:
        self._store = store
        self._path = path
        self._uploaded: list[str] = [store.key_of(path, CLAIM_NAME)]
        self._manifest_tried = False
        self._done = False

    @property
    def location(self) -> str:
        return self._store.location_of(self._path)

    @property
    def path(self) -> str:
        return self._path

    def write(self, name: str, data: bytes) -> FileRecord:
        if name != safe_segment(name) or name in (MANIFEST_NAME, CLAIM_NAME):
            raise StoreError(f"refusing to write a capture file named {name!r}")
        key = self._store.key_of(self._path, name)
        self._uploaded.append(key)
        self._store.put(f"cannot upload {name} to {self.location}", key, data)
        return FileRecord.of(name, data)

    def commit(self, manifest: Mapping[str, Any]) -> str:
        body = json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"
        self._manifest_tried = True
        try:
            self._store.put(
                f"cannot complete the capture {self.location}",
                self._store.key_of(self._path, MANIFEST_NAME),
                body,
            )
        except StoreError:
            self.abort()
            raise
        self._done = True
        claim = self._store.key_of(self._path, CLAIM_NAME)
        try:
            self._store.call(f"cannot remove the claim of {self.location}", "delete_object", Key=claim)
        except StoreError as e:  # the capture is complete and visible; a leftover claim is harmless
            log.warning("%s", e)
        return self.location

    def abort(self) -> None:
        """Delete what was uploaded (the manifest first, if a commit was attempted). Never raises: it runs
        in cleanup paths, and what it cannot delete has no manifest, so `sweep_partials` removes it later."""
        if self._done:
            return
        self._done = True
        doing = f"cannot delete the aborted capture {self.location}"
        try:
            if self._manifest_tried:
                key = self._store.key_of(self._path, MANIFEST_NAME)
                self._store.call(doing, "delete_object", Key=key)
            self._store.delete_keys(doing, list(dict.fromkeys(self._uploaded)))
        except StoreError as e:
            log.warning("%s; it stays invisible and will be swept", e)
