"""KubeActions against the real local control plane: evictions that PodDisruptionBudgets allow or refuse, rollout
restarts, scaling (directly and through an HPA), dry runs that change nothing, the one-pod-at-a-time guard and
RBAC refusals that say which verb is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Cluster, running_pods, service_account_client, wait_until
from kubernetes import client

from memorywatch.actions import ActionOutcome, ActionPolicy, Workload
from memorywatch.actions.runner import RESTARTED_AT, KubeActions
from memorywatch.k8s import Kube

pytestmark = pytest.mark.e2e


def settled_pods(core: Any, namespace: str, app: str, count: int, apps: Any = None) -> dict[str, str]:
    """Wait until exactly `count` pods of `app` run (and the Deployment reports them available);
    returns {pod name: uid}."""

    def check() -> dict[str, str] | None:
        pods = running_pods(core, namespace, f"app={app}")
        all_pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        if len(pods) != count or len(all_pods) != count:
            return None
        if apps is not None:
            st = apps.read_namespaced_deployment(app, namespace).status
            if (st.available_replicas or 0) != count or (st.updated_replicas or 0) != count:
                return None
        return {p.metadata.name: p.metadata.uid for p in pods}

    return wait_until(check, 90, f"{count} settled pod(s) of {app}")  # type: ignore[no-any-return]


# These tests are about each action's own mechanics (PDBs, rollouts, HPAs); the replica guardrails, tested in
# test_action_guards.py, are lowered so that one- and two-replica workloads can be acted on here.
MECHANICS = ActionPolicy(min_replicas=1, max_unavailable_fraction=1.0)


@pytest.fixture
def actions(cluster: Cluster) -> KubeActions:
    return KubeActions(Kube(cluster.api_client()), policy=MECHANICS)


def grant_namespace_reads(cluster: Cluster, namespace: str, sa: str) -> None:
    """What the chart's ClusterRole grants every install: reading namespaces (the actions opt-out label)."""
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    name = f"{namespace}-{sa}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}],
        }
    )
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    })  # fmt: skip


@pytest.fixture
def policy(cluster: Cluster) -> Any:
    return client.PolicyV1Api(cluster.api_client())


def pdb(policy: Any, namespace: str, app: str, min_available: int, allowed: int) -> None:
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": app},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    })  # fmt: skip

    def observed() -> bool:
        st = policy.read_namespaced_pod_disruption_budget(app, namespace).status
        return bool(st and st.observed_generation and st.disruptions_allowed == allowed)

    wait_until(observed, 30, f"the PDB to allow {allowed} disruption(s)")


async def act(actions: KubeActions, action: str, namespace: str, pod: str, *, dry_run: bool = False,
              step: int = 1, max_replicas: int | None = None) -> ActionOutcome:  # fmt: skip
    return await actions.act(
        action, namespace, pod, dry_run=dry_run, scale_step=step, scale_max_replicas=max_replicas
    )


