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
    RolloutInProgress, Forbidden, Failed); `message` is one sentence for people."""

    action: str
    pod: str
    workload: Workload | None
    performed: bool
    dry_run: bool
    reason: str
    message: str


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
    ) -> ActionOutcome: ...
