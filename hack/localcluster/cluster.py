"""Lifecycle of the local cluster: `up`, `down`, `status`.

Everything lives in the cluster directory (see config.py): certificates, tokens, kubeconfigs, etcd data,
component logs (logs/<component>.log), pid files (run/<component>.pid), S3 data and credentials (s3.env),
and the pod runner's per-pod directories (pods/).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import procs
from .config import COMPONENTS, Config, cluster_dir, config_from_env

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

NODE_NAME = "mw-node-{i}"
# pods on node i get <net>.i.1, <net>.i.2, ... (kwok allocates from spec.podCIDR); <net> is 127.1 by default
NODE_CIDR = "{net}.{i}.0/24"
SERVICE_CIDR = "10.96.0.0/24"
TOKENS = {  # component -> (user, groups)
    "admin": ("memorywatch-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kwok": ("memorywatch-kwok", "system:masters"),
    "pod-runner": ("memorywatch-pod-runner", "system:masters"),
}


class ClusterError(Exception):
    pass


def log(msg: str) -> None:
    print(f"local-cluster: {msg}", file=sys.stderr, flush=True)


# ---- one-time material ---------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def ensure_pki(cfg: Config) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    pki = cfg.p("pki")
    if (pki / "apiserver.crt").exists() and (pki / "sa.pub").exists():
        ensure_front_proxy_pki(cfg)  # a cluster directory from before the aggregation layer has none
        return
    log(f"creating certificates and keys in {pki}")
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=3650)
    ca_key, ca = _new_ca("memorywatch-local-ca", now, later)
    ca_name = ca.subject
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(pki / "ca.key", _pem_key(ca_key))
    _write_private(pki / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    _write_private(pki / "apiserver.key", _pem_key(srv_key))
    _write_private(pki / "sa.key", _pem_key(sa_key))
    _write_private(
        pki / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    ensure_front_proxy_pki(cfg)
    # written last: its presence marks the PKI as complete
    _write_private(pki / "apiserver.crt", srv.public_bytes(serialization.Encoding.PEM))


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca(
    common_name: str, now: datetime.datetime, later: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca


#: The client certificate the kube-apiserver's aggregation layer presents to extension API servers (the
#: "front proxy"), and the only name they accept it under (`--requestheader-allowed-names`).
FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure_front_proxy_pki(cfg: Config) -> None:
    """The aggregation layer's own CA and client certificate (as kubeadm's front-proxy-ca), also in a cluster
    directory created before the API server was started with the aggregation flags (CI reuses one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pki = cfg.p("pki")
    if (pki / "front-proxy-client.crt").exists():
        return
    log(f"creating the front proxy's CA and client certificate in {pki}")
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=3650)
    ca_key, ca = _new_ca("memorywatch-local-front-proxy-ca", now, later)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FRONT_PROXY_CLIENT)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki / "front-proxy-ca.key", _pem_key(ca_key))
    _write_private(pki / "front-proxy-ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    _write_private(pki / "front-proxy-client.key", _pem_key(key))
    # written last: its presence marks the front proxy's PKI as complete
    _write_private(pki / "front-proxy-client.crt", cert.public_bytes(serialization.Encoding.PEM))


def tokens(cfg: Config) -> dict[str, str]:
    """component -> bearer token; created once (tokens.csv is the apiserver's --token-auth-file)."""
    store = cfg.p("tokens.json")
    data: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    changed = False
    for name in TOKENS:
        if name not in data:
            data[name] = secrets.token_hex(24)
            changed = True
    if changed or not cfg.p("tokens.csv").exists():
        _write_private(store, json.dumps(data, indent=2))
        lines = []
        for i, (name, (user, groups)) in enumerate(TOKENS.items()):
            lines.append(
                f'{data[name]},{user},uid-{i},"{groups}"' if groups else f"{data[name]},{user},uid-{i}"
            )
        _write_private(cfg.p("tokens.csv"), "\n".join(lines) + "\n")
    return data


def kubeconfig_text(server: str, ca_file: Path, user: str, token: str, namespace: str = "default") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "memorywatch-local",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "memorywatch-local",
                "context": {"cluster": "memorywatch-local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "memorywatch-local",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def ensure_kubeconfigs(cfg: Config, toks: dict[str, str]) -> None:
    for name, (user, _) in TOKENS.items():
        path = cfg.admin_kubeconfig if name == "admin" else cfg.p("kubeconfigs", f"{name}.kubeconfig")
        _write_private(path, kubeconfig_text(cfg.api_url, cfg.ca_file, user, toks[name]))


def ensure_s3_credentials(cfg: Config) -> dict[str, str]:
    f = cfg.p("s3-credentials.json")
    if f.exists():
        creds: dict[str, str] = json.loads(f.read_text())
    else:
        creds = {"access_key": "mw" + secrets.token_hex(8), "secret_key": secrets.token_hex(20)}
        _write_private(f, json.dumps(creds))
    env = {
        "MW_S3_ENDPOINT": cfg.s3_endpoint,
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    _write_private(cfg.p("s3.env"), "".join(f"{k}={v}\n" for k, v in env.items()))
    return creds


# kwok keeps its pod-IP pools in memory and marks an IP as used only when it plays a stage for that pod. A
# restarted kwok plays no stage for pods that are already Running, so it would hand their IPs to new pods
# (two processes, one address). This stage matches Running pods with an IP that do not yet carry this kwok
# process's epoch and writes the epoch into an annotation: kwok marks a pod's IP as used before it patches,
# so once every Running pod carries the epoch, no new pod can get a taken address. `up` waits for that after
# it (re)starts kwok (a fixed stage that patched nothing used to race with the first new pod).
KWOK_EPOCH_ANNOTATION = "kwok.localcluster.memorywatch.io/ip-epoch"
KWOK_NUDGE_ANNOTATION = "kwok.localcluster.memorywatch.io/nudge"


def reserve_ip_stage(epoch: str) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "memorywatch-pod-reserve-ip"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                    {"key": ".status.podIP", "operator": "Exists"},
                    {"key": f'.metadata.annotations["{KWOK_EPOCH_ANNOTATION}"]', "operator": "NotIn",
                     "values": [epoch]},
                ]
            },
            "next": {
                "patches": [{
                    "root": "metadata",
                    "type": "merge",
                    "template": f"annotations:\n  {KWOK_EPOCH_ANNOTATION}: {json.dumps(epoch)}\n",
                }]
            },
        },
    }  # fmt: skip


