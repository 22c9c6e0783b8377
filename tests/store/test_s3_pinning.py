"""A watch's S3 store connects only to the addresses the S3 policy checked, against a real S3 server (versitygw
on 127.0.0.1): a name that no longer resolves (or resolves elsewhere: DNS rebinding) is never looked up again.

The request still names the host: SigV4 signs the Host header, so a capture that round-trips proves the server
saw the name, not the address. If botocore's or urllib3's internals move, the round trip fails here."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from versitygw import S3Server

from memorywatch.api.spec import parse_spec
from memorywatch.operator_main import build_store
from memorywatch.store import CaptureKey, FilesystemStore, StoreUnavailable
from memorywatch.store.policy import S3Policy
from support.tls import issue, write_pem

pytestmark = pytest.mark.timeout(60)
KEY = CaptureKey(
    "shop", "checkout-leaks", "checkout-7d9f-abcde", dt.datetime(2026, 12, 2, tzinfo=dt.UTC), "heap-growth"
)
#: A name that never resolves (RFC 2606 reserves .invalid): any connection to it must use a pinned address.
UNRESOLVABLE = "s3.tenant.invalid"


def _round_trip(store: Any, s3_server: S3Server, bucket: str) -> None:
    """A capture written through `store` lands in the real bucket (not in a fallback) and reads back."""
    pending = store.begin(KEY)
    record = pending.write("goroutine-stacks.txt", b"goroutine 1 [running]:\n")
    pending.commit({"schemaVersion": 1, "rule": "heap-growth", "summary": "t", "files": [record.as_json()]})
    assert any(k.endswith("/manifest.json") for k in s3_server.keys(bucket)), s3_server.keys(bucket)
    (ref,) = store.list()
    assert store.read(ref, "goroutine-stacks.txt") == b"goroutine 1 [running]:\n"


def test_a_pinned_store_connects_to_the_checked_address_not_the_name(
    s3_server: S3Server, bucket: str
) -> None:
    store = s3_server.store(bucket, endpoint_url=f"http://{UNRESOLVABLE}:{s3_server.port}",
                            pinned_addresses=["127.0.0.1"])  # fmt: skip
    _round_trip(store, s3_server, bucket)


def test_the_addresses_are_tried_in_order(s3_server: S3Server, bucket: str) -> None:
    # 127.0.0.3 refuses the connection (nothing listens there); the next checked address answers.
    store = s3_server.store(bucket, endpoint_url=f"http://{UNRESOLVABLE}:{s3_server.port}",
                            pinned_addresses=["127.0.0.3", "127.0.0.1"])  # fmt: skip
    _round_trip(store, s3_server, bucket)


def test_the_endpoints_own_address_is_not_used_when_pinned_elsewhere(
    s3_server: S3Server, bucket: str
) -> None:
    store = s3_server.store(bucket, endpoint_url=s3_server.endpoint, pinned_addresses=["127.0.0.3"])
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.check_writable()
    _round_trip(s3_server.store(bucket), s3_server, bucket)  # the server is up: unpinned, the endpoint works


async def test_build_store_pins_what_the_policy_resolved(
    s3_server: S3Server, bucket: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy's DNS answer at check time is the only one used: after it, the name resolves to nothing at
    all (a real lookup of a .invalid name), as if its owner had changed the record."""
    answers: list[str] = []

    def dns_answers_once_fake(host: str) -> list[str]:  # a rebinding resolver cannot be made real here
        answers.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr("memorywatch.operator_main.system_resolver", dns_answers_once_fake)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    endpoint = f"http://{UNRESOLVABLE}:{s3_server.port}"
    spec = parse_spec({"selector": {"matchLabels": {"app": "a"}}, "endpoint": {"port": 6060},
                       "capture": {"storage": {"s3": {"bucket": bucket, "endpoint": endpoint,
                                                      "region": "us-east-1"}}}})  # fmt: skip
    policy = S3Policy(allowed_endpoints=("*.invalid:*",), allowed_cidrs=("127.0.0.0/8",),
                      operator_credential_buckets=(bucket,))  # fmt: skip
    store = await build_store(None, spec, "shop", FilesystemStore(tmp_path), None, policy)
    _round_trip(store, s3_server, bucket)
    assert answers == [UNRESOLVABLE], "resolved once, by the policy check"


def _tls_files(tmp: pathlib.Path, server_name: str) -> tuple[str, tuple[str, str]]:
    """A CA and a server certificate for `server_name` (and 127.0.0.1, for the test's own setup client)
    signed by it: (CA file, (certificate, key))."""
    ca = issue("memorywatch test CA", ca=True)
    ca_file, _ = write_pem(tmp, "ca", ca)
    return ca_file, write_pem(tmp, "server", issue(server_name, ca, dns_names=[server_name],
                                                   ip_addresses=["127.0.0.1"]))  # fmt: skip


@pytest.mark.parametrize("certified", [UNRESOLVABLE, "someone-else.invalid"])
def test_tls_to_a_pinned_address_checks_the_certificate_against_the_name(
    s3_server_factory: Callable[..., S3Server], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
    certified: str,
) -> None:  # fmt: skip
    """Over https the connection goes to the pinned address and TLS still verifies the endpoint's name: a
    certificate for that name is accepted, one for another name is refused, though both also name the
    pinned address (so the check is on the name, and it is not off)."""
    ca_file, pair = _tls_files(tmp_path, certified)
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_file)
    server = s3_server_factory(tls=pair, ca_file=ca_file)
    name = server.create_bucket()
    store = server.store(
        name, endpoint_url=f"https://{UNRESOLVABLE}:{server.port}", pinned_addresses=["127.0.0.1"]
    )
    if certified == UNRESOLVABLE:
        _round_trip(store, server, name)
    else:
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate|ssl|tls"):
            store.check_writable()
