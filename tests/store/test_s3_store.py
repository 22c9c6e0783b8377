"""S3Store against a real S3 server (versitygw): round trips, crash safety, sweeping, and errors a user can act on.

Aspects: a capture reads back byte for byte with the layout and paths of the filesystem store; a capture is
invisible until its manifest exists, and a crashed one is swept only after the cutoff; abort leaves nothing;
two captures with one key in one second both survive; wrong credentials, a missing bucket and an unreachable
or hanging endpoint each raise StoreUnavailable saying what to check, never quoting the secret; corrupted
objects are refused on read.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import json
import os
import pathlib
import socket
import time
from typing import Any

import pytest
from versitygw import FAST, S3Server

from memorywatch.store import (
    CaptureKey,
    CaptureNotFound,
    FilesystemStore,
    StoreError,
    StoreUnavailable,
)
from memorywatch.store.s3 import S3Store
from support.gotargets import free_port

WHEN = dt.datetime(2026, 11, 25, 17, 45, 12, tzinfo=dt.UTC)
KEY = CaptureKey("shop", "checkout-leaks", "checkout-7d9f-abcde", WHEN, "heap-growth")
pytestmark = pytest.mark.timeout(60)


def _manifest(records: list[Any]) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "rule": "heap-growth",
        "summary": "test",
        "files": [r.as_json() for r in records],
    }


def _files(go_fixtures_dir: pathlib.Path) -> dict[str, bytes]:
    return {
        "heap.pb.gz": (go_fixtures_dir / "heap_later.pb.gz").read_bytes(),
        "heap-baseline.pb.gz": (go_fixtures_dir / "heap_base.pb.gz").read_bytes(),
        "goroutine-stacks.txt": (go_fixtures_dir / "goroutine_debug2.txt").read_bytes(),
    }


def _write_capture(store: Any, key: CaptureKey, files: dict[str, bytes]) -> str:
    pending = store.begin(key)
    records = [pending.write(name, data) for name, data in files.items()]
    return str(pending.commit(_manifest(records)))


def test_capture_round_trips_with_the_filesystem_layout(
    s3_server: S3Server, bucket: str, go_fixtures_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    store = s3_server.store(bucket, "prod/captures")
    store.check_writable()
    files = _files(go_fixtures_dir)

    pending = store.begin(KEY)
    records = [pending.write(name, data) for name, data in files.items()]
    assert store.list() == [], "a capture must stay invisible until its manifest is written"
    location = pending.commit(_manifest(records))

    fs = FilesystemStore(tmp_path / "fs")
    _write_capture(fs, KEY, files)
    (fs_ref,) = fs.list()
    (ref,) = store.list()
    assert ref.path == fs_ref.path == "shop/checkout-leaks/checkout-7d9f-abcde/20261125T174512Z-heap-growth"
    assert location == ref.location == f"s3://{bucket}/prod/captures/{ref.path}"
    assert store.location == f"s3://{bucket}/prod/captures"

    assert store.resolve("174512Z-heap-growth") == ref
    for name, data in files.items():
        assert store.read(ref, name) == data
    manifest = json.loads(store.read(ref, "manifest.json"))
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }
    # Exactly the files and the manifest: no claim marker, no probe object left behind.
    assert s3_server.keys(bucket) == sorted(
        f"prod/captures/{ref.path}/{n}" for n in [*files, "manifest.json"]
    )
    head = s3_server.admin_client().head_object(Bucket=bucket, Key=f"prod/captures/{ref.path}/heap.pb.gz")
    assert head["Metadata"]["sha256"] == hashlib.sha256(files["heap.pb.gz"]).hexdigest()

    with pytest.raises(CaptureNotFound, match=r"no file 'cpu\.pb\.gz'"):
        store.read(ref, "cpu.pb.gz")
    with pytest.raises(CaptureNotFound, match="no capture matches"):
        store.resolve("nothing-like-this")


def test_list_filters_by_prefix_and_sorts_oldest_first(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket, "")
    later = CaptureKey("b-ns", "mw", "pod", WHEN + dt.timedelta(minutes=5), "rule")
    earlier = CaptureKey("a-ns", "mw", "pod", WHEN, "rule")
    for key in (later, earlier):
        _write_capture(store, key, {"goroutine.txt": b"goroutine profile: total 1\n"})
    assert [r.path for r in store.list()] == [earlier.path, later.path]
    assert [r.path for r in store.list("b-ns/")] == [later.path]
    assert store.location == f"s3://{bucket}"


def test_same_key_in_the_same_second_keeps_every_capture(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    first = store.begin(KEY)
    second = store.begin(KEY)  # begun while the first is still being written
    first.write("goroutine.txt", b"first")
    second.write("goroutine.txt", b"second")
    first.commit({"n": 1})
    second.commit({"n": 2})
    third = _write_capture(store, KEY, {"goroutine.txt": b"third"})  # after both are complete

    # And writers racing from threads (as the engine's to_thread calls can) each get their own folder.
    def racer(i: int) -> str:
        return _write_capture(store, KEY, {"goroutine.txt": f"racer {i}".encode()})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        racers = list(pool.map(racer, range(4)))

    refs = store.list()
    assert len({r.path for r in refs}) == 7
    contents = sorted(store.read(r, "goroutine.txt") for r in refs)
    assert contents == sorted([b"first", b"second", b"third", *(f"racer {i}".encode() for i in range(4))])
    assert third in {r.location for r in refs} and set(racers) <= {r.location for r in refs}
    assert sum(r.path == KEY.path for r in refs) == 1, "the others take a suffix, like the filesystem store"


def _age_objects(server: S3Server, bucket: str, seconds: float) -> None:
    """Make every object look `seconds` old: versitygw's posix backend reports the file's mtime."""
    past = time.time() - seconds
    for path in (server.data_dir / bucket).rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def test_a_crashed_capture_is_invisible_and_swept_after_the_cutoff(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    _write_capture(store, CaptureKey("shop", "mw", "pod-a", WHEN, "heap-growth"), {"heap.pb.gz": b"complete"})
    crashed = store.begin(KEY)
    crashed.write("heap.pb.gz", b"partial profile")
    crashed.write("goroutine-stacks.txt", b"partial stacks")
    del crashed  # the process dies here: no commit, no abort

    assert [r.path for r in store.list()] == ["shop/mw/pod-a/20261125T174512Z-heap-growth"]
    with pytest.raises(CaptureNotFound):
        store.resolve("checkout-7d9f-abcde")

    store.check_writable()  # a restart: the partial is fresh, maybe still being written, so it stays
    assert any(KEY.path in k for k in s3_server.keys(bucket))

    _age_objects(s3_server, bucket, 2 * 3600)
    store.check_writable()  # a restart an hour later sweeps it
    keys = s3_server.keys(bucket)
    assert not any(KEY.path in k for k in keys), keys
    assert [r.path for r in store.list()] == ["shop/mw/pod-a/20261125T174512Z-heap-growth"]
    assert store.sweep_partials(older_than_seconds=0) == [], "complete captures are never swept"


def test_abort_deletes_what_was_uploaded(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    pending = store.begin(KEY)
    pending.write("heap.pb.gz", b"x" * 1000)
    pending.write("goroutine.txt", b"y")
    assert s3_server.keys(bucket), "the files were uploaded as they were written"
    pending.abort()
    assert s3_server.keys(bucket) == []
    pending.abort()  # idempotent


def test_refuses_file_names_that_would_escape_or_fake_the_manifest(s3_server: S3Server, bucket: str) -> None:
    pending = s3_server.store(bucket).begin(KEY)
    for name in ("../escape", "manifest.json", "a/b", ".capture-in-progress"):
        with pytest.raises(StoreError, match="refusing"):
            pending.write(name, b"x")
    pending.abort()


def test_a_corrupted_object_is_refused_on_read(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    _write_capture(store, KEY, {"heap.pb.gz": b"the real profile"})
    (ref,) = store.list()
    (s3_server.data_dir / bucket / "captures" / ref.path / "heap.pb.gz").write_bytes(b"bit rot!")
    with pytest.raises(StoreError, match="does not match the sha256"):
        store.read(ref, "heap.pb.gz")


@pytest.mark.parametrize("which", ["secret", "access key id"])
def test_wrong_credentials_say_to_check_the_secret_and_never_quote_it(
    s3_server: S3Server, bucket: str, which: str
) -> None:
    wrong_secret = "wrong-" + s3_server.secret_key[:10]
    if which == "secret":
        store = s3_server.store(bucket, secret_access_key=wrong_secret)
    else:
        store = s3_server.store(bucket, access_key_id="nobody-here", secret_access_key=wrong_secret)
    for attempt in (store.check_writable, store.list, lambda: store.begin(KEY)):
        with pytest.raises(StoreUnavailable) as e:
            attempt()
        message = str(e.value)
        assert "check the credentials Secret" in message
        assert bucket in message and s3_server.endpoint in message
        assert wrong_secret not in message and s3_server.secret_key not in message


def test_a_missing_bucket_is_named(s3_server: S3Server) -> None:
    store = s3_server.store("mw-no-such-bucket")
    for attempt in (store.check_writable, store.list, lambda: store.begin(KEY)):
        with pytest.raises(
            StoreUnavailable, match="the bucket 'mw-no-such-bucket' does not exist at http://127"
        ):
            attempt()


def test_an_endpoint_refusing_connections_is_unreachable_quickly(s3_server: S3Server) -> None:
    port = free_port()  # nobody listens there
    store = S3Store(
        "captures",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="k",
        secret_access_key="s3cr3t-x",
        **FAST,
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"S3 endpoint unreachable \(http://127.0.0.1:{port}") as e:
        store.check_writable()
    assert time.monotonic() - started < 5
    assert "s3cr3t-x" not in str(e.value)


def test_an_endpoint_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as hanging:  # accepts connections (backlog) but never says a word
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        port = hanging.getsockname()[1]
        store = S3Store(
            "captures",
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key_id="k",
            secret_access_key="s",
            connect_timeout_seconds=1,
            read_timeout_seconds=1,
            max_attempts=2,
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="S3 endpoint unreachable"):
            store.begin(KEY)
        assert time.monotonic() - started < 10


def test_invalid_settings_are_refused_up_front() -> None:
    with pytest.raises(StoreError, match="both"):
        S3Store("captures", access_key_id="only-the-id")
    with pytest.raises(StoreError, match="bucket"):
        S3Store("a/b")
    with pytest.raises(StoreUnavailable, match="cannot set up the S3 client"):
        S3Store("captures", endpoint_url="not a url", access_key_id="k", secret_access_key="s").list()


def test_delete_removes_exactly_one_capture_and_refuses_anything_but_a_capture_path(
    s3_server: S3Server, bucket: str, go_fixtures_dir: pathlib.Path
) -> None:
    """The MemoryCapture finalizer's delete: that capture's objects, not its neighbour's (same prefix)."""
    store = s3_server.store(bucket, "prod/captures")
    store.check_writable()
    files = _files(go_fixtures_dir)
    _write_capture(store, KEY, files)
    _write_capture(store, CaptureKey(KEY.namespace, KEY.memorywatch, KEY.pod, WHEN, "heap"), files)
    gone, neighbour = sorted(store.list(), key=lambda r: r.path, reverse=True)
    assert gone.path.endswith("-heap-growth") and neighbour.path.endswith("Z-heap")
    assert store.delete(gone) is True
    assert store.list() == [neighbour]
    assert all(not k.startswith(f"prod/captures/{gone.path}/") for k in s3_server.keys(bucket))
    assert store.delete(gone) is False, "already gone"
    for bad in ("shop", "shop/checkout-leaks", f"{neighbour.path}/..", "../x/y/z"):
        with pytest.raises(CaptureNotFound, match="not a capture path"):
            store.delete(dataclasses.replace(neighbour, path=bad))
    assert store.list() == [neighbour]
