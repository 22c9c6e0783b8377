"""Where the local cluster keeps its state, and which ports it uses (all on 127.0.0.1)."""

from __future__ import annotations

import json
import os
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
    bins = dict(saved.binaries) if saved else {}
    bins.update(binaries or {})
    return Config(dir=str(directory), ports=ports, nodes=nodes, binaries=bins)
