"""The action guardrails through the real operator (the chart installed with helm, the operator image run by the pod
runner as the chart's default command): 20
MemoryWatches with an always-true Threshold, the action cooldown at its floor and overlapping selectors evict no
more pods than the per-namespace rate allows, never the single-replica workload, and never more of a workload than
the guards allow; then the chart's pause value stops every action without touching any MemoryWatch."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Cluster, deployment_manifest, http_get, runner_log, wait_until
from operator_support import GROUP, PLURAL, REPO, VERSION, adopt_crds, helm, new_namespace, tool

from memorywatch.actions.facts import pod_ready

pytestmark = pytest.mark.e2e
RELEASE = "guards"
# Deleting a MemoryWatch releases it in about 3 s with 20 deleted at once on 2 loaded cores (docs/operator.md,
# "Deleting a MemoryWatch"); the bound leaves CI room, and still fails if a watch waits for kopf's 2-minute timer.
RELEASE_SECONDS = 60
ALWAYS = [{"name": "always", "kind": "Threshold", "expression": "goroutines >= 0", "for": "0"}]


def _ready(ip: str) -> bool:
    try:
        return http_get(f"http://{ip}:8080/readyz")[0] == 200
    except OSError:
        return False


def _operator_pod(core: Any, ns: str) -> Any:
    pods = [p for p in core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=memorywatch").items
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None and p.status.pod_ip]  # fmt: skip
    return pods[0] if pods else None


def _wait_operator(core: Any, ns: str, not_uid: str | None = None) -> Any:
    def ok() -> Any:
        pod = _operator_pod(core, ns)
        return pod if pod and pod.metadata.uid != not_uid and _ready(pod.status.pod_ip) else None

    return wait_until(ok, 180, "the operator to be ready", interval=2)


def release_all(custom: Any, namespace: str | None = None) -> None:
    """Delete the MemoryWatches (of `namespace`, or all) and fail naming those not released in time."""

    def listed() -> list[dict[str, Any]]:
        if namespace is None:
            return list(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"])
        return list(custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"])

    for mw in listed():
        with contextlib.suppress(Exception):
            custom.delete_namespaced_custom_object(GROUP, VERSION, mw["metadata"]["namespace"], PLURAL,
                                                   mw["metadata"]["name"])  # fmt: skip
    deadline = time.monotonic() + RELEASE_SECONDS
    while (left := listed()) and time.monotonic() < deadline:
        time.sleep(0.5)
    held = {
        f"{m['metadata']['namespace']}/{m['metadata']['name']}": m["metadata"].get("finalizers") for m in left
    }
    assert not held, f"MemoryWatches not released {RELEASE_SECONDS}s after their deletion: {held}"


@pytest.fixture
def guarded_operator(
    cluster: Cluster, operator_image: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[tuple[str, Any]]:
    from kubernetes import client

    api = cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for release in json.loads(helm(cluster, "list", "-A", "-o", "json")):
        if release["name"] in (RELEASE, "mw"):
            pytest.fail(
                f"release {release['name']} is installed in {release['namespace']}: run this file alone"
            )
    ns = new_namespace(core, "mw-guards")
    adopt_crds(cluster, RELEASE, ns)
    values = tmp_path / "values.yaml"
    values.write_text("""
actions:
  evict: {enabled: true}
  rateLimit: {window: 10m, cluster: 100, perNamespace: 3}
# Any endpoint host is allowed, so the address check is what refuses (the allow-list has its unit tests).
store: {persistence: {enabled: false}, s3Policy: {allowedEndpoints: ["*"]}}
logging: {format: text, level: info}
fileServer: {enabled: false}  # unreachable here (docs/local-cluster.md, "The aggregation layer")
extraEnv:
  - name: POD_IP
    valueFrom: {fieldRef: {fieldPath: status.podIP}}
