"""The action guardrails on the real local control plane: minReplicas, the pod uid (a StatefulSet pod recreated under
the same name), the pause value, the namespace opt-out label, a suspended or deleted MemoryWatch, and many watches
over overlapping selectors that together never act more often than the rate limits (counted in a real Lease,
shared by two runners standing for two operator replicas) nor take a workload below its replicas."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Cluster, wait_until
from kubernetes import client
from test_actions import MECHANICS, act, settled_pods

from memorywatch.actions import ActContext, ActionPolicy, RateLimits, Workload
from memorywatch.actions.facts import pod_ready
from memorywatch.actions.ledger import LEASE_NAME, RECORDS_ANNOTATION, LeaseLedger
from memorywatch.actions.ratelimit import decode
from memorywatch.actions.runner import KubeActions
from memorywatch.k8s import Kube

pytestmark = pytest.mark.e2e
CRD_FILE = pathlib.Path(__file__).resolve().parents[2] / "crds" / "memorywatch.io_memorywatches.yaml"
GROUP, VERSION, PLURAL = "memorywatch.io", "v1alpha1", "memorywatches"


@pytest.fixture
def make_watch(cluster: Cluster, namespace: str) -> Any:
    """make_watch(name, action, app, **spec) -> the uid of a real MemoryWatch (the CRD applied first), which the
    runner reads again right before acting."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=memorywatch-tests",
                    "-f", str(CRD_FILE))  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/memorywatches.memorywatch.io", "--timeout=60s"
    )
    custom = client.CustomObjectsApi(cluster.api_client())

    def make(name: str, action: dict[str, Any], app: str, **spec: Any) -> str:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MemoryWatch", "metadata": {"name": name},
                "spec": {"selector": {"matchLabels": {"app": app}}, "endpoint": {"port": 6060},
                         "action": action, **spec}}  # fmt: skip
        created = wait_until(lambda: _try_create(custom, namespace, body), 30, "the MemoryWatch (CRD served)")
        return str(created["metadata"]["uid"])

    return make


def runner(cluster: Cluster, policy: ActionPolicy | None = None, ledger_ns: str | None = None,
           limits: RateLimits | None = None) -> KubeActions:  # fmt: skip
    kube = Kube(cluster.api_client())
    ledger = LeaseLedger(kube, ledger_ns, limits or RateLimits()) if ledger_ns else None
    return KubeActions(kube, policy=policy, ledger=ledger)


async def test_single_replica_deployment_is_never_evicted(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    deploy("solo", pprofserver, replicas=1)
    before = settled_pods(core, namespace, "solo", 1, apps)
    pod = next(iter(before))
    actions = runner(cluster)  # the defaults: minReplicas 2

    for action in ("EvictPod", "RolloutRestart"):
        for dry_run in (False, True):
            out = await act(actions, action, namespace, pod, dry_run=dry_run)
            assert (out.performed, out.reason) == (False, "BelowMinReplicas"), out
            assert "1 ready replica(s), fewer than actions.minReplicas=2" in out.message
    assert settled_pods(core, namespace, "solo", 1, apps) == before


async def test_statefulset_pod_recreated_under_the_same_name_is_not_evicted(
    cluster: Cluster, namespace: str, core: Any, apps: Any, pprofserver: Path, make_watch: Any
) -> None:  # fmt: skip
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "app", "image": "x", "command": [str(pprofserver)], "args": ["-listen=127.0.0.1:0"]}]},
    }  # fmt: skip
    apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": template},
    })  # fmt: skip

    def ready_uid() -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=db").items
        st = apps.read_namespaced_stateful_set("db", namespace).status
        if len(pods) == 2 and all(pod_ready(p) for p in pods) and (st.ready_replicas or 0) == 2:
            return next(p.metadata.uid for p in pods if p.metadata.name == "db-0")  # type: ignore[no-any-return]
        return None

    old_uid = wait_until(ready_uid, 90, "two ready pods of the StatefulSet")
    core.delete_namespaced_pod("db-0", namespace, grace_period_seconds=0)
    new_uid = wait_until(lambda: (u := ready_uid()) and u != old_uid and u, 90, "db-0 recreated and ready")
    actions = runner(cluster)
    workload = Workload("StatefulSet", "db", namespace)

    # The capture was of the old db-0: the guard refuses before the eviction is even asked for.
    ctx = ActContext("db-watch", make_watch("db-watch", {"type": "EvictPod"}, "db"), old_uid)
    out = await actions.act("EvictPod", namespace, "db-0", dry_run=False, scale_step=1, scale_max_replicas=None,
                            context=ctx)  # fmt: skip
    assert (out.performed, out.reason) == (False, "PodReplaced"), out
    # And the eviction itself carries the uid as a precondition, for the pod replaced between read and evict:
    # the API server refuses it (409) and nothing is evicted.
    raced = await actions._evict(namespace, "db-0", old_uid, workload, False)
    assert raced[:2] == (False, "PodReplaced"), raced
    live = core.read_namespaced_pod("db-0", namespace)
    assert live.metadata.uid == new_uid and live.metadata.deletion_timestamp is None


