"""Helpers for the end-to-end tests (imported by conftest.py and the tests; conftest puts this directory on
sys.path so `from e2e_harness import ...` works whatever pytest's import mode)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
TESTDATA = Path(__file__).resolve().parent / "testdata"
CACHE = Path(os.environ.get("MEMORYWATCH_CACHE") or Path.home() / ".cache" / "memorywatch")
DEFAULT_IMAGE = "memorywatch.test/gotarget:dev"


@dataclass
class Cluster:
    kubeconfig: Path
    dir: Path
    info: dict[str, Any]
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    kubectl_path: Path
    _clients: list[Any] = field(default_factory=list)

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient for the admin user (closed at the end of the session)."""
        from kubernetes import config

        c = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._clients.append(c)
        return c

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
                ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        proc = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, timeout=timeout, input=input, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.dir / "pods" / namespace / pod

    def runner_status(self, namespace: str, pod: str) -> dict[str, Any] | None:
        """The pod runner's view of a pod: pids, restarts, last exit codes, log files."""
        f = self.pod_dir(namespace, pod) / "status.json"
        try:
            return json.loads(f.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        f = self.pod_dir(namespace, pod) / f"{container}.log"
        return f.read_text(errors="replace") if f.exists() else ""

    def close(self) -> None:
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()


def build_operator_image() -> tuple[Path | None, str]:
    """`hack/build-image` (bases cached outside the checkout; the Dockerfile layers cached by buildah): the
    operator's OCI archive, or None and the build's error output."""
    proc = subprocess.run([str(HACK / "build-image")], capture_output=True, text=True, timeout=3600,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        return None, f"hack/build-image failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return REPO / proc.stdout.strip().splitlines()[-1], proc.stderr


def load_image(archive: Path) -> None:
    """`hack/local-cluster load-image`: pods naming the archive's image run from it, chrooted."""
    proc = run_hack("load-image", str(archive), timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"hack/local-cluster load-image {archive} failed:\n{proc.stderr[-4000:]}")


def runner_log(cluster: Cluster) -> str:
    f = cluster.dir / "logs" / "pod-runner.log"
    return f.read_text(errors="replace") if f.exists() else ""


def run_hack(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HACK / "local-cluster"), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def exists(fn: Callable[[], Any]) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        fn()
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `cond` until it returns something truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except AssertionError as e:
            last_exc = e
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout}s waiting for {what}" + (f": {last_exc}" if last_exc else "")
            )
        time.sleep(interval)


# ---- Go programs -------------------------------------------------------------------------------------------


def build_go_program(src_dir: Path, name: str) -> Path:
    """`go build` a standard-library-only program into CACHE/e2e-bin/<name>-<hash of source and Go>/<name>.
    Fails the test (never skips) with the compiler output when the build fails."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("the `go` command is not on PATH; it is needed to build the e2e Go targets")
    goversion = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout
    h = hashlib.sha256(goversion.encode())
    for f in sorted(src_dir.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(src_dir)).encode() + b"\0" + f.read_bytes())
    out = CACHE / "e2e-bin" / f"{name}-{h.hexdigest()[:16]}" / name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.{os.getpid()}")
    proc = subprocess.run(
        [go, "build", "-trimpath", "-o", str(tmp), "."],
        cwd=src_dir, capture_output=True, text=True, check=False,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"},
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(
            f"building {src_dir} failed (go build exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    tmp.replace(out)
    return out


# ---- Deployments of local binaries ---------------------------------------------------------------------

POD_ENV = [
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
]


def deployment_manifest(
    name: str,
    command: list[str] | str,
    *,
    args: list[str] | None = None,
    env: list[dict[str, Any]] | dict[str, str] | None = None,
    ports: list[int] | None = None,
    labels: dict[str, str] | None = None,
    replicas: int = 1,
    service_account_name: str | None = None,
    image: str = DEFAULT_IMAGE,
    container_name: str = "app",
    termination_grace_period_seconds: int = 5,
) -> dict[str, Any]:
    """A Deployment whose pods run `command` (an absolute path to a local binary) on the pod runner.
    The container always gets POD_IP, POD_NAME and POD_NAMESPACE from the downward API, so args can say
    `-listen=$(POD_IP):6060` (the default when args is None)."""
    labels = {"app": name, **(labels or {})}
    env_list = [{"name": k, "value": v} for k, v in env.items()] if isinstance(env, dict) else list(env or [])
    container: dict[str, Any] = {
        "name": container_name,
        "image": image,
        "command": [str(command)] if isinstance(command, (str, Path)) else [str(c) for c in command],
        "args": args if args is not None else ["-listen=$(POD_IP):6060"],
        "env": POD_ENV + env_list,
        "ports": [{"containerPort": p, "name": f"p{p}"} for p in (ports or [6060])],
    }
    pod_spec: dict[str, Any] = {"containers": [container],
                                "terminationGracePeriodSeconds": termination_grace_period_seconds}  # fmt: skip
    if service_account_name:
        pod_spec["serviceAccountName"] = service_account_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def running_pods(core: Any, namespace: str, selector: str) -> list[Any]:
    """Pods that are Running, Ready, have a pod IP and are not being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p for p in pods
        if p.status.phase == "Running" and p.status.pod_ip and p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]  # fmt: skip


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def serving_info(ip: str, port: int = 6060) -> dict[str, Any] | None:
    """/info of a pprofserver at ip:port, or None if nothing answers there."""
    try:
        code, body = http_get(f"http://{ip}:{port}/info")
    except OSError:
        return None
    return json.loads(body) if code == 200 else None


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def service_account_client(cluster: Cluster, namespace: str, name: str, rules: list[dict[str, Any]]) -> Any:
    """An ApiClient authenticated as a new ServiceAccount bound to a Role with exactly `rules`."""
    from kubernetes import client

    admin = cluster.api_client()
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    })  # fmt: skip
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    cfg = client.Configuration()
    cfg.host = cluster.info["api_server"]
    cfg.ssl_ca_cert = cluster.info["ca_file"]
    cfg.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(cfg)
    cluster._clients.append(api)
    return api
