"""Facts read from the client's objects: a workload's selector as a query, pod readiness, and the per-workload lock."""

from __future__ import annotations

import asyncio
import datetime as dt

from kubernetes import client as k8s

from memorywatch.actions.facts import Locks, pod_ready, selector_string


def test_selector_string_covers_every_operator() -> None:
    sel = k8s.V1LabelSelector(
        match_labels={"app": "web", "tier": "shop"},
        match_expressions=[
            k8s.V1LabelSelectorRequirement(key="env", operator="In", values=["a", "b"]),
            k8s.V1LabelSelectorRequirement(key="canary", operator="NotIn", values=["yes"]),
            k8s.V1LabelSelectorRequirement(key="team", operator="Exists"),
            k8s.V1LabelSelectorRequirement(key="legacy", operator="DoesNotExist"),
        ],
    )
    assert selector_string(sel) == "app=web,tier=shop,env in (a,b),canary notin (yes),team,!legacy"
    assert selector_string(None) == ""


def pod(ready: str | None, deleting: bool = False) -> k8s.V1Pod:
    conditions = [k8s.V1PodCondition(type="Ready", status=ready)] if ready else None
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if deleting else None
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p", deletion_timestamp=when),
                     status=k8s.V1PodStatus(conditions=conditions))  # fmt: skip


def test_pod_ready_excludes_terminating_and_unready() -> None:
    assert pod_ready(pod("True"))
    assert not pod_ready(pod("True", deleting=True)), "an evicted pod keeps Ready during its grace period"
    assert not pod_ready(pod("False"))
    assert not pod_ready(pod(None))


async def test_locks_serialise_one_workload_and_are_dropped_after_use() -> None:
    locks = Locks()
    order: list[str] = []

    async def hold(name: str, subject: str) -> None:
        async with locks.hold(subject, "shop"):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(
        hold("a", "Deployment/web"), hold("b", "Deployment/web"), hold("c", "Deployment/api")
    )
    web = [o for o in order if o[0] in "ab"]
    assert web in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    assert order.index("c+") < order.index("a-") or order.index("c+") < order.index("b-"), (
        "other workloads run"
    )
    assert not locks._locks, "no lock is kept once nobody holds or waits for it"
