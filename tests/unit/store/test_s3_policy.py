"""S3 by policy: which endpoints, addresses and credentials a watch may use (a table resolver, no network)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

from memorywatch.store.policy import (
    S3Policy,
    S3PolicyError,
    add_s3_policy_arguments,
    check_credentials,
    check_endpoint,
    policy_from_args,
)

DNS = {
    "s3.eu-west-1.amazonaws.com": ["52.218.1.1"],
    "minio.example.com": ["52.95.110.1"],
    "minio.storage.svc.cluster.local": ["10.96.0.15"],
    "rebind.example.com": ["52.95.110.2", "169.254.169.254"],
    "v6.example.com": ["::ffff:127.0.0.1"],
}


def resolve(host: str) -> Sequence[str]:
    if host not in DNS:
        raise OSError(f"no such host {host}")
    return DNS[host]


OPEN = S3Policy(allowed_endpoints=("*",))


def refusal(endpoint: str, policy: S3Policy = OPEN) -> str:
    with pytest.raises(S3PolicyError) as e:
        check_endpoint(endpoint, policy, resolve)
    return str(e.value)


def test_aws_by_default() -> None:
    check_endpoint(None, S3Policy(), resolve)
    check_endpoint("https://s3.eu-west-1.amazonaws.com", S3Policy(), resolve)
    assert "store.s3Policy.allowedEndpoints" in refusal("https://minio.example.com", S3Policy())


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://169.254.169.254", "link-local"),
        ("http://127.0.0.1:9000", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.96.0.15", "private (cluster-internal)"),
        ("http://100.64.1.1", "private (cluster-internal)"),
        ("http://minio.storage.svc.cluster.local:9000", "private (cluster-internal)"),
        ("https://rebind.example.com", "link-local"),  # any address counts, not the first
        ("https://v6.example.com", "loopback"),  # IPv4-mapped IPv6
        ("http://0.0.0.0", "unspecified"),
    ],
)
def test_internal_addresses_are_refused_with_the_reason(endpoint: str, why: str) -> None:
    message = refusal(endpoint)
    assert (
        why in message
        and "store.s3Policy.allowedCIDRs" in message
        and "spec.capture.storage.s3.endpoint" in message
    )


def test_listed_cidrs_let_internal_endpoints_in() -> None:
    policy = S3Policy(allowed_endpoints=("*.svc.cluster.local:9000", "127.0.0.1:*"),
                      allowed_cidrs=("10.96.0.0/12", "127.0.0.0/8"))  # fmt: skip
    check_endpoint("http://minio.storage.svc.cluster.local:9000", policy, resolve)
    check_endpoint("http://127.0.0.1:30400", policy, resolve)
    assert "link-local" in refusal("http://169.254.169.254", S3Policy(("*",), ("10.0.0.0/8",)))
    assert "allowedEndpoints" in refusal("http://minio.storage.svc.cluster.local:9001", policy)


def test_public_endpoint_on_the_list_is_fine_and_unresolvable_is_refused() -> None:
    check_endpoint("https://minio.example.com", S3Policy(("minio.example.com",)), resolve)
    assert "cannot resolve" in refusal("https://nowhere.example.com")
    assert "must be an http(s) URL" in refusal("ftp://minio.example.com")


def test_operator_credentials_only_for_listed_buckets() -> None:
    policy = S3Policy(operator_credential_buckets=("team-captures",))
    check_credentials("team-captures", False, policy)
    check_credentials("anything", True, policy)
    with pytest.raises(S3PolicyError, match=r"credentialsSecretRef is required.*'secrets-of-others'"):
        check_credentials("secrets-of-others", False, policy)


def test_flags() -> None:
    p = argparse.ArgumentParser()
    add_s3_policy_arguments(p)
    assert policy_from_args(p.parse_args([])) == S3Policy()
    got = policy_from_args(p.parse_args(["--s3-allowed-endpoint", "a:1", "--s3-allowed-cidr", "10.0.0.0/8",
                                         "--s3-operator-credential-bucket", "b"]))  # fmt: skip
    assert got == S3Policy(("a:1",), ("10.0.0.0/8",), ("b",))
    with pytest.raises(ValueError, match="allowedCIDRs"):
        S3Policy(allowed_cidrs=("not-a-cidr",))