extraArgs: ["--bind-address=$(POD_IP)"]
""")
    helm(cluster, "install", RELEASE, str(REPO / "charts" / "memorywatch"), "-n", ns, "-f", str(values),
         "--wait", "--timeout", "3m")  # fmt: skip
    _wait_operator(core, ns)
    # The chart's default image and command: the pod runner ran the image's entrypoint chrooted, as 65532.
    chroot = [
        line for line in runner_log(cluster).splitlines() if f"pod {ns}/" in line and " chroot " in line
    ]
    assert chroot and " as uid 65532 gid 65532, read-only root" in chroot[-1], runner_log(cluster)[-3000:]
    try:
        yield ns, values
    finally:
        try:
            release_all(custom)  # while the operator runs: it holds their finalizers
        finally:
            env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
            subprocess.run([tool("helm"), "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "2m"], env=env,
                           check=False, timeout=180)  # fmt: skip
            core.delete_namespace(ns)


class Sampler:
    """Every 200 ms: the fewest ready pods each app had, every pod uid seen (by app), and those seen terminating."""

    def __init__(self, core: Any, namespace: str, apps: list[str]) -> None:
        self.core, self.namespace = core, namespace
        self.least = {a: 10**6 for a in apps}
        self.terminated: dict[str, str] = {}
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                pods = self.core.list_namespaced_pod(self.namespace).items
                for app in self.least:
                    n = sum(1 for p in pods if (p.metadata.labels or {}).get("app") == app and pod_ready(p))
                    self.least[app] = min(self.least[app], n)
                for p in pods:
                    self.seen[p.metadata.uid] = (p.metadata.labels or {}).get("app", "?")
                    if p.metadata.deletion_timestamp is not None:
                        self.terminated[p.metadata.uid] = (p.metadata.labels or {}).get("app", "?")
            self._stop.wait(0.2)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def gone(self) -> dict[str, str]:
        """Pods seen that no longer exist, or were seen terminating (only evictions delete pods here)."""
        now = {p.metadata.uid for p in self.core.list_namespaced_pod(self.namespace).items
               if p.metadata.deletion_timestamp is None}  # fmt: skip
        return {uid: app for uid, app in self.seen.items() if uid not in now} | self.terminated


def _results(custom: Any, namespace: str) -> list[str]:
    out = []
    for mw in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        out += [a.get("result", "") for a in (mw.get("status") or {}).get("lastActions") or []]
    return out


def test_twenty_watches_through_the_operator_respect_rate_and_replicas_and_pause_stops_all(
    cluster: Cluster, guarded_operator: tuple[str, Any], pprofserver: Path
) -> None:
    from kubernetes import client

    op_ns, values = guarded_operator
    api = cluster.api_client()
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = new_namespace(core, "guarded")
    try:
        for app, n in (("api", 2), ("web", 4), ("solo", 1)):
            apps.create_namespaced_deployment(ns, deployment_manifest(app, str(pprofserver), replicas=n,
                                                                      labels={"tier": "shop"}))  # fmt: skip
        for app, n in (("api", 2), ("web", 4), ("solo", 1)):
            wait_until(lambda a=app, k=n: sum(pod_ready(p) for p in core.list_namespaced_pod(  # type: ignore[misc]
                ns, label_selector=f"app={a}").items) == k, 120, f"{n} ready pods of {app}")  # fmt: skip
        solo_uid = core.list_namespaced_pod(ns, label_selector="app=solo").items[0].metadata.uid
        selectors = [
            {"matchLabels": {"tier": "shop"}},
            {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["shop"]},
                                  {"key": "canary", "operator": "DoesNotExist"}]},
        ]  # fmt: skip
        sampler = Sampler(core, ns, ["api", "web", "solo"]).start()
        for i in range(20):
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemoryWatch", "metadata": {"name": f"w{i:02d}"},
                "spec": {"selector": selectors[i % 3], "endpoint": {"port": 6060, "metricsPath": ""}, "interval": "1s", "rules": ALWAYS,
                         "capture": {"cooldown": "5s", "profiles": ["heap"]},
                         "action": {"type": "EvictPod", "cooldown": "1m"}},
            })  # fmt: skip

        # Many decisions, a few actions: wait until watches report refusals by the rate or the replicas.
        wait_until(lambda: {"NamespaceRateLimited", "BelowMinReplicas"} <= set(_results(custom, ns)), 240,
                   "refusals by the namespace rate limit and by minReplicas", interval=3)  # fmt: skip
        time.sleep(20)
        sampler.stop()

        evicted = sampler.gone()
        results = _results(custom, ns)
        summary = {r: results.count(r) for r in set(results)}
        assert 1 <= len(evicted) <= 3, f"evictions {evicted}; actions in status: {summary}"
        assert "solo" not in evicted.values() and sampler.least["solo"] == 1, (
            "the single replica is never evicted"
        )
        assert core.list_namespaced_pod(ns, label_selector="app=solo").items[0].metadata.uid == solo_uid
        assert sampler.least["api"] >= 1, "api (2 replicas) never lost both"
        assert sampler.least["web"] >= 2, "web (4 replicas) never lost more than half"

        # The pause value: the operator restarts with --actions-paused; no MemoryWatch is touched.
        before = _operator_pod(core, op_ns).metadata.uid
        generations = {m["metadata"]["name"]: m["metadata"]["generation"]
                       for m in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]}  # fmt: skip
        helm(cluster, "upgrade", RELEASE, str(REPO / "charts" / "memorywatch"), "-n", op_ns, "-f", str(values),
             "--set", "actions.paused=true", "--wait", "--timeout", "3m")  # fmt: skip
        _wait_operator(core, op_ns, not_uid=before)
        paused = Sampler(core, ns, ["api", "web", "solo"]).start()
        wait_until(lambda: "ActionsPaused" in _results(custom, ns), 180, "ActionSkipped with reason ActionsPaused",
                   interval=3)  # fmt: skip
        time.sleep(15)
        paused.stop()
        assert not paused.gone(), f"a pod was evicted while actions were paused: {paused.gone()}"
        after = {m["metadata"]["name"]: m["metadata"]["generation"]
                 for m in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]}  # fmt: skip
        assert after == generations, "pausing touched no MemoryWatch spec"
    finally:
        try:
            release_all(custom, ns)
        finally:
            core.delete_namespace(ns)


def _condition(custom: Any, ns: str, name: str, type_: str) -> dict[str, Any]:
    mw = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    for c in (mw.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def test_s3_policy_and_a_quota_show_as_store_conditions(
    cluster: Cluster, guarded_operator: tuple[str, Any], pprofserver: Path
) -> None:
    """Through the operator: S3 endpoints at the metadata address, loopback and a cluster Service are refused with
    StoreAvailable=False naming the reason, as is a bucket without credentials; a watch whose capture.retention
    quota is full gets StoreAvailable=False reason CaptureQuotaExceeded naming the quota, and a CaptureFailed
    event."""
    from kubernetes import client

    api = cluster.api_client()
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = new_namespace(core, "policy")
    service_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    try:
        apps.create_namespaced_deployment(ns, deployment_manifest("app", str(pprofserver), replicas=1))

        def watch(name: str, capture: dict[str, Any]) -> None:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemoryWatch", "metadata": {"name": name},
                "spec": {"selector": {"matchLabels": {"app": "app"}}, "endpoint": {"port": 6060, "metricsPath": ""},
                         "interval": "1s", "rules": ALWAYS, "capture": capture},
            })  # fmt: skip

        def s3(endpoint: str | None, creds: bool = True) -> dict[str, Any]:
            spec: dict[str, Any] = {"bucket": "evidence"}
            if endpoint:
                spec["endpoint"] = endpoint
            if creds:
                spec["credentialsSecretRef"] = {"name": "s3-creds"}
            return {"storage": {"s3": spec}}

        expected = {
            "meta": (s3("http://169.254.169.254"), "link-local"),
            "loop": (s3("http://127.0.0.1:9000"), "loopback"),
            "svc": (s3(f"https://{service_ip}:443"), "private (cluster-internal)"),
            "nocreds": (s3(None, creds=False), "credentialsSecretRef is required"),
            "quota": ({"cooldown": "5s", "profiles": ["heap"], "retention": {"maxBytes": "1"}},
                      "capture.retention.maxBytes"),
        }  # fmt: skip
        for name, (capture, _) in expected.items():
            watch(name, capture)
        for name, (_, text) in expected.items():
            cond = wait_until(
                lambda n=name, t=text: (c := _condition(custom, ns, n, "StoreAvailable")).get("status") == "False"  # type: ignore[misc]
                and t in c.get("message", "") and c,
                180, f"StoreAvailable=False naming {text!r} on {name}", interval=2,
            )  # fmt: skip
            assert "store.s3Policy" in cond["message"] or name in ("nocreds", "quota"), cond
            assert cond["reason"] == ("CaptureQuotaExceeded" if name == "quota" else "StoreUnavailable"), cond
        failed = [e for e in core.list_namespaced_event(ns).items if e.reason == "CaptureFailed"]
        assert any("quota" in (e.message or "") for e in failed), [e.message for e in failed]
    finally:
        try:
            release_all(custom, ns)
        finally:
            core.delete_namespace(ns)
