"""What an action reports, and the interface the controller calls."""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Workload:
    """The object that owns a pod's replicas (Deployment or StatefulSet), or a bare ReplicaSet."""

    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    """`performed` is True only when the API accepted the change. `reason` is a CamelCase word for events
    (Evicted, Restarted, Scaled, DryRun, DisruptionBudget, NoWorkload, AtMaxReplicas, HPAOwnsReplicas,
    RolloutInProgress, Forbidden, Failed, and the guard reasons of actions/guards.py and actions/ratelimit.py);
    `message` is one sentence for people."""

    action: str
    pod: str
    workload: Workload | None
    performed: bool
    dry_run: bool
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class ActContext:
    """What the runner re-checks right before acting: the MemoryWatch that decided (re-read: still there, same
    uid, not suspended), the uid of the pod it captured (a pod recreated under the same name is not acted on),
    and the watch's action cooldown (Scale's idempotence window)."""

    watch_name: str
    watch_uid: str | None
    pod_uid: str | None
    cooldown_seconds: float = 3600.0


class ActionRunner(Protocol):
    async def workload_of(self, namespace: str, pod: str) -> Workload | None: ...

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
    ) -> ActionOutcome: ...