async def test_pause_stops_every_action(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=3)
    before = settled_pods(core, namespace, "web", 3, apps)
    paused = runner(cluster, ActionPolicy(paused=True))
    rv = apps.read_namespaced_deployment("web", namespace).metadata.resource_version

    for action in ("EvictPod", "RolloutRestart", "Scale"):
        out = await act(paused, action, namespace, sorted(before)[0], max_replicas=10)
        assert (out.performed, out.reason) == (False, "ActionsPaused"), out
        assert "actions.paused" in out.message
    assert apps.read_namespaced_deployment("web", namespace).metadata.resource_version == rv
    assert settled_pods(core, namespace, "web", 3, apps) == before


async def test_namespace_label_opts_out_of_actions(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=3)
    before = settled_pods(core, namespace, "web", 3, apps)
    core.patch_namespace(namespace, {"metadata": {"labels": {"memorywatch.io/actions": "disabled"}}})
    out = await act(runner(cluster), "EvictPod", namespace, sorted(before)[0])
    assert (out.performed, out.reason) == (False, "NamespaceOptedOut"), out
    assert f"kubectl label namespace {namespace} memorywatch.io/actions-" in out.message
    assert settled_pods(core, namespace, "web", 3, apps) == before


async def test_nothing_is_done_after_suspend_or_delete(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, make_watch: Any
) -> None:  # fmt: skip
    custom = client.CustomObjectsApi(cluster.api_client())
    deploy("web", pprofserver, replicas=3)
    before = settled_pods(core, namespace, "web", 3, apps)
    uid = make_watch("web", {"type": "EvictPod"}, "web", suspend=True)
    actions = runner(cluster, MECHANICS)
    pod = sorted(before)[0]

    async def evict() -> Any:
        ctx = ActContext("web", uid, before[pod])
        return await actions.act("EvictPod", namespace, pod, dry_run=False, scale_step=1,
                                 scale_max_replicas=None, context=ctx)  # fmt: skip

    assert (await evict()).reason == "WatchSuspended"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "web", {"spec": {"suspend": False}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web")
    wait_until(lambda: not _exists(custom, namespace, "web"), 30, "the MemoryWatch to be gone")
    assert (await evict()).reason == "WatchDeleted"
    assert settled_pods(core, namespace, "web", 3, apps) == before


def _try_create(custom: Any, namespace: str, body: dict[str, Any]) -> Any:
    from kubernetes.client.rest import ApiException

    try:
        return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _exists(custom: Any, namespace: str, name: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


class ReadySampler:
    """Samples, every 100 ms in a thread, the fewest ready non-terminating pods each app had."""

    def __init__(self, core: Any, namespace: str, apps_: list[str]) -> None:
        self.core, self.namespace = core, namespace
        self.least = {a: 10**6 for a in apps_}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(self.namespace).items
            for app in self.least:
                n = sum(1 for p in pods if (p.metadata.labels or {}).get("app") == app and pod_ready(p))
                self.least[app] = min(self.least[app], n)
            self._stop.wait(0.1)

    def __enter__(self) -> ReadySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


async def test_twenty_watches_over_overlapping_selectors_respect_the_rate_and_min_replicas(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    """20 watches (cooldown at its floor, a rule that always holds) keep deciding to evict pods of three workloads
    their selectors overlap on; two runners stand for two operator replicas and share the Lease. Evictions stay
    within the rate limit and no workload is disrupted below what the guards allow."""
    deploy("api", pprofserver, replicas=2, labels={"tier": "shop"})
    deploy("web", pprofserver, replicas=4, labels={"tier": "shop"})
    deploy("solo", pprofserver, replicas=1, labels={"tier": "shop"})
    for app, n in (("api", 2), ("web", 4), ("solo", 1)):
        settled_pods(core, namespace, app, n, apps)
    limits = RateLimits(window_seconds=600, cluster_max=100, namespace_max=3)
    replicas = [runner(cluster, ActionPolicy(), namespace, limits) for _ in range(2)]
    outcomes: list[Any] = []

    async def watch(i: int) -> None:
        # Watch i selects tier=shop (all three workloads); it picks pods the way the engine's targets rotate.
        for round_ in range(3):
            pods = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="tier=shop").items
                    if pod_ready(p)]  # fmt: skip
            if not pods:
                continue
            pod = sorted(pods)[(i + round_) % len(pods)]
            outcomes.append(await act(replicas[i % 2], "EvictPod", namespace, pod))
            await asyncio.sleep(0.5)

    with ReadySampler(core, namespace, ["api", "web", "solo"]) as sampler:
        await asyncio.gather(*(watch(i) for i in range(20)))
        await asyncio.sleep(1)

    evicted = [o for o in outcomes if o.performed]
    reasons = {o.reason for o in outcomes}
    assert 1 <= len(evicted) <= 3, [(o.pod, o.reason) for o in outcomes]
    assert "NamespaceRateLimited" in reasons or len(evicted) < 3, reasons
    assert not any(o.workload == Workload("Deployment", "solo", namespace) for o in evicted)
    assert sampler.least["solo"] == 1, "the single-replica workload was never disrupted"
    assert sampler.least["api"] >= 1, "at most one of api's two replicas was ever down"
    assert sampler.least["web"] >= 2, "at most half of web's four replicas were ever down"
    lease = client.CoordinationV1Api(cluster.api_client()).read_namespaced_lease(LEASE_NAME, namespace)
    counted = decode(lease.metadata.annotations[RECORDS_ANNOTATION])
    assert len(counted) == len(evicted), "every action the two replicas took is counted in the shared Lease"


async def test_two_replicas_deciding_on_one_workload_at_once_disrupt_it_once(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    """Two runners (two operator replicas: no lock in common) are asked at the same moment to evict each of the two
    pods of a 2-replica workload, three times over. Each alone passes the replica guards (2 ready, one may go);
    together they would take both. The shared Lease serialises them: one eviction, the rest refused."""
    deploy("api", pprofserver, replicas=2)
    pods = sorted(settled_pods(core, namespace, "api", 2, apps))
    limits = RateLimits(window_seconds=600, cluster_max=100, namespace_max=100)
    replicas = [runner(cluster, ActionPolicy(), namespace, limits) for _ in range(2)]
    with ReadySampler(core, namespace, ["api"]) as sampler:
        outs = await asyncio.gather(
            *(act(replicas[i], "EvictPod", namespace, pods[i]) for i in (0, 1) for _ in range(3))
        )
        await asyncio.sleep(1)
    done = [o for o in outs if o.performed]
    assert len(done) == 1, [(o.pod, o.reason, o.message) for o in outs]
    # Refused by the Lease (decided at the same moment), or by the guards that already see the eviction.
    refusals = {"WorkloadBusy", "BelowMinReplicas", "TooManyUnavailable", "RolloutInProgress"}
    assert {o.reason for o in outs if not o.performed} <= refusals, [(o.reason, o.message) for o in outs]
    assert sampler.least["api"] >= 1, "one of api's two replicas kept serving"


async def test_scale_with_an_hpa_and_two_replicas_changes_it_once(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, make_watch: Any
) -> None:  # fmt: skip
    autoscaling = client.AutoscalingV2Api(cluster.api_client())
    deploy("web", pprofserver, replicas=2)
    pod = sorted(settled_pods(core, namespace, "web", 2, apps))[0]
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 10},
    })  # fmt: skip
    replicas = [runner(cluster) for _ in range(2)]
    uid = make_watch("web-watch", {"type": "Scale", "scale": {"maxReplicas": 8}}, "web")
    ctx = ActContext("web-watch", uid, None, cooldown_seconds=600)

    outs = await asyncio.gather(*(
        r.act("Scale", namespace, pod, dry_run=False, scale_step=2, scale_max_replicas=8, context=ctx)
        for r in replicas for _ in range(3)
    ))  # fmt: skip

    done = [o for o in outs if o.performed]
    assert len(done) == 1, [(o.reason, o.message) for o in outs]
    assert {o.reason for o in outs if not o.performed} == {"RecentlyScaled"}
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert hpa.spec.min_replicas == 4, "one step of 2, not six"
    record = hpa.metadata.annotations["memorywatch.io/scaled"]
    assert '"from": 2' in record and '"to": 4' in record and '"original": 2' in record
    assert "undo with: kubectl -n" in done[0].message and '"minReplicas":2' in done[0].message
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2, "the HPA owns replicas"


async def test_an_unusable_ledger_refuses_the_action(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    """Fail closed: when the Lease cannot be written (here its namespace does not exist), nothing is done."""
    deploy("web", pprofserver, replicas=3)
    before = settled_pods(core, namespace, "web", 3, apps)
    actions = runner(cluster, ActionPolicy(), f"{namespace}-missing")
    out = await act(actions, "EvictPod", namespace, sorted(before)[0])
    assert (out.performed, out.reason) == (False, "RateLimitUnavailable"), out
    assert "not taken uncounted" in out.message
    assert settled_pods(core, namespace, "web", 3, apps) == before