def ensure_kwok_config(cfg: Config, epoch: str | None = None) -> Path:
    """Check kwok's stages are built; with an epoch, write the config a new kwok process starts with."""
    stages_dir = Path(cfg.binaries["KWOK_STAGES"])
    docs = [yaml.safe_load(f.read_text()) for f in sorted(stages_dir.glob("*.yaml"))]
    if not any(d.get("metadata", {}).get("name") == "pod-ready" for d in docs):
        raise ClusterError(f"kwok stages missing in {stages_dir}; run hack/build-tools")
    if not (stages_dir / "crds" / "kwok.x-k8s.io_logs.yaml").exists():
        raise ClusterError(f"kwok CRDs missing in {stages_dir / 'crds'}; run hack/build-tools")
    path = cfg.p("kwok", "kwok.yaml")
    if epoch is None:
        return path
    docs.append(reserve_ip_stage(epoch))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def unreserved_pods(cfg: Config, epoch: str) -> list[tuple[str, str]]:
    """(namespace, name) of Running pods with an IP on this cluster's nodes that the current kwok has not marked."""
    from kubernetes import client

    nodes = {NODE_NAME.format(i=i) for i in range(cfg.nodes)}
    api = api_client(cfg)
    try:
        pods = client.CoreV1Api(api).list_pod_for_all_namespaces().items
    finally:
        api.close()
    return [
        (p.metadata.namespace, p.metadata.name) for p in pods
        if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp
        and not p.spec.host_network and p.spec.node_name in nodes
        and (p.metadata.annotations or {}).get(KWOK_EPOCH_ANNOTATION) != epoch
    ]  # fmt: skip


