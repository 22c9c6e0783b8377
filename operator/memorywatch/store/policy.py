"""Which S3 endpoints, buckets and credentials a MemoryWatch may use: the pure decision.

A watch names an S3 endpoint and bucket; the operator talks to it from inside the cluster, with the operator's
network position and possibly its own credentials. So, before a watch's S3 store is built:
- the endpoint's host must match the allow-list (Helm `store.s3Policy.allowedEndpoints`; no endpoint means AWS);
- every address the host resolves to must be public: loopback, link-local (cloud metadata at 169.254.169.254),
  private and shared (RFC 1918, 100.64/10, fc00::/7: where cluster Services and pods live), unspecified and
  multicast addresses are refused unless a listed CIDR (`store.s3Policy.allowedCIDRs`) contains them; in-cluster
  names (`*.svc`, `*.cluster.local`) are refused unless a CIDR is listed for what they resolve to;
- without a credentials Secret (the operator's own credentials) the bucket must be listed
  (`store.s3Policy.operatorCredentialBuckets`).
Pure: the caller passes a resolver (socket.getaddrinfo in the operator, a table in tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

Resolver = Callable[[str], Sequence[str]]
AWS_ENDPOINTS = ("*.amazonaws.com",)
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class S3PolicyError(ValueError):
    """The watch's S3 settings are refused; the message names the field, the reason and the Helm value to change."""


@dataclasses.dataclass(frozen=True)
class S3Policy:
    allowed_endpoints: tuple[str, ...] = AWS_ENDPOINTS
    allowed_cidrs: tuple[str, ...] = ()
    operator_credential_buckets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for cidr in self.allowed_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise ValueError(f"store.s3Policy.allowedCIDRs: {cidr!r} is not a CIDR: {e}") from None

    def _listed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in ipaddress.ip_network(c, strict=False) for c in self.allowed_cidrs)


def address_class(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public one, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "an unspecified, multicast or reserved address"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        return "a private (cluster-internal) address"
    return None


def host_of(endpoint: str) -> tuple[str, int | None]:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise S3PolicyError(
            f"spec.capture.storage.s3.endpoint {endpoint!r} must be an http(s) URL with a host"
        )
    try:
        port = parts.port
    except ValueError:
        raise S3PolicyError(f"spec.capture.storage.s3.endpoint {endpoint!r} has an invalid port") from None
    return parts.hostname.lower().rstrip("."), port


def check_endpoint(endpoint: str | None, policy: S3Policy, resolve: Resolver) -> list[str]:
    """The addresses `endpoint`'s host resolves to, every one checked: the store connects to these only (None:
    AWS, always allowed, nothing pinned). Raises S3PolicyError naming the reason when a watch may not use it."""
    if endpoint is None:
        return []
    field = "spec.capture.storage.s3.endpoint"
    host, port = host_of(endpoint)
    host_port = f"{host}:{port}" if port is not None else host
    if not any(
        fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(host_port, p) for p in policy.allowed_endpoints
    ):
        listed = ", ".join(policy.allowed_endpoints) or "nothing"
        raise S3PolicyError(
            f"{field} {endpoint}: host {host_port} is not in the Helm value store.s3Policy.allowedEndpoints "
            f"(it lists {listed}); ask the platform team to add it"
        )
    try:
        return check_addresses(host, policy.allowed_cidrs, resolve)
    except EgressRefused as e:
        raise S3PolicyError(
            f"{field} {endpoint}: {e}; refused unless the Helm value store.s3Policy.allowedCIDRs lists it"
        ) from None


class EgressRefused(ValueError):
    """A host the operator must not connect to for a tenant; the message says why (the caller adds the field)."""


def check_addresses(host: str, allowed_cidrs: Sequence[str], resolve: Resolver) -> list[str]:
    """The addresses `host` resolves to, if every one is public or inside `allowed_cidrs`; else EgressRefused.

    The one egress rule for tenant-given hosts (S3 endpoints, notification sinks): loopback, link-local
    (cloud metadata), private and shared (cluster Services and pods), unspecified, multicast and reserved
    addresses, and in-cluster names (*.svc, *.cluster.local), only when a listed CIDR allows them."""
    nets = [ipaddress.ip_network(c, strict=False) for c in allowed_cidrs]
    out = []
    for text in _addresses(host, resolve):
        address = ipaddress.ip_address(text.split("%", 1)[0])
        why = address_class(address)
        if why is not None and not any(address in n for n in nets if n.version == address.version):
            said = f"{host} is" if text == host else f"{host} resolves to {address},"
            raise EgressRefused(f"{said} {why}")
        out.append(str(address))
    if (host.endswith(".svc") or host.endswith(".cluster.local")) and not nets:
        raise EgressRefused(f"{host} is a cluster-internal name")
    return out


def _addresses(host: str, resolve: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass  # a name, not an address literal
    try:
        addresses = list(resolve(host))
    except OSError as e:
        raise EgressRefused(f"cannot resolve {host}: {e}") from None
    if not addresses:
        raise EgressRefused(f"{host} resolves to no address")
    return addresses


def check_credentials(bucket: str, has_secret: bool, policy: S3Policy) -> None:
    """A watch without a credentials Secret would use the operator's own credentials: only for listed buckets."""
    if has_secret or bucket in policy.operator_credential_buckets:
        return
    raise S3PolicyError(
        "spec.capture.storage.s3.credentialsSecretRef is required: the operator's own credentials are used only "
        f"for the buckets the Helm value store.s3Policy.operatorCredentialBuckets lists, and {bucket!r} is not one"
    )


def system_resolver(host: str) -> list[str]:
    """Every address `host` resolves to (what boto3 may connect to)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def add_s3_policy_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("S3 policy for MemoryWatches (docs/security.md#guardrails)")
    g.add_argument("--s3-allowed-endpoint", action="append", default=None,
                   help="a host (or host:port) glob a watch's S3 endpoint must match; repeatable "
                        f"(default: {', '.join(AWS_ENDPOINTS)})")  # fmt: skip
    g.add_argument("--s3-allowed-cidr", action="append", default=[],
                   help="a CIDR of non-public addresses a watch's S3 endpoint may resolve to; repeatable")  # fmt: skip
    g.add_argument("--s3-operator-credential-bucket", action="append", default=[],
                   help="a bucket a watch may use with the operator's own credentials; repeatable")  # fmt: skip


def policy_from_args(args: argparse.Namespace) -> S3Policy:
    endpoints = args.s3_allowed_endpoint if args.s3_allowed_endpoint is not None else list(AWS_ENDPOINTS)
    return S3Policy(
        allowed_endpoints=tuple(e for e in endpoints if e),
        allowed_cidrs=tuple(args.s3_allowed_cidr),
        operator_credential_buckets=tuple(args.s3_operator_credential_bucket),
    )
