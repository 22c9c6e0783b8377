"""Carries out an action on a leaking pod's workload through the API server (evict, rollout restart, scale),
each behind the guardrails of actions/guards.py, and reports one `ActionOutcome`; it never raises.

Right before acting it reads again what the guards need (the pod and its uid, the MemoryWatch, the namespace's
labels, the workload and its ready pods), runs the guard chain, counts the action in the shared ledger (rate
limits), then acts. Reasons (`ActionOutcome.reason`): Evicted, Restarted, Scaled, DryRun (a dry run that would
have acted), the guard reasons (ActionsPaused, NamespaceOptedOut, WatchDeleted, WatchSuspended, ActionChanged,
PodReplaced, PodGone, NoWorkload, UnsupportedWorkload, BelowMinReplicas, TooManyUnavailable, ClusterRateLimited,
NamespaceRateLimited, WorkloadBusy, RateLimitUnavailable), DisruptionBudget (a PodDisruptionBudget refused the eviction),
RolloutInProgress, AtMaxReplicas, HPAOwnsReplicas, RecentlyScaled, Forbidden (RBAC; the message names the missing
verb and resource), Failed (any other API error). A dry run resolves everything, asks the API server with
`dryRun=All` where it can, checks the rate limits without counting, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kubernetes import client as k8s

from memorywatch.actions.facts import Locks, desired_replicas, pod_ready, selector_string, unsettled
from memorywatch.actions.guards import (
    DISRUPTIVE,
    SUPPORTED_KINDS,
    ActionPolicy,
    GuardInput,
    WatchFacts,
    evaluate,
)
from memorywatch.actions.model import ActContext, ActionOutcome, Workload
from memorywatch.actions.ratelimit import Admission
from memorywatch.actions.scale import scale
from memorywatch.k8s import ConflictError, ForbiddenError, Kube, KubeError, NotFoundError, TooManyRequests
from memorywatch.k8s.client import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ACTIONS = ("EvictPod", "RolloutRestart", "Scale")
# The Helm value that grants each action's verbs (charts/memorywatch/values.yaml), named in Forbidden messages.
CHART_VALUE = {
    "EvictPod": "actions.evict.enabled",
    "RolloutRestart": "actions.restart.enabled",
    "Scale": "actions.scale.enabled",
}


class Ledger(Protocol):
    """Counts actions against the rate limits (actions/ledger.py keeps them in a Lease)."""

    async def reserve(self, namespace: str, *, dry_run: bool = False, workload: str = "") -> Admission: ...


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

    def __init__(
        self,
        kube: Kube,
        *,
        policy: ActionPolicy | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`ledger` None counts nothing (tests of one action); the operator always passes its LeaseLedger."""
        self.kube = kube
        self.policy = policy if policy is not None else ActionPolicy()
        self.ledger = ledger
        self.clock = clock
        self._locks = Locks()
        self.custom = k8s.CustomObjectsApi(kube.api)
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
        context: ActContext | None = None,
    ) -> ActionOutcome:
        workload: Workload | None = None

        def outcome(performed: bool, reason: str, message: str) -> ActionOutcome:
            return ActionOutcome(action, pod, workload, performed, dry_run, reason, message)

        try:
            if action not in ACTIONS:
                return outcome(False, "Failed", f"unknown action {action!r} (expected one of {ACTIONS})")
            if self.policy.paused:  # before any API call: a paused operator does not even look
                v = evaluate(self._input(action, namespace, pod, dry_run, {}))
                return outcome(False, v.reason, v.message)
            try:
                pod_body = await self._call(
                    "get", "pods", namespace, self.core.read_namespaced_pod, pod, namespace
                )
            except NotFoundError:
                return outcome(False, "PodGone", f"pod {namespace}/{pod} no longer exists")
            workload = await self._owner_of(namespace, pod_body)
            async with self._locks.hold(str(workload) if workload else f"Pod/{pod}", namespace):
                performed, reason, message = await self._guarded(
                    action,
                    namespace,
                    pod,
                    pod_body,
                    workload,
                    dry_run,
                    scale_step,
                    scale_max_replicas,
                    context,
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

    def _input(self, action: str, namespace: str, pod: str, dry_run: bool, labels: dict[str, str],
               **facts: Any) -> GuardInput:  # fmt: skip
        return GuardInput(action, namespace, pod, dry_run, self.policy, labels, **facts)

    async def _guarded(self, action: str, namespace: str, pod: str, pod_body: Any, w: Workload | None,
                       dry_run: bool, step: int, max_replicas: int | None, ctx: ActContext | None
                       ) -> tuple[bool, str, str]:  # fmt: skip
        """Re-read every fact the guards need, run the chain, count the action, then act. Runs under the
        workload's lock, so two watches over the same pods in this process never pass the guards together."""
        ns = await self._call("get", "namespaces", namespace, self.core.read_namespace, namespace)
        facts: dict[str, Any] = {
            "workload": w,
            "pod_uid": pod_body.metadata.uid,
            "pod_terminating": pod_body.metadata.deletion_timestamp is not None,
        }
        if ctx is not None:
            facts |= {
                "watch_uid": ctx.watch_uid,
                "expected_pod_uid": ctx.pod_uid,
                "watch": await self._watch_facts(namespace, ctx.watch_name),
            }
        obj = None
        if w is not None and w.kind in SUPPORTED_KINDS.get(action, ()):
            obj = await self._read_workload(w)
            if action in DISRUPTIVE and obj is not None:
                facts |= {
                    "desired_replicas": desired_replicas(w.kind, obj),
                    "ready_replicas": await self._ready_pods(namespace, obj),
                }
        verdict = evaluate(
            self._input(action, namespace, pod, dry_run, dict(ns.metadata.labels or {}), **facts)
        )
        if not verdict.allowed:
            return False, verdict.reason, verdict.message
        assert w is not None
        if action in DISRUPTIVE:
            why = unsettled(w.kind, obj) if obj is not None else None
            if why:
                return False, "RolloutInProgress", (
                    f"{w} is not settled ({why}); acting on one pod of a workload at a time, so not now"
                )  # fmt: skip
        if self.ledger is not None:
            taken = str(w) if action in DISRUPTIVE else ""  # one disruptive action per workload at a time
            admission = await self.ledger.reserve(namespace, dry_run=dry_run, workload=taken)
            if not admission.allowed:
                return False, admission.reason, admission.message
        if action == "EvictPod":
            return await self._evict(namespace, pod, pod_body.metadata.uid, w, dry_run)
        if action == "RolloutRestart":
            return await self._restart(w, dry_run)
        cooldown = ctx.cooldown_seconds if ctx is not None else 0.0
        by = f"{namespace}/{ctx.watch_name}" if ctx is not None else "unknown"
        return await scale(self, w, dry_run, step, max_replicas, cooldown, by)

    async def _watch_facts(self, namespace: str, name: str) -> WatchFacts:
        try:
            body = await self.kube.call(
                f"get MemoryWatch {namespace}/{name}",
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
            )  # fmt: skip
        except NotFoundError:
            return WatchFacts(found=False)
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        return WatchFacts(
            found=True,
            uid=meta.get("uid"),
            suspended=bool(spec.get("suspend", False)),
            deleting=meta.get("deletionTimestamp") is not None,
            action_type=str((spec.get("action") or {}).get("type") or "None"),
        )

    async def _ready_pods(self, namespace: str, obj: Any) -> int:
        """The workload's pods that are ready and not terminating, counted from the pods themselves (a
        workload's status lags an eviction another watch made a moment ago)."""
        selector = selector_string(obj.spec.selector)
        if not selector:
            return 0
        pods = await self._call(
            "list", "pods", namespace, self.core.list_namespaced_pod, namespace, label_selector=selector
        )
        return sum(1 for p in pods.items if pod_ready(p))

    async def _evict(self, namespace: str, pod: str, uid: str | None, w: Workload, dry_run: bool
                     ) -> tuple[bool, str, str]:  # fmt: skip
        of = f" of {w}"
        # The uid precondition: if the pod was deleted and recreated under the same name since it was read,
        # the API server refuses (409) instead of evicting the new pod.
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=pod, namespace=namespace),
            delete_options=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid)),
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
        except ConflictError:
            return (
                False,
                "PodReplaced",
                f"pod {pod} was recreated under the same name (uid is no longer {uid})",
            )
        except NotFoundError:
            return False, "PodGone", f"pod {pod} is already gone"
        if dry_run:
            return False, "DryRun", f"would evict pod {pod}{of} (the API server accepted a dry-run eviction)"
        return True, "Evicted", f"evicted pod {pod}{of}; its controller replaces it"

    async def _restart(self, w: Workload, dry_run: bool) -> tuple[bool, str, str]:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        patchers: dict[str, tuple[str, Callable[..., Any]]] = {
            "Deployment": ("deployments.apps", self.apps.patch_namespaced_deployment),
            "StatefulSet": ("statefulsets.apps", self.apps.patch_namespaced_stateful_set),
        }
        resource, fn = patchers[w.kind]
        await self._call("patch", resource, w.namespace, fn, w.name, w.namespace, patch, **_dry(dry_run))
        if dry_run:
            return False, "DryRun", f"would restart the rollout of {w} ({RESTARTED_AT}={now})"
        return True, "Restarted", f"restarted the rollout of {w} ({RESTARTED_AT}={now})"


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dry_run": "All"} if dry_run else {}


def _controller(obj: Any) -> tuple[str, str] | None:
    for ref in obj.metadata.owner_references or []:
        if ref.controller:
            return str(ref.kind), str(ref.name)
    return None