def ips_reserved(cfg: Config, epoch: str, nudge_every: float = 5.0) -> Callable[[], bool]:
    """A check for `wait_for`: every Running pod carries kwok's epoch. kwok skips the pods it lists before it
    holds their node's lease and does not always pick them up when it gets it (seen once in ten restarts: the
    stage never played); touching a pod makes a new event kwok handles, so pods still unmarked are touched."""
    from kubernetes import client

    next_nudge = [time.monotonic() + nudge_every]

    def check() -> bool:
        pending = unreserved_pods(cfg, epoch)
        if not pending:
            return True
        if time.monotonic() >= next_nudge[0]:
            next_nudge[0] = time.monotonic() + nudge_every
            api = api_client(cfg)
            try:
                core = client.CoreV1Api(api)
                body = {"metadata": {"annotations": {KWOK_NUDGE_ANNOTATION: str(time.time_ns())}}}
                for ns, name in pending:
                    core.patch_namespaced_pod(name, ns, body)
            finally:
                api.close()
            log(
                f"touched {len(pending)} pod(s) kwok has not marked yet: {', '.join('/'.join(p) for p in pending[:5])}"
            )
        return False

    return check


# ---- components ----------------------------------------------------------------------------------------


def component_argv(cfg: Config, name: str) -> list[str]:
    b, port, p = cfg.binaries, cfg.ports, cfg.p
    kc = lambda comp: str(p("kubeconfigs", f"{comp}.kubeconfig"))  # noqa: E731
    if name == "etcd":
        return [
            b["ETCD"],
            "--name=memorywatch",
            f"--data-dir={p('etcd')}",
            f"--listen-client-urls=http://127.0.0.1:{port['etcd']}",
            f"--advertise-client-urls=http://127.0.0.1:{port['etcd']}",
            f"--listen-peer-urls=http://127.0.0.1:{port['etcd_peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{port['etcd_peer']}",
            f"--initial-cluster=memorywatch=http://127.0.0.1:{port['etcd_peer']}",
            "--listen-metrics-urls=",
            "--quota-backend-bytes=2147483648",
            "--unsafe-no-fsync=true",  # a throwaway test cluster: durability is not worth the latency
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            b["KUBE_APISERVER"],
            f"--etcd-servers=http://127.0.0.1:{port['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port['apiserver']}",
            f"--tls-cert-file={p('pki', 'apiserver.crt')}",
            f"--tls-private-key-file={p('pki', 'apiserver.key')}",
            f"--client-ca-file={p('pki', 'ca.crt')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--token-auth-file={p('tokens.csv')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p('pki', 'sa.pub')}",
            f"--service-account-signing-key-file={p('pki', 'sa.key')}",
            "--endpoint-reconciler-type=none",
            # The aggregation layer (APIServices such as MemoryWatch's files.memorywatch.io): the front proxy's
            # client certificate and the headers that carry the user to the extension API server. Not
            # --enable-aggregator-routing: EndpointSlices refuse the pods' loopback addresses, so it would find no
            # endpoint; the API server dials the Service's ClusterIP (unrouted here) or an ExternalName Service's
            # name, which may be a pod's 127.x address (docs/local-cluster.md, "The aggregation layer").
            f"--requestheader-client-ca-file={p('pki', 'front-proxy-ca.crt')}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p('pki', 'front-proxy-client.crt')}",
            f"--proxy-client-key-file={p('pki', 'front-proxy-client.key')}",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-controller-manager":
        return [
            b["KUBE_CONTROLLER_MANAGER"],
            f"--kubeconfig={kc(name)}",
            f"--authentication-kubeconfig={kc(name)}",
            f"--authorization-kubeconfig={kc(name)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port['controller_manager']}",
            f"--service-account-private-key-file={p('pki', 'sa.key')}",
            f"--root-ca-file={p('pki', 'ca.crt')}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--leader-elect=false",
            "--enable-hostpath-provisioner=true",
            "--allocate-node-cidrs=false",
            "--concurrent-deployment-syncs=10",
            "--v=1",
        ]
    if name == "kube-scheduler":
        return [
            b["KUBE_SCHEDULER"],
            f"--kubeconfig={kc(name)}",
            f"--authentication-kubeconfig={kc(name)}",
            f"--authorization-kubeconfig={kc(name)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port['scheduler']}",
            "--leader-elect=false",
            "--v=1",
        ]
    if name == "kwok":
        return [
            b["KWOK"],
            f"--kubeconfig={kc(name)}",
            f"--config={p('kwok', 'kwok.yaml')}",
            "--manage-all-nodes=true",
            "--node-ip=127.0.0.1",
            f"--cidr={cfg.pod_network}.255.0/24",  # only for a node without spec.podCIDR; ours all have one
            f"--server-address=127.0.0.1:{port['kwok']}",
            # the nodes' kubelet endpoint: the API server reaches kwok here for `kubectl logs`/`port-forward`
            f"--node-port={port['kwok']}",
            "--enable-crds=Logs,PortForward",
            "--node-lease-duration-seconds=40",
        ]
    if name == "s3":
        return [b["VERSITYGW"], "--port", f"127.0.0.1:{port['s3']}", "--health", "/health", "posix",
                "--sidecar", str(p("s3", "meta")), str(p("s3", "data"))]  # fmt: skip
    if name == "pod-runner":
        return [sys.executable, "-m", "localcluster.runner", "--cluster-dir", cfg.dir]
    raise ValueError(name)


def component_env(cfg: Config, name: str) -> dict[str, str]:
    # Not inherited: credentials, and what the pod runner gives pod processes (`up` may run inside a pod; a
    # component carrying MW_POD_UID would be taken for a pod process by the runner's orphan cleanup).
    skip = ("KUBECONFIG", "AWS_", "ROOT_", "KUBERNETES_", "MW_POD_", "MW_MOUNT_", "MW_SERVICEACCOUNT_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env[procs.MARKER] = cfg.dir
    env["GOMAXPROCS"] = env.get("GOMAXPROCS", "2")
    if name == "s3":
        creds = json.loads(cfg.p("s3-credentials.json").read_text())
        env["ROOT_ACCESS_KEY"] = creds["access_key"]
        env["ROOT_SECRET_KEY"] = creds["secret_key"]
    if name == "pod-runner":
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        env["PYTHONUNBUFFERED"] = "1"
    return env


def component_pid(cfg: Config, name: str) -> int | None:
    pid = procs.read_pid(cfg.pid_file(name))
    return pid if procs.ours(pid, cfg.dir) else None


def start_component(cfg: Config, name: str) -> None:
    if name == "s3":
        cfg.p("s3", "data").mkdir(parents=True, exist_ok=True)
        cfg.p("s3", "meta").mkdir(parents=True, exist_ok=True)
    argv = component_argv(cfg, name)
    if not Path(argv[0]).exists():
        raise ClusterError(f"{name}: binary {argv[0]} is missing; run hack/build-tools")
    port_names = {"etcd": ["etcd", "etcd_peer"], "kube-apiserver": ["apiserver"],
                  "kube-controller-manager": ["controller_manager"], "kube-scheduler": ["scheduler"],
                  "kwok": ["kwok"], "s3": ["s3"]}.get(name, [])  # fmt: skip
    for pn in port_names:
        if port_in_use(cfg.ports[pn]):
            raise ClusterError(
                f"{name}: port 127.0.0.1:{cfg.ports[pn]} is already in use by another process; "
                f"stop it or choose another port with MW_{pn.upper()}_PORT"
            )
    log(f"starting {name} (log {cfg.log_file(name)})")
    procs.start(argv, log_file=cfg.log_file(name), pid_file=cfg.pid_file(name),
                env=component_env(cfg, name), cwd=cfg.path)  # fmt: skip


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _still_there(cfg: Config, name: str) -> bool:
    """A second look a moment later: one failed read of the pid file or /proc (seen once while the API server
    was starting) must not be taken for a dead component."""
    time.sleep(0.5)
    return component_pid(cfg, name) is not None


def wait_for(cfg: Config, name: str, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - anything not ready yet is retried until the deadline
            pass
        if name in COMPONENTS and not component_pid(cfg, name) and not _still_there(cfg, name):
            raise ClusterError(
                f"{name} exited while waiting for {what}; see {cfg.log_file(name)}:\n{tail(cfg.log_file(name))}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}; see {cfg.log_file(name)}:\n"
                f"{tail(cfg.log_file(name))}"
            )
        time.sleep(0.25)


# ---- health checks -------------------------------------------------------------------------------------


def _get(
    url: str, *, token: str | None = None, ca: Path | None = None, insecure: bool = False
) -> tuple[int, bytes]:
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=3, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def etcd_healthy(cfg: Config) -> bool:
    code, body = _get(f"http://127.0.0.1:{cfg.ports['etcd']}/health")
    return code == 200 and json.loads(body).get("health") == "true"


def apiserver_ready(cfg: Config, toks: dict[str, str]) -> bool:
    code, body = _get(f"{cfg.api_url}/readyz", token=toks["admin"], ca=cfg.ca_file)
    return code == 200 and body.strip() == b"ok"


def serving_healthz(port: int) -> bool:
    code, body = _get(f"https://127.0.0.1:{port}/healthz", insecure=True)
    return code == 200 and body.strip() == b"ok"


def kwok_healthy(cfg: Config) -> bool:
    code, _ = _get(f"http://127.0.0.1:{cfg.ports['kwok']}/healthz")
    return code == 200


def s3_healthy(cfg: Config) -> bool:
    code, _ = _get(f"{cfg.s3_endpoint}/health")
    return code == 200


def runner_ready(cfg: Config) -> bool:
    f = cfg.p("run", "pod-runner.ready")
    pid = component_pid(cfg, "pod-runner")
    return pid is not None and f.exists() and f.read_text().strip() == str(pid)


HEALTH: dict[str, Callable[[Config, dict[str, str]], bool]] = {
    "etcd": lambda c, t: etcd_healthy(c),
    "kube-apiserver": apiserver_ready,
    "kube-controller-manager": lambda c, t: serving_healthz(c.ports["controller_manager"]),
    "kube-scheduler": lambda c, t: serving_healthz(c.ports["scheduler"]),
    "kwok": lambda c, t: kwok_healthy(c),
    "s3": lambda c, t: s3_healthy(c),
    "pod-runner": lambda c, t: runner_ready(c),
}


# ---- API objects the cluster needs ---------------------------------------------------------------------


def api_client(cfg: Config):  # type: ignore[no-untyped-def]
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cfg.admin_kubeconfig))


def bootstrap_objects(cfg: Config) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = api_client(cfg)
    core = client.CoreV1Api(api)
    storage = client.StorageV1Api(api)

    def create(fn: Callable[..., object], body: dict[str, object]) -> None:
        try:
            fn(body=body)
        except ApiException as e:
            if e.status != 409:
                raise

    for i in range(cfg.nodes):
        name = NODE_NAME.format(i=i)
        create(core.create_node, {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok",
                           "node.memorywatch.dev/local": "true"},
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": NODE_CIDR.format(net=cfg.pod_network, i=i),
                     "podCIDRs": [NODE_CIDR.format(net=cfg.pod_network, i=i)]},
        })  # fmt: skip
    ext = client.ApiextensionsV1Api(api)
    for f in sorted((Path(cfg.binaries["KWOK_STAGES"]) / "crds").glob("*.yaml")):
        create(ext.create_custom_resource_definition, yaml.safe_load(f.read_text()))
    create(storage.create_storage_class, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard",
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    })  # fmt: skip
    api.close()


