"""MemoryCaptures from the controller's side: created after a capture (and the status pointer to it), a failed
create that keeps the capture and is retried, the retention sweep, and the finalizer deleting files."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from typing import Any

from tests.unit.control.fakes import T0, FakeClock, FakeKube, SyntheticScraper
from tests.unit.control.harness import Running, body, controller, until

from memorywatch.api.capture_object import GIVE_UP_SECONDS, LABEL_WATCH_UID, Owner, Retry
from memorywatch.api.spec import WatchSpec
from memorywatch.control.capture_files import delete_capture_files
from memorywatch.control.capture_records import CaptureRecords
from memorywatch.control.posting import EventPoster
from memorywatch.engine.events import CaptureEvent
from memorywatch.store import CaptureKey, CaptureStore, FilesystemStore, StoreUnavailable

OWNER = Owner("ns", "mw", "mw-uid")


def write_capture(store: FilesystemStore, pod: str = "shop-1", second: int = 0) -> tuple[str, dict[str, Any]]:
    """A real capture in a real directory store: (its location, its manifest)."""
    when = dt.datetime(2026, 11, 25, 17, 45, second, tzinfo=dt.UTC)
    pending = store.begin(CaptureKey("ns", "mw", pod, when, "goroutines-a"))
    rec = pending.write("goroutine.txt", b"goroutine profile: total 3\n")
    manifest = {
        "pod": pod,
        "rule": "goroutines-a",
        "time": when.isoformat().replace("+00:00", "Z"),
        "summary": "goroutines grew",
        "breaches": [{"kind": "GoroutineGrowth"}],
        "files": [dict(rec.as_json(), format="text")],
        "errors": [],
    }
    return pending.commit(manifest), manifest


def event(location: str, manifest: dict[str, Any] | None, pod: str = "shop-1") -> CaptureEvent:
    return CaptureEvent(
        pod, T0, "goroutines-a", location, ("goroutine.txt",), "goroutines grew", manifest=manifest
    )


def records(kube: FakeKube, clock: FakeClock) -> CaptureRecords:
    return CaptureRecords(kube, EventPoster(kube, "ns", "mw", "mw-uid", clock), OWNER, clock)


async def test_the_controller_records_a_capture_and_points_to_it(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    c = controller(tmp_path, kube, clock, SyntheticScraper(clock, step_seconds=1))
    store = FilesystemStore(tmp_path / "captures")
    location, manifest = write_capture(store)
    async with Running(c, body(1)):
        await until(lambda: c.store.store is not None, "the store")
        c.queue.put_nowait(event(location, manifest))
        await until(lambda: kube.status.get("captures"), "the capture in status")
    (obj,) = kube.captures.values()
    name = obj["metadata"]["name"]
    assert kube.status["captures"][0]["memoryCapture"] == name
    assert "memoryCaptureError" not in kube.status["captures"][0]
    assert obj["spec"]["files"][0]["sha256"] == manifest["files"][0]["sha256"]
    assert obj["spec"]["storage"]["location"] == location
    assert obj["status"]["action"]["type"] == "None"


async def test_a_failed_create_keeps_the_capture_says_so_and_is_retried(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    store = FilesystemStore(tmp_path)
    location, manifest = write_capture(store)
    r = records(kube, clock)
    kube.captures_fail = True
    name, error = await r.record(event(location, manifest), None, store.location, "uid-1")
    assert error is not None and "503" in error
    (warning,) = kube.warnings("CaptureRecordFailed")
    assert location in warning.message and name in warning.message
    assert [ref.location for ref in store.list()] == [location], "the files stay"
    await r.set_action(name, "EvictPod", "Done", "evicted")

    kube.captures_fail = False
    created, deleted = await r.sweep(store)
    assert created == [name] and deleted == [] and not r.pending
    assert kube.captures[("ns", name)]["status"]["action"]["result"] == "Done"


async def test_a_body_the_api_server_refuses_is_not_retried(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    store = FilesystemStore(tmp_path)
    location, manifest = write_capture(store)
    r = records(kube, clock)
    kube.captures_invalid = True
    _, error = await r.record(event(location, manifest), None, store.location, None)
    assert error is not None and "422" in error and "not retried" in error
    assert not r.pending and kube.warnings("CaptureRecordFailed")
    assert [ref.location for ref in store.list()] == [location], "the files stay"


async def test_the_sweep_deletes_the_objects_whose_files_retention_pruned(tmp_path: pathlib.Path) -> None:
    clock, kube = FakeClock(), FakeKube()
    store = FilesystemStore(tmp_path)
    r = records(kube, clock)
    kept, kept_manifest = write_capture(store, second=1)
    pruned, pruned_manifest = write_capture(store, second=2)
    await r.record(event(kept, kept_manifest), None, store.location, None)
    await r.record(event(pruned, pruned_manifest), None, store.location, None)
    assert len(kube.captures) == 2
    assert store.delete(store.resolve(pruned.rsplit("/", 1)[-1])) is True  # what retention does

    assert await r.sweep(None) == ([], []), "an unavailable store: judge nothing"
    clock.advance(r.sweep_seconds)
    assert await r.sweep(store) == ([], []), "too young to judge"
    clock.advance(r.grace_seconds)
    created, deleted = await r.sweep(store)
    assert created == [] and len(deleted) == 1
    (left,) = kube.captures.values()
    assert left["spec"]["storage"]["location"] == kept
    assert left["metadata"]["labels"][LABEL_WATCH_UID] == "mw-uid"
    assert kube.events[-1].reason == "CapturesExpired"


class UnreachableStoreMock:
    """Stands in for an S3 endpoint that is down (a real one would cost boto3's retries per test): every call
    fails with the StoreUnavailable the S3 store raises then."""

    location = "s3://evidence/mw"

    def check_writable(self) -> None:
        raise StoreUnavailable("S3 endpoint unreachable")

    def delete(self, ref: Any) -> bool:
        raise StoreUnavailable("S3 endpoint unreachable")


async def test_the_finalizer_deletes_the_files_once_and_refuses_other_namespaces(
    tmp_path: pathlib.Path,
) -> None:
    clock, kube = FakeClock(), FakeKube()
    volume = FilesystemStore(tmp_path)
    location, manifest = write_capture(volume)
    r = records(kube, clock)
    name, _ = await r.record(event(location, manifest), None, volume.location, None)
    obj = dict(kube.captures[("ns", name)])

    async def no_s3(spec: WatchSpec, namespace: str) -> CaptureStore:
        raise AssertionError("a file capture needs no other store")

    elsewhere = dict(obj, metadata=dict(obj["metadata"], namespace="other"))
    args: dict[str, Any] = {
        "volume": volume,
        "make_store": no_s3,
        "events": kube,
        "retry": 0,
        "elapsed_seconds": 0,
    }
    assert await delete_capture_files(elsewhere, **args) is None
    assert volume.list() and kube.warnings("CaptureFilesKept")

    assert await delete_capture_files(obj, **args) is None
    assert volume.list() == []
    assert not os.listdir(tmp_path / "ns" / "mw" / "shop-1"), "the folder is gone, nothing hidden left"
    assert await delete_capture_files(obj, **args) is None, "already gone: nothing to wait for"


async def test_the_finalizer_retries_an_unreachable_store_then_gives_up(tmp_path: pathlib.Path) -> None:
    kube = FakeKube()
    path = "ns/mw/shop-1/20261125T174500Z-goroutines-a"
    obj = {
        "metadata": {"name": "c1", "namespace": "ns", "uid": "u"},
        "spec": {
            "storage": {"location": f"s3://evidence/mw/{path}", "s3": {"bucket": "evidence", "prefix": "mw"}}
        },
    }
    made: list[WatchSpec] = []

    async def make_store(spec: WatchSpec, namespace: str) -> CaptureStore:
        made.append(spec)
        return UnreachableStoreMock()  # type: ignore[return-value]

    args: dict[str, Any] = {"volume": FilesystemStore(tmp_path), "make_store": make_store, "events": kube}
    again = await delete_capture_files(obj, retry=2, elapsed_seconds=30, **args)
    assert isinstance(again, Retry) and again.delay_seconds == 20.0 and "unreachable" in again.message
    assert made[0].capture.s3 is not None and made[0].capture.s3.bucket == "evidence"
    assert kube.warnings("CaptureFilesNotDeleted")
    assert await delete_capture_files(obj, retry=30, elapsed_seconds=GIVE_UP_SECONDS, **args) is None
    assert "by hand" in kube.warnings("CaptureFilesKept")[-1].message
