"""The operator's capture volume with retention and quotas: before each capture starts, prune what the limits
say (store/retention.py decides) and refuse the capture when they still do not hold.

One `QuotaFilesystemStore` per operator; `for_watch(limits)` gives each MemoryWatch a view with its own lower
limits (`capture.retention`) over the same directory, lock and counters.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter

from memorywatch.api.units import UnitError, parse_duration, parse_quantity
from memorywatch.store.base import MANIFEST_NAME, CaptureKey, StoreUnavailable, safe_segment
from memorywatch.store.filesystem import FilesystemPendingCapture, FilesystemStore
from memorywatch.store.retention import Limits, Stored, WatchLimits, plan

log = logging.getLogger(__name__)

QUOTA_REFUSALS = Counter(
    "memorywatch_capture_quota_refusals_total",
    "Captures the operator's volume refused because a retention quota held after pruning.",
    ["reason"],
)
PRUNED = Counter("memorywatch_captures_pruned_total", "Captures pruned from the operator's volume.", ["why"])


class QuotaExceeded(StoreUnavailable):
    """A quota of the capture volume stops the capture; the message names the quota and the usage."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class _Shared:
    lock: threading.Lock
    per_watch: dict[str, WatchLimits]


class QuotaFilesystemStore(FilesystemStore):
    def __init__(
        self,
        root: str | os.PathLike[str],
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        watch_limits: WatchLimits | None = None,
        shared: _Shared | None = None,
    ) -> None:
        super().__init__(root)
        self.limits = limits
        self.clock = clock
        self.watch_limits = watch_limits or WatchLimits()
        self._shared = shared or _Shared(threading.Lock(), {})

    def for_watch(self, watch_limits: WatchLimits) -> QuotaFilesystemStore:
        """The same volume, with a watch's own (lower) limits applied to its captures."""
        return QuotaFilesystemStore(
            self.root, self.limits, clock=self.clock, watch_limits=watch_limits, shared=self._shared
        )

    def stored(self) -> list[Stored]:
        """Every complete capture on the volume, with its size and the time its manifest was written."""
        out = []
        for manifest in self.root.glob(f"*/*/*/*/{MANIFEST_NAME}"):
            folder = manifest.parent
            if folder.name.startswith("."):
                continue
            try:
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                when = manifest.stat().st_mtime
            except OSError:
                continue
            rel = folder.relative_to(self.root).as_posix()
            ns, mw = rel.split("/")[:2]
            out.append(Stored(rel, ns, f"{ns}/{mw}", when, size))
        return out

    def begin(self, key: CaptureKey) -> FilesystemPendingCapture:
        namespace = safe_segment(key.namespace)
        watch = f"{namespace}/{safe_segment(key.memorywatch)}"
        with self._shared.lock:
            self._shared.per_watch[watch] = self.watch_limits
            decision = plan(
                self.stored(),
                limits=self.limits,
                now=self.clock(),
                namespace=namespace,
                watch=watch,
                watch_limits=self._shared.per_watch,
            )
            for path in decision.prune:
                self._remove(self.root / path)
            if not decision.admitted:
                QUOTA_REFUSALS.labels(reason=decision.reason).inc()
                raise QuotaExceeded(decision.reason, decision.message)
            return super().begin(key)

    def _remove(self, folder: pathlib.Path) -> None:
        # Rename first, so a reader never sees a capture with half its files: the hidden name is a partial.
        hidden = folder.with_name(f".{folder.name}.partial-pruned")
        try:
            os.rename(folder, hidden)
        except OSError as e:
            log.warning("cannot prune capture %s: %s", folder, e)
            return
        shutil.rmtree(hidden, ignore_errors=True)
        PRUNED.labels(why="retention").inc()
        log.info("pruned capture %s (retention)", folder)


def _quantity(text: str) -> int | None:
    if text in ("", "0"):
        return None
    try:
        return int(parse_quantity(text))
    except UnitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> float | None:
    if text in ("", "0"):
        return None
    try:
        return parse_duration(text)
    except UnitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_retention_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("capture volume retention (docs/storage.md#retention-and-quotas)")
    g.add_argument("--store-max-age", type=_duration, default=None,
                   help="prune captures older than this, each watch's newest excepted (Helm store.retention.maxAge)")  # fmt: skip
    g.add_argument("--store-total-bytes", type=_quantity, default=None,
                   help="byte quota of the whole volume (Helm store.retention.totalBytes)")  # fmt: skip
    g.add_argument("--store-namespace-bytes", type=_quantity, default=None,
                   help="byte quota of one namespace's captures (Helm store.retention.namespaceBytes)")  # fmt: skip


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(
        max_age_seconds=args.store_max_age,
        total_bytes=args.store_total_bytes,
        namespace_bytes=args.store_namespace_bytes,
    )