async def test_workload_of_follows_owners(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=1)
    web = next(iter(settled_pods(core, namespace, "web", 1)))
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {"containers": [{"name": "app", "image": "x", "command": [str(pprofserver)], "args": ["-listen=127.0.0.1:0"]}]},
    }  # fmt: skip
    apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": template},
    })  # fmt: skip
    bare_template = {**template, "metadata": {"labels": {"app": "bare"}}}
    apps.create_namespaced_replica_set(namespace, {
        "metadata": {"name": "bare"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bare"}}, "template": bare_template},
    })  # fmt: skip
    core.create_namespaced_pod(namespace, {"metadata": {"name": "lonely"}, "spec": template["spec"]})

    def pod_of(app: str) -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        return pods[0].metadata.name if pods else None

    db = wait_until(lambda: pod_of("db"), 30, "the StatefulSet's pod")
    bare = wait_until(lambda: pod_of("bare"), 30, "the ReplicaSet's pod")
    assert await actions.workload_of(namespace, web) == Workload("Deployment", "web", namespace)
    assert await actions.workload_of(namespace, db) == Workload("StatefulSet", "db", namespace)
    assert await actions.workload_of(namespace, bare) == Workload("ReplicaSet", "bare", namespace)
    assert await actions.workload_of(namespace, "lonely") is None
    assert await actions.workload_of(namespace, "no-such-pod") is None
    # Nothing would replace a pod without a controller: no action takes it away or claims a workload.
    for action in ("EvictPod", "RolloutRestart", "Scale"):
        out = await act(actions, action, namespace, "lonely", max_replicas=3)
        assert (out.performed, out.reason, out.workload) == (False, "NoWorkload", None), out
    assert core.read_namespaced_pod("lonely", namespace).metadata.deletion_timestamp is None
    gone = await act(actions, "EvictPod", namespace, "no-such-pod")
    assert (gone.performed, gone.reason) == (False, "PodGone"), gone


async def test_evict_allowed_by_pdb_replaces_the_pod(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, policy: Any, pprofserver: Path,
    actions: KubeActions,
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=2)
    before = settled_pods(core, namespace, "web", 2, apps)
    pdb(policy, namespace, "web", min_available=1, allowed=1)
    victim = sorted(before)[0]

    out = await act(actions, "EvictPod", namespace, victim)

    assert (out.performed, out.reason, out.dry_run) == (True, "Evicted", False), out
    assert out.workload == Workload("Deployment", "web", namespace)
    assert victim in out.message and "Deployment/web" in out.message
    after = wait_until(
        lambda: (p := settled_pods(core, namespace, "web", 2, apps)) and victim not in p and p, 90,
        "the evicted pod to be replaced",
    )  # fmt: skip
    assert set(after) - set(before), "a new pod took the evicted one's place"


async def test_evict_refused_by_pdb_keeps_the_pod(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, policy: Any, pprofserver: Path,
    actions: KubeActions,
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=1)
    before = settled_pods(core, namespace, "web", 1, apps)
    pdb(policy, namespace, "web", min_available=1, allowed=0)
    victim = next(iter(before))

    out = await act(actions, "EvictPod", namespace, victim)

    assert (out.performed, out.reason) == (False, "DisruptionBudget"), out
    assert "disruption budget" in out.message.lower()
    pod = core.read_namespaced_pod(victim, namespace)
    assert pod.metadata.uid == before[victim] and pod.metadata.deletion_timestamp is None


async def test_rollout_restart_replaces_every_pod(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=2)
    before = settled_pods(core, namespace, "web", 2, apps)

    out = await act(actions, "RolloutRestart", namespace, sorted(before)[0])

    assert (out.performed, out.reason) == (True, "Restarted"), out
    annotations = apps.read_namespaced_deployment("web", namespace).spec.template.metadata.annotations
    assert RESTARTED_AT in annotations
    wait_until(
        lambda: not set(settled_pods(core, namespace, "web", 2, apps)) & set(before), 120,
        "every pod to be replaced by the restart",
    )  # fmt: skip


async def test_scale_adds_replicas_up_to_max(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=1)
    pod = next(iter(settled_pods(core, namespace, "web", 1, apps)))

    first = await act(actions, "Scale", namespace, pod, step=1, max_replicas=3)
    assert (first.performed, first.reason) == (True, "Scaled"), first
    assert "from 1 to 2" in first.message
    second = await act(actions, "Scale", namespace, pod, step=5, max_replicas=3)
    assert (second.performed, second.reason) == (True, "Scaled"), second
    assert "from 2 to 3" in second.message, "the step is capped at maxReplicas"
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3
    third = await act(actions, "Scale", namespace, pod, step=1, max_replicas=3)
    assert (third.performed, third.reason) == (False, "AtMaxReplicas"), third
    settled_pods(core, namespace, "web", 3, apps)


async def test_scale_raises_the_hpas_min_replicas(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    autoscaling = client.AutoscalingV2Api(cluster.api_client())
    deploy("web", pprofserver, replicas=1)
    pod = next(iter(settled_pods(core, namespace, "web", 1, apps)))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": "web-autoscaler"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 2,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })  # fmt: skip

    out = await act(actions, "Scale", namespace, pod, step=3, max_replicas=10)

    assert (out.performed, out.reason) == (True, "Scaled"), out
    assert "HorizontalPodAutoscaler/web-autoscaler" in out.message and "from 1 to 2" in out.message
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web-autoscaler", namespace)
    assert hpa.spec.min_replicas == 2, "raised by the step but never above the HPA's own maxReplicas"
    # The replicas stay the HPA's to set: we did not touch the Deployment's scale ourselves.
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas in (1, 2)

    again = await act(actions, "Scale", namespace, pod, step=1, max_replicas=10)
    assert (again.performed, again.reason) == (False, "HPAOwnsReplicas"), again
    assert "maxReplicas" in again.message


async def test_dry_run_changes_nothing_and_says_what_would_happen(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=2)
    pods = settled_pods(core, namespace, "web", 2, apps)
    pod = sorted(pods)[0]
    before = apps.read_namespaced_deployment("web", namespace)

    evict = await act(actions, "EvictPod", namespace, pod, dry_run=True)
    restart = await act(actions, "RolloutRestart", namespace, pod, dry_run=True)
    scale = await act(actions, "Scale", namespace, pod, dry_run=True, step=1, max_replicas=5)

    for out in (evict, restart, scale):
        assert (out.performed, out.dry_run, out.reason) == (False, True, "DryRun"), out
    assert evict.message.startswith(f"would evict pod {pod} of Deployment/web")
    assert restart.message.startswith("would restart the rollout of Deployment/web")
    assert scale.message.startswith("would change spec.replicas of Deployment/web from 2 to 3")
    after = apps.read_namespaced_deployment("web", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.to_dict() == before.spec.to_dict()
    assert settled_pods(core, namespace, "web", 2, apps) == pods, "the same pods, none evicted or replaced"


async def test_unsettled_workload_is_left_alone(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path, actions: KubeActions
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=2)
    pods = settled_pods(core, namespace, "web", 2, apps)
    # A rollout that cannot finish: the new pods ask for a node that does not exist, so they stay Pending.
    apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"nodeSelector": {"no-such": "node"}}}}}
    )
    wait_until(lambda: len(core.list_namespaced_pod(namespace, label_selector="app=web").items) > 2, 30,
               "a new, unschedulable pod of the rollout")  # fmt: skip
    pod = sorted(pods)[0]

    for action in ("EvictPod", "RolloutRestart"):
        for dry_run in (False, True):
            out = await act(actions, action, namespace, pod, dry_run=dry_run)
            assert (out.performed, out.reason, out.dry_run) == (False, "RolloutInProgress", dry_run), out
            assert "Deployment/web is not settled" in out.message
    live = core.read_namespaced_pod(pod, namespace)
    assert live.metadata.uid == pods[pod] and live.metadata.deletion_timestamp is None