def delete_node_leases(cfg: Config) -> None:
    """A new kwok cannot take over the node leases a previous (dead) kwok held until they expire (40 s), and
    does not manage the nodes' pods until it holds them: delete stale leases before (re)starting kwok."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = api_client(cfg)
    coord = client.CoordinationV1Api(api)
    try:
        for i in range(cfg.nodes):
            try:
                coord.delete_namespaced_lease(NODE_NAME.format(i=i), "kube-node-lease")
            except ApiException as e:
                if e.status != 404:
                    raise
    finally:
        api.close()


def kubelet_endpoints_set(cfg: Config) -> bool:
    """Nodes initialised by kwok get daemonEndpoints.kubeletEndpoint.Port = --node-port; nodes of a cluster
    created before that flag was used are patched here (kwok's heartbeat would only do it minutes later)."""
    from kubernetes import client

    api = api_client(cfg)
    try:
        core = client.CoreV1Api(api)
        for n in core.list_node().items:
            ep = n.status.daemon_endpoints.kubelet_endpoint if n.status.daemon_endpoints else None
            if not ep or ep.port != cfg.ports["kwok"]:
                body = {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.ports["kwok"]}}}}
                core.patch_node_status(n.metadata.name, body)
        return True
    finally:
        api.close()


def cluster_ready(cfg: Config) -> bool:
    from kubernetes import client

    api = api_client(cfg)
    try:
        core = client.CoreV1Api(api)
        nodes = core.list_node().items
        ready = [
            n for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        ]  # fmt: skip
        if len(ready) < cfg.nodes:
            return False
        # kwok manages a node's pods only while it holds the node's lease
        coord = client.CoordinationV1Api(api)
        now = datetime.datetime.now(datetime.UTC)
        for i in range(cfg.nodes):
            lease = coord.read_namespaced_lease(NODE_NAME.format(i=i), "kube-node-lease")
            renewed = lease.spec.renew_time
            if renewed is None or (now - renewed).total_seconds() > (lease.spec.lease_duration_seconds or 40):
                return False
        core.read_namespaced_service_account("default", "default")
        return True
    finally:
        api.close()


