"""The partial-capture sweep on a real S3 server (versitygw): it deletes only what the operator wrote (its marker)
in folders it claimed, and reads a bounded number of pages; everything else in a bucket a tenant names survives."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from versitygw import S3Server

from memorywatch.store import CaptureKey
from memorywatch.store.s3 import CLAIM_NAME, WRITER_METADATA

WHEN = dt.datetime(2026, 11, 25, 17, 45, 12, tzinfo=dt.UTC)
pytestmark = pytest.mark.timeout(120)


def _age(server: S3Server, bucket: str, seconds: float) -> None:
    past = time.time() - seconds
    for path in (server.data_dir / bucket).rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def _crash(store: object, key: CaptureKey) -> None:
    pending = store.begin(key)  # type: ignore[attr-defined]
    pending.write("heap.pb.gz", b"partial")
    # the process dies: no commit, no abort


def test_objects_the_operator_did_not_write_survive_the_sweep(s3_server: S3Server, bucket: str) -> None:
    s3 = s3_server.admin_client()
    store = s3_server.store(bucket)
    key = CaptureKey("shop", "mw", "pod-a", WHEN, "heap-growth")
    _crash(store, key)
    base = f"captures/{key.path}"
    foreign = [
        "captures/team/app/data/2024/report.csv",  # a depth-5 "folder" without a manifest, not ours
        f"{base}/their-notes.txt",  # someone else's object inside our partial capture
        "captures/x/y/z/w/.capture-in-progress",  # a claim-shaped object we did not write
        "captures/x/y/z/w/data.bin",
    ]
    for k in foreign:
        s3.put_object(Bucket=bucket, Key=k, Body=b"keep me")
    _age(s3_server, bucket, 2 * 3600)

    assert store.sweep_partials() == [key.path]

    left = set(s3_server.keys(bucket))
    assert set(foreign) <= left, "nothing the operator did not write is deleted"
    assert f"{base}/heap.pb.gz" not in left and f"{base}/{CLAIM_NAME}" not in left
    head = s3.head_object(Bucket=bucket, Key=foreign[0])
    assert WRITER_METADATA not in (head.get("Metadata") or {})


def test_every_object_the_operator_writes_carries_its_marker(s3_server: S3Server, bucket: str) -> None:
    s3 = s3_server.admin_client()
    store = s3_server.store(bucket)
    pending = store.begin(CaptureKey("shop", "mw", "pod-a", WHEN, "heap-growth"))
    pending.write("heap.pb.gz", b"x")
    for k in s3_server.keys(bucket):
        assert s3.head_object(Bucket=bucket, Key=k)["Metadata"][WRITER_METADATA] == "memorywatch", k


def test_the_sweep_reads_a_bounded_number_of_pages(s3_server: S3Server, bucket: str) -> None:
    s3 = s3_server.admin_client()
    store = s3_server.store(bucket)
    # 30 foreign objects sort before our partial capture ("zz..."), so one page of 20 keys does not reach it.
    for i in range(30):
        s3.put_object(Bucket=bucket, Key=f"captures/a/b/c/d/{i:05d}", Body=b"")
    key = CaptureKey("zz", "mw", "pod", WHEN, "heap-growth")
    _crash(store, key)
    _age(s3_server, bucket, 2 * 3600)

    assert store.sweep_partials(max_pages=1, page_keys=20) == [], "the first page holds only foreign objects"
    assert store.sweep_partials(max_seconds=0.0) == [], "no time left: nothing is deleted"
    assert store.sweep_partials(max_pages=2, page_keys=20) == [key.path]
    left = s3_server.keys(bucket)
    assert len(left) == 30 and not any(k.startswith("captures/zz/") for k in left)
