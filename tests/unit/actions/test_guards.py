"""The action guard chain: each guard refuses with its reason, and passes otherwise."""

from __future__ import annotations

import dataclasses

import pytest

from memorywatch.actions import ActionPolicy, Workload
from memorywatch.actions.guards import (
    ALLOWED,
    OPT_OUT_LABEL,
    SUPPORTED_KINDS,
    GuardInput,
    WatchFacts,
    evaluate,
)

DEPLOY = Workload("Deployment", "web", "shop")


def inp(**over: object) -> GuardInput:
    base = GuardInput(
        action="EvictPod",
        namespace="shop",
        pod="web-1",
        dry_run=False,
        policy=ActionPolicy(),
        namespace_labels={},
        watch_uid="mw-uid",
        watch=WatchFacts(found=True, uid="mw-uid", action_type="EvictPod"),
        expected_pod_uid="pod-uid",
        pod_uid="pod-uid",
        workload=DEPLOY,
        desired_replicas=3,
        ready_replicas=3,
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


def test_all_guards_pass_for_a_healthy_three_replica_deployment() -> None:
    assert evaluate(inp()) == ALLOWED


def test_pause_refuses_everything_first() -> None:
    v = evaluate(inp(policy=ActionPolicy(paused=True), workload=None))
    assert (v.allowed, v.reason) == (False, "ActionsPaused")
    assert "actions.paused" in v.message


def test_namespace_label_opts_out() -> None:
    v = evaluate(inp(namespace_labels={OPT_OUT_LABEL: "disabled"}))
    assert v.reason == "NamespaceOptedOut"
    assert f"kubectl label namespace shop {OPT_OUT_LABEL}-" in v.message
    assert evaluate(inp(namespace_labels={OPT_OUT_LABEL: "enabled"})).allowed


@pytest.mark.parametrize(
    ("watch", "reason"),
    [
        (WatchFacts(found=False), "WatchDeleted"),
        (WatchFacts(found=True, uid="other-uid", action_type="EvictPod"), "WatchDeleted"),
        (WatchFacts(found=True, uid="mw-uid", deleting=True, action_type="EvictPod"), "WatchDeleted"),
        (WatchFacts(found=True, uid="mw-uid", suspended=True, action_type="EvictPod"), "WatchSuspended"),
        (WatchFacts(found=True, uid="mw-uid", action_type="None"), "ActionChanged"),
    ],
)
def test_watch_is_read_again_before_acting(watch: WatchFacts, reason: str) -> None:
    assert evaluate(inp(watch=watch)).reason == reason


def test_pod_recreated_under_the_same_name_is_left_alone() -> None:
    v = evaluate(inp(pod_uid="new-uid"))
    assert v.reason == "PodReplaced" and "new-uid" in v.message and "pod-uid" in v.message
    assert evaluate(inp(pod_terminating=True)).reason == "PodGone"


def test_pod_without_controller_is_never_acted_on() -> None:
    for action in SUPPORTED_KINDS:
        assert evaluate(inp(action=action, workload=None, watch=None)).reason == "NoWorkload"


@pytest.mark.parametrize(
    ("action", "kind"),
    [("RolloutRestart", "DaemonSet"), ("RolloutRestart", "ReplicaSet"), ("Scale", "ReplicaSet"),
     ("Scale", "DaemonSet"), ("EvictPod", "DaemonSet"), ("EvictPod", "Job")],
)  # fmt: skip
def test_unsupported_kinds_are_refused_with_a_reason(action: str, kind: str) -> None:
    v = evaluate(inp(action=action, workload=Workload(kind, "x", "shop"), watch=None))
    assert v.reason == "UnsupportedWorkload" and kind in v.message


def test_below_min_replicas_is_not_disrupted() -> None:
    v = evaluate(inp(desired_replicas=1, ready_replicas=1))
    assert v.reason == "BelowMinReplicas" and "actions.minReplicas=2" in v.message
    assert evaluate(inp(desired_replicas=1, ready_replicas=1, policy=ActionPolicy(min_replicas=1))).allowed
    restart = inp(action="RolloutRestart", desired_replicas=1, ready_replicas=1)
    assert evaluate(dataclasses.replace(restart, watch=None)).reason == "BelowMinReplicas"


def test_scale_is_not_held_by_replica_guards() -> None:
    assert evaluate(inp(action="Scale", desired_replicas=1, ready_replicas=1, watch=None)).allowed


@pytest.mark.parametrize(
    ("desired", "ready", "fraction", "allowed"),
    [
        (2, 2, 0.5, True),  # one of two may go
        (2, 1, 0.5, False),  # below min replicas as well
        (4, 3, 0.5, True),  # one down, two allowed
        (4, 2, 0.5, False),  # two down already
        (10, 8, 0.25, False),  # floor(2.5) = 2 allowed, 2 down
        (10, 9, 0.25, True),
        (3, 3, 0.1, True),  # at least one is always allowed
    ],
)
def test_max_unavailable_fraction(desired: int, ready: int, fraction: float, allowed: bool) -> None:
    v = evaluate(inp(desired_replicas=desired, ready_replicas=ready,
                     policy=ActionPolicy(max_unavailable_fraction=fraction)))  # fmt: skip
    assert v.allowed is allowed, v


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="minReplicas"):
        ActionPolicy(min_replicas=0)
    with pytest.raises(ValueError, match="maxUnavailableFraction"):
        ActionPolicy(max_unavailable_fraction=0)
