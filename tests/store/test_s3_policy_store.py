"""build_store applies the S3 policy before a watch's bucket is touched, against a real S3 server (versitygw on
127.0.0.1): a loopback or metadata endpoint is refused with the reason and no fallback; listed, it works; a watch
without a credentials Secret gets the operator's own credentials only for a listed bucket."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
from versitygw import S3Server

from memorywatch.api.spec import parse_spec
from memorywatch.operator_main import build_store
from memorywatch.store import FilesystemStore, StoreUnavailable
from memorywatch.store.policy import S3Policy

pytestmark = pytest.mark.timeout(60)


def watch(endpoint: str, bucket: str, *, secret: bool = False) -> Any:
    s3: dict[str, Any] = {"bucket": bucket, "endpoint": endpoint, "region": "us-east-1"}
    if secret:
        s3["credentialsSecretRef"] = {"name": "s3-creds"}
    return parse_spec({"selector": {"matchLabels": {"app": "a"}}, "endpoint": {"port": 6060},
                       "capture": {"storage": {"s3": s3}}})  # fmt: skip


async def refused(spec: Any, policy: S3Policy, pvc: pathlib.Path) -> str:
    with pytest.raises(StoreUnavailable) as e:
        await build_store(None, spec, "shop", FilesystemStore(pvc), None, policy)
    return str(e.value)


async def test_internal_endpoints_are_refused_unless_listed(
    s3_server: S3Server, bucket: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    open_bucket = S3Policy(allowed_endpoints=("*",), operator_credential_buckets=(bucket,))
    for endpoint, why in ((s3_server.endpoint, "loopback"), ("http://169.254.169.254", "link-local"),
                          ("http://10.96.0.1:443", "private (cluster-internal)")):  # fmt: skip
        message = await refused(watch(endpoint, bucket), open_bucket, tmp_path)
        assert why in message and "store.s3Policy.allowedCIDRs" in message
    assert not os.listdir(tmp_path), "a refused watch does not fall back to the operator's volume"

    listed = S3Policy(allowed_endpoints=("127.0.0.1:*",), allowed_cidrs=("127.0.0.0/8",),
                      operator_credential_buckets=(bucket,))  # fmt: skip
    store = await build_store(
        None, watch(s3_server.endpoint, bucket), "shop", FilesystemStore(tmp_path), None, listed
    )
    store.check_writable()
    assert store.location.startswith(f"s3://{bucket}")


async def test_operator_credentials_only_for_listed_buckets(
    s3_server: S3Server, bucket: str, tmp_path: pathlib.Path
) -> None:
    policy = S3Policy(allowed_endpoints=("127.0.0.1:*",), allowed_cidrs=("127.0.0.0/8",))
    message = await refused(watch(s3_server.endpoint, bucket), policy, tmp_path)
    assert "credentialsSecretRef is required" in message and bucket in message
