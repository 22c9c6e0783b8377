"""Test certificates: a key pair and an X.509 certificate issued by a test CA (or self-signed), written as PEM."""

from __future__ import annotations

import datetime as dt
import ipaddress
import pathlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Pair = tuple[Any, x509.Certificate]


def issue(
    cn: str,
    issuer: Pair | None = None,
    *,
    ca: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> Pair:
    """A new P-256 key and a certificate for `cn` valid for a day, signed by `issuer` (self-signed when None),
    with the given DNS and IP subject alternative names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[1].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


def write_pem(directory: pathlib.Path, name: str, pair: Pair) -> tuple[str, str]:
    """`<name>.crt` and `<name>.key` in `directory`; answers their paths."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_bytes(pair[1].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pair[0].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return str(crt), str(key)
