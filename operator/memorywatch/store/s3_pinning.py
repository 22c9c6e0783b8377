"""Connections of one boto3 client pinned to the addresses the S3 policy checked.

A watch's S3 endpoint is tenant input: `store.policy.check_endpoint` resolves its host and refuses internal
addresses, but boto3 would resolve the name again for every new connection, so a name whose DNS answer
changes after the check (DNS rebinding), or a bucket's virtual-hosted name (`bucket.endpoint-host`, resolved
on its own), could still reach the cloud metadata service or a cluster Service. Here every connection the
client opens goes to the checked addresses, tried in order; the request still names the host (Host header,
TLS server name and certificate check), so nothing else changes for the S3 server. Connections through an
HTTP(S) proxy set in the operator's environment go to the proxy as before and are not pinned: the proxy resolves
the name, and the chart's NetworkPolicy egress rules are the fence there.

This reaches into botocore's HTTP session (`client._endpoint.http_session`), whose pool classes are the
documented urllib3 extension point (`PoolManager.pool_classes_by_scheme`); urllib3 resolves the name it
connects to from `HTTPConnection._dns_host` alone. Both are pinned in constraints.txt, and
`tests/store/test_s3_pinning.py` fails if either moves.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)


class PinningUnsupported(RuntimeError):
    """botocore's HTTP session is not shaped as this module expects: refuse to run unpinned."""


def _pinned(base: type[Any], addresses: tuple[str, ...]) -> type[Any]:
    class Pinned(base):  # type: ignore[misc]
        def _new_conn(self) -> socket.socket:
            name: str = self._dns_host  # type: ignore[has-type]
            last: Exception | None = None
            try:
                for address in addresses:
                    self._dns_host = (
                        address  # what urllib3 connects to; `host` is read back only for messages
                    )
                    try:
                        sock: socket.socket = super()._new_conn()
                        return sock
                    except Exception as e:  # noqa: BLE001 - urllib3's own errors; the next address may answer
                        last = e
            finally:
                self._dns_host = name  # the Host header, TLS server name and certificate check use the name
            assert last is not None
            raise last

    Pinned.__name__ = Pinned.__qualname__ = f"Pinned{base.__name__}"
    return Pinned


def pin_client(client: Any, addresses: Sequence[str]) -> None:
    """Make every connection `client` (a boto3 S3 client) opens go to `addresses`, in order."""
    if not addresses:
        raise ValueError("no address to pin the S3 client to")
    pinned = tuple(addresses)
    try:
        session = client._endpoint.http_session
        classes = {
            "http": _pinned_pool(AWSHTTPConnectionPool, AWSHTTPConnection, pinned),
            "https": _pinned_pool(AWSHTTPSConnectionPool, AWSHTTPSConnection, pinned),
        }
        # Only the direct manager: a connection through an HTTP(S) proxy from the environment goes to the proxy,
        # which resolves the name itself (pinning it to the S3 address would bypass or break the proxy).
        session._manager.pool_classes_by_scheme = classes
        session._manager.clear()  # no connection opened before the pin survives
    except AttributeError as e:
        raise PinningUnsupported(f"cannot pin the S3 client's connections ({e})") from None


def _pinned_pool(pool: type[Any], connection: type[Any], addresses: tuple[str, ...]) -> type[Any]:
    return type(f"Pinned{pool.__name__}", (pool,), {"ConnectionCls": _pinned(connection, addresses)})
