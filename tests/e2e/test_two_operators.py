"""Two real `memorywatch run` processes (kopf standalone, sharding off: both follow every pod of the namespace,
the worst case for double actions) running as the chart's own ServiceAccount with its rendered RBAC, sharing the
action Lease in their own namespace: Scale on a workload an HPA owns raises the HPA once, not once per replica;
after `suspend: true` neither evicts, and after the MemoryWatch is deleted it is released promptly and neither
acts again. test_action_guards.py covers the same guards with two runners in one process."""

from __future__ import annotations

import contextlib
import json
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_harness import Cluster, wait_until
from kubernetes import client
from operator_support import GROUP, PLURAL, VERSION, condition, get_mw, new_namespace
from process_support import OperatorProcess, chart_identity
from test_action_limits_operator import release_all
from test_actions import settled_pods

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"
RELEASE = "ha2"
IDENTITIES = ("operator-a", "operator-b")
ALWAYS = [{"name": "always", "kind": "Threshold", "expression": "goroutines >= 0", "for": "0"}]
#: Generous for the full CI on two loaded cores: both processes start, follow the pods and capture.
ACT_SECONDS = 240
QUIET_SECONDS = 20
#: How long an action already past its guards (one API request) is given to land after a suspension is seen.
IN_FLIGHT_SECONDS = 5


@pytest.fixture
def operators(cluster: Cluster, namespace: str, tmp_path: pathlib.Path) -> Iterator[list[OperatorProcess]]:
    """Two operator processes watching `namespace`, as ServiceAccount ha2-memorywatch of a namespace of their
    own (its Leases live there), with the chart's RBAC for evictions and scaling."""
    # The MemoryWatch CRD only, as the other suites apply it: the chart tests adopt just that one into their
    # releases (the operators log that MemoryCapture records are skipped; captures go to the store all the same).
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests",
                    "-f", str(CRDS / "memorywatch.io_memorywatches.yaml"))  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/memorywatches.memorywatch.io", "--timeout=60s"
    )
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    op_ns = new_namespace(core, "mw-ha")
    kubeconfig, rendered = chart_identity(cluster, RELEASE, op_ns, tmp_path / "kubeconfig",
                                          "actions.evict.enabled=true", "actions.scale.enabled=true")  # fmt: skip
    procs: list[OperatorProcess] = []
    try:
        procs += [OperatorProcess(cluster, namespace, i, tmp_path, kubeconfig=kubeconfig, pod_namespace=op_ns)
                  for i in IDENTITIES]  # fmt: skip
        yield procs
        for p in procs:
            p.alive()  # neither crashed during the test
    finally:
        try:
            release_all(client.CustomObjectsApi(api), namespace)  # while they run: they hold the finalizers
        finally:
            for p in procs:
                p.stop()
            cluster.kubectl(
                "delete", "-n", op_ns, "--ignore-not-found", "-f", "-", input=rendered, check=False
            )
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(op_ns)


def watch(custom: Any, namespace: str, name: str, app: str, action: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemoryWatch", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, "endpoint": {"port": 6060, "metricsPath": ""},
                 "interval": "1s", "rules": ALWAYS, "capture": {"cooldown": "5s", "profiles": ["heap"]},
                 "action": action},
    })  # fmt: skip


def action_events(core: Any, namespace: str, watch_name: str, action: str) -> list[Any]:
    """The outcome events (ActionTaken / ActionSkipped) of `action` on MemoryWatch `watch_name`, from both."""
    return [e for e in core.list_namespaced_event(namespace).items
            if e.involved_object.kind == "MemoryWatch" and e.involved_object.name == watch_name
            and e.reason in ("ActionTaken", "ActionSkipped") and (e.message or "").startswith(f"{action} ")]  # fmt: skip


def taken(events: list[Any]) -> dict[str, int]:
    """How many actions each operator reported done (an event's count grows when it repeats)."""
    out = dict.fromkeys(IDENTITIES, 0)
    for e in events:
        if e.reason == "ActionTaken":
            out[e.reporting_instance] = out.get(e.reporting_instance, 0) + (e.count or 1)
    return out


def summary(events: list[Any]) -> list[tuple[str, str, int, str]]:
    return [(e.reporting_instance, e.reason, e.count or 1, (e.message or "")[:200]) for e in events]


