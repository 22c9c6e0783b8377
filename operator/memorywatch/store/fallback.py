"""A store that writes to a primary (S3) and, when the primary is unavailable, puts the whole capture in a fallback.

The operator uses `FallbackStore(S3Store(...), FilesystemStore(pvc))`: an S3 outage must never lose a capture
silently nor fail it. Each capture tries the primary first; if the primary raises a `StoreError` at
`begin`, `write` or `commit`, what was begun there is aborted (best effort: without a manifest it is invisible
and swept later) and every file written so far is replayed into the fallback, whose manifest then records
`"storedIn": "fallback"`, the primary's location and its error. The files are kept only as references to the
caller's own `bytes`, so replaying costs no copy.

Errors: any `StoreError` from the primary sends the capture to the fallback (an unusual refusal must not
lose it either); `StoreUnavailable` only when the fallback failed too, with both causes in its message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from memorywatch.store.base import (
    CaptureKey,
    CaptureNotFound,
    CaptureRef,
    CaptureStore,
    FileRecord,
    PendingCapture,
    StoreError,
    StoreUnavailable,
    resolve_ident,
)

log = logging.getLogger(__name__)

STORED_IN_FALLBACK = "fallback"


class FallbackPendingCapture:
    """One capture: in the primary while it works, moved whole into the fallback at its first failure."""

    def __init__(self, primary: CaptureStore, fallback: CaptureStore, key: CaptureKey) -> None:
        self._primary = primary
        self._fallback = fallback
        self._key = key
        self._files: list[tuple[str, bytes]] = []
        self._primary_error: StoreError | None = None
        try:
            self._pending: PendingCapture = primary.begin(key)
        except StoreError as e:
            self._pending = self._switch(e, None)

    @property
    def location(self) -> str:
        return self._pending.location

    @property
    def stored_in(self) -> str:
        """ "primary" or "fallback": where this capture is going now."""
        return "primary" if self._primary_error is None else STORED_IN_FALLBACK

    @property
    def primary_error(self) -> StoreError | None:
        return self._primary_error

    def _switch(self, error: StoreError, begun: PendingCapture | None) -> PendingCapture:
        """Give up on the primary and replay every file written so far into a fresh fallback capture."""
        self._primary_error = error
        if begun is not None:
            begun.abort()
        log.warning(
            "capture store %s failed, writing the capture to %s instead: %s",
            self._primary.location,
            self._fallback.location,
            error,
        )
        try:
            pending = self._fallback.begin(self._key)
        except StoreError as e:
            raise self._both_failed(e) from e
        try:
            for name, data in self._files:
                pending.write(name, data)
        except StoreError as e:
            pending.abort()
            raise self._both_failed(e) from e
        return pending

    def _both_failed(self, fallback_error: StoreError) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self._primary_error}; and the fallback store {self._fallback.location} failed too: "
            f"{fallback_error}"
        )

    def write(self, name: str, data: bytes) -> FileRecord:
        if self._primary_error is None:
            try:
                record = self._pending.write(name, data)
            except StoreError as e:
                # Whatever the primary refused, the fallback gets its chance (it refuses bad names too).
                self._files.append((name, data))
                self._pending = self._switch(e, self._pending)  # replays every file, this one included
                return FileRecord.of(name, data)
        else:
            record = self._pending.write(name, data)
        self._files.append((name, data))
        return record

    def commit(self, manifest: Mapping[str, Any]) -> str:
        if self._primary_error is None:
            try:
                return self._pending.commit(manifest)
            except StoreError as e:
                self._pending = self._switch(e, self._pending)
        marked = dict(
            manifest,
            storedIn=STORED_IN_FALLBACK,
            primaryStore=self._primary.location,
            primaryError=str(self._primary_error),
        )
        try:
            return self._pending.commit(marked)
        except StoreError as e:
            raise self._both_failed(e) from e

    def abort(self) -> None:
        self._pending.abort()


class FallbackStore:
    """Writes go to `primary`, or wholly to `fallback` when the primary is unavailable; reads see both.

    `check_writable` raises only when the fallback cannot be written (then nothing is safe); a primary that
    fails the check is remembered in `primary_error` (for a condition or a metric) and captures still work.
    `list` propagates a primary outage rather than hiding the primary's captures.
    """

    def __init__(self, primary: CaptureStore, fallback: CaptureStore) -> None:
        self.primary = primary
        self.fallback = fallback
        self.primary_error: StoreError | None = None

    @property
    def location(self) -> str:
        return self.primary.location

    def check_writable(self) -> None:
        self.fallback.check_writable()
        try:
            self.primary.check_writable()
        except StoreError as e:
            self.primary_error = e
            log.warning(
                "capture store %s unavailable, captures go to %s until it is back: %s",
                self.primary.location,
                self.fallback.location,
                e,
            )
        else:
            self.primary_error = None

    def begin(self, key: CaptureKey) -> FallbackPendingCapture:
        return FallbackPendingCapture(self.primary, self.fallback, key)

    def list(self, prefix: str = "") -> list[CaptureRef]:
        """Captures from both stores, oldest first (a path may appear twice, with different locations)."""
        try:
            fallback_refs = self.fallback.list(prefix)
        except CaptureNotFound:  # a fallback directory that was never needed does not exist yet
            fallback_refs = []
        refs = [*self.primary.list(prefix), *fallback_refs]
        refs.sort(key=lambda r: (r.path.rsplit("/", 1)[-1], r.path, r.location))
        return refs

    def _owner(self, ref: CaptureRef) -> CaptureStore:
        fallback_root = self.fallback.location.rstrip("/") + "/"
        return self.fallback if ref.location.startswith(fallback_root) else self.primary

    def read(self, ref: CaptureRef, name: str) -> bytes:
        return self._owner(ref).read(ref, name)

    def resolve(self, ident: str) -> CaptureRef:
        return resolve_ident(self.list(), ident)

    def delete(self, ref: CaptureRef) -> bool:
        """Delete the capture from the store that holds it (by its location)."""
        owner = self._owner(ref)
        delete = getattr(owner, "delete", None)
        if delete is None:
            raise StoreError(f"the store {owner.location} cannot delete captures")
        return bool(delete(ref))