# ---- commands ------------------------------------------------------------------------------------------


def up(binaries: dict[str, str]) -> Config:
    cfg = config_from_env(binaries)
    missing = [k for k in ("ETCD", "KUBE_APISERVER", "KUBE_CONTROLLER_MANAGER", "KUBE_SCHEDULER", "KWOK",
                           "VERSITYGW", "KWOK_STAGES") if not cfg.binaries.get(k)]  # fmt: skip
    if missing:
        raise ClusterError(
            f"binary paths not known: {missing}; run via hack/local-cluster, which builds them"
        )
    cfg.path.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "run", "pods"):
        cfg.p(sub).mkdir(exist_ok=True)
    cfg.save()
    ensure_pki(cfg)
    toks = tokens(cfg)
    ensure_kubeconfigs(cfg, toks)
    ensure_s3_credentials(cfg)
    ensure_kwok_config(cfg)  # fails early when the stages were never built
    kwok_epoch: str | None = None

    timeouts = {"etcd": 30, "kube-apiserver": 90, "kube-controller-manager": 60, "kube-scheduler": 60,
                "kwok": 30, "s3": 30, "pod-runner": 60}  # fmt: skip
    started: list[str] = []
    # etcd and the apiserver must be up before anything that talks to them.
    for name in ("etcd", "kube-apiserver"):
        if not component_pid(cfg, name):
            start_component(cfg, name)
            started.append(name)
        wait_for(cfg, name, lambda n=name: HEALTH[n](cfg, toks), timeouts[name], f"{name} to become healthy")
    bootstrap_objects(cfg)
    for name in ("kube-controller-manager", "kube-scheduler", "kwok", "s3", "pod-runner"):
        if not component_pid(cfg, name):
            if name == "kwok":
                delete_node_leases(cfg)
                kwok_epoch = f"{time.time_ns():x}"
                ensure_kwok_config(cfg, kwok_epoch)
            start_component(cfg, name)
            started.append(name)
    for name in ("kube-controller-manager", "kube-scheduler", "kwok", "s3", "pod-runner"):
        wait_for(cfg, name, lambda n=name: HEALTH[n](cfg, toks), timeouts[name], f"{name} to become healthy")
    wait_for(cfg, "kwok", lambda: kubelet_endpoints_set(cfg), 30,
             "kwok's address as the nodes' kubelet endpoint (kubectl logs/port-forward)")  # fmt: skip
    wait_for(cfg, "kwok", lambda: cluster_ready(cfg), 90,
             f"{cfg.nodes} Ready node(s) and the default ServiceAccount in namespace default "
             "(kwok marks nodes Ready; kube-controller-manager creates ServiceAccounts)")  # fmt: skip
    if kwok_epoch is not None:
        wait_for(cfg, "kwok", ips_reserved(cfg, kwok_epoch), 60,
                 "kwok to mark the IPs of the pods already running (so no new pod gets one of them)")  # fmt: skip
    if started:
        log(f"started {', '.join(started)}; cluster ready at {cfg.api_url}")
    else:
        log(f"already running; cluster ready at {cfg.api_url}")
    log(f"S3 endpoint {cfg.s3_endpoint} (credentials in {cfg.p('s3.env')}); admin kubeconfig:")
    return cfg


