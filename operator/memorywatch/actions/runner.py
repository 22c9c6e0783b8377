"""Carries out an action on a leaking pod's workload through the API server (evict, rollout restart, scale),
each behind its guard, and reports one `ActionOutcome`; it never raises.

Reasons (`ActionOutcome.reason`): Evicted, Restarted, Scaled, DryRun (a dry run that would have acted),
DisruptionBudget (a PodDisruptionBudget refused the eviction), PodGone, NoWorkload (also for evicting a pod
without a controller: nothing would replace it), RolloutInProgress, AtMaxReplicas, HPAOwnsReplicas, Forbidden
(RBAC; the message names the missing verb and resource), Failed (any other API error). A dry run resolves everything, asks the API server with `dryRun=All` where it can (so RBAC,
PodDisruptionBudgets and admission answer for real), and changes nothing; a guard that would skip the real
action skips the dry run with the same reason and `dry_run=True`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s

from memorywatch.actions.model import ActionOutcome, Workload
from memorywatch.k8s import ConflictError, ForbiddenError, Kube, KubeError, NotFoundError, TooManyRequests

log = logging.getLogger(__name__)
T = TypeVar("T")

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ACTIONS = ("EvictPod", "RolloutRestart", "Scale")
# Scale patches are conditional on the resourceVersion read; the controllers update status all the time, so a
# conflict is normal and is answered by reading again.
SCALE_ATTEMPTS = 4
# The Helm value that grants each action's verbs (charts/memorywatch/values.yaml), named in Forbidden messages.
CHART_VALUE = {
    "EvictPod": "actions.evict.enabled",
    "RolloutRestart": "actions.restart.enabled",
    "Scale": "actions.scale.enabled",
}
_RESTARTABLE = ("Deployment", "StatefulSet", "DaemonSet")
_SCALABLE = ("Deployment", "StatefulSet", "ReplicaSet")


class _Refused(Exception):
    """RBAC refused one step; carries the verb and resource so the outcome can say what to grant."""

    def __init__(self, verb: str, resource: str, error: ForbiddenError) -> None:
        super().__init__(str(error))
        self.verb = verb
        self.resource = resource


class _Skip(Exception):
    """A guard decided not to act: `reason` and `message` go straight into the outcome."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KubeActions:
    """The `ActionRunner` the operator uses: the Eviction API, a rollout-restart patch, the scale subresource
    (or an HPA's minReplicas). One per operator; safe to call concurrently for different workloads."""

    def __init__(self, kube: Kube, *, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.clock = clock
        self.core = k8s.CoreV1Api(kube.api)
        self.apps = k8s.AppsV1Api(kube.api)
        self.autoscaling = k8s.AutoscalingV2Api(kube.api)

    async def _call(self, verb: str, resource: str, namespace: str, fn: Callable[..., T], *args: Any,
                    **kwargs: Any) -> T:  # fmt: skip
        try:
            return await self.kube.call(f"{verb} {resource} in {namespace}", fn, *args, **kwargs)
        except ForbiddenError as e:
            raise _Refused(verb, resource, e) from None

    # ---------------------------------------------------------------- the workload

    async def workload_of(self, namespace: str, pod: str) -> Workload | None:
        """The pod's controller, followed from a ReplicaSet to its Deployment; None for a pod without one
        (or when it cannot be read: `act` resolves again and reports why)."""
        try:
            return await self._workload_of(namespace, pod)
        except (KubeError, _Refused) as e:
            log.info("cannot resolve the workload of pod %s/%s: %s", namespace, pod, e)
            return None

    async def _workload_of(self, namespace: str, pod: str) -> Workload | None:
        body = await self._call("get", "pods", namespace, self.core.read_namespaced_pod, pod, namespace)
        return await self._owner_of(namespace, body)

    async def _owner_of(self, namespace: str, pod_body: Any) -> Workload | None:
        owner = _controller(pod_body)
        if owner is None:
            return None
        kind, name = owner
        if kind == "ReplicaSet":
            rs = await self._call(
                "get", "replicasets.apps", namespace, self.apps.read_namespaced_replica_set, name, namespace
            )
            rs_owner = _controller(rs)
            if rs_owner is not None and rs_owner[0] == "Deployment":
                return Workload("Deployment", rs_owner[1], namespace)
        return Workload(kind, name, namespace)

    async def _read_workload(self, w: Workload) -> Any:
        readers: dict[str, tuple[str, Callable[..., Any]]] = {
            "Deployment": ("deployments.apps", self.apps.read_namespaced_deployment),
            "StatefulSet": ("statefulsets.apps", self.apps.read_namespaced_stateful_set),
            "ReplicaSet": ("replicasets.apps", self.apps.read_namespaced_replica_set),
            "DaemonSet": ("daemonsets.apps", self.apps.read_namespaced_daemon_set),
        }
        if w.kind not in readers:
            return None
        resource, fn = readers[w.kind]
        return await self._call("get", resource, w.namespace, fn, w.name, w.namespace)

    async def _require_settled(self, w: Workload | None) -> None:
        if w is None:
            return
        obj = await self._read_workload(w)
        if obj is None:
            return
        why = unsettled(w.kind, obj)
        if why:
            raise _Skip(
                "RolloutInProgress",
                f"{w} is not settled ({why}); acting on one pod of a workload at a time, so not now",
            )

    # ---------------------------------------------------------------- act

    async def act(
        self,
        action: str,
        namespace: str,
        pod: str,
        *,
        dry_run: bool,
        scale_step: int,
        scale_max_replicas: int | None,
    ) -> ActionOutcome:
        workload: Workload | None = None

        def outcome(performed: bool, reason: str, message: str) -> ActionOutcome:
            return ActionOutcome(action, pod, workload, performed, dry_run, reason, message)

        try:
            if action not in ACTIONS:
                return outcome(False, "Failed", f"unknown action {action!r} (expected one of {ACTIONS})")
            try:
                pod_body = await self._call(
                    "get", "pods", namespace, self.core.read_namespaced_pod, pod, namespace
                )
            except NotFoundError:
                return outcome(False, "PodGone", f"pod {namespace}/{pod} no longer exists")
            workload = await self._owner_of(namespace, pod_body)
            if action == "EvictPod":
                performed, reason, message = await self._evict(namespace, pod, pod_body, workload, dry_run)
            elif action == "RolloutRestart":
                performed, reason, message = await self._restart(workload, dry_run)
            else:
                performed, reason, message = await self._scale(
                    workload, dry_run, scale_step, scale_max_replicas
                )
            return outcome(performed, reason, message)
        except _Skip as s:
            return outcome(False, s.reason, s.message)
        except _Refused as r:
            return outcome(
                False,
                "Forbidden",
                f"the operator's ServiceAccount may not {r.verb} {r.resource} in namespace {namespace} "
                f"(RBAC; the Helm chart grants it with {CHART_VALUE.get(action, 'the actions values')}=true): {r}",
            )
        except KubeError as e:
            return outcome(False, "Failed", f"{action} failed: {e}")

    async def _evict(self, namespace: str, pod: str, pod_body: Any, w: Workload | None, dry_run: bool
                     ) -> tuple[bool, str, str]:  # fmt: skip
        if pod_body.metadata.deletion_timestamp is not None:
            return False, "PodGone", f"pod {pod} is already terminating"
        if w is None:
            # Nothing would bring a bare pod back: evicting it would be an outage, not a restart.
            return False, "NoWorkload", f"pod {pod} has no controller to replace it, so it is not evicted"
        await self._require_settled(w)
        of = f" of {w}"
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=pod, namespace=namespace),
        )
        try:
            await self._call(
                "create",
                "pods/eviction",
                namespace,
                self.core.create_namespaced_pod_eviction,
                pod,
                namespace,
                body,
                **_dry(dry_run),
            )
        except TooManyRequests as e:
            would = "would be refused" if dry_run else "refused"
            return (
                False,
                "DisruptionBudget",
                f"eviction of pod {pod}{of} {would} by a PodDisruptionBudget: {e}",
            )
        except NotFoundError:
            return False, "PodGone", f"pod {pod} is already gone"
        if dry_run:
            return False, "DryRun", f"would evict pod {pod}{of} (the API server accepted a dry-run eviction)"
        return True, "Evicted", f"evicted pod {pod}{of}; its controller replaces it"

    async def _restart(self, w: Workload | None, dry_run: bool) -> tuple[bool, str, str]:
        if w is None or w.kind not in _RESTARTABLE:
            what = "the pod has no controller" if w is None else f"{w} has no pod template to restart"
            return False, "NoWorkload", f"cannot restart a rollout: {what}"
        await self._require_settled(w)
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        patchers: dict[str, tuple[str, Callable[..., Any]]] = {
            "Deployment": ("deployments.apps", self.apps.patch_namespaced_deployment),
            "StatefulSet": ("statefulsets.apps", self.apps.patch_namespaced_stateful_set),
            "DaemonSet": ("daemonsets.apps", self.apps.patch_namespaced_daemon_set),
        }
        resource, fn = patchers[w.kind]
        await self._call("patch", resource, w.namespace, fn, w.name, w.namespace, patch, **_dry(dry_run))
        if dry_run:
            return False, "DryRun", f"would restart the rollout of {w} ({RESTARTED_AT}={now})"
        return True, "Restarted", f"restarted the rollout of {w} ({RESTARTED_AT}={now})"

    async def _scale(self, w: Workload | None, dry_run: bool, step: int, max_replicas: int | None
                     ) -> tuple[bool, str, str]:  # fmt: skip
        if w is None or w.kind not in _SCALABLE:
            what = "the pod has no controller" if w is None else f"{w} has no scale subresource we use"
            return False, "NoWorkload", f"cannot scale: {what}"
        step = max(1, step)
        resource, read, patch = {
            "Deployment": ("deployments.apps/scale", self.apps.read_namespaced_deployment_scale,
                           self.apps.patch_namespaced_deployment_scale),
            "StatefulSet": ("statefulsets.apps/scale", self.apps.read_namespaced_stateful_set_scale,
                            self.apps.patch_namespaced_stateful_set_scale),
            "ReplicaSet": ("replicasets.apps/scale", self.apps.read_namespaced_replica_set_scale,
                           self.apps.patch_namespaced_replica_set_scale),
        }[w.kind]  # fmt: skip
        for _ in range(SCALE_ATTEMPTS - 1):
            try:
                return await self._scale_once(w, resource, read, patch, dry_run, step, max_replicas)
            except ConflictError as e:
                log.info("scaling %s: %s; reading it again", w, e)
        return await self._scale_once(w, resource, read, patch, dry_run, step, max_replicas)

    async def _scale_once(self, w: Workload, resource: str, read: Callable[..., Any], patch: Callable[..., Any],
                          dry_run: bool, step: int, max_replicas: int | None) -> tuple[bool, str, str]:  # fmt: skip
        scale = await self._call("get", resource, w.namespace, read, w.name, w.namespace)
        current = int(scale.spec.replicas or 0)
        hpa = await self._hpa_for(w)
        if hpa is not None:
            return await self._raise_hpa_min(w, hpa, current, dry_run, step, max_replicas)
        if max_replicas is not None and current >= max_replicas:
            return False, "AtMaxReplicas", f"{w} already has {current} replicas (action.scale.maxReplicas: {max_replicas})"  # fmt: skip
        target = current + step if max_replicas is None else min(current + step, max_replicas)
        # resourceVersion makes the patch conditional: a concurrent change to the scale is a 409, not a race.
        body = {
            "metadata": {"resourceVersion": scale.metadata.resource_version},
            "spec": {"replicas": target},
        }
        await self._call("patch", resource, w.namespace, patch, w.name, w.namespace, body, **_dry(dry_run))
        if dry_run:
            return False, "DryRun", f"would scale {w} from {current} to {target} replicas"
        return True, "Scaled", f"scaled {w} from {current} to {target} replicas"

    async def _hpa_for(self, w: Workload) -> Any:
        """The autoscaling/v2 HPA whose scaleTargetRef is the workload, if any. Listing needs `list`; the
        chart grants only get/patch, so on 403 fall back to the HPA named like the workload (kubectl autoscale's
        convention)."""
        try:
            hpas = await self._call(
                "list",
                "horizontalpodautoscalers.autoscaling",
                w.namespace,
                self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
                w.namespace,
            )
            candidates = list(hpas.items)
        except _Refused:
            try:
                candidates = [
                    await self._call(
                        "get",
                        "horizontalpodautoscalers.autoscaling",
                        w.namespace,
                        self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
                        w.name,
                        w.namespace,
                    )
                ]
            except NotFoundError:
                return None
        for hpa in candidates:
            ref = hpa.spec.scale_target_ref
            group = (ref.api_version or "").split("/")[0]
            if ref.kind == w.kind and ref.name == w.name and group == "apps":
                return hpa
        return None

    async def _raise_hpa_min(self, w: Workload, hpa: Any, current: int, dry_run: bool, step: int,
                             max_replicas: int | None) -> tuple[bool, str, str]:  # fmt: skip
        name = f"HorizontalPodAutoscaler/{hpa.metadata.name}"
        hpa_min = int(hpa.spec.min_replicas or 1)
        hpa_max = int(hpa.spec.max_replicas)
        # Raising minReplicas below the replicas the HPA already runs would change nothing.
        base = max(hpa_min, current)
        if base >= hpa_max:
            return False, "HPAOwnsReplicas", (
                f"{name} owns the replicas of {w} and already allows no more than {hpa_max} "
                f"(running {current}); raise its maxReplicas to scale further"
            )  # fmt: skip
        if max_replicas is not None and base >= max_replicas:
            return False, "AtMaxReplicas", (
                f"{w} already has {base} replicas (action.scale.maxReplicas: {max_replicas}); {name} left as is"
            )  # fmt: skip
        target = min(base + step, hpa_max, max_replicas if max_replicas is not None else hpa_max)
        capped = " (capped at the HPA's maxReplicas)" if target == hpa_max and base + step > hpa_max else ""
        body = {"metadata": {"resourceVersion": hpa.metadata.resource_version},
                "spec": {"minReplicas": target}}  # fmt: skip
        await self._call(
            "patch",
            "horizontalpodautoscalers.autoscaling",
            w.namespace,
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            hpa.metadata.name,
            w.namespace,
            body,
            **_dry(dry_run),
        )
        change = f"minReplicas of {name} from {hpa_min} to {target}{capped}, which owns the replicas of {w}"
        if dry_run:
            return False, "DryRun", f"would raise the {change}"
        return True, "Scaled", f"raised the {change}"


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dry_run": "All"} if dry_run else {}


