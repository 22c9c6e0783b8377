"""Pods as the operator sees them, and turning a selected pod into a scrape target. Pure: no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from memorywatch.api.spec import EndpointSpec
from memorywatch.api.units import UnitError, parse_quantity


@dataclasses.dataclass(frozen=True)
class PodInfo:
    """The few facts about a pod the operator needs, kept in a kopf index (small, bounded per pod)."""

    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    ip: str | None
    phase: str | None
    deleting: bool
    ports: Mapping[str, int]  # container port name -> number (unnamed ports under their number)
    owner: tuple[str, str] | None  # (kind, name) of the controller owner
    memory_limit_bytes: int | None
    # Restarts of the pod's containers, summed: a rise means a new process behind the same pod name and IP.
    restart_count: int = 0

    @property
    def running(self) -> bool:
        return bool(self.ip) and self.phase == "Running" and not self.deleting


def pod_info(body: Mapping[str, Any]) -> PodInfo:
    """Read a pod object (a dict as the API serves it)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    ports: dict[str, int] = {}
    limit_total = 0
    limited = True
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            number = p.get("containerPort")
            if isinstance(number, int):
                ports[str(p.get("name") or number)] = number
                ports.setdefault(str(number), number)
        raw = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        try:
            limit_total += int(parse_quantity(raw)) if raw is not None else 0
            limited = limited and raw is not None
        except UnitError:
            limited = False
    owner = None
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            owner = (str(ref.get("kind")), str(ref.get("name")))
    return PodInfo(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        ip=status.get("podIP") or None,
        phase=status.get("phase"),
        deleting=meta.get("deletionTimestamp") is not None,
        ports=ports,
        owner=owner,
        memory_limit_bytes=limit_total if limited and limit_total > 0 else None,
        restart_count=_restart_count(status),
    )


def _restart_count(status: Mapping[str, Any]) -> int:
    total = 0
    for c in status.get("containerStatuses") or []:
        count = c.get("restartCount") if isinstance(c, Mapping) else None
        if isinstance(count, int) and count > 0:
            total += count
    return total


def resolve_port(endpoint: EndpointSpec, pod: PodInfo) -> int | None:
    """spec.endpoint.port as a number for this pod: a number is used as is; a name must be a container port."""
    port = endpoint.port
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    return pod.ports.get(port)


def pod_url(endpoint: EndpointSpec, ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{endpoint.scheme}://{host}:{port}"
