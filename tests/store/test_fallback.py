"""An S3 outage never loses a capture: S3Store says so, and FallbackStore puts the whole capture on the PVC.

Aspects: versitygw killed mid-capture makes `commit` raise StoreUnavailable in bounded time, and the objects
already uploaded stay invisible after S3 comes back (then swept); through FallbackStore the same outage lands
the complete capture in the fallback directory, marked `storedIn: fallback` with S3's error; an S3 that is
down from the start sends captures straight to the fallback and is reported by `check_writable`; reading sees
both stores; when both fail the error names both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from versitygw import FAST, S3Server

from memorywatch.store import (
    CaptureKey,
    FallbackStore,
    FilesystemStore,
    StoreUnavailable,
)
from memorywatch.store.s3 import S3Store
from support.gotargets import free_port
from support.watch import memorywatch_cmd

WHEN = dt.datetime(2026, 11, 25, 17, 45, 12, tzinfo=dt.UTC)
KEY = CaptureKey("shop", "checkout-leaks", "checkout-7d9f-abcde", WHEN, "heap-growth")
OUTAGE_BOUND_SECONDS = 10
pytestmark = pytest.mark.timeout(60)


def _files(go_fixtures_dir: pathlib.Path) -> dict[str, bytes]:
    return {
        "heap.pb.gz": (go_fixtures_dir / "heap_later.pb.gz").read_bytes(),
        "heap-baseline.pb.gz": (go_fixtures_dir / "heap_base.pb.gz").read_bytes(),
        "goroutine-stacks.txt": (go_fixtures_dir / "goroutine_debug2.txt").read_bytes(),
    }


def test_s3_killed_mid_capture_fails_the_commit_and_leaves_nothing_visible(
    s3_server_factory: Callable[[], S3Server], go_fixtures_dir: pathlib.Path
) -> None:
    server = s3_server_factory()
    bucket = server.create_bucket()
    store = server.store(bucket)
    files = _files(go_fixtures_dir)

    pending = store.begin(KEY)
    pending.write("heap.pb.gz", files["heap.pb.gz"])
    server.stop(signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="S3 endpoint unreachable") as e:
        pending.write("goroutine-stacks.txt", files["goroutine-stacks.txt"])
    with pytest.raises(StoreUnavailable, match="S3 endpoint unreachable"):
        pending.commit({"files": []})
    pending.abort()  # S3 is down: abort cannot delete, and must not raise
    assert time.monotonic() - started < OUTAGE_BOUND_SECONDS
    assert server.secret_key not in str(e.value)

    server.start()  # S3 is back (same data, same port): the half-written capture is not a capture
    assert store.list() == []
    assert any(KEY.path in k for k in server.keys(bucket)), "the uploaded file is still there, unseen"
    assert store.sweep_partials(older_than_seconds=-60) == [KEY.path]  # a cutoff in the future: sweep now
    assert server.keys(bucket) == []


def test_through_fallback_store_the_capture_lands_complete_in_the_fallback(
    s3_server_factory: Callable[[], S3Server], go_fixtures_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    server = s3_server_factory()
    bucket = server.create_bucket()
    pvc = FilesystemStore(tmp_path / "pvc")
    store = FallbackStore(server.store(bucket), pvc)
    store.check_writable()
    assert store.primary_error is None
    files = _files(go_fixtures_dir)

    pending = store.begin(KEY)
    assert pending.location.startswith(f"s3://{bucket}/captures/")
    records = [pending.write(name, data) for name, data in list(files.items())[:2]]
    server.stop(signal.SIGKILL)  # S3 dies with two files uploaded and one to go
    started = time.monotonic()
    name, data = list(files.items())[2]
    records.append(pending.write(name, data))
    location = pending.commit({"rule": "heap-growth", "files": [r.as_json() for r in records]})
    assert time.monotonic() - started < OUTAGE_BOUND_SECONDS
    assert pending.stored_in == "fallback"

    (ref,) = pvc.list()
    assert location == ref.location and location.startswith(pvc.location)
    assert ref.path == KEY.path
    folder = pvc.root / ref.path
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "manifest.json"])
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["storedIn"] == "fallback"
    assert manifest["primaryStore"] == f"s3://{bucket}/captures"
    assert "S3 endpoint unreachable" in manifest["primaryError"]
    assert server.secret_key not in manifest["primaryError"]
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        n: hashlib.sha256(d).hexdigest() for n, d in files.items()
    }

    # What a user runs against the PVC's directory during the outage.
    listed = subprocess.run(
        [*memorywatch_cmd(), "captures", "list", str(pvc.root), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [KEY.path]

    server.start()  # back: S3 shows no capture (nothing half-written is visible), the PVC has it
    assert [r.location for r in store.list()] == [ref.location]
    assert store.read(ref, "heap.pb.gz") == files["heap.pb.gz"]


def test_s3_down_from_the_start_sends_captures_to_the_fallback(tmp_path: pathlib.Path) -> None:
    primary = S3Store(
        "captures",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s",
        **FAST,
    )
    store = FallbackStore(primary, FilesystemStore(tmp_path / "pvc"))
    store.check_writable()  # the fallback works, so the store is usable; the primary's trouble is kept
    assert isinstance(store.primary_error, StoreUnavailable)
    assert "S3 endpoint unreachable" in str(store.primary_error)

    pending = store.begin(KEY)
    assert pending.stored_in == "fallback"
    record = pending.write("goroutine.txt", b"goroutine profile: total 3\n")
    pending.commit({"files": [record.as_json()]})
    (ref,) = store.fallback.list()
    assert json.loads(store.fallback.read(ref, "manifest.json"))["storedIn"] == "fallback"
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.list()  # an outage is reported, not hidden behind the fallback's captures


def test_reading_sees_both_stores(s3_server: S3Server, bucket: str, tmp_path: pathlib.Path) -> None:
    pvc = FilesystemStore(tmp_path / "pvc")
    store = FallbackStore(s3_server.store(bucket), pvc)
    for target, key, body in (
        (store, KEY, b"in s3"),
        (pvc, CaptureKey("shop", "checkout-leaks", "checkout-other", WHEN, "heap-growth"), b"on the pvc"),
    ):
        pending = target.begin(key)
        pending.write("goroutine.txt", body)
        pending.commit({})
    refs = store.list()
    assert sorted(r.location.split(":")[0] for r in refs) == ["file", "s3"]
    assert store.read(store.resolve("checkout-7d9f-abcde"), "goroutine.txt") == b"in s3"
    assert store.read(store.resolve("checkout-other"), "goroutine.txt") == b"on the pvc"


def test_when_both_stores_fail_the_error_names_both(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the fallback directory should be")
    primary = S3Store(
        "captures",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s",
        **FAST,
    )
    store = FallbackStore(primary, FilesystemStore(blocker / "pvc"))
    with pytest.raises(StoreUnavailable) as e:
        store.begin(KEY)
    assert "S3 endpoint unreachable" in str(e.value) and "fallback store" in str(e.value)
    with pytest.raises(StoreUnavailable):
        store.check_writable()
