"""Presigned GET URLs for a capture's files (the capture-files API hands them to whoever may read the
MemoryCapture), against a real S3 server (versitygw): they fetch exactly the stored bytes with no credentials,
only the named key, and only until they expire."""

from __future__ import annotations

import time
import urllib.parse

import httpx
from versitygw import S3Server

PATH = "shop/checkout/checkout-0/20261201T100000Z-heap-growth"


def test_presigned_urls_fetch_the_stored_bytes_and_nothing_else(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    admin = s3_server.admin_client()
    data = bytes(range(256)) * 400
    admin.put_object(Bucket=bucket, Key=store.key_of(PATH, "heap.pb.gz"), Body=data)
    admin.put_object(Bucket=bucket, Key=store.key_of(PATH, "other.txt"), Body=b"other")
    urls = store.presign_get(PATH, ["heap.pb.gz"], 300)
    assert list(urls) == ["heap.pb.gz"]
    url = urls["heap.pb.gz"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=300" in url
    assert s3_server.secret_key not in url
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == data
    # The signature covers the key: the same query on another key is refused.
    parts = urllib.parse.urlsplit(url)
    other = parts._replace(path=parts.path.replace("heap.pb.gz", "other.txt")).geturl()
    assert httpx.get(other).status_code == 403


def test_presigned_urls_expire(s3_server: S3Server, bucket: str) -> None:
    store = s3_server.store(bucket)
    s3_server.admin_client().put_object(Bucket=bucket, Key=store.key_of(PATH, "heap.pb.gz"), Body=b"x")
    url = store.presign_get(PATH, ["heap.pb.gz"], 1)["heap.pb.gz"]
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403
