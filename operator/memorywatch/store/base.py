"""The store interface and the capture naming rules shared by every backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Protocol

MANIFEST_NAME = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StoreError(Exception):
    """Something went wrong reading or writing a capture store."""


class StoreUnavailable(StoreError):
    """The store cannot be written at all (missing, not writable, full, or unreachable)."""


class CaptureNotFound(StoreError):
    """No capture matches what was asked for, or more than one does."""


def safe_segment(text: str, *, fallback: str = "unknown") -> str:
    """One path segment that is safe on every filesystem and in S3 keys (no `/`, no `..`)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:120] or fallback


def capture_time_segment(when: dt.datetime) -> str:
    """`20261125T174512Z`: sortable, colon-free UTC time used in capture folder names."""
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclasses.dataclass(frozen=True)
class CaptureKey:
    """Who and what a capture is about; its path is derived from these, each segment sanitised."""

    namespace: str
    memorywatch: str
    pod: str
    time: dt.datetime
    rule: str

    @property
    def path(self) -> str:
        return "/".join(
            (
                safe_segment(self.namespace),
                safe_segment(self.memorywatch),
                safe_segment(self.pod),
                f"{capture_time_segment(self.time)}-{safe_segment(self.rule)}",
            )
        )


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file of a capture as written: its size and sha256, for the manifest."""

    name: str
    size: int
    sha256: str

    @classmethod
    def of(cls, name: str, data: bytes) -> FileRecord:
        return cls(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclasses.dataclass(frozen=True)
class CaptureRef:
    """A complete capture found in a store: its relative path and where it lives (a URL)."""

    path: str
    location: str


class PendingCapture(Protocol):
    """A capture being written. Files first, `commit(manifest)` last; `abort()` leaves nothing behind."""

    @property
    def location(self) -> str: ...

    def write(self, name: str, data: bytes) -> FileRecord: ...

    def commit(self, manifest: Mapping[str, Any]) -> str: ...

    def abort(self) -> None: ...


class CaptureStore(Protocol):
    """Where captures live. Implementations must make a capture visible only once its manifest exists."""

    @property
    def location(self) -> str: ...

    def check_writable(self) -> None: ...

    def begin(self, key: CaptureKey) -> PendingCapture: ...

    def list(self, prefix: str = "") -> list[CaptureRef]: ...

    def read(self, ref: CaptureRef, name: str) -> bytes: ...

    def resolve(self, ident: str) -> CaptureRef: ...


class DeletableStore(CaptureStore, Protocol):
    """A store that can delete a whole capture (the MemoryCapture finalizer, docs/review.md)."""

    def delete(self, ref: CaptureRef) -> bool:
        """Delete every file of the capture at `ref.path`; False when there was nothing left to delete.
        Raises `StoreError` (the store could not be reached or refused)."""
        ...


def check_capture_path(path: str) -> None:
    """A capture path is exactly `<namespace>/<memorywatch>/<pod>/<time>-<rule>`, each a safe segment: anything
    else (`..`, a shorter prefix that would delete a whole namespace's captures) is refused."""
    parts = path.split("/")
    if len(parts) != 4 or any(p != safe_segment(p) or p in ("", ".", "..") for p in parts):
        raise CaptureNotFound(
            f"{path!r} is not a capture path (<namespace>/<memorywatch>/<pod>/<time>-<rule>)"
        )


def resolve_ident(refs: list[CaptureRef], ident: str) -> CaptureRef:
    """Find one capture by its full path, or by a unique suffix or substring of it (as `captures show` takes)."""
    ident = ident.strip("/")
    exact = [r for r in refs if r.path == ident]
    if exact:
        return exact[0]
    matches = [r for r in refs if r.path.endswith(ident)] or [r for r in refs if ident in r.path]
    if not matches:
        raise CaptureNotFound(
            f"no capture matches {ident!r}; `memorywatch captures list` shows what there is"
        )
    if len(matches) > 1:
        shown = ", ".join(m.path for m in matches[:5])
        raise CaptureNotFound(f"{ident!r} matches {len(matches)} captures ({shown}); give more of the path")
    return matches[0]
