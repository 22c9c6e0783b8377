"""The quota-keeping volume on a real filesystem: filled to its quota it prunes the oldest captures, keeps each
watch's newest, and refuses a capture (QuotaExceeded naming the quota, a metric) when it cannot make room."""

from __future__ import annotations

import datetime as dt
import os
import pathlib

import pytest

from memorywatch.store import CaptureKey
from memorywatch.store.quota import QUOTA_REFUSALS, QuotaExceeded, QuotaFilesystemStore
from memorywatch.store.retention import Limits, WatchLimits

T0 = 1_800_000_000.0


def capture(store: QuotaFilesystemStore, ns: str, mw: str, t: float, size: int) -> str:
    key = CaptureKey(ns, mw, "pod", dt.datetime.fromtimestamp(t, dt.UTC), "heap-growth")
    pending = store.begin(key)
    rec = pending.write("heap.pb.gz", b"x" * size)
    location = pending.commit({"files": [rec.as_json()]})
    folder = pathlib.Path(location.removeprefix("file://"))
    os.utime(folder / "manifest.json", (t, t))
    return folder.relative_to(store.root).as_posix()


def test_filled_to_quota_it_prunes_oldest_and_keeps_each_newest(tmp_path: pathlib.Path) -> None:
    now = [T0]
    store = QuotaFilesystemStore(tmp_path, Limits(namespace_bytes=3000), clock=lambda: now[0])
    a1 = capture(store, "shop", "a", T0, 1000)
    b1 = capture(store, "shop", "b", T0 + 1, 1000)
    a2 = capture(store, "shop", "a", T0 + 2, 1000)
    other = capture(store, "pay", "c", T0 + 3, 1000)
    # shop holds over 3000 bytes (profiles and manifests): before the next capture of shop starts, a1 (its oldest,
    # not a's newest) is pruned. The quota is checked as each capture starts.
    a3 = capture(store, "shop", "a", T0 + 4, 1000)
    left = {r.path for r in store.list()}
    assert a1 not in left and {b1, a2, a3, other} <= left
    assert not list(tmp_path.glob("*/*/*/.*")), "nothing half-pruned is left behind"


def test_refuses_when_only_newest_captures_remain(tmp_path: pathlib.Path) -> None:
    store = QuotaFilesystemStore(tmp_path, Limits(total_bytes=1500))
    a = capture(store, "shop", "a", T0, 1000)
    b = capture(store, "pay", "b", T0 + 1, 1000)
    before = QUOTA_REFUSALS.labels(reason="TotalQuota")._value.get()
    with pytest.raises(QuotaExceeded) as e:
        store.begin(CaptureKey("shop", "a", "pod", dt.datetime.fromtimestamp(T0 + 2, dt.UTC), "r"))
    assert e.value.reason == "TotalQuota" and "store.retention.totalBytes=1500" in str(e.value)
    assert QUOTA_REFUSALS.labels(reason="TotalQuota")._value.get() == before + 1
    assert {r.path for r in store.list()} == {a, b}, "each watch's newest capture is kept"


def test_age_and_a_watchs_own_limits(tmp_path: pathlib.Path) -> None:
    now = [T0 + 40 * 86400]
    store = QuotaFilesystemStore(tmp_path, Limits(max_age_seconds=30 * 86400), clock=lambda: now[0])
    old = capture(store, "shop", "a", T0, 10)
    newest_old = capture(store, "shop", "b", T0, 10)
    recent = capture(store, "shop", "a", now[0] - 3 * 86400, 10)
    view = store.for_watch(WatchLimits(max_age_seconds=86400))
    capture(view, "shop", "a", now[0], 10)
    left = {r.path for r in store.list()}
    assert old not in left and recent in left, "the 40-day-old one is pruned; the newest (then) is kept"
    capture(view, "shop", "a", now[0] + 60, 10)
    left = {r.path for r in store.list()}
    assert recent not in left, "a's own 1-day limit pruned its 3-day-old capture once it was not the newest"
    assert newest_old in left, "b's only capture is its newest: kept however old"