def _controller(obj: Any) -> tuple[str, str] | None:
    for ref in obj.metadata.owner_references or []:
        if ref.controller:
            return str(ref.kind), str(ref.name)
    return None


def unsettled(kind: str, obj: Any) -> str | None:
    """Why a workload is not settled (a rollout, a scale or a replacement under way), or None when every
    replica it wants is updated, ready and available and its controller has seen the latest spec."""
    meta, spec, status = obj.metadata, obj.spec, obj.status
    generation = meta.generation or 0
    observed = (status.observed_generation or 0) if status is not None else 0
    if observed < generation:
        return f"its controller has not yet observed generation {generation}"
    if kind == "DaemonSet":
        want = status.desired_number_scheduled or 0
        counts = {
            "updated": status.updated_number_scheduled or 0,
            "ready": status.number_ready or 0,
            "available": status.number_available or 0,
        }
    else:
        want = spec.replicas if spec.replicas is not None else 1
        counts = {
            "updated": (status.updated_replicas or 0) if kind != "ReplicaSet" else (status.replicas or 0),
            "ready": status.ready_replicas or 0,
            "available": status.available_replicas or 0,
        }
        # Old pods still running beside the new ones mean a rollout or scale-down is not finished.
        if (status.replicas or 0) > want:
            return f"{status.replicas} pods exist for {want} wanted replicas"
        if (
            kind == "StatefulSet"
            and status.update_revision
            and status.current_revision != status.update_revision
        ):
            return f"revision {status.update_revision} is still rolling out"
    for what, n in counts.items():
        if n < want:
            return f"{what} replicas {n} < {want} wanted"
    return None
