"""The filesystem store: layout, manifest last, nothing partial visible, crash leftovers swept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pathlib
import sys

import pytest

from memorywatch.store import CaptureKey, CaptureNotFound, FilesystemStore, StoreUnavailable

WHEN = dt.datetime(2026, 11, 25, 17, 45, 12, tzinfo=dt.UTC)


def key(rule: str = "heap-growth", pod: str = "checkout-7d9f-x") -> CaptureKey:
    return CaptureKey(namespace="shop", memorywatch="checkout", pod=pod, time=WHEN, rule=rule)


def test_capture_layout_and_manifest(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    store.check_writable()
    pending = store.begin(key())
    rec = pending.write("heap.pb.gz", b"\x1f\x8bdata")
    location = pending.commit({"files": [rec.as_json()]})
    folder = tmp_path / "shop/checkout/checkout-7d9f-x/20261125T174512Z-heap-growth"
    assert location == folder.as_uri()
    assert (folder / "heap.pb.gz").read_bytes() == b"\x1f\x8bdata"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == rec.sha256 and rec.size == 6
    assert [r.path for r in store.list()] == ["shop/checkout/checkout-7d9f-x/20261125T174512Z-heap-growth"]


def test_uncommitted_capture_is_invisible_and_abort_leaves_nothing(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    store.check_writable()
    pending = store.begin(key())
    pending.write("heap.pb.gz", b"x")
    assert store.list() == []  # a crash here leaves no capture a reader would trust
    pending.abort()
    assert not any(p.name.startswith(".") for p in (tmp_path / "shop/checkout/checkout-7d9f-x").iterdir())


def test_stale_partials_are_swept_on_start(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    store.check_writable()
    pending = store.begin(key())
    pending.write("heap.pb.gz", b"x")  # the process "crashes" here: never committed
    partials = list(tmp_path.glob("*/*/*/.*partial-*"))
    assert len(partials) == 1
    old = 1_000_000_000
    os.utime(partials[0], (old, old))
    FilesystemStore(tmp_path).check_writable()
    assert list(tmp_path.glob("*/*/*/.*partial-*")) == []


def test_same_second_same_rule_keeps_both(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    for _ in range(2):
        p = store.begin(key())
        p.write("heap.pb.gz", b"x")
        p.commit({})
    assert len(store.list()) == 2


def test_hostile_names_cannot_escape_the_store(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    p = store.begin(CaptureKey("../..", "..", "a/b", WHEN, "../../etc"))
    p.commit({})
    (ref,) = store.list()
    assert ".." not in ref.path.split("/")
    assert (tmp_path / "store").resolve() in pathlib.Path(ref.location.removeprefix("file://")).parents


def test_resolve_by_unique_part(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    for rule in ("heap-growth", "goroutine-leak"):
        store.begin(key(rule)).commit({})
    assert store.resolve("goroutine-leak").path.endswith("-goroutine-leak")
    with pytest.raises(CaptureNotFound, match="matches 2 captures"):
        store.resolve("checkout")
    with pytest.raises(CaptureNotFound, match="no capture matches"):
        store.resolve("nothing-like-this")


def test_unwritable_store_is_reported(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="not writable"):
        FilesystemStore(blocker / "store").check_writable()


def test_delete_removes_one_capture_folder_and_only_a_capture_path(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path)
    store.check_writable()
    for rule in ("heap-growth", "heap"):
        pending = store.begin(key(rule))
        pending.write("heap.pb.gz", b"x")
        pending.commit({})
    gone, neighbour = sorted(store.list(), key=lambda r: r.path, reverse=True)
    assert store.delete(gone) is True
    assert store.list() == [neighbour]
    assert not list(tmp_path.glob("shop/checkout/checkout-7d9f-x/.*")), "nothing hidden left behind"
    assert store.delete(gone) is False, "already gone"
    for bad in ("shop", "shop/checkout/checkout-7d9f-x", "shop/checkout/../x", "shop/checkout/x/.."):
        with pytest.raises(CaptureNotFound, match="not a capture path"):
            store.delete(dataclasses.replace(neighbour, path=bad))
    assert store.list() == [neighbour]


_SCANNED: list[str] | None = None


def _record_scandir(event: str, args: tuple[object, ...]) -> None:
    if event == "os.scandir" and _SCANNED is not None:
        _SCANNED.append(str(args[0]))


def test_list_by_prefix_walks_only_the_named_folders(tmp_path: pathlib.Path) -> None:
    global _SCANNED
    store = FilesystemStore(tmp_path)
    for ns, watch, pod in [("shop", "checkout", "a"), ("shop", "cart", "b"), ("bank", "checkout", "c")]:
        k = CaptureKey(namespace=ns, memorywatch=watch, pod=pod, time=WHEN, rule="heap-growth")
        p = store.begin(k)
        p.commit({"files": [p.write("heap.pb.gz", b"x").as_json()]})

    def pods(prefix: str) -> list[str]:
        return sorted(r.path.split("/")[2] for r in store.list(prefix))

    sys.addaudithook(_record_scandir)  # os.scandir is audited: it shows which folders a listing walks
    _SCANNED = []
    try:
        assert pods("shop/checkout/") == ["a"]
        assert not [d for d in _SCANNED if "bank" in d or "cart" in d]  # a watch's sweep walks its own folder
        assert pods("shop/") == ["a", "b"]
        assert pods("shop/ch") == ["a"]  # a partial last segment still filters
        assert pods("shop/checkout/a/2026") == ["a"]
        assert not [d for d in _SCANNED if "bank" in d]
    finally:
        _SCANNED = None
    assert pods("shop/../bank/") == []  # dot segments fall back to a filtered walk of the whole store
    assert pods("nobody/") == []
    assert pods("") == ["a", "b", "c"]