async def test_missing_rbac_verb_is_reported_as_forbidden(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    deploy("web", pprofserver, replicas=2)
    pods = settled_pods(core, namespace, "web", 2, apps)
    # What the chart grants with every action disabled: reading pods and their owners, no write verbs.
    api = service_account_client(cluster, namespace, "watcher-only", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ["get"]},
    ])  # fmt: skip
    grant_namespace_reads(cluster, namespace, "watcher-only")
    actions = KubeActions(Kube(api), policy=MECHANICS)
    pod = sorted(pods)[0]

    assert await actions.workload_of(namespace, pod) == Workload("Deployment", "web", namespace)
    evict = await act(actions, "EvictPod", namespace, pod)
    assert (evict.performed, evict.reason) == (False, "Forbidden"), evict
    assert "may not create pods/eviction" in evict.message and "actions.evict.enabled" in evict.message
    restart = await act(actions, "RolloutRestart", namespace, pod, dry_run=True)
    assert (restart.reason, restart.dry_run) == ("Forbidden", True), restart
    assert "may not patch deployments.apps" in restart.message
    scale = await act(actions, "Scale", namespace, pod, max_replicas=5)
    assert scale.reason == "Forbidden" and "may not get horizontalpodautoscalers" in scale.message, scale
    assert core.read_namespaced_pod(pod, namespace).metadata.uid == pods[pod]


async def test_the_charts_grants_suffice_for_every_action(
    cluster: Cluster, namespace: str, deploy: Any, core: Any, apps: Any, pprofserver: Path
) -> None:  # fmt: skip
    """The rules charts/memorywatch/templates/rbac.yaml grants with every action enabled (no `list` on HPAs:
    the HPA named like the workload is found by name)."""
    deploy("web", pprofserver, replicas=2)
    pods = settled_pods(core, namespace, "web", 2, apps)
    api = service_account_client(cluster, namespace, "operator", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["patch"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "patch"]},
    ])  # fmt: skip
    grant_namespace_reads(cluster, namespace, "operator")
    actions = KubeActions(Kube(api), policy=MECHANICS)

    evicted = await act(actions, "EvictPod", namespace, sorted(pods)[0])
    assert evicted.reason == "Evicted", evicted
    pods = wait_until(
        lambda: (p := settled_pods(core, namespace, "web", 2, apps)) and sorted(pods)[0] not in p and p, 90,
        "the evicted pod to be replaced",
    )  # fmt: skip
    restarted = await act(actions, "RolloutRestart", namespace, sorted(pods)[0])
    assert restarted.reason == "Restarted", restarted
    pods = wait_until(
        lambda: (p := settled_pods(core, namespace, "web", 2, apps)) and not set(p) & set(pods) and p, 120,
        "the restart to replace every pod",
    )  # fmt: skip
    scaled = await act(actions, "Scale", namespace, sorted(pods)[0], max_replicas=5)
    assert scaled.message.startswith("changed spec.replicas of Deployment/web from 2 to 3"), scaled
    client.AutoscalingV2Api(cluster.api_client()).create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 6},
    })  # fmt: skip
    via_hpa = await act(actions, "Scale", namespace, sorted(pods)[0], max_replicas=5)
    assert (via_hpa.performed, via_hpa.reason) == (True, "Scaled"), via_hpa
    assert "minReplicas of HorizontalPodAutoscaler/web from 1 to 4" in via_hpa.message
