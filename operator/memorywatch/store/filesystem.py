"""A capture store in a local directory (a laptop folder, or the operator's PVC), crash-safe by rename.

Files are written into a hidden sibling folder `.<name>.partial-<random>`; the manifest is written last,
everything is fsynced, then the folder is renamed into place. A crash at any point leaves either nothing
visible or a complete capture; stale partial folders are swept on start-up.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import time
from collections.abc import Mapping
from typing import Any

from memorywatch.store.base import (
    MANIFEST_NAME,
    CaptureKey,
    CaptureNotFound,
    CaptureRef,
    FileRecord,
    StoreError,
    StoreUnavailable,
    check_capture_path,
    resolve_ident,
    safe_segment,
)

PARTIAL_MARK = ".partial-"
STALE_PARTIAL_SECONDS = 3600.0
CAPTURE_DEPTH = 4  # <namespace>/<watch>/<pod>/<capture>/


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: pathlib.Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class FilesystemPendingCapture:
    """A capture folder under construction; see the module docstring for the crash-safety argument."""

    def __init__(self, final_dir: pathlib.Path) -> None:
        self._final = final_dir
        self._partial = final_dir.parent / f".{final_dir.name}{PARTIAL_MARK}{secrets.token_hex(4)}"
        self._done = False
        try:
            self._partial.mkdir(parents=True)
        except OSError as e:
            raise StoreUnavailable(
                f"cannot create a capture folder under {final_dir.parent}: {e.strerror}"
            ) from e

    @property
    def location(self) -> str:
        return self._final.as_uri()

    def write(self, name: str, data: bytes) -> FileRecord:
        if name != safe_segment(name) or name == MANIFEST_NAME:
            raise StoreError(f"refusing to write a capture file named {name!r}")
        try:
            _write_durably(self._partial / name, data)
        except OSError as e:
            raise StoreUnavailable(f"cannot write {name} into {self._partial}: {e.strerror}") from e
        return FileRecord.of(name, data)

    def commit(self, manifest: Mapping[str, Any]) -> str:
        body = json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"
        try:
            _write_durably(self._partial / MANIFEST_NAME, body)
            _fsync_dir(self._partial)
            final = self._final
            if final.exists():  # two breaches in the same second for the same rule: keep both
                final = final.with_name(f"{final.name}-{secrets.token_hex(2)}")
            os.rename(self._partial, final)
            _fsync_dir(final.parent)
        except OSError as e:
            self.abort()
            raise StoreUnavailable(
                f"cannot complete the capture in {self._final.parent}: {e.strerror}"
            ) from e
        self._done = True
        self._final = final
        return final.as_uri()

    def abort(self) -> None:
        if not self._done:
            shutil.rmtree(self._partial, ignore_errors=True)
            self._done = True


class FilesystemStore:
    """Captures under one root directory, laid out as `<namespace>/<memorywatch>/<pod>/<time>-<rule>/`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(root).expanduser().resolve()

    @property
    def location(self) -> str:
        return self.root.as_uri()

    def check_writable(self) -> None:
        """Create the root if needed, prove it is writable, and sweep partial captures left by a crash."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise StoreUnavailable(f"the capture store {self.root} is not writable: {e.strerror}") from e
        self.sweep_partials()

    def sweep_partials(self, *, older_than_seconds: float = STALE_PARTIAL_SECONDS) -> list[pathlib.Path]:
        """Remove partial capture folders a crash left behind (never visible to readers anyway)."""
        removed = []
        cutoff = time.time() - older_than_seconds
        for path in self.root.glob(f"*/*/*/.*{PARTIAL_MARK}*"):
            try:
                if path.is_dir() and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                continue
        return removed

    def begin(self, key: CaptureKey) -> FilesystemPendingCapture:
        return FilesystemPendingCapture(self.root / key.path)

    def list(self, prefix: str = "") -> list[CaptureRef]:
        """Complete captures (those with a manifest), oldest first."""
        if not self.root.is_dir():
            raise CaptureNotFound(f"there is no capture store at {self.root}")
        refs = []
        # Only the folders the prefix names are walked (a watch's sweep lists its own folder, not the volume).
        full = prefix.split("/")[:-1][:CAPTURE_DEPTH]
        if any(seg in ("", ".", "..") for seg in full):
            full = []
        base = self.root.joinpath(*full)
        pattern = "/".join(["*"] * (CAPTURE_DEPTH - len(full)) + [MANIFEST_NAME])
        for manifest in base.glob(pattern):
            folder = manifest.parent
            if folder.name.startswith("."):
                continue
            rel = folder.relative_to(self.root).as_posix()
            if rel.startswith(prefix):
                refs.append(CaptureRef(path=rel, location=folder.as_uri()))
        refs.sort(key=lambda r: (r.path.rsplit("/", 1)[-1], r.path))
        return refs

    def read(self, ref: CaptureRef, name: str) -> bytes:
        path = self.root / ref.path / name
        if name != safe_segment(name) or not path.is_file():
            raise CaptureNotFound(f"capture {ref.path} has no file {name!r}")
        return path.read_bytes()

    def resolve(self, ident: str) -> CaptureRef:
        return resolve_ident(self.list(), ident)

    def delete(self, ref: CaptureRef) -> bool:
        """Delete one capture folder: renamed to a hidden partial name first (readers never see half a capture,
        and a crash leaves only what `sweep_partials` removes), then removed."""
        check_capture_path(ref.path)
        folder = self.root / ref.path
        hidden = folder.with_name(f".{folder.name}{PARTIAL_MARK}deleted")
        try:
            os.rename(folder, hidden)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StoreUnavailable(f"cannot delete the capture {folder}: {e.strerror}") from e
        try:
            shutil.rmtree(hidden)
        except OSError as e:
            raise StoreUnavailable(
                f"cannot delete the capture {folder} (as {hidden.name}): {e.strerror}"
            ) from e
        return True
