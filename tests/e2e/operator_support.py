"""Helpers for the operator's end-to-end tests: install the chart with helm, create MemoryWatches, read what
the operator wrote (status, events, the PVC store, the S3 bucket)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from e2e_harness import CACHE, Cluster, exists, http_get, running_pods, wait_until

REPO = pathlib.Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "memorywatch.io", "v1alpha1", "memorywatches"
RELEASE = "mw"
QUICK_RULES = [
    {"name": "goroutine-leak", "kind": "GoroutineGrowth", "window": "40s", "minGrowth": "300"},
    {"name": "heap-growth", "kind": "HeapGrowth", "window": "40s", "minGrowth": "16Mi"},
    {"name": "finalizer-backlog", "kind": "FinalizerBacklog", "window": "40s", "minGrowth": "5000"},
    {"name": "non-heap-growth", "kind": "NonHeapGrowth", "window": "40s", "minGrowth": "16Mi"},
]


def tool(name: str) -> str:
    path = CACHE / "bin" / name
    assert path.exists(), f"{path} is missing: hack/build-tools should have built it"
    return str(path)


def helm(cluster: Cluster, *args: str, timeout: float = 300) -> str:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    proc = subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout


def upgrade_operator(cluster: Cluster, core: Any, namespace: str, *values: str) -> None:
    """`helm upgrade --reuse-values` of the release with `values` (`--set` style), then wait until the replacement
    operator pod is ready."""
    selector = "app.kubernetes.io/name=memorywatch"
    old = {p.metadata.name for p in running_pods(core, namespace, selector)}
    sets = [arg for v in values for arg in ("--set", v)]
    helm(cluster, "upgrade", RELEASE, str(REPO / "charts" / "memorywatch"), "-n", namespace, "--reuse-values",
         *sets, "--wait", "--timeout", "3m")  # fmt: skip

    def new_pod_ready() -> bool:
        pods = running_pods(core, namespace, selector)
        if len(pods) != 1 or pods[0].metadata.name in old:
            return False
        try:
            return http_get(f"http://{pods[0].status.pod_ip}:8080/readyz")[0] == 200
        except OSError:
            return False

    wait_for(new_pod_ready, 180, "the upgraded operator to be ready")


def token_kubeconfig(
    cluster: Cluster, out: pathlib.Path, user: str, namespace: str, token: str
) -> pathlib.Path:
    """A kubeconfig at `out` for the local API server that holds only `token` (as `user`, in `namespace`)."""
    out.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{cluster.info["api_server"]}", certificate-authority: "{cluster.info["ca_file"]}"}}
users:
- name: {user}
  user: {{token: "{token}"}}
contexts:
- name: {user}
  context: {{cluster: local, user: {user}, namespace: {namespace}}}
current-context: {user}
""")
    return out


CRD_NAMES = ("memorywatches.memorywatch.io", "memorycaptures.memorywatch.io")


def adopt_crds(cluster: Cluster, release: str, namespace: str) -> None:
    """Let `release` in `namespace` own the chart's CRDs (helm's documented adoption). Other suites apply them
    directly, and an earlier release keeps them (crds.keep) with its own name and namespace, which a new
    install refuses to import."""
    for crd in CRD_NAMES:
        if cluster.kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        cluster.kubectl("annotate", "crd", crd, f"meta.helm.sh/release-name={release}",
                        f"meta.helm.sh/release-namespace={namespace}", "--overwrite")  # fmt: skip
        cluster.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")


def new_namespace(core: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"memorywatch.dev/e2e": "true"}}})
    wait_until(
        lambda: exists(lambda: core.read_namespaced_service_account("default", name)),
        60,
        f"default SA in {name}",
    )
    return name


def memorywatch(
    name: str, app: str, *, rules: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": app}},
        "endpoint": {"port": 6060},
        "interval": "2s",
        "rules": rules if rules is not None else QUICK_RULES,
    }
    for key, value in spec.items():
        if isinstance(value, Mapping) and isinstance(body_spec.get(key), Mapping):
            body_spec[key] = {**body_spec[key], **value}
        else:
            body_spec[key] = value
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MemoryWatch",
        "metadata": {"name": name},
        "spec": body_spec,
    }


def get_mw(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)  # type: ignore[no-any-return]


def condition(mw: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (mw.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def events(core: Any, namespace: str, *, reason: str | None = None, kind: str | None = None) -> list[Any]:
    items = core.list_namespaced_event(namespace).items
    return [
        e
        for e in items
        if (reason is None or e.reason == reason) and (kind is None or e.involved_object.kind == kind)
    ]


def pvc_dir(core: Any, namespace: str) -> pathlib.Path:
    """The local directory behind the operator's capture PVC (a hostPath PV on this machine)."""
    claims = core.list_namespaced_persistent_volume_claim(namespace).items
    assert claims, f"no PVC in {namespace}"
    claim = claims[0]
    pv = core.read_persistent_volume(claim.spec.volume_name)
    path = pv.spec.host_path.path if pv.spec.host_path else pv.spec.local.path
    return pathlib.Path(path)


def go_tool_pprof_top(path: pathlib.Path) -> str:
    proc = subprocess.run(
        ["go", "tool", "pprof", "-top", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"go tool pprof could not open {path}:\n{proc.stderr}"
    return proc.stdout


def wait_for(
    cond: Callable[[], Any], timeout: float, what: str, explain: Callable[[], str] = lambda: ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:6000]
