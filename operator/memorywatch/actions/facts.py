"""Facts about workloads and pods, read from the client's objects (pure functions), and the per-workload lock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class Locks:
    """One asyncio lock per workload, dropped when nobody holds or waits for it (bounded by the work in flight)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, subject: str, namespace: str) -> AsyncIterator[None]:
        key = f"{namespace}/{subject}"
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def desired_replicas(kind: str, obj: Any) -> int:
    if kind == "DaemonSet":
        return int(obj.status.desired_number_scheduled or 0) if obj.status is not None else 0
    return int(obj.spec.replicas if obj.spec.replicas is not None else 1)


def selector_string(selector: Any) -> str:
    """A workload's spec.selector as a label-selector query string ("" when it selects nothing we can say)."""
    if selector is None:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for e in selector.match_expressions or []:
        values = ",".join(e.values or [])
        parts.append(
            {
                "In": f"{e.key} in ({values})",
                "NotIn": f"{e.key} notin ({values})",
                "Exists": e.key,
                "DoesNotExist": f"!{e.key}",
            }.get(e.operator, "")
        )
    return ",".join(p for p in parts if p)


def pod_ready(pod: Any) -> bool:
    """Ready and not terminating (an evicted pod keeps its Ready condition for its grace period)."""
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions or []) if pod.status is not None else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


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
