"""Where the local cluster keeps its state, and which ports it uses (all on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PORTS = {
    "etcd": 26379,
    "etcd_peer": 26380,
    "apiserver": 26443,
    "controller_manager": 26257,
    "scheduler": 26259,
    "kwok": 26250,
    "s3": 26900,
}
# Environment variable that overrides each port, e.g. MW_APISERVER_PORT=36443.
PORT_ENV = {name: f"MW_{name.upper()}_PORT" for name in DEFAULT_PORTS}

COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "s3",
    "pod-runner",
]


def cache_dir() -> Path:
    return Path(os.environ.get("MEMORYWATCH_CACHE") or Path.home() / ".cache" / "memorywatch")


def cluster_dir() -> Path:
    return Path(os.environ.get("MEMORYWATCH_CLUSTER_DIR") or cache_dir() / "cluster").absolute()


@dataclass
class Config:
    dir: str
    ports: dict[str, int]
    nodes: int = 2
    # pods on node i get IPs from <pod_network>.<i>.0/24; clusters side by side need different networks
    pod_network: str = "127.1"
    binaries: dict[str, str] = field(default_factory=dict)

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.dir)

    def p(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.p("kubeconfig")

    @property
    def ca_file(self) -> Path:
        return self.p("pki", "ca.crt")

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def log_file(self, component: str) -> Path:
        return self.p("logs", f"{component}.log")

    def pid_file(self, component: str) -> Path:
        return self.p("run", f"{component}.pid")

    @property
    def pods_dir(self) -> Path:
        return self.p("pods")

    # ---- persistence -------------------------------------------------------------------------------
    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.p("cluster.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.p("cluster.json"))

    @classmethod
    def load(cls, directory: Path) -> Config | None:
        f = directory / "cluster.json"
        if not f.exists():
            return None
        data = json.loads(f.read_text())
        return cls(**data)


def config_from_env(binaries: dict[str, str] | None = None) -> Config:
    """The configuration `up` should use: env overrides, then the saved one, then the defaults."""
    directory = cluster_dir()
    saved = Config.load(directory)
    ports = dict(saved.ports) if saved else dict(DEFAULT_PORTS)
    for name, env in PORT_ENV.items():
        if os.environ.get(env):
            ports[name] = int(os.environ[env])
    nodes = int(os.environ.get("MW_NODES") or (saved.nodes if saved else 2))
    if saved:
        pod_network = saved.pod_network  # the nodes' podCIDRs are immutable once created
    elif os.environ.get("MW_POD_NETWORK"):
        pod_network = os.environ["MW_POD_NETWORK"]
    elif directory == (cache_dir() / "cluster").absolute():
        pod_network = "127.1"
    else:  # another cluster directory: another 127.x, so pods of two clusters never share an address
        pod_network = f"127.{2 + int(hashlib.sha256(str(directory).encode()).hexdigest(), 16) % 250}"
    if not re.fullmatch(r"127\.(\d{1,3})", pod_network) or not 0 < int(pod_network.split(".")[1]) < 255:
        raise ValueError(f"MW_POD_NETWORK must look like 127.N with 0 < N < 255, not {pod_network!r}")
    bins = dict(saved.binaries) if saved else {}
    bins.update(binaries or {})
    return Config(dir=str(directory), ports=ports, nodes=nodes, pod_network=pod_network, binaries=bins)