def test_scale_with_an_hpa_and_two_operators_raises_it_once(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: pathlib.Path,
    operators: list[OperatorProcess],
) -> None:  # fmt: skip
    """Both processes capture every pod and decide to scale; the first raises the HPA's minReplicas by the step and
    records it in the memorywatch.io/scaled annotation, the other sees the annotation (RecentlyScaled) and changes
    nothing: minReplicas goes from 2 to 3, never to 4."""
    autoscaling = client.AutoscalingV2Api(cluster.api_client())
    custom = client.CustomObjectsApi(cluster.api_client())
    deploy("web", pprofserver, replicas=2)
    settled_pods(core, namespace, "web", 2, apps)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 5},
    })  # fmt: skip
    watch(
        custom,
        namespace,
        "web",
        "web",
        {"type": "Scale", "scale": {"step": 1, "maxReplicas": 5}, "cooldown": "1h"},
    )

    def both_reported() -> bool:
        events = action_events(core, namespace, "web", "Scale")
        done = {e.reporting_instance for e in events if e.reason == "ActionTaken"}
        refused = {e.reporting_instance for e in events
                   if e.reason == "ActionSkipped" and "not scaling again" in (e.message or "")}  # fmt: skip
        assert len(done) == 1 and (set(IDENTITIES) - done) <= refused, (
            f"Scale outcomes so far: {summary(events)}"
        )
        return True

    for p in operators:
        p.alive()
    wait_until(both_reported, ACT_SECONDS, "one operator to scale and the other to refuse (RecentlyScaled)",
               interval=2)  # fmt: skip
    time.sleep(QUIET_SECONDS)  # both go on capturing: still one change

    events = action_events(core, namespace, "web", "Scale")
    assert sum(taken(events).values()) == 1, summary(events)
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert hpa.spec.min_replicas == 3, f"one step of 1 from 2, not one per operator: {summary(events)}"
    record = json.loads(hpa.metadata.annotations["memorywatch.io/scaled"])
    assert (record["field"], record["from"], record["to"], record["original"]) == (
        "spec.minReplicas",
        2,
        3,
        2,
    )
    assert record["object"] == "HorizontalPodAutoscaler/web" and record["by"].endswith("/web"), record
    done = next(e for e in events if e.reason == "ActionTaken")
    assert "undo with: kubectl -n" in done.message and '"minReplicas":2' in done.message, done.message
    # The HPA owns the replicas: the Deployment was not scaled by either operator (only the HPA may raise it to 3).
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas in (2, 3)


class PodSampler:
    """Every 200 ms, in a thread: each pod uid seen, and those seen terminating (here only evictions delete)."""

    def __init__(self, core: Any, namespace: str, app: str) -> None:
        self.core, self.namespace, self.app = core, namespace, app
        self.seen: set[str] = set()
        self.terminating: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def _pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=f"app={self.app}").items)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                pods = self._pods()
                with self._lock:
                    self.seen |= {p.metadata.uid for p in pods}
                    self.terminating |= {p.metadata.uid for p in pods if p.metadata.deletion_timestamp}
            self._stop.wait(0.2)

    def __enter__(self) -> PodSampler:
        """Starts from what is there now; a pod already terminating (an eviction before) is not counted."""
        pods = self._pods()
        self.exempt = {p.metadata.uid for p in pods if p.metadata.deletion_timestamp}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def evicted(self) -> set[str]:
        now = {p.metadata.uid for p in self._pods() if not p.metadata.deletion_timestamp}
        with self._lock:
            return ((self.seen - now) | self.terminating) - self.exempt


def test_two_operators_do_nothing_after_suspend_or_delete(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: pathlib.Path,
    operators: list[OperatorProcess],
) -> None:  # fmt: skip
    """The watch evicts (its rule always holds) until it is suspended, at the moment the first eviction is seen (the
    other operator has not used its own cooldown yet); from then on no pod is evicted by either operator. Then it
    is deleted (unsuspended in the same breath, so only the deletion stands between the operators and an
    eviction): it is released promptly and no pod is evicted after it."""
    custom = client.CustomObjectsApi(cluster.api_client())
    deploy("api", pprofserver, replicas=4)
    settled_pods(core, namespace, "api", 4, apps)
    watch(custom, namespace, "api", "api", {"type": "EvictPod", "cooldown": "1m"})

    for p in operators:
        p.alive()
    wait_until(lambda: sum(taken(action_events(core, namespace, "api", "EvictPod")).values()) >= 1, ACT_SECONDS,
               "a first eviction", interval=0.5)  # fmt: skip
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "api", {"spec": {"suspend": True}}
    )
    # An eviction whose guard read the watch just before the patch may still be on its way to the API server
    # (one request, slow on two loaded cores): sampling starts once the suspension is acknowledged in the
    # status and that request has had time to land.
    wait_until(lambda: condition(get_mw(custom, namespace, "api"), "Ready").get("reason") == "Suspended",
               60, "the suspension acknowledged", interval=0.5)  # fmt: skip
    time.sleep(IN_FLIGHT_SECONDS)
    before = taken(action_events(core, namespace, "api", "EvictPod"))
    with PodSampler(core, namespace, "api") as suspended:
        time.sleep(QUIET_SECONDS)
    ready = condition(get_mw(custom, namespace, "api"), "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", "Suspended"), ready
    events = action_events(core, namespace, "api", "EvictPod")
    assert not suspended.evicted(), f"evicted while suspended: {suspended.evicted()}; {summary(events)}"
    assert taken(events) == before, summary(events)

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "api", {"spec": {"suspend": False}}
    )
    with PodSampler(core, namespace, "api") as deleted:
        t0 = time.monotonic()
        release_all(custom, namespace)  # deletes it and fails if it is not gone within RELEASE_SECONDS
        released = time.monotonic() - t0
        time.sleep(QUIET_SECONDS)
    events = action_events(core, namespace, "api", "EvictPod")
    assert not deleted.evicted(), f"evicted after the deletion: {deleted.evicted()}; {summary(events)}"
    assert taken(events) == before, summary(events)
    print(f"released {released:.1f} s after the deletion; evictions before suspend: {before}")
