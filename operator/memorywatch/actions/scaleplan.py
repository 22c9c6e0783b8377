"""What a Scale action changes, decided from what the API server shows: pure, and idempotent against the
annotation it leaves.

Scale changes one field of one object: a HorizontalPodAutoscaler's spec.minReplicas when an HPA owns the
workload's replicas (changing spec.replicas under an HPA would be undone by it), else the workload's
spec.replicas. The same patch writes `memorywatch.io/scaled` on that object: what was changed, from and to what,
when, by which MemoryWatch, and the value before MemoryWatch first touched it, so a person can undo it (the
outcome's message carries the kubectl command). A second decision within the cooldown of the annotation (another
operator replica, another MemoryWatch over the same pods, a retry after a conflict) sees it and does nothing, so
scaling never compounds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

SCALED_ANNOTATION = "memorywatch.io/scaled"


@dataclasses.dataclass(frozen=True)
class HPAFacts:
    name: str
    min_replicas: int
    max_replicas: int


@dataclasses.dataclass(frozen=True)
class ScaleChange:
    """Patch `field` of `kind`/`name` from `before` to `after`; `annotation` goes in the same patch."""

    kind: str
    name: str
    namespace: str
    field: str  # spec.replicas | spec.minReplicas
    before: int
    after: int
    original: int
    annotation: str

    @property
    def undo(self) -> str:
        resource = "hpa" if self.kind == "HorizontalPodAutoscaler" else self.kind.lower()
        key = self.field.split(".")[-1]
        return (
            f"kubectl -n {self.namespace} patch {resource} {self.name} --type merge -p "
            f'\'{{"spec":{{"{key}":{self.original}}},"metadata":{{"annotations":'
            f'{{"{SCALED_ANNOTATION}":null}}}}}}\''
        )

    def describe(self) -> str:
        return (
            f"{self.field} of {self.kind}/{self.name} from {self.before} to {self.after} "
            f"({SCALED_ANNOTATION} records it; undo with: {self.undo})"
        )


@dataclasses.dataclass(frozen=True)
class ScaleSkip:
    reason: str
    message: str


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_annotation(text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def plan_scale(
    *,
    workload_kind: str,
    workload_name: str,
    namespace: str,
    replicas: int,
    hpa: HPAFacts | None,
    annotation: str | None,
    step: int,
    max_replicas: int | None,
    now: float,
    cooldown_seconds: float,
    by: str,
) -> ScaleChange | ScaleSkip:
    """The change to make, or why none. `annotation` is SCALED_ANNOTATION of the object the change applies to
    (the HPA if there is one, else the workload)."""
    step = max(1, step)
    prior = read_annotation(annotation)
    if hpa is not None:
        kind, name, field = "HorizontalPodAutoscaler", hpa.name, "spec.minReplicas"
        base = max(hpa.min_replicas, replicas)  # raising minReplicas below what runs would change nothing
        before = hpa.min_replicas
        if base >= hpa.max_replicas:
            return ScaleSkip(
                "HPAOwnsReplicas",
                f"HorizontalPodAutoscaler/{hpa.name} owns the replicas of {workload_kind}/{workload_name} and "
                f"allows no more than {hpa.max_replicas} (running {replicas}); raise its maxReplicas to scale "
                "further",
            )
        ceiling = hpa.max_replicas if max_replicas is None else min(hpa.max_replicas, max_replicas)
    else:
        kind, name, field = workload_kind, workload_name, "spec.replicas"
        base = before = replicas
        ceiling = max_replicas if max_replicas is not None else replicas + step
    if base >= ceiling:
        return ScaleSkip(
            "AtMaxReplicas",
            f"{workload_kind}/{workload_name} already has {base} replicas (action.scale.maxReplicas: "
            f"{max_replicas}); nothing changed",
        )
    # At the ceiling says more than 'recently scaled', so it is checked first.
    prior_at = prior.get("at") if prior else None
    if prior is not None and isinstance(prior_at, int | float) and now - float(prior_at) < cooldown_seconds:
        return ScaleSkip(
            "RecentlyScaled",
            f"MemoryWatch {prior.get('by', '?')} changed {prior.get('field', '?')} of {prior.get('object', '?')} "
            f"from {prior.get('from', '?')} to {prior.get('to', '?')} at {_iso(float(prior_at))}, within the "
            f"cooldown ({cooldown_seconds:g}s); not scaling again",
        )
    after = min(base + step, ceiling)
    original = before
    if prior is not None and isinstance(prior.get("original"), int) and prior.get("field") == field:
        original = int(prior["original"])  # type: ignore[call-overload]
    record = {
        "object": f"{kind}/{name}",
        "field": field,
        "from": before,
        "to": after,
        "original": original,
        "at": round(now, 3),
        "by": by,
    }
    return ScaleChange(
        kind, name, namespace, field, before, after, original, json.dumps(record, sort_keys=True)
    )
