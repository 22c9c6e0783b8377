"""Pods as the operator sees them, and turning a selected pod into a scrape target. Pure: no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from memorywatch.api.spec import EndpointSpec
from memorywatch.api.units import UnitError, parse_quantity

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


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
    # The memory limit of the pod's default container (the `kubectl.kubernetes.io/default-container`
    # annotation, else the first container): the fallback when the pprof port is not a declared port.
    memory_limit_bytes: int | None
    # Restarts of the pod's containers, summed: a rise means a new process behind the same pod name and IP.
    restart_count: int = 0
    # container port number -> the memory limit of the container declaring it (None: that one has no limit)
    port_memory_limits: Mapping[int, int | None] = dataclasses.field(default_factory=dict)
    # When the default container's process started (its status's state.running.startedAt, unix seconds), and
    # the same per container port: the rules hold back rises of a young process as a possible warm-up.
    started_at: float | None = None
    port_started_at: Mapping[int, float | None] = dataclasses.field(default_factory=dict)

    def memory_limit_for_port(self, port: int | None) -> int | None:
        """The limit the kernel enforces on the process serving `port`: each container is OOM-killed at its
        own limit, not at the pod's total, so a 600Mi app next to a 2Gi sidecar is forecast against 600Mi.
        An undeclared port falls back to the default container's limit."""
        if port is not None and port in self.port_memory_limits:
            return self.port_memory_limits[port]
        return self.memory_limit_bytes

    def started_at_for_port(self, port: int | None) -> float | None:
        """When the process serving `port` started (the container declaring it, else the default one)."""
        if port is not None and port in self.port_started_at:
            return self.port_started_at[port]
        return self.started_at

    @property
    def running(self) -> bool:
        return bool(self.ip) and self.phase == "Running" and not self.deleting


def pod_info(body: Mapping[str, Any]) -> PodInfo:
    """Read a pod object (a dict as the API serves it)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    ports: dict[str, int] = {}
    port_limits: dict[int, int | None] = {}
    port_started: dict[int, float | None] = {}
    started = _started_at(status)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    for c in containers:
        limit = _memory_limit(c)
        for p in c.get("ports") or []:
            number = p.get("containerPort") if isinstance(p, Mapping) else None
            if isinstance(number, int):
                ports[str(p.get("name") or number)] = number
                ports.setdefault(str(number), number)
                port_limits.setdefault(number, limit)
                port_started.setdefault(number, started.get(str(c.get("name"))))
    default_name = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    default = next(
        (c for c in containers if c.get("name") == default_name), containers[0] if containers else None
    )
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
        memory_limit_bytes=_memory_limit(default) if default is not None else None,
        port_memory_limits=port_limits,
        restart_count=_restart_count(status),
        started_at=started.get(str(default.get("name"))) if default is not None else None,
        port_started_at=port_started,
    )


def _started_at(status: Mapping[str, Any]) -> dict[str, float]:
    """Container name -> when its running process started (state.running.startedAt), for running containers."""
    out: dict[str, float] = {}
    for c in status.get("containerStatuses") or []:
        if not isinstance(c, Mapping):
            continue
        running = (c.get("state") or {}).get("running") if isinstance(c.get("state"), Mapping) else None
        text = running.get("startedAt") if isinstance(running, Mapping) else None
        if not isinstance(text, str):
            continue
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is not None:
            out[str(c.get("name"))] = when.timestamp()
    return out


def _restart_count(status: Mapping[str, Any]) -> int:
    total = 0
    for c in status.get("containerStatuses") or []:
        count = c.get("restartCount") if isinstance(c, Mapping) else None
        if isinstance(count, int) and count > 0:
            total += count
    return total


def _memory_limit(container: Mapping[str, Any]) -> int | None:
    """A container's memory limit in bytes; None when it has none or it does not parse."""
    raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if raw is None:
        return None
    try:
        limit = int(parse_quantity(raw))
    except UnitError:
        return None
    return limit if limit > 0 else None


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
