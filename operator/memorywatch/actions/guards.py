"""The guardrails every action passes right before it is carried out: a pure policy chain.

Each check takes the facts the runner read from the API server just before acting (`GuardInput`) and either
passes (None) or refuses with a `Verdict` (a CamelCase reason for the ActionSkipped event and one sentence saying
which limit held and how to change it). `evaluate` runs the checks in order and returns the first refusal, like
cert-manager's policy chains. Pure: no I/O, no clock; the runner supplies every fact.

Defaults follow the Kubernetes VPA updater (`--min-replicas=2`, `--eviction-tolerance=0.5`) and the
descheduler (a cap on evictions per namespace and in total); docs/security.md#guardrails lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from memorywatch.actions.model import Workload

#: Namespace label that opts a namespace out of every action (captures still happen).
OPT_OUT_LABEL = "memorywatch.io/actions"
OPT_OUT_VALUE = "disabled"
#: The workload kinds each action supports. The chart's RBAC grants exactly these (tests/unit/chart checks it);
#: a pod of any other kind gets ActionSkipped with reason UnsupportedWorkload instead of a 403.
SUPPORTED_KINDS: Mapping[str, tuple[str, ...]] = {
    "EvictPod": ("Deployment", "StatefulSet", "ReplicaSet"),
    "RolloutRestart": ("Deployment", "StatefulSet"),
    "Scale": ("Deployment", "StatefulSet"),
}
#: Refusals that pass on their own: the controller tries again at the next capture instead of cooling down.
RETRYABLE_REASONS = frozenset(
    {
        "ClusterRateLimited",
        "NamespaceRateLimited",
        "WorkloadBusy",
        "RateLimitUnavailable",
        "TooManyUnavailable",
    }
)
#: Actions that take a serving pod away. Scale only adds replicas, so the replica guards do not apply to it.
DISRUPTIVE = frozenset({"EvictPod", "RolloutRestart"})


@dataclasses.dataclass(frozen=True)
class ActionPolicy:
    """The operator-wide limits (chart values `actions.*`, flags of `memorywatch run`)."""

    paused: bool = False
    min_replicas: int = 2
    max_unavailable_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(f"actions.minReplicas must be at least 1, got {self.min_replicas}")
        if not 0.0 < self.max_unavailable_fraction <= 1.0:
            raise ValueError(
                f"actions.maxUnavailableFraction must be in (0, 1], got {self.max_unavailable_fraction}"
            )

    def max_unavailable(self, desired: int) -> int:
        """How many replicas of a workload that wants `desired` may be unavailable at once (at least 1)."""
        return max(1, int(desired * self.max_unavailable_fraction))


@dataclasses.dataclass(frozen=True)
class WatchFacts:
    """The MemoryWatch as read again right before acting. `found` False: it was deleted."""

    found: bool
    uid: str | None = None
    suspended: bool = False
    deleting: bool = False
    action_type: str | None = None


@dataclasses.dataclass(frozen=True)
class GuardInput:
    action: str
    namespace: str
    pod: str
    dry_run: bool
    policy: ActionPolicy
    namespace_labels: Mapping[str, str]
    #: The watch as the controller knew it (uid) and as the API server has it now (None: not re-read).
    watch_uid: str | None = None
    watch: WatchFacts | None = None
    #: The pod's uid when the watch captured it, and its uid and state now.
    expected_pod_uid: str | None = None
    pod_uid: str | None = None
    pod_terminating: bool = False
    workload: Workload | None = None
    #: Replicas the workload wants and the pods of it that are ready and not terminating right now.
    desired_replicas: int | None = None
    ready_replicas: int | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    reason: str
    message: str
    allowed: bool = False


ALLOWED = Verdict("Allowed", "every guard passed", True)
Check = Callable[[GuardInput], Verdict | None]


def check_paused(g: GuardInput) -> Verdict | None:
    if g.policy.paused:
        return Verdict(
            "ActionsPaused",
            "every action is paused operator-wide (Helm value actions.paused=true); set it to false to resume",
        )
    return None


def check_namespace_opt_out(g: GuardInput) -> Verdict | None:
    if g.namespace_labels.get(OPT_OUT_LABEL) == OPT_OUT_VALUE:
        return Verdict(
            "NamespaceOptedOut",
            f"namespace {g.namespace} carries the label {OPT_OUT_LABEL}={OPT_OUT_VALUE}, which opts it out of "
            f"actions; `kubectl label namespace {g.namespace} {OPT_OUT_LABEL}-` opts it back in",
        )
    return None


def check_watch_still_wants_it(g: GuardInput) -> Verdict | None:
    w = g.watch
    if w is None:
        return None
    if not w.found or (g.watch_uid is not None and w.uid != g.watch_uid):
        return Verdict("WatchDeleted", "the MemoryWatch was deleted (or replaced) before the action ran")
    if w.deleting:
        return Verdict("WatchDeleted", "the MemoryWatch is being deleted, so its action is not carried out")
    if w.suspended:
        return Verdict(
            "WatchSuspended", "the MemoryWatch was suspended (spec.suspend: true) before the action ran"
        )
    if w.action_type is not None and w.action_type != g.action:
        return Verdict(
            "ActionChanged", f"spec.action.type is now {w.action_type}, no longer {g.action}; nothing is done"
        )
    return None


def check_same_pod(g: GuardInput) -> Verdict | None:
    if g.expected_pod_uid and g.pod_uid and g.expected_pod_uid != g.pod_uid:
        return Verdict(
            "PodReplaced",
            f"pod {g.pod} was recreated under the same name (uid {g.pod_uid}, the capture was of uid "
            f"{g.expected_pod_uid}); the new pod is not the one that leaked, so it is left alone",
        )
    if g.pod_terminating:
        return Verdict("PodGone", f"pod {g.pod} is already terminating")
    return None


def check_supported_kind(g: GuardInput) -> Verdict | None:
    if g.workload is None:
        what = {
            "EvictPod": "nothing would replace it, so evicting it would be an outage",
            "RolloutRestart": "there is no rollout to restart",
            "Scale": "there is nothing to scale",
        }.get(g.action, "")
        return Verdict("NoWorkload", f"pod {g.pod} has no controller: {what}")
    kinds = SUPPORTED_KINDS.get(g.action, ())
    if g.workload.kind not in kinds:
        return Verdict(
            "UnsupportedWorkload",
            f"{g.action} supports pods of {', '.join(kinds)}; {g.workload} is a {g.workload.kind}, so it "
            "is not touched",
        )
    return None


def check_replicas(g: GuardInput) -> Verdict | None:
    if g.action not in DISRUPTIVE or g.desired_replicas is None or g.ready_replicas is None:
        return None
    p = g.policy
    if g.ready_replicas < p.min_replicas:
        return Verdict(
            "BelowMinReplicas",
            f"{g.workload} has {g.ready_replicas} ready replica(s), fewer than actions.minReplicas={p.min_replicas}"
            "; disrupting it could take it down (raise its replicas, or lower the Helm value "
            "actions.minReplicas)",
        )
    unavailable = max(0, g.desired_replicas - g.ready_replicas)
    allowed = p.max_unavailable(g.desired_replicas)
    if unavailable + 1 > allowed:
        return Verdict(
            "TooManyUnavailable",
            f"{g.workload} already has {unavailable} of {g.desired_replicas} replica(s) unavailable; at most "
            f"{allowed} may be disrupted at once (actions.maxUnavailableFraction="
            f"{p.max_unavailable_fraction:g})",
        )
    return None


#: The order matters only for which reason is reported when several hold: the cheapest, most global first.
CHAIN: Sequence[Check] = (
    check_paused,
    check_namespace_opt_out,
    check_watch_still_wants_it,
    check_same_pod,
    check_supported_kind,
    check_replicas,
)


def evaluate(g: GuardInput, chain: Sequence[Check] = CHAIN) -> Verdict:
    """The first refusal of the chain, or ALLOWED."""
    for check in chain:
        verdict = check(g)
        if verdict is not None:
            return verdict
    return ALLOWED
