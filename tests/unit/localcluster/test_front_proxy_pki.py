"""The local control plane's aggregation layer: `ensure_pki` gives a cluster directory from before it (CI reuses
~/.cache/memorywatch/cluster) the front proxy's CA and client certificate, leaves existing keys alone, and the
API server is started with the aggregation flags pointing at them."""

from __future__ import annotations

import pathlib
import sys

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "hack"))

from localcluster import cluster
from localcluster.config import DEFAULT_PORTS, Config


def test_an_existing_cluster_directory_gets_the_front_proxy_pki(tmp_path: pathlib.Path) -> None:
    cfg = Config(dir=str(tmp_path), ports=dict(DEFAULT_PORTS))
    cluster.ensure_pki(cfg)
    pki = tmp_path / "pki"
    # A directory from before the aggregation layer: the API server's PKI only.
    for name in (
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "front-proxy-client.crt",
        "front-proxy-client.key",
    ):
        (pki / name).unlink()
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    cluster.ensure_pki(cfg)
    assert {p.name: p.read_bytes() for p in pki.iterdir() if p.name in before} == before, (
        "nothing else is rewritten"
    )
    ca = x509.load_pem_x509_certificate((pki / "front-proxy-ca.crt").read_bytes())
    client = x509.load_pem_x509_certificate((pki / "front-proxy-client.crt").read_bytes())
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cluster.FRONT_PROXY_CLIENT
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Not the cluster CA: a client certificate of the cluster CA must not pass as the front proxy.
    assert ca.subject != x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()).subject
    assert all(
        oct((pki / n).stat().st_mode)[-3:] == "600" for n in ("front-proxy-ca.key", "front-proxy-client.key")
    )
    # A second run keeps them.
    kept = (pki / "front-proxy-client.crt").read_bytes()
    cluster.ensure_pki(cfg)
    assert (pki / "front-proxy-client.crt").read_bytes() == kept


def test_the_api_server_runs_the_aggregation_layer(tmp_path: pathlib.Path) -> None:
    cfg = Config(
        dir=str(tmp_path), ports=dict(DEFAULT_PORTS), binaries={"KUBE_APISERVER": "/bin/kube-apiserver"}
    )
    argv = cluster.component_argv(cfg, "kube-apiserver")
    pki = tmp_path / "pki"
    for flag in (
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
    ):
        assert flag in argv, flag
    # EndpointSlices refuse the pods' loopback addresses: aggregator routing would find no endpoint.
    assert not any(a.startswith("--enable-aggregator-routing") for a in argv)