def down(purge: bool = False) -> None:
    directory = cluster_dir()
    cfg = Config.load(directory)
    if cfg is None:
        log(f"no cluster in {directory}; nothing to stop")
        return
    # The pod runner first: on SIGTERM it stops the pod processes (SIGTERM, then SIGKILL).
    for name in reversed(COMPONENTS):
        pid = component_pid(cfg, name)
        if pid:
            killed = procs.stop([pid], grace=15 if name == "pod-runner" else 10)
            log(f"stopped {name} (pid {pid}{', had to SIGKILL' if killed else ''})")
        cfg.pid_file(name).unlink(missing_ok=True)
    cfg.p("run", "pod-runner.ready").unlink(missing_ok=True)
    # Anything else that carries this cluster's marker (pod processes left by a crashed runner, their children).
    stragglers = procs.marked_pids(cfg.dir)
    if stragglers:
        log(f"stopping {len(stragglers)} leftover process(es): {stragglers}")
        procs.stop(stragglers, grace=5)
    left = procs.marked_pids(cfg.dir)
    if left:
        raise ClusterError(f"processes still running after down: {left}")
    if purge:
        shutil.rmtree(directory)
        log(f"removed {directory}")
    log("cluster stopped")


def status(as_json: bool = False) -> int:
    directory = cluster_dir()
    cfg = Config.load(directory)
    if cfg is None:
        if as_json:
            print(json.dumps({"dir": str(directory), "exists": False}))
        else:
            print(f"no cluster in {directory} (run: hack/local-cluster up)")
        return 1
    rows = []
    for name in COMPONENTS:
        pid = procs.read_pid(cfg.pid_file(name))
        rows.append({"component": name, "pid": pid, "alive": procs.ours(pid, cfg.dir),
                     "log": str(cfg.log_file(name))})  # fmt: skip
    pod_pids = [p for p in procs.marked_pids(cfg.dir) if p not in {r["pid"] for r in rows}]
    info = {
        "dir": cfg.dir,
        "exists": True,
        "api_server": cfg.api_url,
        "kubeconfig": str(cfg.admin_kubeconfig),
        "ca_file": str(cfg.ca_file),
        "s3_endpoint": cfg.s3_endpoint,
        "s3_env_file": str(cfg.p("s3.env")),
        "ports": cfg.ports,
        "pod_network": f"{cfg.pod_network}.0.0/16",
        "pods_dir": str(cfg.pods_dir),
        "components": rows,
        "other_processes": len(pod_pids),
    }
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print(f"cluster dir  {cfg.dir}")
        print(f"api server   {cfg.api_url}   kubeconfig {cfg.admin_kubeconfig}")
        print(f"s3 endpoint  {cfg.s3_endpoint}   credentials {cfg.p('s3.env')}")
        print(f"pod IPs      {cfg.pod_network}.<node>.<n> ({cfg.nodes} node(s))")
        print(f"{'COMPONENT':<24} {'PID':>8}  {'ALIVE':<5}  LOG")
        for r in rows:
            print(
                f"{r['component']:<24} {r['pid'] or '-':>8}  {'yes' if r['alive'] else 'no':<5}  {r['log']}"
            )
        print(f"pod processes and other marked processes: {len(pod_pids)} (logs under {cfg.pods_dir})")
    return 0 if all(r["alive"] for r in rows) else 3
