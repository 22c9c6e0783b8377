"""The Scale action's API calls: read the workload and the HPA that owns its replicas, ask the pure
`scaleplan.plan_scale`, and write the change and its `memorywatch.io/scaled` annotation in one patch that is
conditional on the resourceVersion read. A conflict (another replica or watch wrote first) reads again, and then
the annotation it left stops a second step."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from memorywatch.actions.model import Workload
from memorywatch.actions.scaleplan import SCALED_ANNOTATION, HPAFacts, ScaleSkip, plan_scale
from memorywatch.k8s import ConflictError

if TYPE_CHECKING:
    from memorywatch.actions.runner import KubeActions

log = logging.getLogger(__name__)
ATTEMPTS = 4
HPA_RESOURCE = "horizontalpodautoscalers.autoscaling"


async def scale(r: KubeActions, w: Workload, dry_run: bool, step: int, max_replicas: int | None,
                cooldown_seconds: float, by: str) -> tuple[bool, str, str]:  # fmt: skip
    for attempt in range(ATTEMPTS):
        try:
            return await _scale_once(r, w, dry_run, step, max_replicas, cooldown_seconds, by)
        except ConflictError as e:
            if attempt == ATTEMPTS - 1:
                raise
            log.info("scaling %s: %s; reading it again", w, e)
    raise AssertionError("unreachable")


async def _scale_once(r: KubeActions, w: Workload, dry_run: bool, step: int, max_replicas: int | None,
                      cooldown_seconds: float, by: str) -> tuple[bool, str, str]:  # fmt: skip
    read, patch, resource = {
        "Deployment": (r.apps.read_namespaced_deployment, r.apps.patch_namespaced_deployment, "deployments.apps"),
        "StatefulSet": (r.apps.read_namespaced_stateful_set, r.apps.patch_namespaced_stateful_set,
                        "statefulsets.apps"),
    }[w.kind]  # fmt: skip
    obj = await r._call("get", resource, w.namespace, read, w.name, w.namespace)
    replicas = int(obj.spec.replicas if obj.spec.replicas is not None else 1)
    hpa = await _hpa_for(r, w)
    target = hpa if hpa is not None else obj
    plan = plan_scale(
        workload_kind=w.kind,
        workload_name=w.name,
        namespace=w.namespace,
        replicas=replicas,
        hpa=HPAFacts(hpa.metadata.name, int(hpa.spec.min_replicas or 1), int(hpa.spec.max_replicas))
        if hpa is not None
        else None,
        annotation=(target.metadata.annotations or {}).get(SCALED_ANNOTATION),
        step=step,
        max_replicas=max_replicas,
        now=r.clock(),
        cooldown_seconds=cooldown_seconds,
        by=by,
    )
    if isinstance(plan, ScaleSkip):
        return False, plan.reason, plan.message
    key = plan.field.split(".")[-1]
    # resourceVersion makes the patch conditional: a concurrent change is a 409, read again, not a race.
    body = {
        "metadata": {
            "resourceVersion": target.metadata.resource_version,
            "annotations": {SCALED_ANNOTATION: plan.annotation},
        },
        "spec": {key: plan.after},
    }
    dry = {"dry_run": "All"} if dry_run else {}
    if hpa is not None:
        await r._call("patch", HPA_RESOURCE, w.namespace, r.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
                      hpa.metadata.name, w.namespace, body, **dry)  # fmt: skip
    else:
        await r._call("patch", resource, w.namespace, patch, w.name, w.namespace, body, **dry)
    if dry_run:
        return False, "DryRun", f"would change {plan.describe()}"
    return True, "Scaled", f"changed {plan.describe()}"


async def _hpa_for(r: KubeActions, w: Workload) -> Any:
    """The autoscaling/v2 HPA whose scaleTargetRef is the workload, if any. Listing needs `list`; without it,
    fall back to the HPA named like the workload (kubectl autoscale's convention)."""
    from memorywatch.actions.runner import _Refused
    from memorywatch.k8s import NotFoundError

    api = r.autoscaling
    try:
        hpas = await r._call("list", HPA_RESOURCE, w.namespace, api.list_namespaced_horizontal_pod_autoscaler,
                             w.namespace)  # fmt: skip
        candidates = list(hpas.items)
    except _Refused:
        try:
            candidates = [
                await r._call(
                    "get",
                    HPA_RESOURCE,
                    w.namespace,
                    api.read_namespaced_horizontal_pod_autoscaler,
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
